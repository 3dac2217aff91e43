"""Statistics of over-optimisation: best-of-n from a pool, the fitted forms of Gao et al. (2023),
and paired differences over seeds.

Best-of-n from a pool. For a prompt with a pool of N samples, proxy scores r and gold values g,
best-of-n draws n of the N without replacement and keeps the one with the highest r. Sorting the
pool by r (ranks i = 1..N, ascending), the sample of rank i is the best of a random n-subset with
probability C(i - 1, n - 1) / C(N, n), so

    E[g of best-of-n] = sum_i g_(i) C(i - 1, n - 1) / C(N, n),

an unbiased estimate of best-of-n under the base model for every n <= N from the one pool (not
"the first n samples"). Ties in r: the best of a subset is drawn uniformly among its tied maxima,
so each tied sample carries its tie group's mean gold.

KL of best-of-n to the base model: KL_bon(n) = log n - (n - 1) / n, exact for a continuous reward
without ties, an upper bound otherwise.

Gao et al.'s forms, for the change of gold from the base model as a function of d = sqrt(KL):

    best-of-n:  gold(d) = d (alpha - beta d)          peak at d* = alpha / (2 beta)
    RL:         gold(d) = d (alpha - beta log d)      peak at d* = exp(alpha / beta - 1)

fitted by least squares (both are linear in alpha and beta).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import special, stats

FORMS = ("bon", "rl")


def bon_kl(n: int | np.ndarray) -> np.ndarray:
    """log n - (n - 1) / n."""
    n = np.asarray(n, dtype=float)
    if np.any(n < 1):
        raise ValueError("best-of-n needs n >= 1")
    return np.log(n) - (n - 1) / n


def bon_weights(pool: int, n: int) -> np.ndarray:
    """P(the sample of ascending rank i is the best of a random n-subset), i = 1..pool."""
    if not 1 <= n <= pool:
        raise ValueError(f"best-of-{n} from a pool of {pool}: need 1 <= n <= pool")
    i = np.arange(1, pool + 1)
    with np.errstate(divide="ignore"):
        logw = (
            special.gammaln(i)
            - special.gammaln(n)
            - special.gammaln(i - n + 1)
            - (special.gammaln(pool + 1) - special.gammaln(n + 1) - special.gammaln(pool - n + 1))
        )
    return np.where(i >= n, np.exp(logw), 0.0)


def _check_ns(ns: Sequence[int]) -> None:
    if not len(ns) or list(ns) != sorted(set(ns)):
        raise ValueError(f"ns must be increasing and without repeats, got {list(ns)}")


def bon_expected(values: np.ndarray, proxy: np.ndarray, ns: Sequence[int]) -> np.ndarray:
    """(prompts, len(ns)): E[value of the proxy's best of n] per prompt, from pools of shape
    (prompts, N) (``values`` may be gold, the proxy itself or an image statistic)."""
    _check_ns(ns)
    values, proxy = np.asarray(values, float), np.asarray(proxy, float)
    if values.shape != proxy.shape or values.ndim != 2:
        raise ValueError(f"values {values.shape} and proxy {proxy.shape} must be the same (prompts, pool) shape")
    if not (np.all(np.isfinite(values)) and np.all(np.isfinite(proxy))):
        raise ValueError("best-of-n: the pool holds non-finite values")
    pool = values.shape[1]
    weights = np.stack([bon_weights(pool, n) for n in ns], axis=1)  # (pool, len(ns))
    out = np.empty((values.shape[0], len(ns)))
    for p in range(values.shape[0]):
        order = np.argsort(proxy[p], kind="stable")
        r, v = proxy[p][order], values[p][order]
        # tie groups share their mean value (the argmax is drawn uniformly among tied maxima)
        _, start, counts = np.unique(r, return_index=True, return_counts=True)
        v = np.repeat(np.add.reduceat(v, start) / counts, counts)
        out[p] = v @ weights
    return out


def bootstrap_mean(per_prompt: np.ndarray, n_boot: int = 2000, level: float = 0.95, seed: int = 0):
    """Mean over prompts (rows) of each column and a percentile interval from resampling prompts."""
    x = np.asarray(per_prompt, float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.shape[0], (n_boot, x.shape[0]))
    boots = x[idx].mean(axis=1)
    a = (1 - level) / 2
    return x.mean(0), np.quantile(boots, a, axis=0), np.quantile(boots, 1 - a, axis=0)


def _design(d: np.ndarray, form: str) -> np.ndarray:
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    if np.any(d < 0) or not np.all(np.isfinite(d)):
        raise ValueError("d = sqrt(KL) must be finite and >= 0")
    second = d**2 if form == "bon" else d * np.log(np.where(d > 0, d, 1.0))
    return np.stack([d, -second], axis=1)


def fit_gao(d: Sequence[float], gain: Sequence[float], form: str) -> tuple[float, float]:
    """(alpha, beta) of gain(d) = d (alpha - beta d) ("bon") or d (alpha - beta log d) ("rl")."""
    d, y = np.asarray(d, float), np.asarray(gain, float)
    if d.shape != y.shape or len(d) < 2 or np.count_nonzero(d) < 2:
        raise ValueError("fit_gao needs at least two points with d > 0")
    coef, *_ = np.linalg.lstsq(_design(d, form), y, rcond=None)
    return float(coef[0]), float(coef[1])


def gao_curve(d: Sequence[float] | float, alpha: float, beta: float, form: str) -> np.ndarray:
    d = np.atleast_1d(np.asarray(d, float))
    return _design(d, form) @ np.array([alpha, beta])


def gao_peak(alpha: float, beta: float, form: str) -> tuple[float, float]:
    """(d*, gain at d*) of the fitted curve; (inf, inf) when it never turns down (beta <= 0)."""
    if beta <= 0:
        return float("inf"), float("inf")
    if form == "bon":
        d = max(alpha / (2 * beta), 0.0)  # alpha <= 0: the curve only falls, its peak is the start
    elif form == "rl":
        d = float(np.exp(alpha / beta - 1))
    else:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    return float(d), float(gao_curve(d, alpha, beta, form)[0])


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and t interval (n - 1 degrees of freedom) of paired differences, seeds as the unit;
    NaN bounds with fewer than two values or when they are all equal (no spread to estimate)."""
    x = np.asarray(values, float)
    if len(x) == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"t_interval needs finite values, got {x}")
    m = float(x.mean())
    sd = float(x.std(ddof=1)) if len(x) > 1 else 0.0
    if sd == 0:
        return m, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * sd / np.sqrt(len(x)))
    return m, m - half, m + half


