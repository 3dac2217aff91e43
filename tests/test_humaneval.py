"""Human-evaluation statistics against scipy/statsmodels and textbook cases; input validation."""

from __future__ import annotations

import math

import krippendorff
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from textnorm.stats import humaneval as he


def judgments(rows):
    return pd.DataFrame(rows, columns=list(he.COLUMNS))


def simulated(n_prompts=40, per_prompt=6, p_a=0.65, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_prompts):
        for r in range(per_prompt):
            u = rng.random()
            a_left = rng.random() < 0.5
            choice = "tie" if u < 0.1 else ("a" if u < 0.1 + 0.9 * p_a else "b")
            left, right = ("A", "B") if a_left else ("B", "A")
            if choice == "tie":
                c = "tie"
            else:
                c = "left" if (choice == "a") == a_left else "right"
            rows.append((f"r{r}", f"p{p}", left, right, c))
        rows.append(("r0", f"p{p}", "B", "C", "left" if rng.random() < 0.6 else "right"))
    return judgments(rows)


def test_outcomes_count_both_sides():
    df = judgments(
        [
            ("r", "p", "A", "B", "left"),
            ("r", "p", "B", "A", "left"),
            ("r", "p", "B", "A", "right"),
            ("r", "q", "A", "B", "tie"),
        ]
    )
    assert he.outcomes(df, "A", "B") == (2, 1, 1)
    assert he.outcomes(df, "B", "A") == (1, 2, 1)


def exact_sign_p(k: int, n: int) -> float:
    """Two-sided exact sign test from first principles: the probability under Binomial(n, 1/2) of
    every outcome no more likely than k (what binomtest's 'two-sided' means)."""
    pmf = [math.comb(n, i) / 2**n for i in range(n + 1)]
    return min(1.0, sum(q for q in pmf if q <= pmf[k] * (1 + 1e-7)))


def test_sign_test_rules():
    assert he.sign_test(9, 1) == pytest.approx(22 / 1024)  # textbook: 2 (1 + 10) / 2^10
    assert he.sign_test(30, 15, 10, "drop") == pytest.approx(exact_sign_p(30, 45))
    assert he.sign_test(30, 15, 10, "split") == pytest.approx(exact_sign_p(35, 55))
    assert he.sign_test(30, 15, 11, "split") == pytest.approx(exact_sign_p(35, 55))  # one tie dropped
    assert he.sign_test(0, 0, 3) == 1.0


def test_compare_matches_statsmodels():
    df = simulated()
    out = he.compare(df).set_index(["system_a", "system_b"])
    row = out.loc[("A", "B")]
    w, n_lost = int(row.wins_a), int(row.wins_b)
    from statsmodels.stats.proportion import proportion_confint

    assert (row.wilson_low, row.wilson_high) == pytest.approx(proportion_confint(w, w + n_lost, method="wilson"))
    assert (row.cp_low, row.cp_high) == pytest.approx(stats.binomtest(w, w + n_lost).proportion_ci(method="exact"))
    assert row.p_sign_drop == pytest.approx(stats.binomtest(w, w + n_lost).pvalue)
    raw = out.p_sign_drop.to_numpy()
    assert np.all(out.p_sign_drop_holm.to_numpy() >= raw - 1e-15)
    assert len(out) == 2  # A-C never compared: left out


def test_textbook_interval():
    # Wilson interval for 8 successes in 10 (Agresti & Coull style example): about [0.490, 0.943]
    df = judgments(
        [("r", f"p{i}", "A", "B", "left") for i in range(8)] + [("r", f"q{i}", "A", "B", "right") for i in range(2)]
    )
    row = he.compare(df).iloc[0]
    assert row.wilson_low == pytest.approx(0.4902, abs=1e-3) and row.wilson_high == pytest.approx(0.9433, abs=1e-3)


