"""Learning-rate schedules, all in one place (three by design, each written once):

- fine-tuning (DDPO, RWSFT): linear warm-up to ``base``, then constant;
      lr(u) = base * min(1, (u + 1) / (warmup + 1))        (u: optimiser updates so far)
- the synthetic generator's pre-training: linear warm-up, then cosine decay to 10% of ``base``;
      lr(s) = base (s + 1) / warmup                         for s < warmup
      lr(s) = base (0.1 + 0.9 * 0.5 (1 + cos(pi p)))        p = (s - warmup) / max(1, total - warmup)
- the proxies' training: a factor of ``base`` (torch's LambdaLR), linear warm-up times cosine decay to 0;
      f(s) = min(1, (s + 1) / warmup) * 0.5 (1 + cos(pi min(1, s / total)))
"""

from __future__ import annotations

import math

import numpy as np


def finetuning_lr(base: float, updates: int, warmup: int) -> float:
    return base * min(1.0, (updates + 1) / (warmup + 1))


def pretraining_lr(step: int, base: float, warmup: int, total: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def proxy_lr_factor(step: int, warmup: int, total: int) -> float:
    return min(1.0, (step + 1) / warmup) * 0.5 * (1 + np.cos(np.pi * min(1.0, step / total)))
