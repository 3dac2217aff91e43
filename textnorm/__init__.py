"""textnorm: confidence-aware reward optimization of text-to-image models.

Modules, each with one job:

- TIA2 benchmark: :mod:`textnorm.data` (download / mirror / sha256 verification),
  :mod:`textnorm.tia2` (tidy tables and label rules), :mod:`textnorm.scoring` (reward scores of a
  folder of images), :mod:`textnorm.evaluation` (scores -> per-prompt metrics, with coverage checks)
- statistics: :mod:`textnorm.metrics` (ranking metrics, bootstrap intervals, paired tests),
  :mod:`textnorm.agreement` (inter-rater agreement), :mod:`textnorm.humaneval` (pairwise human
  evaluations), :mod:`textnorm.selection` (choice of TextNorm's temperature and lambda)
- rewards and calibration: :mod:`textnorm.rewards` (reward models behind one interface),
  :mod:`textnorm.calibration` (TextNorm and its ensembles), :mod:`textnorm.prompts` (contrastive
  prompts)
- the synthetic world: :mod:`textnorm.synth` (scenes, gold judge, generator, proxies, benchmark)
- fine-tuning: :mod:`textnorm.ddim` (the DDIM chain with log-probabilities),
  :mod:`textnorm.finetune` (tasks, rewards, DDPO and reward-weighted SFT, experiments)
- presentation: :mod:`textnorm.plots` (one colour per reward, figure defaults, the judge-framed
  image grid), :mod:`textnorm.tables` (reader names and intervals for displayed tables)
- support: :mod:`textnorm.cli` (the ``textnorm`` command), :mod:`textnorm.params` (notebook
  parameter checks), :mod:`textnorm.manifest` (hashes of the shipped artifacts),
  :mod:`textnorm.paths`, :mod:`textnorm.quiet`, :mod:`textnorm.testing` (tiny models for tests)
"""

import warnings

__version__ = "0.1.0"

# transformers and diffusers import tqdm.auto, which warns in Jupyter kernels without ipywidgets
# and falls back to plain text bars: those are what we want, so the notice is noise.
warnings.filterwarnings("ignore", message="IProgress not found")