def test_bradley_terry_matches_plain_logit_and_recovers_truth():
    rng = np.random.default_rng(3)
    truth = {"A": 0.0, "B": 0.8, "C": -0.5}
    rows = []
    for i in range(3000):
        a, b = rng.choice(list(truth), 2, replace=False)
        win = rng.random() < 1 / (1 + np.exp(-(truth[a] - truth[b])))
        rows.append((f"r{i % 5}", f"p{i % 150}", a, b, "left" if win else "right"))
    df = judgments(rows)
    bt = he.bradley_terry(df, reference="A").set_index("system")
    assert bt.loc["B", "strength"] == pytest.approx(0.8, abs=0.15)
    assert bt.loc["C", "strength"] == pytest.approx(-0.5, abs=0.15)
    X = np.column_stack([(df.left == s).astype(float) - (df.right == s).astype(float) for s in ("B", "C")])
    plain = sm.Logit((df.choice == "left").astype(float), X).fit(disp=0)
    assert bt.loc[["B", "C"], "strength"].to_numpy() == pytest.approx(plain.params.to_numpy(), abs=1e-6)
    boot = he.bradley_terry_bootstrap(df, reference="A", n_boot=100).set_index("system")
    assert boot.loc["B", "boot_low"] < 0.8 < boot.loc["B", "boot_high"]


def test_clustered_errors_grow_with_within_prompt_correlation():
    rng = np.random.default_rng(4)
    rows = []
    for p in range(60):  # each prompt has its own strong preference: judgments within it agree
        pref = rng.random() < 0.6
        for r in range(10):
            rows.append((f"r{r}", f"p{p}", "A", "B", "left" if (rng.random() < 0.95) == pref else "right"))
    df = judgments(rows)
    clustered = he.bradley_terry(df, reference="B").set_index("system").loc["A", "se"]
    X = np.ones((len(df), 1))
    naive = np.asarray(sm.GLM((df.choice == "left").astype(float), X, family=sm.families.Binomial()).fit().bse)[0]
    assert clustered > 2 * naive


def test_krippendorff_against_package():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 3, size=(50, 4)).astype(float)
    x[rng.random(x.shape) < 0.1] = np.nan
    ours = he.krippendorff_alpha_nominal(x)
    ref = krippendorff.alpha(reliability_data=x.T, level_of_measurement="nominal")
    assert ours == pytest.approx(ref, abs=1e-9)
    perfect = np.repeat(rng.integers(0, 3, size=(20, 1)), 3, axis=1).astype(float)
    assert he.krippendorff_alpha_nominal(perfect) == 1.0


def test_power():
    # the power is the probability of the rejection region, summed here from first principles
    for n, p in [(20, 0.7), (31, 0.4), (10, 0.5)]:
        region = [k for k in range(n + 1) if exact_sign_p(k, n) <= 0.05]
        expected = sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in region)
        assert he.sign_test_power(n, p) == pytest.approx(expected)
    res = he.judgments_needed(2 / 3, 0.05, 0.8)
    n = res["n_exact"]
    assert n is not None and all(he.sign_test_power(m, 2 / 3) >= 0.8 for m in range(n, n + 11))
    assert abs(n - res["n_normal_approx"]) < 20
    # simulation check of the power at that n
    rng = np.random.default_rng(0)
    wins = rng.binomial(n, 2 / 3, size=4000)
    sim = np.mean([stats.binomtest(int(w), n).pvalue <= 0.05 for w in wins[:1000]])
    assert sim == pytest.approx(he.sign_test_power(n, 2 / 3), abs=0.04)


@pytest.mark.parametrize(
    "rows, message",
    [
        ([("r", "p", "A", "B", "maybe")], "unknown choice"),
        ([("r", "p", "A", "A", "left")], "with itself"),
        ([("r", "", "A", "B", "left")], "empty fields"),
    ],
)
def test_validation(rows, message):
    with pytest.raises(he.JudgmentError, match=message):
        he.validate(judgments(rows))


