"""Per-prompt ranking metrics of a reward against binary human verdicts, their aggregation over
prompts, bootstrap intervals and paired tests.

For one prompt with images x_1..x_n, reward scores s_i and verdicts y_i in {0, 1}
(P = sum y_i positives, N = n - P negatives, both >= 1):

- AUROC  = P(s+ > s-) + 1/2 P(s+ = s-) = (sum_{i: y_i=1} rank_i - P(P+1)/2) / (P N),
  ranks ascending with ties given their mid-rank (the Mann-Whitney U statistic over P N).
- AUPRC  = average precision, the step-wise area under the precision-recall curve taken over the
  distinct score thresholds t in decreasing order: sum_t (R_t - R_{t-1}) Prec_t, where tied scores
  enter together (this is scikit-learn's ``average_precision_score``).
- AP@K   = (1 / h_K) sum_{i <= K, y_(i) = 1} Prec@i, where images are sorted by decreasing score,
  y_(i) is the verdict at rank i, Prec@i = (1/i) sum_{j <= i} y_(j), and h_K = sum_{i <= K} y_(i)
  is the number of aligned images among the top K (AP@K = 0 when h_K = 0). Ties in the score are
  broken by input order (a stable sort). This is the definition the published TIA2 values follow:
  2,621 of the 2,625 published AP@5 values are attainable under it (the other four are explained
  by ties in the scores).
- Spearman = Pearson correlation of the mid-ranks of s and y; Kendall = tau-b (tie-corrected).

Aggregation is the mean over prompts; intervals are percentile bootstrap intervals over prompts
(resampling prompts with replacement). Paired comparisons of two rewards use the Wilcoxon
signed-rank test on the per-prompt differences (zero differences dropped), Holm-corrected across
all pairs compared within one subset and metric (the family of :func:`paired_tests`'s
``p_holm``); :func:`holm` corrects over any larger family, e.g. every comparison a chapter reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

AP_KS: tuple[int, ...] = (5, 10, 25)
METRIC_NAMES: tuple[str, ...] = ("auroc", "auprc", "ap5", "ap10", "ap25", "spearman", "kendall")


def _validate(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels).astype(bool)
    if s.ndim != 1 or s.shape != y.shape:
        raise ValueError(f"scores and labels must be 1-d of equal length, got {s.shape} and {y.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinite values")
    if y.all() or not y.any():
        raise ValueError("ranking metrics need both aligned and non-aligned images")
    return s, y


def auroc(scores, labels) -> float:
    """Area under the ROC curve via mid-ranks (ties count one half)."""
    s, y = _validate(scores, labels)
    ranks = stats.rankdata(s)  # average ranks for ties
    p, n = y.sum(), (~y).sum()
    return float((ranks[y].sum() - p * (p + 1) / 2) / (p * n))


def auprc(scores, labels) -> float:
    """Average precision over distinct thresholds (tied scores enter together)."""
    s, y = _validate(scores, labels)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    # last index of each run of equal scores = one threshold
    ends = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tp = np.cumsum(y)[ends]
    precision = tp / (ends + 1)
    recall = tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def ap_at_k(scores, labels, k: int) -> float:
    """AP@K: mean of Prec@i over the ranks i <= K holding an aligned image (0 if none)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    s, y = _validate(scores, labels)
    top = y[np.argsort(-s, kind="mergesort")][:k]
    hits = np.cumsum(top)
    if hits[-1] == 0:
        return 0.0
    prec = hits / np.arange(1, top.size + 1)
    return float(prec[top].sum() / hits[-1])


def spearman(scores, labels) -> float:
    """NaN when all scores are equal (no ranking: the correlation is undefined)."""
    s, y = _validate(scores, labels)
    if np.all(s == s[0]):
        return float("nan")
    return float(stats.spearmanr(s, y.astype(float)).statistic)


def kendall(scores, labels) -> float:
    """NaN when all scores are equal."""
    s, y = _validate(scores, labels)
    if np.all(s == s[0]):
        return float("nan")
    return float(stats.kendalltau(s, y.astype(float), variant="b").statistic)


def prompt_metrics(scores, labels) -> dict[str, float]:
    """All :data:`METRIC_NAMES` for one prompt."""
    out = {"auroc": auroc(scores, labels), "auprc": auprc(scores, labels)}
    for k in AP_KS:
        out[f"ap{k}"] = ap_at_k(scores, labels, k)
    out["spearman"] = spearman(scores, labels)
    out["kendall"] = kendall(scores, labels)
    return out


