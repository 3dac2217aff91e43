"""textnorm: confidence-aware reward optimization of text-to-image models.

Modules, each with one job:

- :mod:`textnorm.data`      download / mirror / sha256 verification of the TIA2 files
- :mod:`textnorm.tia2`      tidy tables of the TIA2 benchmark and its label rules
- :mod:`textnorm.metrics`   per-prompt ranking metrics, aggregation, bootstrap intervals, paired tests
- :mod:`textnorm.agreement` inter-rater agreement of the raw TIA2 labels
- :mod:`textnorm.cli`       the ``textnorm`` command line
"""

import warnings

__version__ = "0.1.0"

# transformers and diffusers import tqdm.auto, which warns in Jupyter kernels without ipywidgets
# and falls back to plain text bars: those are what we want, so the notice is noise.
warnings.filterwarnings("ignore", message="IProgress not found")
