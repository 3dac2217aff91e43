"""The over-optimisation experiment's curves and its pre-specified primary endpoint, from the runs'
evaluations (fixed noise, the same at every evaluation of a run, so changes are paired).

A run (method m, reward r, seed s) is evaluated at steps k = 0 (the base model) and later; each
evaluation gives, per training prompt p, gold g_k[p] (the share of the prompt's images judged
aligned, or a judge model's mean score) and the run's path KL to the base model (nats, the mean over
its evaluation images; an upper bound on the images' KL when the untrained steps run on the base
model). With d = sqrt(KL):

    curve_{r,s,p}(d)  = g_k[p] - g_0[p] at the evaluations, linear in d between them (sorted by d)
    area_{r,s,p}(D)   = (1 / D) integral_0^D curve(d) dd      the mean gold change over d in [0, D]

Primary endpoint of a pair (a raw proxy and its TextNorm reward), fixed before the runs:

    Delta = mean over seeds s and prompts p of [area_{TextNorm,s,p}(D) - area_{raw,s,p}(D)],
    D     = the smallest of the largest d reached by the pair's runs (both observed on [0, D]);

the same seed of both rewards shares its evaluation noise (paired). Uncertainty: a crossed bootstrap
that resamples seeds and prompts with replacement (both are units); the percentile interval, the
bootstrap p-value 2 min(P*(Delta <= 0), P*(Delta >= 0)) and its Holm adjustment over the pairs.
The minimum detectable effect at 80% power and two-sided 5% is (z_0.975 + z_0.8) SE = 2.80 SE,
SE the bootstrap standard deviation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

MDE_FACTOR = float(stats.norm.ppf(0.975) + stats.norm.ppf(0.8))  # 2.80


def eval_table(runs: Iterable[tuple[Mapping[str, Any], Mapping[str, Any]]], key: str = "eval") -> pd.DataFrame:
    """One row per (method, reward, seed, step, prompt) of the runs' evaluations, from (keys, log)
    pairs (keys: method, reward_name, seed; ``key``: eval for the training prompts, heldout for the
    held-out ones): gold, reward, the run's sqrt KL, and the changes of gold and reward from the
    run's first evaluation."""
    rows = []
    for keys, log in runs:
        evals = log.get("evals") or []
        if not evals:
            raise ValueError("a run log without evaluations (written by an older textnorm): re-run the grid")
        first = evals[0]
        if first["step"] != 0 or first.get(f"{key}_kl", 0.0) != 0.0:
            raise ValueError("a run's first evaluation must be of the base model (step 0, KL 0)")
        # logs written before evaluations recorded their prompts: the run's prompts, else their positions
        n = len(first[f"{key}_prompt_gold"])
        named = log["config"].get("prompts") if key == "eval" else None
        prompts = first.get(f"{key}_prompt_names") or (named if named and len(named) == n else list(range(n)))
        for e in evals:
            kl = max(e[f"{key}_kl"], 0.0)
            for j, p in enumerate(prompts):
                rows.append(
                    {
                        "method": keys["method"],
                        "reward_name": keys["reward_name"],
                        "seed": keys["seed"],
                        "step": e["step"],
                        "prompt": p,
                        "sqrt_kl": float(np.sqrt(kl)),
                        "gold": e[f"{key}_prompt_gold"][j],
                        "reward": e[f"{key}_prompt_reward"][j],
                        "gold_change": e[f"{key}_prompt_gold"][j] - first[f"{key}_prompt_gold"][j],
                        "reward_change": e[f"{key}_prompt_reward"][j] - first[f"{key}_prompt_reward"][j],
                    }
                )
    return pd.DataFrame(rows)


