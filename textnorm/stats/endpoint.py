"""The over-optimisation experiment's curves and its pre-specified primary endpoint, from the runs'
evaluations (fixed noise, the same at every evaluation of a run, so changes are paired).

A run (method m, reward r, seed s) is evaluated at steps k = 0 (the base model) and later; each
evaluation gives, per training prompt p, gold g_k[p] (the share of the prompt's images judged
aligned, or a judge model's mean score) and the run's path KL to the base model (nats, the mean over
its evaluation images; an upper bound on the images' KL when the untrained steps run on the base
model). With d = sqrt(KL):

    curve_{r,s,p}(d)  = g_k[p] - g_0[p] at the evaluations, linear in d between them (sorted by d)
    area_{r,s,p}(D)   = (1 / D) integral_0^D curve(d) dd      the mean gold change over d in [0, D]

(the integral of the piecewise-linear curve, exact). Primary endpoint of a pair (a raw proxy and
its TextNorm reward), fixed before the runs:

    Delta = mean over seeds s and prompts p of [area_{TextNorm,s,p}(D) - area_{raw,s,p}(D)],
    D     = the smallest of the largest d reached by the pair's runs (both observed on [0, D]);

the same seed of both rewards shares its evaluation noise (paired by seed and prompt labels).

Seeds and prompts are both random units. For an S x P table y (seeds x prompts) of paired
differences, the two-way random-effects ANOVA gives the variance of the grand mean,

    Var(mean) = sigma_s^2 / S + sigma_p^2 / P + sigma_e^2 / (S P) = (MS_s + MS_p - MS_e) / (S P),

estimated from the mean squares (MS_s = P sum_s (ybar_s - ybar)^2 / (S - 1), MS_p likewise over
prompts, MS_e the residual's over (S - 1)(P - 1)), never below the seed-only or prompt-only estimate
(MS_s / (S P), MS_p / (S P)), with Satterthwaite's degrees of freedom; a t interval and p-value, and
Holm's adjustment over the pairs. With one seed, prompts are the only unit (a one-way t interval,
P - 1 df). The minimum detectable effect at 80% power and two-sided 5% is (t_{0.975, df} + t_{0.8, df}) SE.

The shape of a curve (:func:`rise_and_fall`) uses the same standard error at each of ``n_points``
values of d in [d_0, D] (d_0 the first d at which every run was evaluated), denser near d_0, and Bonferroni's bound
over them, so the band holds at every one of those d at once (a peak chosen after looking is not over-read).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats


def eval_table(runs: Iterable[tuple[Mapping[str, Any], Mapping[str, Any]]], key: str = "eval") -> pd.DataFrame:
    """One row per (method, reward, seed, step, prompt) of the runs' evaluations, from (keys, log)
    pairs (keys: method, reward_name, seed; ``key``: eval for the training prompts, heldout for the
    held-out ones): gold, reward, the run's sqrt KL, and the changes of gold and reward from the
    run's first evaluation. Refuses logs whose evaluations carry no KL, whose KL is not a bound on
    the images' KL, or whose first evaluation is not of the base model."""
    rows = []
    for keys, log in runs:
        evals = log.get("evals") or []
        if not evals:
            raise ValueError("a run log without evaluations (written by an older textnorm): re-run the grid")
        name = f"{keys['method']} {keys['reward_name']} seed {keys['seed']}"
        if any(f"{key}_kl" not in e for e in evals):
            raise ValueError(
                f"{name}: an evaluation without the path KL (evaluated at eta 0?): nothing to plot against"
            )
        if any(e.get(f"{key}_kl_bound") is False for e in evals):
            raise ValueError(
                f"{name}: its path KL does not bound the images' KL (the fine-tuned model ran a deterministic step): "
                "run it with untrained_steps='base'"
            )
        first = evals[0]
        if first["step"] != 0 or abs(first[f"{key}_kl"]) > 1e-6:
            raise ValueError(f"{name}: the first evaluation must be of the base model (step 0, KL 0)")
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


