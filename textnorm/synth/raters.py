"""Simulated raters of a pairwise study of image sets, grounded in the synthetic world's truth.

The paper's protocol: for a prompt, a rater sees two systems' images, four of each side by side, and
answers two questions: which set matches the text better (alignment) and which looks better
(fidelity). A simulated rater answering question q about sets A and B of one prompt computes

    u_q(S) = w_q,gold * gold(S) + w_q,fid * fidelity(S) + e,    e ~ N(0, sigma^2),

with gold(S) the share of S's images the gold judge finds aligned and fidelity(S) the mean of
:func:`fidelity` over S's images, and answers "tie" when |u_q(A) - u_q(B)| < ``tie_margin``, else
the set with the larger u_q. The noise e is drawn once per rater, prompt, question and set: a rater
sees a set the same way in every pair it appears in (answers are transitive per rater); raters
differ by their noise only. The weights are the caller's, stated up front (the chapter varies them);
sigma is calibrated by :func:`calibrate_sigma` so that the raters' Fleiss' kappa over their
three-way answers takes a target value, e.g. the value TIA2's annotators reached on their (other)
task of labelling single images.

fidelity(x): the share of an image's pixels within ``tolerance`` (Euclidean distance in RGB) of the
background or a palette colour, the colours the renderer draws with: 1 for a clean render, lower
for washed-out, blended or noisy colours.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from textnorm.stats.agreement import fleiss
from textnorm.synth.scenes import BACKGROUND, COLORS

QUESTIONS = ("alignment", "fidelity")
_PALETTE = np.array([BACKGROUND, *COLORS.values()], dtype=float)


def fidelity(images: np.ndarray, tolerance: float = 40.0) -> np.ndarray:
    """Per image (uint8 ``(..., H, W, 3)``): the share of pixels within ``tolerance`` of a palette
    colour or the background."""
    x = np.asarray(images, dtype=float)
    d = np.sqrt(((x[..., None, :] - _PALETTE) ** 2).sum(-1)).min(-1)
    return (d <= tolerance).mean(axis=(-2, -1))


def _check_weights(weights: Mapping[str, Sequence[float]]) -> None:
    if set(weights) - set(QUESTIONS) or not weights:
        raise ValueError(f"weights: a (gold, fidelity) pair per question among {QUESTIONS}, got {sorted(weights)}")
    for q, w in weights.items():
        if len(w) != 2 or not all(np.isfinite(w)) or min(w) < 0 or max(w) <= 0:
            raise ValueError(f"weights[{q!r}] must be two finite weights >= 0, not both 0, got {w!r}")


def simulate(
    gold: np.ndarray,
    fid: np.ndarray,
    systems: Sequence[str],
    prompts: Sequence[str],
    pairs: Sequence[tuple[str, str]],
    weights: Mapping[str, Sequence[float]],
    sigma: float,
    raters: int = 3,
    tie_margin: float = 0.05,
    seed: int = 0,
) -> pd.DataFrame:
    """Judgments (rater, prompt, question, left, right, choice in left/right/tie) of ``raters``
    raters for every prompt, pair and question. ``gold`` and ``fid``: [system, prompt, image]
    arrays (the sets); which system shows on the left is drawn at random."""
    gold, fid = np.asarray(gold, float), np.asarray(fid, float)
    if gold.shape != fid.shape or gold.ndim != 3 or gold.shape[:2] != (len(systems), len(prompts)):
        raise ValueError(f"gold and fid must be [system, prompt, image] arrays of {len(systems)} x {len(prompts)}")
    _check_weights(weights)
    if not (np.isfinite(sigma) and sigma >= 0) or not (np.isfinite(tie_margin) and tie_margin >= 0):
        raise ValueError("sigma and tie_margin must be finite and >= 0")
    if raters < 1:
        raise ValueError("raters must be >= 1")
    index = {s: i for i, s in enumerate(systems)}
    unknown = {s for p in pairs for s in p} - set(index)
    if unknown:
        raise ValueError(f"pairs name unknown systems: {sorted(unknown)}")
    g, f = gold.mean(-1), fid.mean(-1)  # [system, prompt]: each set's share aligned and mean fidelity
    rng = np.random.default_rng(seed)
    questions = list(weights)
    # every draw up front, in a fixed order: the noise of each (rater, prompt, question, set), then the sides
    noise = rng.standard_normal((raters, len(prompts), len(questions), len(systems)))
    sides = rng.random((len(prompts), len(pairs), len(questions), raters)) < 0.5
    rows = []
    for j, prompt in enumerate(prompts):
        for k, (a, b) in enumerate(pairs):
            for qi, q in enumerate(questions):
                wg, wf = weights[q]
                u = {s: wg * g[index[s], j] + wf * f[index[s], j] for s in (a, b)}
                for r in range(raters):
                    left, right = (a, b) if sides[j, k, qi, r] else (b, a)
                    d = u[left] - u[right] + sigma * (noise[r, j, qi, index[left]] - noise[r, j, qi, index[right]])
                    choice = "tie" if abs(d) < tie_margin else ("left" if d > 0 else "right")
                    rows.append(
                        {
                            "rater": f"rater{r}",
                            "prompt": prompt,
                            "question": q,
                            "left": left,
                            "right": right,
                            "choice": choice,
                        }
                    )
    return pd.DataFrame(rows)


def kappa(judgments: pd.DataFrame) -> float:
    """Fleiss' kappa of the raters' answers, one item per (prompt, question, pair of systems), three
    categories: one system wins, the other wins, tie. Which system of a pair counts as "first" is
    arbitrary, and Fleiss' chance agreement depends on it, so every item is counted twice, once each
    way round: the value does not depend on the systems' names or order."""
    j = judgments
    first = np.where(j.left < j.right, j.left, j.right)
    answer = np.select([j.choice == "tie", (j.choice == "left") == (j.left == first)], [-1, 1], 0)
    item = j.prompt + "\0" + j.question + "\0" + first + "\0" + np.where(j.left < j.right, j.right, j.left)
    table = pd.DataFrame({"item": item, "rater": j.rater, "answer": answer}).pivot_table(
        index="item", columns="rater", values="answer", aggfunc="first"
    )
    if table.shape[1] < 2 or table.isna().any().any():
        raise ValueError("kappa needs every item answered by the same two or more raters")
    x = table.to_numpy(int)
    swapped = np.where(x == -1, -1, 1 - x)  # the same answers with the pair read the other way round
    return fleiss(np.concatenate([x, swapped]))


