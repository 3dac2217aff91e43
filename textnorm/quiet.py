"""Silence third-party progress bars and advisory logs (weight-loading bars of transformers and
diffusers, the torchvision fallback notice), for notebooks whose outputs nbval compares."""

from __future__ import annotations

import warnings


def quiet_libraries() -> None:
    import diffusers
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*steps_offset.*")
