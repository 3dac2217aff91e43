"""The synthetic world as a fine-tuning task: fixed training captions, held-out captions, the
world's contrastive captions and its gold judge.

Training prompts are a fixed set (half counting, half composition) of captions the generator was
trained on, so every round revisits the same prompts and the per-prompt signal accumulates; the
held-out prompts are captions the generator never saw (the secondary, generalisation measure).
Its pre-training data are fresh renders of the generator's training captions, drawn as the
generator's own training drew them.
"""

from __future__ import annotations

import functools

import numpy as np

from textnorm.finetune.task import Task
from textnorm.synth import judge, scenes


def pretrain_data(n: int, seed: int, res: int = 16) -> tuple[np.ndarray, list[str]]:
    """n renders (res x res px) of random training captions (half counting, half composition)."""
    rng = np.random.default_rng(seed)
    train = {s: scenes.split_captions(s, seed=0)[0] for s in ("counting", "composition")}
    caps = rng.choice(train["counting"], n // 2).tolist() + rng.choice(train["composition"], n - n // 2).tolist()
    return scenes.draw_batch(caps, seed=seed, res=res), caps


def synth_task(n_train: int = 8, n_eval: int = 8, seed: int = 0, res: int = 16) -> Task:
    rng = np.random.default_rng(seed)
    train, held = [], []
    for subset in ("counting", "composition"):
        tr, ho = scenes.split_captions(subset, seed=0)  # the generator's own split
        train += rng.choice(tr, n_train // 2, replace=False).tolist()
        held += ho[: n_eval // 2]
    return Task(
        "synth",
        train,
        held,
        scenes.contrastive_captions,
        lambda images, prompts: judge.judge_batch(np.asarray(images), list(prompts)).astype(float),
        functools.partial(pretrain_data, res=res),
    )
