"""Reward functions for fine-tuning: f(images uint8 (n, H, W, 3), prompts) -> float array (n,).

Specs (strings, so a CLI and papermill parameters can name them):

- ``gold``                       the task's gold judge (1 aligned, 0 not): a control
- ``random``                     u = sha256(image's pixels) / 2^64, uniform in [0, 1): a reward that carries
                                 no information, the drift control (the same image scores the same in
                                 any batch, on any process)
- ``raw:PATH``                   a CLIP-family reward loaded from PATH (e.g. a proxy folder)
- ``textnorm:PATH``              TextNorm-calibrated: softmax over [y, *C(y)] at ``temperature``
- ``textnorm-mean:PATH1,PATH2``  mean ensemble of TextNorm-calibrated rewards
- ``textnorm-ur:PATH1,PATH2``    uncertainty-regularised ensemble (mean - lambda var)
- ``raw-mean:PATH1,PATH2``       the uncalibrated ensemble: mean over models of the raw reward
                                 z-scored within each prompt's images of the whole batch (over
                                 every process: a :class:`BatchReward`),
                                 z = (r - mean_y) / sd_y (0 where a prompt's scores are all equal),
                                 so that ensembling is not confused with calibration

C(y) comes from ``contrastive`` (the task's; TextNorm kinds need it). Any registered reward
name can stand in for PATH as ``NAME=PATH`` (e.g. ``raw:imagereward=/models/ImageReward``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from textnorm.rewards import calibration, scoring

# images (n, H, W, 3) uint8 and their prompts -> one value per image (rewards, gold judges); the one definition
RewardFn = Callable[[np.ndarray, Sequence[str]], np.ndarray]


def _split(item: str) -> tuple[str, str]:
    """``NAME=PATH`` -> (NAME, PATH); a bare PATH is a CLIP-family model."""
    name, _, path = item.partition("=") if "=" in item else ("clip", "", item)
    return name, path


def spec_sources(spec: str) -> list[str]:
    """The model folders (or hub ids) a reward spec loads, in order (none for ``gold``)."""
    kind, _, arg = spec.partition(":")
    if kind in ("gold", "random") or not arg:
        return []
    return [path for _, path in map(_split, arg.split(",")) if path]


def _load(item: str, device: str):
    from textnorm.finetune.inputs import resolve_path
    from textnorm.rewards import load_reward

    name, path = _split(item)
    # a local path that does not exist is said in those words, not as the hub client's bad repo id
    source = resolve_path(path, "reward model folder") if path else None
    try:
        return load_reward(name, source, device=device)
    except (OSError, ValueError) as exc:
        if source is None or Path(source).exists():
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FileNotFoundError(
            f"reward model {path}: no local folder of that name, and as a hub id: {first}"
        ) from None


def _calibrated(models, images, prompts, contrastive, temperature) -> np.ndarray:
    """(n_models, n) TextNorm probabilities, scoring each prompt's images against [y, *C(y)]."""
    return np.stack(
        [
            scoring.textnorm(scoring.prompt_matrices(model, images, prompts, contrastive), temperature)
            for model in models
        ]
    )


class BatchReward:
    """A reward whose value depends on the whole batch (``raw-mean``'s z-scores within each prompt):
    ``parts(images, prompts)`` per image, where the images are (e.g. on each process), and
    ``combine(parts, prompts)`` over the whole batch's parts, so that the reward does not depend on how
    the batch was split. Called on one batch, it does both."""

    def __init__(self, parts: Callable, combine: Callable) -> None:
        self.parts, self.combine = parts, combine

    def __call__(self, images: np.ndarray, prompts: Sequence[str]) -> np.ndarray:
        return self.combine(self.parts(images, prompts), list(prompts))


def zscore_by_prompt(values: np.ndarray, prompts: Sequence[str]) -> np.ndarray:
    """(r - mean) / sd over the entries of each prompt (population sd; 0 where it is 0)."""
    values = np.asarray(values, dtype=float)
    if len(values) != len(prompts):
        raise ValueError(f"{len(values)} values for {len(prompts)} prompts")
    out = np.zeros_like(values)
    for idx in scoring.group_by_prompt(prompts).values():
        sd = values[idx].std()
        out[idx] = (values[idx] - values[idx].mean()) / sd if sd > 0 else 0.0
    return out


