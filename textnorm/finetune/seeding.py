"""Every random draw of a run comes from a CPU generator seeded by (seed, step, purpose), so a run
is the same on any device and a resumed run draws what the uninterrupted one would have."""

from __future__ import annotations

import torch


def make_generator(seed: int, step: int, salt: int = 0) -> torch.Generator:
    """The CPU generator of one random draw: (seed, step, purpose) -> stream."""
    return torch.Generator("cpu").manual_seed(seed * 1_000_003 + step * 7919 + salt)


SALT_SAMPLE, SALT_TRAIN, SALT_EVAL, SALT_HELDOUT, SALT_POOL, SALT_STUDY = 0, 1, 2, 3, 4, 5