def calibrate_sigma(
    gold: np.ndarray,
    fid: np.ndarray,
    systems: Sequence[str],
    prompts: Sequence[str],
    pairs: Sequence[tuple[str, str]],
    weights: Mapping[str, Sequence[float]],
    target_kappa: float,
    raters: int = 3,
    tie_margin: float = 0.05,
    seed: int = 0,
    iterations: int = 40,
) -> float:
    """The noise sigma at which :func:`simulate`'s raters reach Fleiss' kappa ``target_kappa``
    (bisection on log sigma with the same random draws at every trial, so kappa falls with sigma).
    ValueError when the target is out of reach (above the noiseless raters' kappa, or below 0)."""
    if not (np.isfinite(target_kappa) and 0 < target_kappa < 1):
        raise ValueError(f"target_kappa must be in (0, 1), got {target_kappa!r}")
    if raters < 2:
        raise ValueError("calibration needs at least two raters")

    def k(sigma: float) -> float:
        value = kappa(simulate(gold, fid, systems, prompts, pairs, weights, sigma, raters, tie_margin, seed))
        if not np.isfinite(value):  # e.g. every answer a tie: agreement is undefined, not high or low
            raise ValueError(f"the raters' kappa is not a number at sigma {sigma:g} (every answer the same?)")
        return value

    lo, hi = 1e-4, 10.0
    if k(lo) < target_kappa:
        raise ValueError(f"even nearly noiseless raters reach kappa {k(lo):.3f} < {target_kappa}: lower the target")
    if k(hi) > target_kappa:
        raise ValueError(f"raters with sigma {hi} still reach kappa {k(hi):.3f} > {target_kappa}")
    for _ in range(iterations):
        mid = float(np.sqrt(lo * hi))
        lo, hi = (mid, hi) if k(mid) > target_kappa else (lo, mid)
    return float(np.sqrt(lo * hi))
