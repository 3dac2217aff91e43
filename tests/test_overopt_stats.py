"""Best-of-n from a pool, Gao et al.'s fitted forms, paired t intervals, the raw ensemble reward."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from textnorm.stats import overopt as oo


def _brute_force(values, proxy, n):
    """E[value of best-of-n] by enumerating every n-subset; ties drawn uniformly among the maxima."""
    total = []
    for subset in itertools.combinations(range(len(values)), n):
        r = proxy[list(subset)]
        best = [i for i, x in zip(subset, r) if x == r.max()]
        total.append(np.mean(values[best]))
    return np.mean(total)


def test_bon_weights_are_probabilities():
    for pool in (1, 5, 128):
        for n in sorted({1, min(2, pool), pool}):
            w = oo.bon_weights(pool, n)
            assert w.sum() == pytest.approx(1.0) and np.all(w >= 0)
    assert np.allclose(oo.bon_weights(7, 1), 1 / 7)  # best of one: any sample
    assert np.allclose(oo.bon_weights(7, 7), np.eye(7)[-1])  # best of all: the top one
    with pytest.raises(ValueError, match="1 <= n <= pool"):
        oo.bon_weights(4, 5)


def test_bon_expected_matches_enumeration_with_ties():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 2, (3, 7)).astype(float)
    proxy = rng.integers(0, 4, (3, 7)).astype(float)  # many ties
    got = oo.bon_expected(gold, proxy, [1, 2, 3, 5, 7])
    for p in range(3):
        want = [_brute_force(gold[p], proxy[p], n) for n in (1, 2, 3, 5, 7)]
        assert got[p] == pytest.approx(want)
    # it is not "the first n samples": a pool whose best sample comes last
    assert oo.bon_expected(np.array([[0.0, 0, 1]]), np.array([[0.0, 1, 2]]), [3])[0, 0] == 1.0


def test_bon_expected_rejects_bad_pools():
    with pytest.raises(ValueError, match="same"):
        oo.bon_expected(np.zeros((2, 3)), np.zeros((2, 4)), [1])
    with pytest.raises(ValueError, match="non-finite"):
        oo.bon_expected(np.zeros((1, 3)), np.array([[0, np.nan, 1]]), [1])


def test_bon_kl():
    assert oo.bon_kl(1) == 0.0
    assert oo.bon_kl(128) == pytest.approx(np.log(128) - 127 / 128)
    with pytest.raises(ValueError):
        oo.bon_kl(0)


@pytest.mark.parametrize("form", ["bon", "rl"])
def test_fit_gao_recovers_coefficients_and_peak(form):
    d = np.linspace(0, 6, 40)
    y = oo.gao_curve(d, 0.3, 0.08, form)
    alpha, beta = oo.fit_gao(d, y, form)
    assert (alpha, beta) == pytest.approx((0.3, 0.08))
    d_star, y_star = oo.gao_peak(alpha, beta, form)
    grid = np.linspace(1e-6, 50, 200_001)
    curve = oo.gao_curve(grid, alpha, beta, form)
    assert d_star == pytest.approx(grid[curve.argmax()], abs=1e-3)
    assert y_star == pytest.approx(curve.max(), abs=1e-9)
    assert oo.gao_peak(0.3, -0.1, form) == (np.inf, np.inf)  # never turns down


def test_fit_gao_refuses_too_few_points():
    with pytest.raises(ValueError, match="two points"):
        oo.fit_gao([0.0, 1.0], [0.0, 0.1], "rl")
    with pytest.raises(ValueError, match="form"):
        oo.fit_gao([1.0, 2.0], [0.0, 0.1], "linear")


def test_t_interval_matches_scipy_and_refuses_to_invent_certainty():
    x = [0.1, -0.05, 0.2]
    m, lo, hi = oo.t_interval(x)
    want = stats.t.interval(0.95, 2, loc=np.mean(x), scale=stats.sem(x))
    assert (lo, hi) == pytest.approx(want) and m == pytest.approx(np.mean(x))
    assert np.isnan(oo.t_interval([0.1])[1]) and np.isnan(oo.t_interval([0.2, 0.2])[2])
    with pytest.raises(ValueError):
        oo.t_interval([0.1, np.nan])


def test_bootstrap_mean_covers_the_mean():
    x = np.random.default_rng(1).normal(size=(50, 3))
    m, lo, hi = oo.bootstrap_mean(x, n_boot=500)
    assert np.all(lo < m) and np.all(m < hi) and m == pytest.approx(x.mean(0))


def test_raw_ensemble_is_the_mean_of_per_prompt_zscores(tmp_path):
    from textnorm.finetune.rewards import make_reward, zscore_by_prompt
    from textnorm.rewards import load_reward
    from textnorm.testing import save_clip

    a, b = save_clip(tmp_path / "a", seed=0), save_clip(tmp_path / "b", seed=1)
    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    prompts = ["a red circle"] * 3 + ["two blue squares"] * 3
    got = make_reward(f"raw-mean:{a},{b}")(images, prompts)
    ra = load_reward("clip", str(a)).score(list(images), prompts)
    rb = load_reward("clip", str(b)).score(list(images), prompts)
    want = (zscore_by_prompt(ra, prompts) + zscore_by_prompt(rb, prompts)) / 2
    assert got == pytest.approx(want)
    for idx in (slice(0, 3), slice(3, 6)):  # z-scores: mean 0 within every prompt
        assert got[idx].mean() == pytest.approx(0.0, abs=1e-12)
    assert np.all(zscore_by_prompt(np.ones(3), ["x"] * 3) == 0)  # no spread: zeros, not NaN
    with pytest.raises(ValueError, match="values for"):
        zscore_by_prompt(np.ones(2), ["x"] * 3)


def test_matched_differences_from_fits_and_from_logged_rounds():
    import pandas as pd

    rows = []
    for seed, top in ((0, 4.0), (1, 5.0), (2, 6.0)):
        for name, slope, reach in (("raw", -0.10, top), ("cal", -0.05, top + 1)):
            for d in np.linspace(0, reach, 9):
                gain = slope * d  # the RL form with beta = 0: linear
                rows.append({"method": "ddpo", "reward_name": name, "seed": seed, "sqrt_kl": d, "gold_gain": gain})
    curves = pd.DataFrame(rows)
    per_run, fits = oo.rl_fits(curves)
    assert per_run.set_index(["reward_name", "seed"]).loc[("cal", 2), "alpha"] == pytest.approx(-0.05)
    fitted = oo.matched_differences(per_run, [("raw", "cal")]).set_index("at")
    logged = oo.matched_differences_logged(curves, [("raw", "cal")]).set_index("at")
    # at d = each seed's raw reach (4, 5, 6) and half of it the difference is 0.05 d
    for at, ds in (("smallest of the largest sqrt KL", [4, 5, 6]), ("half of it", [2, 2.5, 3])):
        assert fitted.loc[at, "difference"] == pytest.approx(0.05 * np.mean(ds))
        assert fitted.loc[at, "sqrt_kl"] == pytest.approx(np.mean(ds))
    # linear curves: interpolating the logged rounds is exact
    assert logged.loc["smallest of the largest sqrt KL", "difference"] == pytest.approx(0.05 * 5)
    assert set(logged.basis) == {"logged rounds"} and set(fitted.basis) == {"fitted curves"}


def test_ns_must_increase():
    with pytest.raises(ValueError, match="increasing"):
        oo.bon_expected(np.zeros((1, 4)), np.zeros((1, 4)), [4, 1])
