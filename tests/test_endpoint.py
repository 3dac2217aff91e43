"""The primary endpoint's arithmetic on curves whose answers are known in closed form, and the
calibration of its tests on null data where seeds and prompts both vary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from textnorm.stats import endpoint


def _log(method, reward, seed, steps, d, gold_by_prompt, prompts=("p0", "p1")):
    evals = [
        {
            "step": k,
            "eval_kl": float(dk) ** 2,
            "eval_prompt_gold": list(g),
            "eval_prompt_reward": list(g),
            "eval_prompt_names": list(prompts),
        }
        for k, dk, g in zip(steps, d, gold_by_prompt)
    ]
    return {"method": method, "reward_name": reward, "seed": seed}, {"config": {}, "evals": evals}


def _table(
    shape,
    rewards=("raw", "tn"),
    seeds=(0, 1, 2),
    prompts=("p0", "p1", "p2"),
    noise=0.0,
    d_max=2.0,
    seed_noise=0.0,
    rng=None,
):
    """Runs whose gold change is shape[reward](d) at d = 0, 0.25, ..., d_max, plus N(0, noise) per
    evaluation and a N(0, seed_noise) offset per (reward, seed) run after the start."""
    rng = rng or np.random.default_rng(0)
    d = np.linspace(0, d_max, int(d_max / 0.25) + 1)
    runs = []
    for r in rewards:
        for s in seeds:
            base = rng.uniform(0.3, 0.6, len(prompts))
            offset = rng.normal(0, seed_noise) if seed_noise else 0.0
            gold = [
                base + (shape[r](dk) + offset + rng.normal(0, noise, len(prompts)) if k else 0)
                for k, dk in enumerate(d)
            ]
            runs.append(_log("ddpo", r, s, range(len(d)), d, gold, prompts))
    return endpoint.eval_table(runs)


def test_curve_at_interpolates_sorts_and_refuses_to_extrapolate():
    d = np.array([0.0, 2.0, 1.0, 1.0])
    y = np.array([0.0, 4.0, 1.0, 3.0])  # two evaluations at d = 1: their mean, 2
    assert np.allclose(endpoint.curve_at(d, y, np.array([0.5, 1.0, 1.5])), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="observed up to"):
        endpoint.curve_at(d, y, np.array([2.5]))


def test_the_mean_over_a_range_is_the_exact_integral_of_the_curve():
    d, y = np.array([0.0, 0.3, 1.0]), np.array([0.0, 0.3, -0.4])
    # integral over [0, 1]: 0.5*0.3*0.3 + segment from (0.3, 0.3) to (1, -0.4): 0.7 * (0.3 - 0.4) / 2
    assert endpoint.curve_mean(d, y, 1.0) == pytest.approx(0.045 - 0.035)
    assert endpoint.curve_mean(d, y, 0.3) == pytest.approx(0.15)


def test_area_of_a_straight_line_is_its_mean():
    table = _table({"raw": lambda d: 0.1 * d, "tn": lambda d: 0.1 * d})
    assert np.allclose(endpoint.areas(table, "raw", D=2.0).to_numpy(), 0.1)  # mean of 0.1 d over [0, 2]
    assert np.allclose(endpoint.areas(table, "raw", D=1.0).to_numpy(), 0.05)
    assert endpoint.reach(table, "raw") == pytest.approx(2.0)


def test_primary_endpoint_finds_a_known_difference_and_none_where_there_is_none():
    # TextNorm's gold change is 0.04 d higher everywhere: over [0, 2] its mean is 0.04 higher
    table = _table({"raw": lambda d: d * (0.1 - 0.08 * d), "tn": lambda d: d * (0.14 - 0.08 * d)}, noise=0.01)
    out = endpoint.primary_endpoint(table, [("raw", "tn")]).iloc[0]
    assert out.D == pytest.approx(2.0) and out.difference == pytest.approx(0.04, abs=0.01)
    assert out.low > 0 and out.p < 0.01 and out.mde > 0 and (out.seeds, out.prompts) == (3, 3)
    same = _table({"raw": lambda d: 0.05 * d, "tn": lambda d: 0.05 * d}, noise=0.02)
    null = endpoint.primary_endpoint(same, [("raw", "tn")]).iloc[0]
    assert null.low < 0 < null.high and null.p > 0.05


@pytest.mark.parametrize("seeds", [3, 5])
def test_the_endpoints_test_holds_its_level_when_seeds_differ(seeds):
    """Null data where whole runs differ by seed (the realistic noise: one model per run) and prompts
    too: the test rejects at about its 5% level (a bootstrap over 3 seeds rejected about 21%)."""
    rejections = 0
    for k in range(200):
        rng = np.random.default_rng(1000 + k)
        table = _table(
            {"raw": lambda d: 0 * d, "tn": lambda d: 0 * d},
            seeds=tuple(range(seeds)),
            prompts=tuple(f"p{i}" for i in range(6)),
            noise=0.01,
            seed_noise=0.03,
            rng=rng,
        )
        rejections += endpoint.primary_endpoint(table, [("raw", "tn")]).iloc[0].p < 0.05
    assert rejections <= 0.08 * 200, rejections


def test_runs_are_paired_by_seed_and_prompt_labels():
    a = _table({"raw": lambda d: 0 * d, "tn": lambda d: 0 * d}, rewards=("raw",), seeds=(0, 1, 2))
    b = _table({"raw": lambda d: 0 * d, "tn": lambda d: 0 * d}, rewards=("tn",), seeds=(0, 1, 5))
    with pytest.raises(ValueError, match="other seeds or prompts"):
        endpoint.primary_endpoint(pd.concat([a, b]), [("raw", "tn")])


def test_holm_over_the_pairs():
    table = _table(
        {"a": lambda d: 0.0 * d, "ta": lambda d: 0.05 * d, "b": lambda d: 0.0 * d, "tb": lambda d: 0.001 * d},
        rewards=("a", "ta", "b", "tb"),
        noise=0.01,
    )
    out = endpoint.primary_endpoint(table, [("a", "ta"), ("b", "tb")])
    small, large = out.p.min(), out.p.max()  # Holm over two: the smaller p doubled, the larger kept (monotone)
    assert sorted(out.p_holm) == pytest.approx(sorted([min(1, 2 * small), max(min(1, 2 * small), large)]))


def test_rise_and_fall_of_gaos_shape_is_found_and_a_rising_line_does_not_fall():
    table = _table(
        {"up_down": lambda d: d * (0.2 - 0.2 * d), "up": lambda d: 0.1 * d}, rewards=("up_down", "up"), noise=0.005
    )
    rf = endpoint.rise_and_fall(table, "up_down")
    assert rf["rises"] and rf["falls"] and rf["peak_sqrt_kl"] == pytest.approx(0.5, abs=0.26)
    assert rf["falls_after_rise"] and rf["shape"] == "rises, then falls"
    assert rf["peak"] == pytest.approx(0.05, abs=0.01)
    up = endpoint.rise_and_fall(table, "up")
    assert up["rises"] and not up["falls"] and up["peak_sqrt_kl"] == pytest.approx(2.0)
    assert not up["falls_after_rise"] and up["shape"] == "rises"
    # the first resolved rise is the first point of the grid whose band lies above 0: for a line rising
    # from the first evaluation (d = 0.25) it is that evaluation, never a d below it where the curve
    # would only be the straight line from the start
    assert 0.25 <= up["rise_sqrt_kl"] < up["peak_sqrt_kl"] and 0 < up["rise_low"]
    assert up["rise"] == pytest.approx(0.1 * up["rise_sqrt_kl"], abs=0.005)
    # the values checked are reported: from the first evaluation every run reached to the reach
    assert up["d0"] == pytest.approx(0.25) and up["n_points"] == 8 and up["reach"] == pytest.approx(2.0)
    flat = endpoint.rise_and_fall(_table({"flat": lambda d: 0 * d}, rewards=("flat",), noise=0.005), "flat")
    assert not flat["rises"] and np.isnan(flat["rise_sqrt_kl"]) and np.isnan(flat["rise_low"])


def test_a_fall_before_the_rise_is_not_a_rise_then_fall():
    """Gold is 0.15 above the start from d = 0.5 on (a resolved rise); at the first evaluation and at the
    end each (seed, prompt) carries the same large offset, so those two values are unresolved alone but
    their difference, -0.2, is resolved: the end lies below the first value, a point before the rise.
    Gold was never resolvably bought and then lost, so the shape is "rises", not "rises, then falls"."""
    table = _table({"r": lambda d: 0.15 + 0 * d}, rewards=("r",), noise=0.002)
    units = sorted(set(zip(table.seed, table.prompt)))
    offset = dict(zip(units, np.linspace(-0.8, 0.8, len(units))[np.random.default_rng(1).permutation(len(units))]))
    o = np.array([offset[u] for u in zip(table.seed, table.prompt)])
    first, end = np.isclose(table.sqrt_kl, 0.25), np.isclose(table.sqrt_kl, 2.0)
    table.loc[first, "gold_change"] += 0.15 + o[first]
    table.loc[end, "gold_change"] += -0.05 + o[end]
    rf = endpoint.rise_and_fall(table, "r")
    # the first resolved rise is at the first checked d past 0.5: d_3 = 0.25 + 1.75 (3/7)^2
    assert rf["rises"] and rf["falls"] and rf["rise_sqrt_kl"] == pytest.approx(0.25 + 1.75 * 9 / 49)
    assert not rf["falls_after_rise"] and rf["shape"] == "rises"
    down = endpoint.rise_and_fall(_table({"down": lambda d: -0.1 * d}, rewards=("down",), noise=0.005), "down")
    assert down["shape"] == "falls" and not down["rises"]
    with pytest.raises(ValueError, match="n_points"):
        endpoint.rise_and_fall(table, "r", n_points=1)


def test_a_run_that_never_moved_is_named_not_skipped():
    table = _table({"raw": lambda d: 0.1 * d, "tn": lambda d: 0.1 * d})
    still = (table.reward_name == "raw") & (table.seed == 1) & (table.prompt == "p2")
    table.loc[still, "sqrt_kl"] = 0.0
    with pytest.raises(ValueError, match=r"never moved.*\(1, 'p2'\)"):
        endpoint.rise_and_fall(table, "raw")
    assert endpoint.rise_and_fall(table, "tn")["rises"]  # the other reward is unaffected


def test_the_first_resolved_rise_can_come_before_a_higher_unresolved_peak():
    """Rises early with little noise, then one seed jumps: the peak's band is wide, the first point's
    narrow; the first resolved rise is reported where it is, before the peak."""
    table = _table({"r": lambda d: 0.4 * min(d, 0.5)}, rewards=("r",), noise=0.002)
    late = (table.seed == 0) & (table.sqrt_kl >= 1.75)
    table.loc[late, "gold_change"] += 0.5  # a high, unresolved peak at the end
    rf = endpoint.rise_and_fall(table, "r")
    assert rf["peak_sqrt_kl"] == pytest.approx(2.0) and rf["peak_low"] < 0
    assert rf["rises"] and rf["rise_sqrt_kl"] == pytest.approx(0.25) and rf["rise_low"] > 0


def test_a_null_curves_largest_wiggle_is_not_called_a_rise():
    """Gold that never changes (noise per evaluation, per prompt and per seed): the simultaneous
    band keeps the chosen peak from being read as a rise in more than about 5% of data sets."""
    rises = 0
    for k in range(100):
        rng = np.random.default_rng(100 + k)
        table = _table(
            {"null": lambda d: 0 * d},
            rewards=("null",),
            seeds=(0, 1, 2),
            prompts=("a", "b", "c", "d"),
            noise=0.03,
            seed_noise=0.02,
            rng=rng,
        )
        rises += endpoint.rise_and_fall(table, "null")["rises"]
    assert rises <= 7, rises


def test_logs_must_start_at_the_base_model_and_carry_a_bounding_kl():
    keys, log = _log("ddpo", "r", 0, [1, 2], [0.5, 1.0], [[0.1, 0.1], [0.2, 0.2]])
    with pytest.raises(ValueError, match="base model"):
        endpoint.eval_table([(keys, log)])
    keys, log = _log("ddpo", "r", 0, [0, 1], [0, 1], [[0.1, 0.2], [0.3, 0.2]])
    assert isinstance(endpoint.eval_table([(keys, log)]), pd.DataFrame)
    log["evals"][1]["eval_kl_bound"] = False
    with pytest.raises(ValueError, match="does not bound"):
        endpoint.eval_table([(keys, log)])
    del log["evals"][1]["eval_kl"]
    with pytest.raises(ValueError, match="without the path KL"):
        endpoint.eval_table([(keys, log)])


def test_proxy_agreement_reads_a_perfect_a_useless_and_an_inverted_reward():
    rng = np.random.default_rng(0)
    gold = (rng.random((5, 40)) < 0.5).astype(float)
    bon = {
        "gold": gold,
        "reward:perfect": gold + rng.normal(0, 0.01, gold.shape),
        "reward:noise": rng.normal(size=gold.shape),
        "reward:inverted": -gold,
    }
    out = endpoint.proxy_agreement(bon, n_boot=200).set_index("reward")
    assert out.loc["perfect", "agreement"] == pytest.approx(1.0) and out.loc["inverted", "agreement"] == 0.0
    assert 0.3 < out.loc["noise", "agreement"] < 0.7 and (out.measure == "AUROC").all()
    judge = {"gold": rng.normal(size=(4, 30))}
    judge["reward:same"] = judge["gold"] * 2
    judge["reward:flat_on_one"] = judge["gold"].copy()
    judge["reward:flat_on_one"][0] = 1.0  # a constant reward on one prompt: that prompt is left out, not NaN
    out = endpoint.proxy_agreement(judge, n_boot=100).set_index("reward")
    assert out.loc["same", "agreement"] == pytest.approx(1) and out.loc["flat_on_one", "prompts"] == 3


def test_end_difference_takes_each_runs_last_evaluation():
    from textnorm.stats import endpoint

    rows = []
    for name, end_gain in (("raw", 0.1), ("tn", 0.3)):
        for seed in range(3):
            for p in ("a", "b", "c"):
                for step, kl in ((0, 0.0), (1, 3.5), (2, 1.0 + seed)):  # the KL at the end, not the largest
                    gain = 0.0 if step == 0 else (end_gain if step == 2 else 0.5) + 0.01 * seed
                    rows.append(
                        {
                            "method": "ddpo",
                            "reward_name": name,
                            "seed": seed,
                            "step": step,
                            "prompt": p,
                            "sqrt_kl": kl,
                            "gold_change": gain,
                        }
                    )
    table = pd.DataFrame(rows)
    out = endpoint.end_difference(table, [("raw", "tn")]).iloc[0]
    assert out.raw_end == pytest.approx(0.11) and out.textnorm_end == pytest.approx(0.31)
    assert out.difference == pytest.approx(0.2) and out.raw_sqrt_kl == pytest.approx(2.0)
    one = endpoint.end_change(table, "tn")
    assert one["change"] == pytest.approx(0.31) and one["sqrt_kl"] == pytest.approx(2.0)
    assert one["low"] < 0.31 < one["high"] and one["p"] < 0.05


def test_mde_at_holms_first_step_is_larger_and_has_80_percent_power():
    se, df = 0.01, 30.0
    plain, holm3 = endpoint.mde(se, df), endpoint.mde(se, df, alpha=0.05 / 3)
    assert holm3 > plain > 0
    # a true effect of that size is found by the level-alpha test in about 80% of data sets
    from scipy import stats

    rng = np.random.default_rng(0)
    t = (holm3 + se * rng.standard_t(df, 20000)) / se
    assert np.mean(np.abs(t) > stats.t.ppf(1 - 0.05 / 6, df)) == pytest.approx(0.8, abs=0.02)
    with pytest.raises(ValueError, match="alpha"):
        endpoint.mde(se, df, alpha=0.0)