def curve_at(d: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The piecewise-linear curve through (d, y), sorted by d (equal d averaged), at ``grid``
    (which must lie within the observed d)."""
    d, y = np.asarray(d, float), np.asarray(y, float)
    order = np.argsort(d, kind="stable")
    d, y = d[order], y[order]
    ud, inv = np.unique(d, return_inverse=True)
    uy = np.bincount(inv, weights=y) / np.bincount(inv)
    if grid.max() > ud.max() + 1e-12:
        raise ValueError(f"the curve is observed up to d = {ud.max():.3g}, asked for {grid.max():.3g}")
    return np.interp(grid, ud, uy)


def areas(table: pd.DataFrame, reward: str, D: float, method: str = "ddpo", n_grid: int = 64) -> np.ndarray:
    """(seeds, prompts): the mean gold change over d in [0, D] of each run and prompt (seeds and
    prompts sorted)."""
    g = table[(table.method == method) & (table.reward_name == reward)]
    grid = np.linspace(0, D, n_grid)
    seeds, prompts = sorted(g.seed.unique()), list(dict.fromkeys(g.prompt))
    out = np.empty((len(seeds), len(prompts)))
    for i, s in enumerate(seeds):
        for j, p in enumerate(prompts):
            run = g[(g.seed == s) & (g.prompt == p)]
            # the trapezoid mean over an even grid (the curve is linear between evaluations)
            out[i, j] = np.trapezoid(curve_at(run.sqrt_kl.to_numpy(), run.gold_change.to_numpy(), grid), grid) / D
    return out


def reach(table: pd.DataFrame, reward: str, method: str = "ddpo") -> float:
    """The smallest, over the reward's runs, of the largest sqrt KL a run reached."""
    g = table[(table.method == method) & (table.reward_name == reward)]
    return float(g.groupby("seed").sqrt_kl.max().min())


def crossed_bootstrap(values: np.ndarray, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """Means of ``values`` (seeds, prompts) over n_boot crossed resamples of seeds and prompts."""
    rng = np.random.default_rng(seed)
    S, P = values.shape
    si = rng.integers(0, S, (n_boot, S))
    pi = rng.integers(0, P, (n_boot, P))
    rows = values[si]  # (n_boot, S, P): the resampled seeds
    return np.take_along_axis(rows, np.repeat(pi[:, None, :], S, axis=1), axis=2).mean(axis=(1, 2))


def primary_endpoint(
    table: pd.DataFrame,
    pairs: Sequence[tuple[str, str]],
    method: str = "ddpo",
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """One row per pair (raw, TextNorm): D, Delta with its interval, bootstrap p, Holm p over the
    pairs, SE and the minimum detectable effect; also each reward's own mean gold change over [0, D]."""
    from textnorm.stats.metrics import holm

    rows = []
    for raw, cal in pairs:
        D = min(reach(table, raw, method), reach(table, cal, method))
        if not D > 0:
            raise ValueError(f"pair ({raw}, {cal}): a run never moved from the base model (sqrt KL 0)")
        a_raw, a_cal = areas(table, raw, D, method), areas(table, cal, D, method)
        if a_raw.shape != a_cal.shape:
            raise ValueError(f"pair ({raw}, {cal}): the two rewards have different seeds or prompts")
        diff = a_cal - a_raw
        boot = crossed_bootstrap(diff, n_boot, seed)
        lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
        p = min(1.0, 2 * min(np.mean(boot <= 0), np.mean(boot >= 0)))
        rows.append(
            {
                "raw": raw,
                "textnorm": cal,
                "D": D,
                "raw_area": a_raw.mean(),
                "textnorm_area": a_cal.mean(),
                "difference": diff.mean(),
                "low": lo,
                "high": hi,
                "p": p,
                "se": boot.std(ddof=1),
                "mde": MDE_FACTOR * boot.std(ddof=1),
                "seeds": diff.shape[0],
                "prompts": diff.shape[1],
            }
        )
    out = pd.DataFrame(rows)
    out["p_holm"] = holm(out.p.to_numpy()) if len(out) else []
    return out


def mean_curve(
    table: pd.DataFrame, reward: str, grid: np.ndarray, method: str = "ddpo", n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """The mean over seeds and prompts of the gold change at each d of ``grid`` (within every run's
    reach), with a crossed-bootstrap 95% band."""
    g = table[(table.method == method) & (table.reward_name == reward)]
    seeds, prompts = sorted(g.seed.unique()), list(dict.fromkeys(g.prompt))
    vals = np.empty((len(grid), len(seeds), len(prompts)))
    for i, s in enumerate(seeds):
        for j, p in enumerate(prompts):
            run = g[(g.seed == s) & (g.prompt == p)]
            vals[:, i, j] = curve_at(run.sqrt_kl.to_numpy(), run.gold_change.to_numpy(), grid)
    rows = []
    for k, d in enumerate(grid):
        boot = crossed_bootstrap(vals[k], n_boot, seed)
        lo, hi = np.quantile(boot, [0.025, 0.975])
        rows.append({"reward_name": reward, "sqrt_kl": d, "gold_change": vals[k].mean(), "low": lo, "high": hi})
    return pd.DataFrame(rows)


def _run_curves(table: pd.DataFrame, reward: str, grid: np.ndarray, method: str) -> np.ndarray:
    """(len(grid), seeds, prompts): every run's and prompt's gold change at the d of ``grid``."""
    g = table[(table.method == method) & (table.reward_name == reward)]
    seeds, prompts = sorted(g.seed.unique()), list(dict.fromkeys(g.prompt))
    vals = np.empty((len(grid), len(seeds), len(prompts)))
    for i, s in enumerate(seeds):
        for j, p in enumerate(prompts):
            run = g[(g.seed == s) & (g.prompt == p)]
            vals[:, i, j] = curve_at(run.sqrt_kl.to_numpy(), run.gold_change.to_numpy(), grid)
    return vals


def crossed_bootstrap_curves(vals: np.ndarray, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """(n_boot, len(grid)): the mean curve over crossed resamples of seeds and prompts, the same
    resample at every d (so the curve's shape is resampled, not each point apart)."""
    rng = np.random.default_rng(seed)
    _, S, P = vals.shape
    si = rng.integers(0, S, (n_boot, S))
    pi = rng.integers(0, P, (n_boot, P))
    out = np.empty((n_boot, vals.shape[0]))
    for b in range(n_boot):
        out[b] = vals[:, si[b]][:, :, pi[b]].mean(axis=(1, 2))
    return out


def _simultaneous(curves: np.ndarray, boot: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """A simultaneous band over the grid (studentised sup-deviation of the bootstrap curves): every d
    is covered at once with probability ``level``, so a d chosen after looking (a peak) is covered too."""
    se = boot.std(axis=0, ddof=1)
    se = np.where(se > 0, se, np.inf)  # a point with no spread (d = 0) never decides
    sup = np.max(np.abs(boot - curves) / se, axis=1)
    c = np.quantile(sup, level)
    width = np.where(np.isfinite(se), c * se, 0.0)
    return curves - width, curves + width


def rise_and_fall(
    table: pd.DataFrame,
    reward: str,
    method: str = "ddpo",
    n_grid: int = 32,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float | bool]:
    """Whether the reward's mean gold change rises and then falls over the d every run reached.

    The mean curve m(d) over seeds and prompts on a grid of [0, D], with a simultaneous ``level``
    band from the crossed bootstrap (so choosing the peak after looking does not inflate it: a
    random reward's largest wiggle is not a rise). ``rises``: the band's lower edge is above 0 at
    some d; ``falls``: the end is below an earlier point, the simultaneous band of m(D) - m(d) lying
    below 0 at some d. Also the peak of m, its d, and the end minus the peak, with the band there."""
    D = reach(table, reward, method)
    grid = np.linspace(0, D, n_grid)
    vals = _run_curves(table, reward, grid, method)
    mean = vals.mean(axis=(1, 2))
    boot = crossed_bootstrap_curves(vals, n_boot, seed)
    low, high = _simultaneous(mean, boot, level)
    drop = mean[-1] - mean  # the end minus each earlier point
    d_low, d_high = _simultaneous(drop, boot[:, -1:] - boot, level)
    k = int(np.argmax(mean))
    out = {
        "reach": D,
        "peak_sqrt_kl": float(grid[k]),
        "peak": float(mean[k]),
        "peak_low": float(low[k]),
        "peak_high": float(high[k]),
        "end": float(mean[-1]),
        "end_minus_peak": float(drop[k]),
        "drop_low": float(d_low[k]),
        "drop_high": float(d_high[k]),
        "rises": bool(np.any(low > 0)),
        "falls": bool(np.any(d_high[:-1] < 0)),
    }
    return out


def proxy_agreement(bon: Mapping[str, np.ndarray], n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """How well each reward of a best-of-n pool (the base model's samples of the training prompts)
    tracks gold within a prompt: the mean over prompts of the AUROC of the reward for gold (a 0/1
    judge; prompts whose pool is all aligned or all not are left out) or of Spearman's correlation
    (a judge with continuous scores), with a bootstrap interval over prompts; and the same for the
    images' brightness (a flaw to compare with)."""
    from textnorm.stats.metrics import auroc

    gold = np.asarray(bon["gold"], float)
    binary = bool(np.isin(gold, (0.0, 1.0)).all())
    scores = {k.split(":", 1)[1]: np.asarray(v, float) for k, v in bon.items() if k.startswith("reward:")}
    if "stat:brightness" in bon:
        scores["(brightness)"] = np.asarray(bon["stat:brightness"], float)
    rng = np.random.default_rng(seed)
    rows = []
    for name, r in scores.items():
        per_prompt = []
        for j in range(gold.shape[0]):
            if binary:
                if 0 < gold[j].mean() < 1:
                    per_prompt.append(auroc(r[j], gold[j]))
            else:
                per_prompt.append(stats.spearmanr(r[j], gold[j])[0])
        v = np.asarray(per_prompt, float)
        if not len(v):
            raise ValueError("every prompt's pool is all aligned or all not: agreement is undefined")
        boot = v[rng.integers(0, len(v), (n_boot, len(v)))].mean(axis=1)
        rows.append(
            {
                "reward": name,
                "measure": "AUROC" if binary else "Spearman",
                "agreement": v.mean(),
                "low": np.quantile(boot, 0.025),
                "high": np.quantile(boot, 0.975),
                "prompts": len(v),
            }
        )
    return pd.DataFrame(rows)
