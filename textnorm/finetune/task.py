"""What a fine-tuning run optimises and where it is measured, apart from how it optimises.

A :class:`Task` holds the training prompts, the held-out evaluation prompts, the contrastive
prompt function that TextNorm rewards need (C(y) for a prompt y), optionally a gold judge
g(images, prompts) -> {0, 1} that measures true alignment, and optionally a source of
pre-training data d(n, seed) -> (uint8 images, prompts) for reward-weighted SFT's pre-training
loss (Lee et al., 2023, regularise with the denoising loss on pre-training data). The trainer never assumes any of them:
the synthetic world registers a task with a gold judge (``synth``, :mod:`textnorm.synth.register`);
a Stable Diffusion run gets a :func:`plain_task` of the user's prompts, without gold unless a
judge is given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from textnorm.finetune.rewards import RewardFn

Judge = RewardFn  # the same signature: images (n, H, W, 3) uint8 and prompts -> one value per image
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


def _prompts_task(prompts: Sequence[str] = (), n_train: int = 8, seed: int = 0, res: int = 16) -> Task:
    if not prompts:
        raise ValueError("task 'prompts' needs training prompts (--prompt, repeated)")
    return plain_task(prompts)


def make_task(name: str, prompts: Sequence[str] = (), n_train: int = 8, seed: int = 0, res: int = 16) -> Task:
    """The task registered as ``name`` (:mod:`textnorm.finetune.registry`): ``prompts`` (the given
    prompts, no gold) or one a plugin registers, e.g. ``synth`` (the synthetic world; ``prompts``
    override its training captions)."""
    from textnorm.finetune.registry import task_factory

    return task_factory(name)(prompts=prompts, n_train=n_train, seed=seed, res=res)


def _register() -> None:
    from textnorm.finetune.registry import register_task

    register_task("prompts", _prompts_task)


_register()