# ---------------------------------------------------------------------------------------------
# tables from the over-optimisation logs (textnorm.experiments.overopt.load)


def _pool_rewards(bon: dict) -> dict[str, np.ndarray]:
    """The gold control (the judge as the reward) and every scored reward of a best-of-n pool."""
    return {"gold": bon["gold"], **{k.split(":", 1)[1]: v for k, v in bon.items() if k.startswith("reward:")}}


def _zscore_rows(x: np.ndarray) -> np.ndarray:
    sd = x.std(axis=1, keepdims=True)
    return np.where(sd > 0, (x - x.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1), 0.0)


def bon_curves(bon: dict, ns: Sequence[int], n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per (reward, n): KL_bon, the expected gold of the proxy's best of n (mean over
    prompts, percentile interval from resampling prompts), its gain over a single sample, the
    expected proxy in z-units of each prompt's pool, and the chosen images' statistics."""
    gold = bon["gold"]
    stats_ = {k.split(":", 1)[1]: v for k, v in bon.items() if k.startswith("stat:")}
    rows = []
    for name, r in _pool_rewards(bon).items():
        g = bon_expected(gold, r, ns)
        m, lo, hi = bootstrap_mean(g - gold.mean(axis=1, keepdims=True), n_boot=n_boot, seed=seed)
        proxy_z = bon_expected(_zscore_rows(r), r, ns).mean(0)
        extra = {k: bon_expected(v, r, ns).mean(0) for k, v in stats_.items()}
        for j, n in enumerate(ns):
            rows.append(
                {
                    "reward": name,
                    "n": int(n),
                    "kl": float(bon_kl(n)),
                    "sqrt_kl": float(np.sqrt(bon_kl(n))),
                    "gold": float(g[:, j].mean()),
                    "gold_gain": float(m[j]),
                    "gain_low": float(lo[j]),
                    "gain_high": float(hi[j]),
                    "proxy_z": float(proxy_z[j]),
                    **{k: float(v[j]) for k, v in extra.items()},
                }
            )
    return pd.DataFrame(rows)


def n_at_kl(kl: float) -> float:
    """The n (real, >= 1) with KL_bon(n) = kl; inf for kl = inf."""
    if not np.isfinite(kl):
        return float("inf")
    lo, hi = 1.0, 2.0
    while bon_kl(hi) < kl:
        lo, hi = hi, hi * 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if bon_kl(mid) < kl else (lo, mid)
    return (lo + hi) / 2


def bon_fits(bon: dict, ns: Sequence[int], n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Per reward: Gao's best-of-n form fitted to the mean gold gain over prompts against
    sqrt(KL_bon(n)), with percentile intervals of alpha and beta from resampling prompts (refitted
    on every resample); the fitted peak (sqrt KL and n), the observed peak among ``ns`` and the
    change from it to the largest n with its interval (negative: gold fell while n grew)."""
    gold = bon["gold"]
    d = np.sqrt(bon_kl(np.asarray(ns)))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, gold.shape[0], (n_boot, gold.shape[0]))
    a = (1 - level) / 2
    rows = []
    for name, r in _pool_rewards(bon).items():
        gain = bon_expected(gold, r, ns) - gold.mean(axis=1, keepdims=True)
        alpha, beta = fit_gao(d, gain.mean(0), "bon")
        boots = np.array([fit_gao(d, gain[i].mean(0), "bon") for i in idx])
        d_star, g_star = gao_peak(alpha, beta, "bon")
        mean = gain.mean(0)
        k = int(mean.argmax())
        drop = gain[:, -1] - gain[:, k]  # paired over prompts
        drop_boot = drop[idx].mean(1)
        rows.append(
            {
                "reward": name,
                "alpha": alpha,
                "alpha_low": float(np.quantile(boots[:, 0], a)),
                "alpha_high": float(np.quantile(boots[:, 0], 1 - a)),
                "beta": beta,
                "beta_low": float(np.quantile(boots[:, 1], a)),
                "beta_high": float(np.quantile(boots[:, 1], 1 - a)),
                "peak_sqrt_kl": d_star,
                "peak_n": n_at_kl(d_star**2),
                "peak_gain_fitted": g_star,
                "best_n": int(ns[k]),
                "best_gain": float(mean[k]),
                "last_minus_best": float(drop.mean()),
                "last_minus_best_low": float(np.quantile(drop_boot, a)),
                "last_minus_best_high": float(np.quantile(drop_boot, 1 - a)),
            }
        )
    return pd.DataFrame(rows).set_index("reward")


