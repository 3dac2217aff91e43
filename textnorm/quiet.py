"""Silence third-party progress bars and advisory logs (weight-loading bars of transformers and
diffusers, the torchvision fallback notice), for notebooks whose outputs nbval compares."""

from __future__ import annotations

import warnings


def quiet_libraries() -> None:
    """Call before importing modules that import transformers or diffusers (textnorm.synth,
    textnorm.finetune): those import tqdm.auto, which warns in Jupyter kernels without ipywidgets
    and falls back to plain text bars (what we want), so the notice is noise on stderr."""
    warnings.filterwarnings("ignore", message="IProgress not found")
    import diffusers
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*steps_offset.*")
