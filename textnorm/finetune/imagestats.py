"""Image statistics that reveal reward hacking (brightness, saturation, background share)."""

from __future__ import annotations

import numpy as np


def image_stat_arrays(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per image: mean brightness, mean saturation (max - min channel) and the share of
    near-grey pixels (saturation < 0.15), all in [0, 1]."""
    x = images.astype(float) / 255
    sat = x.max(-1) - x.min(-1)
    return {
        "brightness": x.mean(axis=(1, 2, 3)),
        "saturation": sat.mean(axis=(1, 2)),
        "background_share": (sat < 0.15).mean(axis=(1, 2)),
    }


def image_stats(images: np.ndarray) -> dict[str, float]:
    return {k: float(v.mean()) for k, v in image_stat_arrays(images).items()}
