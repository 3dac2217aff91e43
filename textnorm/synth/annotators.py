"""Simulated annotators: three noisy people label each image against its caption.

Annotator a sees the gold verdict v(x, y) in {0, 1} and reports
- -1 (unsure) with probability u_a,
- otherwise the gold verdict, flipped with probability f_a, or f_a * ``near_miss_boost`` for a
  near miss (an image whose objects differ from the caption's by exactly one object), where
  people err more often.

The defaults were tuned so that Fleiss' kappa of the three falls inside the range seen on TIA2's
subsets (between composition and counting); the chapter reports the value obtained.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from textnorm.synth import judge


def near_miss(image: np.ndarray, caption: str) -> bool:
    found, want = judge.objects(image), judge.caption_objects(caption)
    return sum(((found - want) + (want - found)).values()) == 1


def simulate_labels(
    images: np.ndarray,
    captions: Sequence[str],
    verdicts: np.ndarray | None = None,
    flip: Sequence[float] = (0.06, 0.1, 0.16),
    unsure: Sequence[float] = (0.01, 0.02, 0.04),
    near_miss_boost: float = 2.5,
    seed: int = 0,
) -> np.ndarray:
    """(n, n_annotators) labels in {1, 0, -1}."""
    if len(flip) != len(unsure):
        raise ValueError("flip and unsure need one rate per annotator")
    verdicts = judge.judge_batch(images, list(captions)) if verdicts is None else np.asarray(verdicts, bool)
    hard = np.array([near_miss(im, c) for im, c in zip(images, captions)])
    rng = np.random.default_rng(seed)
    labels = np.empty((len(verdicts), len(flip)), dtype=int)
    for a, (f, u) in enumerate(zip(flip, unsure)):
        p_flip = np.where(hard, min(1.0, f * near_miss_boost), f)
        flipped = rng.random(len(verdicts)) < p_flip
        labels[:, a] = np.where(flipped, ~verdicts, verdicts).astype(int)
        labels[rng.random(len(verdicts)) < u, a] = -1
    return labels