def random_reward(images: np.ndarray, prompts: Sequence[str]) -> np.ndarray:
    """The ``random`` reward: the first 8 bytes of each image's sha256, as a number in [0, 1)."""
    import hashlib

    images = np.ascontiguousarray(images)
    return np.array([int.from_bytes(hashlib.sha256(im.tobytes()).digest()[:8], "big") / 2.0**64 for im in images])


KINDS = ("gold", "random", "raw", "raw-mean", "textnorm", "textnorm-mean", "textnorm-ur")


def check_spec(spec: str) -> None:
    """Refuse a spec that cannot make a reward, without loading anything: an unknown kind, a kind
    without its model(s), ``raw`` or ``textnorm`` with more than one model, an unregistered reward name."""
    from textnorm.rewards import REWARDS

    if not isinstance(spec, str):
        raise ValueError(f"a reward spec is a string such as 'raw:PATH', got {spec!r}")
    kind, _, arg = spec.partition(":")
    if kind not in KINDS:
        raise ValueError(f"unknown reward kind {kind!r} in {spec!r}; use one of {', '.join(KINDS)}")
    if kind in ("gold", "random"):
        if arg:
            raise ValueError(f"reward spec {spec!r}: {kind} takes no model")
        return
    if not arg:
        raise ValueError(f"reward spec {spec!r} needs a model after the colon, e.g. 'raw:data/synth/proxy_contrastive'")
    items = arg.split(",")
    if kind in ("raw", "textnorm") and len(items) != 1:
        raise ValueError(f"reward spec {spec!r}: {kind}: takes one model ({kind}-mean: for several)")
    for item in items:
        name, path = _split(item)
        if name not in REWARDS:
            raise ValueError(f"reward spec {spec!r}: unknown reward {name!r}; registered: {', '.join(sorted(REWARDS))}")
        if not path:
            raise ValueError(f"reward spec {spec!r}: {name}= needs a model path or hub id")


def make_reward(
    spec: str,
    contrastive: Callable[[str], list[str]] | None = None,
    temperature: float = 1.0,
    lam: float = 1.0,
    device: str = "cpu",
    gold: RewardFn | None = None,
) -> RewardFn:
    check_spec(spec)
    kind, _, arg = spec.partition(":")
    if kind == "gold":
        if gold is None:
            raise ValueError("reward 'gold' needs a task with a gold judge (the synthetic world has one)")
        return gold
    if kind == "random":
        return random_reward
    if kind.startswith("textnorm") and contrastive is None:
        raise ValueError(
            f"reward {spec!r} needs contrastive prompts: give the task (or make_reward) a contrastive "
            "function, e.g. textnorm.rewards.contrastive.composition_contrastive"
        )
    models = [_load(item, device) for item in arg.split(",")]
    if kind == "raw":
        return lambda images, prompts: models[0].score(list(images), list(prompts))
    if kind == "raw-mean":
        return BatchReward(
            lambda images, prompts: np.stack([m.score(list(images), list(prompts)) for m in models], axis=1),
            lambda parts, prompts: calibration.mean_ensemble(
                np.stack([zscore_by_prompt(parts[:, j], prompts) for j in range(parts.shape[1])])
            ),
        )
    if kind == "textnorm":
        return lambda images, prompts: _calibrated(models, list(images), list(prompts), contrastive, temperature)[0]
    if kind == "textnorm-mean":
        return lambda images, prompts: calibration.mean_ensemble(
            _calibrated(models, list(images), list(prompts), contrastive, temperature)
        )
    if kind == "textnorm-ur":
        return lambda images, prompts: calibration.ur_ensemble(
            _calibrated(models, list(images), list(prompts), contrastive, temperature), lam
        )
    raise AssertionError(kind)  # unreachable: kinds checked above
