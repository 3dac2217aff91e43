"""The synthetic world as a fine-tuning task: fixed training captions, held-out captions, the
world's contrastive captions and its gold judge.

Training prompts are a fixed set (half counting, half composition) of captions the generator was
trained on, so every round revisits the same prompts and the per-prompt signal accumulates; the
held-out prompts are captions the generator never saw (the secondary, generalisation measure).
"""

from __future__ import annotations

import numpy as np

from textnorm.finetune.task import Task
from textnorm.synth import judge, scenes


def synth_task(n_train: int = 8, n_eval: int = 8, seed: int = 0) -> Task:
    rng = np.random.default_rng(seed)
    train, held = [], []
    for subset in ("counting", "composition"):
        tr, ho = scenes.split_captions(subset, seed=0)   # the generator's own split
        train += rng.choice(tr, n_train // 2, replace=False).tolist()
        held += ho[: n_eval // 2]
    return Task("synth", train, held, scenes.contrastive_captions,
                lambda images, prompts: judge.judge_batch(np.asarray(images), list(prompts)).astype(float))