def bon_differences(
    bon: dict, pairs: Sequence[tuple[str, str]], ns: Sequence[int], n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Expected gold of best-of-n, calibrated minus raw, paired over prompts at the same n (best-of-n's
    KL does not depend on the reward, so equal n is matched KL), with bootstrap intervals."""
    gold, rewards = bon["gold"], _pool_rewards(bon)
    rows = []
    for raw, calibrated in pairs:
        diff = bon_expected(gold, rewards[calibrated], ns) - bon_expected(gold, rewards[raw], ns)
        m, lo, hi = bootstrap_mean(diff, n_boot=n_boot, seed=seed)
        rows += [
            {
                "raw": raw,
                "calibrated": calibrated,
                "n": int(n),
                "sqrt_kl": float(np.sqrt(bon_kl(n))),
                "difference": float(m[j]),
                "low": float(lo[j]),
                "high": float(hi[j]),
                "prompts": gold.shape[0],
            }
            for j, n in enumerate(ns)
        ]
    return pd.DataFrame(rows)


def rl_curves(steps: pd.DataFrame) -> pd.DataFrame:
    """Per-step rows of the runs that log KL (DDPO) with d = sqrt(KL) and the changes of the
    sampled images' gold and reward from the run's step 0 (the base model's samples)."""
    df = steps.dropna(subset=["kl"]).copy()
    if df.empty:
        return df
    keys = ["method", "reward_name", "seed"]
    first = df[df.step == 0].set_index(keys)
    if len(first) != len(df.groupby(keys)):
        raise ValueError("every run needs its step 0 (the base model's samples)")
    df["sqrt_kl"] = np.sqrt(df.kl.clip(lower=0))
    base = first[["gold", "reward"]].rename(columns={"gold": "gold0", "reward": "reward0"})
    df = df.join(base, on=keys)
    df["gold_gain"] = df.gold - df.gold0
    df["reward_change"] = df.reward - df.reward0
    return df.drop(columns=["gold0", "reward0"])


def rl_fits(curves: pd.DataFrame, level: float = 0.95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Gao's RL form fitted per run (gold gain against sqrt KL over its steps), and per (method,
    reward): alpha and beta as means over seeds with t intervals, the peak of the mean curve, the
    largest sqrt KL reached (mean over seeds) and whether the fitted curve turns down inside it."""
    per_run = []
    for (method, name, seed), g in curves.groupby(["method", "reward_name", "seed"], sort=False):
        alpha, beta = fit_gao(g.sqrt_kl.to_numpy(), g.gold_gain.to_numpy(), "rl")
        per_run.append(
            {
                "method": method,
                "reward_name": name,
                "seed": seed,
                "alpha": alpha,
                "beta": beta,
                "max_sqrt_kl": float(g.sqrt_kl.max()),
            }
        )
    per_run = pd.DataFrame(per_run)
    rows = []
    for (method, name), g in per_run.groupby(["method", "reward_name"], sort=False):
        a, a_lo, a_hi = t_interval(g.alpha, level)
        b, b_lo, b_hi = t_interval(g.beta, level)
        d_star, g_star = gao_peak(a, b, "rl")
        reach = float(g.max_sqrt_kl.mean())
        rows.append(
            {
                "method": method,
                "reward_name": name,
                "alpha": a,
                "alpha_low": a_lo,
                "alpha_high": a_hi,
                "beta": b,
                "beta_low": b_lo,
                "beta_high": b_hi,
                "peak_sqrt_kl": d_star,
                "peak_gain": g_star,
                "max_sqrt_kl": reach,
                "gain_at_max": float(gao_curve(reach, a, b, "rl")[0]),
                "turns_down": bool(d_star < reach),
                "seeds": len(g),
            }
        )
    return per_run, pd.DataFrame(rows).set_index(["method", "reward_name"])


def _matched(runs: dict, pairs: Sequence[tuple[str, str]], gain_at, reach, basis: str, level: float) -> list[dict]:
    """Calibrated minus raw gain_at(run, d), seed by seed, at d_m = the smaller of the two runs'
    reach(run) and at d_m / 2; ``runs`` maps (reward, seed) to one run's data."""
    rows = []
    names = {name for name, _ in runs}
    for raw, calibrated in pairs:
        if raw not in names or calibrated not in names:
            continue
        seeds = sorted({s for n, s in runs if n == raw} & {s for n, s in runs if n == calibrated})
        for share in (1.0, 0.5):
            diffs, ds = [], []
            for s in seeds:
                r, c = runs[(raw, s)], runs[(calibrated, s)]
                d = share * min(reach(r), reach(c))
                diffs.append(gain_at(c, d) - gain_at(r, d))
                ds.append(d)
            m, lo, hi = t_interval(diffs, level)
            rows.append(
                {
                    "raw": raw,
                    "calibrated": calibrated,
                    "at": "smallest of the largest sqrt KL" if share == 1 else "half of it",
                    "basis": basis,
                    "sqrt_kl": float(np.mean(ds)),
                    "difference": m,
                    "low": lo,
                    "high": hi,
                    "seeds": len(seeds),
                }
            )
    return rows


def matched_differences_logged(
    curves: pd.DataFrame, pairs: Sequence[tuple[str, str]], level: float = 0.95
) -> pd.DataFrame:
    """As :func:`matched_differences`, from the logged rounds instead of the fitted curves: each
    run's gold gain interpolated linearly in sqrt KL (rounds sorted by sqrt KL) at the same d."""
    rows = []
    for method, g in curves.groupby("method", sort=False):
        runs = {key: r.sort_values("sqrt_kl") for key, r in g.groupby(["reward_name", "seed"])}
        found = _matched(
            runs,
            pairs,
            lambda run, d: np.interp(d, run.sqrt_kl, run.gold_gain),
            lambda run: run.sqrt_kl.max(),
            "logged rounds",
            level,
        )
        rows += [{"method": method, **row} for row in found]
    return pd.DataFrame(rows)


def matched_differences(per_run: pd.DataFrame, pairs: Sequence[tuple[str, str]], level: float = 0.95) -> pd.DataFrame:
    """Fitted gold gain, calibrated minus raw, at matched sqrt KL, seed by seed (the same seed draws
    the same base samples): at d_m = the smaller of the two runs' largest sqrt KL (no
    extrapolation) and at d_m / 2; t interval over seeds."""
    rows = []
    for method, g in per_run.groupby("method", sort=False):
        runs = {(r.reward_name, r.seed): r for r in g.itertuples()}
        found = _matched(
            runs,
            pairs,
            lambda run, d: gao_curve(d, run.alpha, run.beta, "rl")[0],
            lambda run: run.max_sqrt_kl,
            "fitted curves",
            level,
        )
        rows += [{"method": method, **row} for row in found]
    return pd.DataFrame(rows)


def final_differences(
    evals: pd.DataFrame, pairs: Sequence[tuple[str, str]], column: str = "eval_gold", level: float = 0.95
) -> pd.DataFrame:
    """Change of ``column`` from before to after training (the fixed-noise evaluations),
    calibrated minus raw, seed by seed, with a t interval over seeds."""
    ev = evals.assign(change=evals[f"{column}_after"] - evals[f"{column}_before"])
    rows = []
    for method, g in ev.groupby("method", sort=False):
        ch = g.set_index(["reward_name", "seed"]).change
        names = set(ch.index.get_level_values(0))
        for raw, calibrated in pairs:
            if raw not in names or calibrated not in names:
                continue
            d = (ch.loc[calibrated] - ch.loc[raw]).dropna()
            m, lo, hi = t_interval(d.to_numpy(), level)
            rows.append(
                {
                    "method": method,
                    "raw": raw,
                    "calibrated": calibrated,
                    "difference": m,
                    "low": lo,
                    "high": hi,
                    "seeds": len(d),
                }
            )
    return pd.DataFrame(rows)
