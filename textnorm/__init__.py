"""textnorm: confidence-aware reward optimization of text-to-image models.

Sub-packages, one concern each (the data flow runs top to bottom):

- :mod:`textnorm.tia2`: the TIA2 benchmark: files (download, mirror, sha256), annotation tables and
  label rules, scoring a folder of images, evaluation of scores against the labels
- :mod:`textnorm.rewards`: reward models behind one interface, TextNorm calibration and its
  ensembles (:mod:`~textnorm.rewards.calibration`), contrastive prompts
  (:mod:`~textnorm.rewards.contrastive`), and the one scoring path for images of a prompt and its
  contrasts (:mod:`~textnorm.rewards.scoring`)
- :mod:`textnorm.stats`: ranking metrics, bootstrap intervals and paired tests, inter-rater
  agreement, pairwise human evaluations, cross-validated choice of TextNorm's settings,
  over-optimisation (best-of-n order statistics, Gao et al.'s fitted forms)
- :mod:`textnorm.synth`: the synthetic world (scenes, gold judge, generator, proxies, benchmark)
- :mod:`textnorm.finetune`: tasks, rewards, DDPO and reward-weighted SFT, the over-optimisation grid; with
  :mod:`textnorm.ddim`, the DDIM chain with log-probabilities that sampling and training share

Top-level modules: presentation (:mod:`textnorm.plots`: one colour per reward, figure defaults,
the judge-framed image grid; :mod:`textnorm.tables`: reader names and intervals for displayed
tables) and support (:mod:`textnorm.cli`, the ``textnorm`` command; :mod:`textnorm.params`,
notebook parameter checks; :mod:`textnorm.manifest`, hashes of the shipped artifacts;
:mod:`textnorm.files`, atomic writes; :mod:`textnorm.paths`; :mod:`textnorm.quiet`, quiet
third-party logs in notebooks; :mod:`textnorm.testing`, tiny models for tests).
"""

__version__ = "0.1.0"
