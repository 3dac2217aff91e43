"""What a fine-tuning run optimises and where it is measured, apart from how it optimises.

A :class:`Task` holds the training prompts, the held-out evaluation prompts, the contrastive
prompt function that TextNorm rewards need (C(y) for a prompt y), optionally a gold judge
g(images, prompts) -> {0, 1} that measures true alignment, and optionally a source of
pre-training data d(n, seed) -> (uint8 images, prompts) for reward-weighted SFT's pre-training
loss (Lee et al., 2023, regularise with the denoising loss on pre-training data). The trainer never assumes any of them:
the synthetic world provides a task with a gold judge (:func:`textnorm.synth.task.synth_task`);
a Stable Diffusion run gets a :func:`plain_task` of the user's prompts, without gold unless a
judge is given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

Judge = Callable[[np.ndarray, Sequence[str]], np.ndarray]
PretrainData = Callable[[int, int], tuple[np.ndarray, list[str]]]


@dataclass
class Task:
    name: str
    train_prompts: list[str]
    eval_prompts: list[str] = field(default_factory=list)  # held-out prompts (may be empty)
    contrastive: Callable[[str], list[str]] | None = None
    gold: Judge | None = None
    pretrain_data: PretrainData | None = None

    def __post_init__(self) -> None:
        if not self.train_prompts:
            raise ValueError(f"task {self.name!r} has no training prompts")
        if len(set(self.train_prompts)) != len(self.train_prompts):
            raise ValueError(f"task {self.name!r} lists a training prompt twice")


def plain_task(
    prompts: Sequence[str],
    eval_prompts: Sequence[str] = (),
    contrastive: Callable[[str], list[str]] | None = None,
    gold: Judge | None = None,
) -> Task:
    """A task of given prompts (e.g. for Stable Diffusion): no gold judge unless one is given."""
    return Task("prompts", list(dict.fromkeys(prompts)), list(eval_prompts), contrastive, gold)


def make_task(name: str, prompts: Sequence[str] = (), n_train: int = 8, seed: int = 0, res: int = 16) -> Task:
    """``synth``: the synthetic world (its captions, rules and gold judge; ``prompts`` override
    the training captions); ``prompts``: the given prompts, no gold."""
    if name == "synth":
        from textnorm.synth.task import synth_task

        task = synth_task(n_train=n_train, seed=seed, res=res)
        if prompts:
            task.train_prompts = list(dict.fromkeys(prompts))
        return task
    if name == "prompts":
        if not prompts:
            raise ValueError("task 'prompts' needs training prompts (--prompt, repeated)")
        return plain_task(prompts)
    raise ValueError(f"unknown task {name!r}; choose 'synth' or 'prompts'")
