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


def rule_contrastive(prompt: str) -> list[str]:
    """The rule-based contrastive prompts of a TIA2-style prompt: composition ("... <a A> and <a B>")
    or counting ("a realistic photo of <n> <objects>"); a prompt neither rule reads is a ValueError."""
    from textnorm.rewards.contrastive import composition_contrastive, counting_contrastive

    for rule in (composition_contrastive, counting_contrastive) if " and " in prompt else (counting_contrastive,):
        try:
            return rule(prompt)
        except ValueError:
            continue
    raise ValueError(f"no rule-based contrastive prompts for {prompt!r} (counting or composition prompts only)")


def contrastive_from(source: str) -> tuple[Callable[[str], list[str]], str | None]:
    """TextNorm's contrastive prompts from ``source``: ``rules`` (:func:`rule_contrastive`),
    ``tia2:SUBSET`` (the published TIA2 sets of counting, composition or comprehensive, read and
    sha256-checked like every TIA2 file), or a JSON file mapping each prompt to its list of
    contrastive prompts (the TIA2 prompt files' shape). Sets from a table are cleaned as TIA2's are
    (a repeated prompt or the prompt itself in its own set dropped, with a warning). Returns the
    function and the JSON file it read (None for rules and TIA2), whose sha256 a checkpoint records."""
    import json
    import warnings
    from pathlib import Path

    from textnorm.paths import repo_root
    from textnorm.tia2.annotations import clean_contrastive

    if source == "rules":
        return rule_contrastive, None
    path = None
    if source.startswith("tia2:"):
        from textnorm.tia2 import SUBSETS, load_contrastive_prompts

        subset = source.partition(":")[2]
        if subset not in SUBSETS:
            raise ValueError(f"contrastive prompts {source!r}: the TIA2 subsets are {', '.join(SUBSETS)}")
        table = load_contrastive_prompts(subset)
    else:
        path = Path(source).expanduser()
        if not path.exists() and not path.is_absolute() and (repo_root() / path).exists():
            path = repo_root() / path
        if not path.is_file():
            raise FileNotFoundError(f"contrastive prompts file {source} does not exist (or use rules or tia2:SUBSET)")
        try:
            table = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"contrastive prompts file {source} is not JSON ({exc})") from None
    if not isinstance(table, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(c, str) for c in v) for k, v in table.items()
    ):
        raise ValueError(f"contrastive prompts {source} must map each prompt to a list of prompts")
    table, dropped = clean_contrastive(table)
    if dropped["sets"]:
        warnings.warn(
            f"contrastive prompts {source}: dropped {dropped['duplicates']} repeated prompts and {dropped['self']} "
            f"copies of the prompt itself from {dropped['sets']} sets (each would distort TextNorm's softmax)",
            stacklevel=2,
        )

    def lookup(prompt: str) -> list[str]:
        if prompt not in table:
            raise ValueError(f"{source} holds no contrastive prompts for {prompt!r}")
        return list(table[prompt])

    return lookup, str(path) if path is not None else None


def check_contrastive(task: Task) -> None:
    """Every training and held-out prompt has a non-empty contrastive set (TextNorm rewards need it),
    else a ValueError naming the prompts without one."""
    missing = []
    for prompt in [*task.train_prompts, *task.eval_prompts]:
        try:
            ok = bool(task.contrastive(prompt)) if task.contrastive else False
        except (ValueError, KeyError):
            ok = False
        if not ok:
            missing.append(prompt)
    if missing:
        shown = ", ".join(repr(p) for p in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(
            f"a TextNorm reward needs contrastive prompts, and {len(missing)} prompt(s) have none: {shown} "
            "(--contrastive FILE.json, tia2:SUBSET or rules)"
        )


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