def per_prompt_metrics(
    images: pd.DataFrame,
    score_cols: Sequence[str],
    label_col: str = "aligned",
    by: Sequence[str] = ("subset", "prompt"),
) -> pd.DataFrame:
    """Long table, one row per (prompt, reward): ``by`` columns, ``model`` (the score column's
    name), ``human`` (aligned fraction) and the metrics. Prompts with a single verdict are left
    out (see :mod:`textnorm.tia2`)."""
    rows = []
    for key, grp in images.groupby(list(by), sort=False, observed=True):
        y = grp[label_col].to_numpy().astype(bool)
        if y.all() or not y.any():
            continue
        key = key if isinstance(key, tuple) else (key,)
        for col in score_cols:
            row = dict(zip(by, key))
            row.update(model=col, human=float(y.mean()), **prompt_metrics(grp[col].to_numpy(), y))
            rows.append(row)
    return pd.DataFrame(rows)


def bootstrap_ci(values, n_boot: int = 10_000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``values`` and its percentile bootstrap interval (resampling values)."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(v.mean()), float(lo), float(hi)


def summarize(
    table: pd.DataFrame,
    metrics: Sequence[str] = METRIC_NAMES,
    by: Sequence[str] = ("subset", "model"),
    n_boot: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean over prompts with bootstrap intervals: one row per (``by``, metric) with columns
    mean, ci_low, ci_high, n_prompts."""
    rows = []
    for key, grp in table.groupby(list(by), sort=True, observed=True):
        key = key if isinstance(key, tuple) else (key,)
        for metric in metrics:
            mean, lo, hi = bootstrap_ci(grp[metric], n_boot=n_boot, level=level, seed=seed)
            rows.append(
                {
                    **dict(zip(by, key)),
                    "metric": metric,
                    "mean": mean,
                    "ci_low": lo,
                    "ci_high": hi,
                    "n_prompts": int(grp[metric].notna().sum()),
                }
            )
    return _keep_dtypes(pd.DataFrame(rows), table, by)


def _keep_dtypes(out: pd.DataFrame, table: pd.DataFrame, cols: Sequence[str]) -> pd.DataFrame:
    """Give grouping columns of ``out`` the (e.g. categorical) dtype they had in ``table``, so
    that the category order (subsets, models) survives aggregation."""
    for col in cols:
        if col in out and isinstance(table[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].astype(table[col].dtype)
    return out


def paired_tests(
    table: pd.DataFrame,
    metric: str,
    models: Sequence[str] | None = None,
    by: str = "subset",
    pairs: Sequence[tuple[str, str]] | None = None,
) -> pd.DataFrame:
    """Wilcoxon signed-rank tests of ``metric`` between rewards over the same prompts.

    For every group of ``by`` and every pair (a, b) (all pairs of ``models`` unless ``pairs`` is
    given) the per-prompt differences d = metric_a - metric_b are tested for a zero median.
    Columns: the group, model_a, model_b, n_prompts, mean_diff, median_diff, wins_a (d > 0),
    wins_b (d < 0), statistic, p_value, p_holm (Holm over the pairs of that group)."""
    wide = table.pivot_table(index=[by, "prompt"], columns="model", values=metric, observed=True)
    models = list(models) if models is not None else list(wide.columns)
    pairs = list(pairs) if pairs is not None else list(combinations(models, 2))
    rows = []
    for group, sub in wide.groupby(level=0, sort=True, observed=True):
        group_rows = []
        for a, b in pairs:
            d = (sub[a] - sub[b]).dropna().to_numpy()
            nonzero = d[d != 0]
            if nonzero.size == 0:
                stat, p = np.nan, 1.0
            else:
                res = stats.wilcoxon(d, zero_method="wilcox")
                stat, p = float(res.statistic), float(res.pvalue)
            group_rows.append(
                {
                    by: group,
                    "model_a": a,
                    "model_b": b,
                    "n_prompts": int(d.size),
                    "mean_diff": float(d.mean()),
                    "median_diff": float(np.median(d)),
                    "wins_a": int((d > 0).sum()),
                    "wins_b": int((d < 0).sum()),
                    "statistic": stat,
                    "p_value": p,
                }
            )
        p_holm = holm([r["p_value"] for r in group_rows])
        for r, ph in zip(group_rows, p_holm):
            r["p_holm"] = float(ph)
        rows += group_rows
    return _keep_dtypes(pd.DataFrame(rows), table, [by])


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment over one family of p-values (controls the family-wise error
    rate): the k-th smallest p becomes max_{j <= k} min(1, (m - j + 1) p_(j)), m = family size."""
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1 or p.size == 0 or not np.all((p >= 0) & (p <= 1)):
        raise ValueError("holm needs a non-empty list of p-values in [0, 1]")
    # by hand, not statsmodels' multipletests: it runs gc.collect() on every call (most of its time)
    order = np.argsort(p, kind="stable")  # ties: the running maximum gives tied p-values one adjusted value
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(p[order] * np.arange(p.size, 0, -1)))
    return adjusted