def test_load_judgments_errors(tmp_path):
    with pytest.raises(he.JudgmentError, match="does not exist"):
        he.load_judgments(tmp_path / "none.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(he.JudgmentError, match="empty"):
        he.load_judgments(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("rater,prompt,left,right,choice\n")
    with pytest.raises(he.JudgmentError, match="no judgments"):
        he.load_judgments(header_only)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("rater,prompt,system1,system2,choice\nr,p,A,B,left\n")
    with pytest.raises(he.JudgmentError, match="missing column"):
        he.load_judgments(wrong)
    good = tmp_path / "good.csv"
    good.write_text("rater,prompt,left,right,choice\nr1,a cat,A,B, Left \n")
    assert he.load_judgments(good).choice.tolist() == ["left"]


# ---------------------------------------------------------------- degenerate data: errors, not numbers
def _rows(spec):
    """spec: (prompt, left, right, choice) tuples -> judgments table."""
    return pd.DataFrame(
        [{"rater": f"r{i % 3}", "prompt": p, "left": a, "right": b, "choice": c} for i, (p, a, b, c) in enumerate(spec)]
    )


def test_ten_to_nothing_is_separation_not_a_strength():
    df = _rows([(f"p{i}", "a", "b", "left") for i in range(10)])
    with pytest.raises(ValueError, match="separation"):
        he.bradley_terry(df)
    with pytest.raises(ValueError, match="separation"):
        he.bradley_terry_bootstrap(df, n_boot=10)
    # the exact sign test answers the question instead: 2 * 0.5**10
    row = he.compare(df).iloc[0]
    assert row.p_sign_drop == pytest.approx(2 * 0.5**10)


def test_unconnected_systems_and_all_ties():
    df = _rows([("p1", "a", "b", "left"), ("p2", "b", "a", "left"), ("p1", "c", "d", "left"), ("p2", "d", "c", "left")])
    with pytest.raises(ValueError, match="2 unconnected groups"):
        he.bradley_terry(df)
    ties = _rows([("p1", "a", "b", "tie"), ("p2", "a", "b", "tie")])
    with pytest.raises(ValueError, match="every judgment is a tie"):
        he.bradley_terry(ties)
    assert np.isnan(he.compare(ties).iloc[0].win_rate_a)


def test_one_prompt_has_no_clusters_and_no_bootstrap():
    df = _rows([("p1", "a", "b", c) for c in ("left", "left", "right", "left", "right")])
    with pytest.raises(ValueError, match="at least\\s+two prompts"):
        he.bradley_terry(df)
    with pytest.raises(ValueError, match="at least two\\s+prompts"):
        he.bradley_terry_bootstrap(df, n_boot=50)


def test_bootstrap_rejects_no_draws_and_counts_left_out_resamples():
    df = _rows(
        [
            ("p1", "a", "b", "left"),
            ("p1", "a", "b", "right"),
            ("p2", "a", "b", "left"),
            ("p2", "a", "b", "left"),
            ("p3", "a", "b", "right"),
            ("p3", "a", "b", "left"),
        ]
    )
    for n in (0, -5):
        with pytest.raises(ValueError, match="n_boot must be an integer >= 1"):
            he.bradley_terry_bootstrap(df, n_boot=n)
    boot = he.bradley_terry_bootstrap(df, n_boot=200, seed=0)
    used = int(boot.n_boot.iloc[0])
    # resamples of p2 only (a never lost) have no finite fit: (1/3)^3 of them, about 7 of 200
    assert 180 < used < 200
    assert boot.boot_low.iloc[1] < boot.boot_high.iloc[1] and np.isfinite(boot.boot_high.iloc[1])


def test_single_row():
    df = _rows([("p1", "a", "b", "left")])
    with pytest.raises(ValueError, match="separation"):
        he.bradley_terry(df)
    assert he.compare(df).iloc[0].p_sign_drop == 1.0


def test_identical_prompts_give_no_clustered_errors_and_levels_are_checked():
    # every prompt the same 2-1 pattern: the clustered variance is zero, not a precise estimate
    df = _rows([(f"p{i}", "a", "b", c) for i in range(4) for c in ("left", "left", "right")])
    with pytest.raises(ValueError, match="degenerate"):
        he.bradley_terry(df)
    for level in (0, 1, 1.5, True):
        with pytest.raises(ValueError, match="level must be"):
            he.compare(df, level=level)
    with pytest.raises(ValueError, match="no pair"):
        he.compare(df, pairs=[])
    ties_elsewhere = _rows([("p1", "a", "b", "left"), ("p1", "a", "b", "right"), ("p2", "a", "b", "tie")])
    with pytest.raises(ValueError, match="at least two prompts"):
        he.bradley_terry_bootstrap(ties_elsewhere, n_boot=10)
    with pytest.raises(ValueError, match="n_boot must be an integer"):
        he.bradley_terry_bootstrap(df, n_boot=True)


# ---------------------------------------------------------------- the prompt as the unit
def _by_prompt_rows():
    rows = []
    for p, outcomes_ in {"p1": "aaa", "p2": "aab", "p3": "bbt"}.items():
        for r, o in enumerate(outcomes_):
            left, right = ("a", "b") if r % 2 == 0 else ("b", "a")
            choice = "tie" if o == "t" else ("left" if (o == "a") == (left == "a") else "right")
            rows.append({"rater": f"r{r}", "prompt": p, "left": left, "right": right, "choice": choice})
    return judgments(rows)


def test_compare_by_prompt_counts_prompts_by_hand():
    out = he.compare_by_prompt(_by_prompt_rows(), [("a", "b")], n_boot=200).iloc[0]
    # prompts: a wins p1 (3-0) and p2 (2-1), loses p3 (0-2 and a tie); pooled win rate 5 / 8
    assert (out.prompts, out.prompt_wins_a, out.prompt_wins_b, out.prompt_ties) == (3, 2, 1, 0)
    assert out.win_rate_a == pytest.approx(5 / 8)
    assert out.p_sign_prompts == pytest.approx(1.0)  # 2 of 3 prompts: P(X >= 2 or X <= 1) = 1
    assert out.boot_low <= 5 / 8 <= out.boot_high
    flipped = he.compare_by_prompt(_by_prompt_rows(), [("b", "a")], n_boot=200).iloc[0]
    assert flipped.win_rate_a == pytest.approx(3 / 8) and flipped.prompt_wins_a == 1


def test_more_raters_with_the_same_verdicts_narrow_wilson_but_not_the_prompt_interval():
    df = simulated(n_prompts=30, per_prompt=4, p_a=0.6, seed=3)
    copies = pd.concat([df.assign(rater=df.rater + f"_{k}") for k in range(10)], ignore_index=True)
    one, ten = he.compare(df), he.compare(copies)
    assert (ten.wilson_high - ten.wilson_low).iloc[0] < 0.5 * (one.wilson_high - one.wilson_low).iloc[0]
    pone, pten = he.compare_by_prompt(df, n_boot=300, seed=1), he.compare_by_prompt(copies, n_boot=300, seed=1)
    assert pten.boot_low.iloc[0] == pytest.approx(pone.boot_low.iloc[0])
    assert pten.boot_high.iloc[0] == pytest.approx(pone.boot_high.iloc[0])
    assert pten.p_sign_prompts.iloc[0] == pytest.approx(pone.p_sign_prompts.iloc[0])


def test_unclustered_bradley_terry_errors_shrink_with_copies_clustered_do_not():
    df = simulated(n_prompts=30, per_prompt=4, p_a=0.6, seed=3)
    copies = pd.concat([df.assign(rater=df.rater + f"_{k}") for k in range(4)], ignore_index=True)
    naive1, naive4 = he.bradley_terry(df, cluster=False), he.bradley_terry(copies, cluster=False)
    clus1, clus4 = he.bradley_terry(df), he.bradley_terry(copies)
    assert naive4.se.iloc[1] == pytest.approx(naive1.se.iloc[1] / 2, rel=1e-4)  # 4x the data: half the error
    assert clus4.se.iloc[1] == pytest.approx(clus1.se.iloc[1], rel=0.05)  # same prompts: same error
    with pytest.raises(ValueError, match="no judgment compares"):
        he.compare_by_prompt(df, [("a", "nobody")])


def test_judgments_needed_above_a_threshold():
    from textnorm.stats import humaneval as he

    n = he.judgments_needed_above(0.8, 2 / 3, alpha=0.05, power=0.8)
    assert he.above_power(n, 0.8, 2 / 3) >= 0.8 and he.above_power(n // 2, 0.8, 2 / 3) < 0.8
    # a rate closer to the threshold needs more; against 1/2 the one-sided test needs fewer than the two-sided
    assert he.judgments_needed_above(0.75, 2 / 3) > n
    assert he.judgments_needed_above(2 / 3, 0.5) <= he.judgments_needed(2 / 3)["n_exact"]
    # the test's size: at p = p0 it rejects at most alpha of the time
    assert he.above_power(200, 2 / 3, 2 / 3, alpha=0.05) <= 0.05
    with pytest.raises(ValueError, match="p0"):
        he.judgments_needed_above(0.6, 2 / 3)


def test_design_effect_from_independent_and_clustered_judgments():
    from textnorm.stats import humaneval as he

    rng = np.random.default_rng(0)
    rows = []
    for p in range(60):
        shared = rng.random() < 0.6  # clustered: the prompt decides, every rater agrees
        for r in range(5):
            independent = rng.random() < 0.6
            rows.append(
                {
                    "rater": f"r{r}",
                    "prompt": f"p{p}",
                    "left": "A",
                    "right": "B",
                    "choice": "left" if independent else "right",
                }
            )
            rows.append(
                {
                    "rater": f"r{r}",
                    "prompt": f"p{p}",
                    "left": "C",
                    "right": "D",
                    "choice": "left" if shared else "right",
                }
            )
    df = pd.DataFrame(rows)
    assert he.design_effect(df, "A", "B", n_boot=4000) < 1.4  # about 1 (floored at 1)
    assert 3.5 < he.design_effect(df, "C", "D", n_boot=4000) < 6.5  # about the 5 raters per prompt


def test_strongest_by_bradley_terry_and_by_share_won_when_no_fit_exists():
    df = simulated(n_prompts=30, p_a=0.7)  # A beats B about 70% of decided judgments, B beats C about 60%
    name, table, rule = he.strongest(df, ["A", "B"], reference="B")
    assert (name, rule) == ("A", "Bradley-Terry strength")
    assert list(table.index) == ["A", "B"] and table.strength.iloc[0] > 0
    # separation: "a" won every judgment, so no finite fit; the share won chooses, and says why
    rows = [(f"p{i}", "a", "b", "left") for i in range(6)] + [(f"p{i}", "b", "c", "right") for i in range(6)]
    rows += [(f"p{i}", "c", "b", "tie") for i in range(3)]
    name, table, rule = he.strongest(_rows(rows), ["b", "c"])
    assert name == "c" and rule.startswith("share of decided judgments won (no finite Bradley-Terry fit: separation")
    assert table.loc["c", "share won"] == pytest.approx(1.0) and table.loc["b", "share won"] == pytest.approx(0.0)
    assert table.loc["b", "decided judgments"] == 12  # ties are not decided
    with pytest.raises(ValueError, match="not judged"):
        he.strongest(_rows(rows), ["b", "z"])
    # a fit that fails for another reason is an error, not a switch of rule: a misspelt reference, one prompt
    with pytest.raises(ValueError, match="reference 'Z'"):
        he.strongest(df, ["A", "B"], reference="Z")
    one_prompt = _rows(
        [("p0", "a", "b", "left"), ("p0", "a", "b", "right"), ("p0", "b", "c", "left"), ("p0", "b", "c", "right")]
    )
    assert he.fit_problem(one_prompt) is None  # a finite fit exists, but no clustered errors
    with pytest.raises(ValueError, match="at least two prompts"):
        he.strongest(one_prompt, ["a", "b"])