def _knots(d: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The curve's knots: (d, y) sorted by d, equal d averaged."""
    d, y = np.asarray(d, float), np.asarray(y, float)
    ud, inv = np.unique(d, return_inverse=True)
    return ud, np.bincount(inv, weights=y) / np.bincount(inv)


def curve_at(d: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The piecewise-linear curve through (d, y), sorted by d (equal d averaged), at ``grid``
    (which must lie within the observed d)."""
    ud, uy = _knots(d, y)
    if np.max(grid) > ud.max() + 1e-12:
        raise ValueError(f"the curve is observed up to d = {ud.max():.3g}, asked for {np.max(grid):.3g}")
    return np.interp(grid, ud, uy)


def curve_mean(d: np.ndarray, y: np.ndarray, D: float) -> float:
    """(1 / D) integral_0^D of the piecewise-linear curve, exactly (its knots and D as the nodes)."""
    ud, uy = _knots(d, y)
    nodes = np.union1d(ud[ud < D], [0.0, D])
    return float(np.trapezoid(curve_at(d, y, nodes), nodes) / D)


def _cells(table: pd.DataFrame, reward: str, method: str) -> tuple[pd.DataFrame, list, list]:
    g = table[(table.method == method) & (table.reward_name == reward)]
    if g.empty:
        raise ValueError(f"no {method} evaluations of reward {reward!r}")
    return g, sorted(g.seed.unique()), sorted(g.prompt.unique(), key=str)


def areas(table: pd.DataFrame, reward: str, D: float, method: str = "ddpo") -> pd.DataFrame:
    """Seeds x prompts (labelled): the mean gold change over d in [0, D] of each run and prompt."""
    g, seeds, prompts = _cells(table, reward, method)
    out = pd.DataFrame(index=pd.Index(seeds, name="seed"), columns=pd.Index(prompts, name="prompt"), dtype=float)
    for (s, p), run in g.groupby(["seed", "prompt"]):
        out.loc[s, p] = curve_mean(run.sqrt_kl.to_numpy(), run.gold_change.to_numpy(), D)
    return out


def reach(table: pd.DataFrame, reward: str, method: str = "ddpo") -> float:
    """The smallest, over the reward's runs, of the largest sqrt KL a run reached."""
    g, _, _ = _cells(table, reward, method)
    return float(g.groupby("seed").sqrt_kl.max().min())


def mean_se(values: np.ndarray) -> tuple[float, float, float]:
    """(mean, SE, degrees of freedom) of the grand mean of a seeds x prompts table, seeds and prompts
    random (the module docstring's ANOVA); one seed: prompts only (one-way, P - 1 df)."""
    y = np.asarray(values, float)
    S, P = y.shape
    m = y.mean()
    if P < 2:
        raise ValueError("need at least two prompts for an interval")
    if S == 1:
        return m, y.std(ddof=1) / np.sqrt(P), P - 1.0
    rs, cs = y.mean(axis=1), y.mean(axis=0)
    ms_s = P * np.sum((rs - m) ** 2) / (S - 1)
    ms_p = S * np.sum((cs - m) ** 2) / (P - 1)
    resid = y - rs[:, None] - cs[None, :] + m
    ms_e = np.sum(resid**2) / ((S - 1) * (P - 1))
    combo = ms_s + ms_p - ms_e
    terms = [(ms_s, S - 1), (ms_p, P - 1), (-ms_e, (S - 1) * (P - 1))]
    if combo < max(ms_s, ms_p):  # the seed-only or prompt-only estimate as the floor
        combo, terms = (ms_s, [(ms_s, S - 1)]) if ms_s >= ms_p else (ms_p, [(ms_p, P - 1)])
    se = np.sqrt(combo / (S * P))
    df = combo**2 / sum(v**2 / k for v, k in terms) if combo > 0 else float(min(S, P) - 1)
    return float(m), float(se), float(max(df, 1.0))


def _t_test(mean: float, se: float, df: float, level: float = 0.95) -> tuple[float, float, float]:
    """(low, high, two-sided p) of a t interval and test of mean = 0."""
    if se == 0:
        return mean, mean, 1.0 if mean == 0 else 0.0
    q = stats.t.ppf((1 + level) / 2, df)
    return mean - q * se, mean + q * se, float(2 * stats.t.sf(abs(mean) / se, df))


def mde(se: float, df: float, alpha: float = 0.05) -> float:
    """The smallest true effect a two-sided level-``alpha`` t test finds with 80% power (normal
    approximation of the noncentral t): (t_{1 - alpha/2, df} + t_{0.8, df}) SE. With Holm over k tests,
    ``alpha`` = 0.05 / k is the level of its first step, which a lone true effect must pass."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(0.8, df)) * se)


def primary_endpoint(
    table: pd.DataFrame, pairs: Sequence[tuple[str, str]], method: str = "ddpo", level: float = 0.95
) -> pd.DataFrame:
    """One row per pair (raw, TextNorm): D, Delta with its t interval and p (seeds and prompts random),
    Holm p over the pairs, SE, df and the minimum detectable effect; also each reward's own mean gold
    change over [0, D]. The two rewards' runs are paired by seed and prompt and must have the same."""
    from textnorm.stats.metrics import holm

    rows = []
    for raw, cal in pairs:
        D = min(reach(table, raw, method), reach(table, cal, method))
        if not D > 0:
            raise ValueError(f"pair ({raw}, {cal}): a run never moved from the base model (sqrt KL 0)")
        a_raw, a_cal = areas(table, raw, D, method), areas(table, cal, D, method)
        if list(a_raw.index) != list(a_cal.index) or list(a_raw.columns) != list(a_cal.columns):
            raise ValueError(
                f"pair ({raw}, {cal}): the two rewards' runs have other seeds or prompts "
                f"({list(a_raw.index)} x {list(a_raw.columns)} against {list(a_cal.index)} x {list(a_cal.columns)})"
            )
        diff = (a_cal - a_raw).to_numpy()
        m, se, df = mean_se(diff)
        lo, hi, p = _t_test(m, se, df, level)
        rows.append(
            {
                "raw": raw,
                "textnorm": cal,
                "D": D,
                "raw_area": float(a_raw.to_numpy().mean()),
                "textnorm_area": float(a_cal.to_numpy().mean()),
                "difference": m,
                "low": lo,
                "high": hi,
                "p": p,
                "se": se,
                "df": df,
                "mde": mde(se, df),
                "seeds": diff.shape[0],
                "prompts": diff.shape[1],
            }
        )
    out = pd.DataFrame(rows)
    out["p_holm"] = holm(out.p.to_numpy()) if len(out) else []
    return out


def ends(table: pd.DataFrame, reward: str, method: str = "ddpo") -> pd.DataFrame:
    """Seeds x prompts (labelled): the gold change at each run's last evaluation (the end of training)."""
    g, seeds, prompts = _cells(table, reward, method)
    return _last(g).pivot_table(index="seed", columns="prompt", values="gold_change").loc[seeds, prompts]


def end_change(table: pd.DataFrame, reward: str, method: str = "ddpo", level: float = 0.95) -> dict[str, float]:
    """One reward's gold change at the end of training (each run's last evaluation): the mean over
    seeds and prompts, its t interval with seeds and prompts random (as :func:`primary_endpoint`; ``se`` and
    ``df`` as :func:`mean_se` gives them, e.g. for :func:`mde`), and the sqrt KL at the last evaluation (mean
    over runs)."""
    m, se, df = mean_se(ends(table, reward, method).to_numpy())
    low, high, p = _t_test(m, se, df, level)
    g = table[(table.method == method) & (table.reward_name == reward)]
    return {
        "change": m,
        "low": low,
        "high": high,
        "p": p,
        "se": se,
        "df": df,
        "sqrt_kl": float(_last(g).sqrt_kl.mean()),
    }


def _last(g: pd.DataFrame) -> pd.DataFrame:
    """The rows of each seed's last evaluation."""
    return g[g.step == g.groupby("seed").step.transform("max")]


def end_difference(
    table: pd.DataFrame, pairs: Sequence[tuple[str, str]], method: str = "ddpo", level: float = 0.95
) -> pd.DataFrame:
    """Exploratory, not the primary endpoint: per pair, TextNorm minus raw of the gold change at the end
    of training (each run at the KL it reached, not a matched KL), seeds and prompts random as in
    :func:`primary_endpoint`, Holm over the pairs; with each reward's sqrt KL at its last evaluation (mean over runs)."""
    from textnorm.stats.metrics import holm

    rows = []
    for raw, cal in pairs:
        e_raw, e_cal = ends(table, raw, method), ends(table, cal, method)
        if list(e_raw.index) != list(e_cal.index) or list(e_raw.columns) != list(e_cal.columns):
            raise ValueError(f"pair ({raw}, {cal}): the two rewards' runs have other seeds or prompts")
        m, se, df = mean_se((e_cal - e_raw).to_numpy())
        lo, hi, p = _t_test(m, se, df, level)
        kl = {n: _last(table[(table.method == method) & (table.reward_name == n)]).sqrt_kl.mean() for n in (raw, cal)}
        rows.append(
            {
                "raw": raw,
                "textnorm": cal,
                "raw_end": float(e_raw.to_numpy().mean()),
                "textnorm_end": float(e_cal.to_numpy().mean()),
                "raw_sqrt_kl": float(kl[raw]),
                "textnorm_sqrt_kl": float(kl[cal]),
                "difference": m,
                "low": lo,
                "high": hi,
                "p": p,
            }
        )
    out = pd.DataFrame(rows)
    out["p_holm"] = holm(out.p.to_numpy()) if len(out) else []
    return out


def _run_curves(table: pd.DataFrame, reward: str, grid: np.ndarray, method: str) -> np.ndarray:
    """(len(grid), seeds, prompts): every run's and prompt's gold change at the d of ``grid``."""
    g, seeds, prompts = _cells(table, reward, method)
    vals = np.full((len(grid), len(seeds), len(prompts)), np.nan)
    for (s, p), run in g.groupby(["seed", "prompt"]):
        vals[:, seeds.index(s), prompts.index(p)] = curve_at(run.sqrt_kl.to_numpy(), run.gold_change.to_numpy(), grid)
    if np.isnan(vals).any():
        raise ValueError(f"reward {reward!r}: not every seed has every prompt")
    return vals


def mean_curve(
    table: pd.DataFrame, reward: str, grid: np.ndarray, method: str = "ddpo", level: float = 0.95
) -> pd.DataFrame:
    """The mean over seeds and prompts of the gold change at each d of ``grid`` (within every run's
    reach), with a pointwise t interval (seeds and prompts random)."""
    vals = _run_curves(table, reward, np.asarray(grid, float), method)
    rows = []
    for k, d in enumerate(grid):
        m, se, df = mean_se(vals[k])
        lo, hi, _ = _t_test(m, se, df, level)
        rows.append({"reward_name": reward, "sqrt_kl": float(d), "gold_change": m, "low": lo, "high": hi})
    return pd.DataFrame(rows)


def rise_and_fall(
    table: pd.DataFrame, reward: str, method: str = "ddpo", n_points: int = 8, level: float = 0.95
) -> dict[str, float | bool | str]:
    """Whether the reward's mean gold change rises and then falls over the d every run reached.

    At ``n_points`` values d_k = d_0 + (D - d_0) (k / (n_points - 1))^2, k = 0 .. n_points - 1, from d_0,
    the first d at which every run and prompt has been evaluated (below it a curve is only the line from
    the start to its first evaluation), to D, denser near d_0 where a rise happens: the mean gold change
    m(d) and, at each, a t interval
    at Bonferroni's level 1 - (1 - level) / n_points (all hold at once with probability >= level).
    ``rises``: some interval lies above 0; ``falls``: for some earlier d, the interval of m(D) - m(d)
    lies below 0 (Bonferroni over those n_points - 1 differences); ``falls_after_rise``: for such a d at
    or after the first resolved rise (gold bought, then lost: Gao et al.'s shape; a fall from a d before
    the rise is not). ``shape`` in words: "rises, then falls" (rises and falls_after_rise), else "rises",
    "falls" or "no resolved change". Also the peak of m, its d, and the
    end minus the peak, with their (simultaneous) intervals; and the first d whose interval lies above 0
    (``rise_sqrt_kl``, with ``rise``, ``rise_low``, ``rise_high``; NaN when none does), which need not be the
    peak: a point with a smaller mean can have the narrower interval. ``d0`` and ``n_points``: the values
    checked, so that a sentence about them can say where it holds."""
    if not (isinstance(n_points, int) and n_points >= 2):
        raise ValueError(f"n_points must be an integer >= 2 (the first and the largest d at least), got {n_points!r}")
    D = reach(table, reward, method)
    g, seeds, prompts = _cells(table, reward, method)
    moved = g[g.sqrt_kl > 0].groupby(["seed", "prompt"]).sqrt_kl.min()
    if len(moved) < len(seeds) * len(prompts):  # d0 below would silently skip the run that never moved
        still = sorted(set(g.groupby(["seed", "prompt"]).groups) - set(moved.index), key=str)
        raise ValueError(
            f"reward {reward!r}: a run never moved from the base model (sqrt KL 0 at every "
            f"evaluation) for (seed, prompt) {still[:5]}: its gold curve has no shape"
        )
    d0 = min(float(moved.max()), D)
    grid = d0 + (D - d0) * (np.arange(n_points) / (n_points - 1)) ** 2  # denser near d0: a rise
    vals = _run_curves(table, reward, grid, method)
    adj = 1 - (1 - level) / n_points
    mean, low, high = np.empty(n_points), np.empty(n_points), np.empty(n_points)
    for k in range(n_points):
        mean[k], se, df = mean_se(vals[k])
        low[k], high[k], _ = _t_test(mean[k], se, df, adj)
    adj_drop = 1 - (1 - level) / (n_points - 1)
    d_mean, d_low, d_high = np.zeros(n_points), np.zeros(n_points), np.zeros(n_points)
    for k in range(n_points - 1):
        d_mean[k], se, df = mean_se(vals[-1] - vals[k])
        d_low[k], d_high[k], _ = _t_test(d_mean[k], se, df, adj_drop)
    k = int(np.argmax(mean))
    above = np.flatnonzero(low > 0)  # the first resolved rise, if any
    fell = d_high[:-1] < 0  # the end resolved below the value at d_j, for each earlier j
    rises, falls = bool(above.size), bool(fell.any())
    falls_after_rise = bool(above.size and fell[above[0] :].any())
    shape = (
        "rises, then falls" if falls_after_rise else "rises" if rises else "falls" if falls else "no resolved change"
    )
    first = {"rise_sqrt_kl": grid, "rise": mean, "rise_low": low, "rise_high": high}
    return {
        **{key: float(a[above[0]]) if above.size else float("nan") for key, a in first.items()},
        "reach": D,
        "d0": float(d0),
        "n_points": int(n_points),
        "peak_sqrt_kl": float(grid[k]),
        "peak": float(mean[k]),
        "peak_low": float(low[k]),
        "peak_high": float(high[k]),
        "end": float(mean[-1]),
        "end_minus_peak": float(d_mean[k]),
        "drop_low": float(d_low[k]),
        "drop_high": float(d_high[k]),
        "rises": rises,
        "falls": falls,
        "falls_after_rise": falls_after_rise,
        "shape": shape,
        "seeds": vals.shape[1],
        "prompts": vals.shape[2],
    }


def proxy_agreement(bon: Mapping[str, np.ndarray], n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """How well each reward of a best-of-n pool (the base model's samples of the training prompts)
    tracks gold within a prompt: the mean over prompts of the AUROC of the reward for gold (a 0/1
    judge; prompts whose pool is all aligned or all not are left out) or of Spearman's correlation
    (a judge with continuous scores; prompts where either is constant are left out), with a bootstrap
    interval over prompts and the number of prompts used; and the same for the images' brightness
    (a flaw to compare with)."""
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
            elif np.ptp(gold[j]) > 0 and np.ptp(r[j]) > 0:
                per_prompt.append(stats.spearmanr(r[j], gold[j])[0])
        v = np.asarray(per_prompt, float)
        if not len(v):
            raise ValueError(f"reward {name!r}: no prompt whose pool varies in gold and reward: agreement is undefined")
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
