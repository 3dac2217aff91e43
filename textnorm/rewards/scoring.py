"""Scoring images against their prompt and its contrastive prompts: the one path every caller uses
(TIA2 folders, fine-tuning rewards, the chapters).

Images are grouped by prompt, in order of first appearance. For the images x_i of a prompt y with
contrastive prompts C(y) = (c_1, ..., c_K), one call of ``model.score_matrix(images, [y, *C(y)])``
gives the matrix

    R[i, 0] = r(x_i, y),    R[i, k] = r(x_i, c_k)  (k = 1..K),

so the raw reward is R[:, 0] and TextNorm is a function of each row (see
:mod:`textnorm.rewards.calibration`): p(y | x_i) = softmax(R[i] / T)_0. Dual encoders encode each
image once and each unique prompt once, so the calibrated score costs little more than the raw one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from textnorm.rewards import calibration

if TYPE_CHECKING:  # base.py uses group_by_prompt from here
    from textnorm.rewards.base import RewardModel

Contrastive = Callable[[str], Sequence[str]] | Mapping[str, Sequence[str]]
# prompt -> (indices of its images in the input order, R of shape (n_images, 1 + K))
Matrices = dict[str, tuple[np.ndarray, np.ndarray]]


def repeat_prompts(prompts: Sequence[str], n: int) -> list[str]:
    """Each prompt n times in a row: [y_1] * n + [y_2] * n + ... (n samples per prompt)."""
    return [p for p in prompts for _ in range(n)]


def group_by_prompt(prompts: Sequence[str]) -> dict[str, np.ndarray]:
    """Prompt -> the indices of its entries, prompts in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(p, []).append(i)
    return {p: np.asarray(idx, dtype=int) for p, idx in groups.items()}


def _contrasts(contrastive: Contrastive, prompt: str) -> list[str]:
    if isinstance(contrastive, Mapping):
        return list(contrastive[prompt])
    return list(contrastive(prompt))


def prompt_matrices(
    model: RewardModel,
    images: Sequence,
    prompts: Sequence[str],
    contrastive: Contrastive | None = None,
    load: Callable[[object], object] | None = None,
    progress: bool = False,
) -> Matrices:
    """For every prompt y: (indices of its images, R) with R = model.score_matrix(its images,
    [y, *C(y)]) (only the column of y without ``contrastive``). ``load`` turns an entry of
    ``images`` into an image (e.g. a file name into a PIL image), one prompt's images at a time."""
    if len(images) != len(prompts):
        raise ValueError(f"got {len(images)} images but {len(prompts)} prompts")
    groups = group_by_prompt(prompts)
    if isinstance(contrastive, Mapping):
        lacking = [p for p in groups if not contrastive.get(p)]
        if lacking:
            raise KeyError(
                f"{len(lacking)} prompts have no contrastive prompt set, e.g. {lacking[0]!r}; "
                "generate them (textnorm.rewards.contrastive) or score without TextNorm."
            )
    # every prompt's texts before any scoring, so a bad contrast set fails before the expensive part
    texts = {p: [p, *(_contrasts(contrastive, p) if contrastive is not None else [])] for p in groups}
    if contrastive is not None:
        empty = [p for p, t in texts.items() if len(t) < 2]
        if empty:
            raise ValueError(f"the contrastive function gave no prompt for {len(empty)} prompts, e.g. {empty[0]!r}")
    positional = getattr(images, "iloc", images)  # a pandas Series by position, not by its index labels
    out = {}
    for prompt, idx in tqdm(groups.items(), disable=not progress, desc=f"scoring with {model.name}"):
        items = [positional[i] for i in idx]
        out[prompt] = (idx, model.score_matrix([load(x) for x in items] if load else items, texts[prompt]))
    return out


def per_image(matrices: Matrices, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """fn(R) of every prompt's matrix, put back in the images' input order."""
    n = sum(len(idx) for idx, _ in matrices.values())
    out = np.empty(n)
    for idx, R in matrices.values():
        out[idx] = fn(R)
    return out


def raw(matrices: Matrices) -> np.ndarray:
    """r(x_i, y_i) in input order."""
    return per_image(matrices, lambda R: R[:, 0])


def textnorm(matrices: Matrices, temperature: float = 1.0) -> np.ndarray:
    """TextNorm p(y_i | x_i) at ``temperature`` in input order."""
    return per_image(matrices, lambda R: calibration.textnorm(R[:, 0], R[:, 1:], temperature))


def textnorm_minmax(matrices: Matrices, scale: float) -> np.ndarray:
    """The authors' min-max variant at ``scale`` in input order."""
    return per_image(matrices, lambda R: calibration.textnorm_minmax(R[:, 0], R[:, 1:], scale))
