"""Metrics against scikit-learn / scipy and brute-force implementations, ties included."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score

from textnorm import tia2
from textnorm.stats import metrics


def random_cases(n_cases=60, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(n_cases):
        n = int(rng.integers(4, 60))
        y = rng.random(n) < rng.uniform(0.1, 0.9)
        y[0], y[1] = True, False  # both classes present
        rng.shuffle(y)
        # every other case draws scores from a few values, so ties are common
        s = rng.integers(0, 4, n).astype(float) if i % 2 else rng.normal(size=n) + y
        yield s, y


def brute_auroc(s, y):
    pos, neg = s[y], s[~y]
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def brute_ap_at_k(s, y, k):
    order = sorted(range(len(s)), key=lambda i: -s[i])  # Python's sort is stable
    hits, total = 0, 0.0
    for rank, i in enumerate(order[:k], start=1):
        if y[i]:
            hits += 1
            total += hits / rank
    return total / hits if hits else 0.0


def brute_kendall_b(s, y):
    conc = disc = ties_s = ties_y = 0
    for i, j in itertools.combinations(range(len(s)), 2):
        ds, dy = np.sign(s[i] - s[j]), np.sign(float(y[i]) - float(y[j]))
        if ds == 0 and dy == 0:
            continue
        if ds == 0:
            ties_s += 1
        elif dy == 0:
            ties_y += 1
        elif ds == dy:
            conc += 1
        else:
            disc += 1
    return (conc - disc) / np.sqrt((conc + disc + ties_s) * (conc + disc + ties_y))


def brute_spearman(s, y):
    def midranks(v):
        return np.array([np.sum(v < x) + (np.sum(v == x) + 1) / 2 for x in v])

    return np.corrcoef(midranks(s), midranks(y.astype(float)))[0, 1]


@pytest.mark.parametrize("case", list(random_cases()))
def test_against_references(case):
    s, y = case
    assert metrics.auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert metrics.auroc(s, y) == pytest.approx(brute_auroc(s, y), abs=1e-12)
    assert metrics.auprc(s, y) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    for k in (1, 5, 10, 25, 100):
        assert metrics.ap_at_k(s, y, k) == pytest.approx(brute_ap_at_k(s, y, k), abs=1e-12)
    assert metrics.spearman(s, y) == pytest.approx(brute_spearman(s, y), abs=1e-10)
    assert metrics.kendall(s, y) == pytest.approx(brute_kendall_b(s, y), abs=1e-10)


def test_known_values():
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    y = np.array([0, 1, 1, 0, 1], dtype=bool)
    # hits at ranks 2, 3, 5: AP@5 = (1/2 + 2/3 + 3/5) / 3
    assert metrics.ap_at_k(s, y, 5) == pytest.approx((1 / 2 + 2 / 3 + 3 / 5) / 3)
    assert metrics.ap_at_k(s, y, 1) == 0.0
    assert metrics.auroc(s, y) == pytest.approx(2 / 6)  # 0.8 and 0.7 beat 0.6
    assert metrics.auroc(-s, ~y) == pytest.approx(2 / 6)
    assert metrics.auroc(np.arange(4.0), [0, 0, 1, 1]) == 1.0


def test_published_ap5_values_follow_our_definition(mirror):
    attainable = {
        round(metrics.ap_at_k(np.arange(5, 0, -1.0), np.array(h, bool), 5), 9)
        for h in itertools.product([0, 1], repeat=5)
        if 0 < sum(h) < 5
    }
    attainable |= {0.0, 1.0}
    pub = tia2.load_published_scores(mirror=mirror)
    hit = pub["ap5"].round(9).isin(attainable)
    assert hit.sum() >= len(pub) - 4  # the rest are explained by tied scores


def test_invalid_inputs():
    with pytest.raises(ValueError, match="both"):
        metrics.auroc([1.0, 2.0], [1, 1])
    with pytest.raises(ValueError, match="equal length"):
        metrics.auroc([1.0, 2.0, 3.0], [1, 0])
    with pytest.raises(ValueError, match="NaN"):
        metrics.auprc([np.nan, 2.0], [1, 0])
    with pytest.raises(ValueError, match="k must"):
        metrics.ap_at_k([1.0, 2.0], [1, 0], 0)


def test_per_prompt_metrics_skips_single_verdict_prompts():
    df = pd.DataFrame(
        {
            "subset": ["a"] * 6,
            "prompt": ["p"] * 3 + ["q"] * 3,
            "aligned": [True, False, True, True, True, True],
            "r1": [3.0, 1.0, 2.0, 1.0, 2.0, 3.0],
            "r2": [1.0, 3.0, 2.0, 0.0, 0.0, 0.0],
        }
    )
    table = metrics.per_prompt_metrics(df, ["r1", "r2"])
    assert table.prompt.tolist() == ["p", "p"]
    assert table.set_index("model").auroc.to_dict() == {"r1": 1.0, "r2": 0.0}
    assert table.human.iloc[0] == pytest.approx(2 / 3)


def test_bootstrap_ci():
    rng = np.random.default_rng(1)
    v = rng.normal(0.7, 0.1, 200)
    mean, lo, hi = metrics.bootstrap_ci(v, n_boot=4000, seed=3)
    assert lo < mean < hi and mean == pytest.approx(v.mean())
    assert (mean, lo, hi) == metrics.bootstrap_ci(v, n_boot=4000, seed=3)
    se = v.std(ddof=1) / np.sqrt(v.size)  # normal approximation for comparison
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.1)
    _, lo4, hi4 = metrics.bootstrap_ci(v[:50], n_boot=4000, seed=3)
    assert hi4 - lo4 > hi - lo


def test_paired_tests_match_scipy_and_holm():
    rng = np.random.default_rng(2)
    n = 40
    base = rng.random(n)
    table = pd.DataFrame(
        {
            "subset": "s",
            "prompt": np.tile(np.arange(n), 3),
            "model": np.repeat(["a", "b", "c"], n),
            "auroc": np.r_[base + 0.1 + rng.normal(0, 0.05, n), base + rng.normal(0, 0.05, n), base],
        }
    )
    res = metrics.paired_tests(table, "auroc")
    assert list(zip(res.model_a, res.model_b)) == [("a", "b"), ("a", "c"), ("b", "c")]
    wide = table.pivot(index="prompt", columns="model", values="auroc")
    raw = []
    for a, b in [("a", "b"), ("a", "c"), ("b", "c")]:
        raw.append(stats.wilcoxon(wide[a] - wide[b]).pvalue)
    assert np.allclose(res.p_value, raw)
    # Holm by hand
    order = np.argsort(raw)
    adj = np.empty(3)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * raw[i]))
        adj[i] = running
    assert np.allclose(res.p_holm, adj)
    assert res.wins_a.iloc[0] > res.wins_b.iloc[0]


def test_summarize_columns(mirror):
    pub = tia2.load_published_scores(["counting"], mirror=mirror)
    out = metrics.summarize(pub, metrics=["auroc"], n_boot=500)
    assert set(out.model) == set(tia2.MODELS)
    assert (out.n_prompts == 146).all()
    assert ((out.ci_low <= out["mean"]) & (out["mean"] <= out.ci_high)).all()


def test_constant_scores_give_nan_correlations_without_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(metrics.spearman([1.0, 1.0, 1.0], [1, 0, 1]))
        assert np.isnan(metrics.kendall([1.0, 1.0, 1.0], [1, 0, 1]))
    assert metrics.auroc([1.0, 1.0, 1.0], [1, 0, 1]) == 0.5


def test_holm_by_hand():
    # sorted p 0.01, 0.03, 0.04 -> 3 x 0.01, 2 x 0.03, max(1 x 0.04, 0.06): step-down keeps it monotone
    np.testing.assert_allclose(metrics.holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(metrics.holm([0.5, 0.6]), [1.0, 1.0])
    with pytest.raises(ValueError):
        metrics.holm([])
    with pytest.raises(ValueError):
        metrics.holm([0.1, float("nan")])


def test_holm_equals_statsmodels_bit_for_bit():
    """Against statsmodels' multipletests (the reference it replaced): ties, ones, zeros and sizes 1 to 30."""
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(5)
    for m in [1, 2, 3, 7, 30]:
        for _ in range(20):
            p = rng.choice([0.0, 0.001, 0.01, 0.02, 0.5, 1.0], m) if m > 3 else rng.random(m)
            p = np.where(rng.random(m) < 0.5, p, rng.random(m) ** 3)
            assert np.array_equal(metrics.holm(p), multipletests(p, method="holm")[1]), p
