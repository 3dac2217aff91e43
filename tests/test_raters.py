"""Simulated raters: fidelity reads clean renders as 1; raters follow the stated utility; the noise
calibration reaches the target kappa; bad inputs are refused."""

from __future__ import annotations

import numpy as np
import pytest

from textnorm.synth import raters, scenes

SYSTEMS = ["base", "better", "same"]
PROMPTS = [f"p{i}" for i in range(30)]
PAIRS = [("better", "base"), ("same", "base")]
W = {"alignment": (1.0, 0.2), "fidelity": (0.2, 1.0)}


def _sets(seed=0):
    rng = np.random.default_rng(seed)
    gold = (rng.random((3, len(PROMPTS), 4)) < np.array([0.3, 0.7, 0.3])[:, None, None]).astype(float)
    gold[2] = gold[0]  # "same" shows what the base shows
    fid = np.full_like(gold, 0.9)
    return gold, fid


def test_fidelity_of_clean_and_degraded_renders():
    clean = scenes.draw_batch(["two red circles", "a blue square"], seed=0)
    assert np.allclose(raters.fidelity(clean), 1.0)
    noisy = scenes.draw_batch(["two red circles", "a blue square"], seed=0, noise=0.3)
    washed = (clean * 0.5 + 64).astype(np.uint8)  # colours the renderer never draws
    assert (raters.fidelity(noisy) < 1).all() and (raters.fidelity(washed) < 0.5).all()


def test_raters_follow_the_utility_and_are_reproducible():
    gold, fid = _sets()
    j = raters.simulate(gold, fid, SYSTEMS, PROMPTS, PAIRS, W, sigma=0.001, raters=3, seed=1)
    assert len(j) == len(PROMPTS) * len(PAIRS) * 2 * 3
    a = j[(j.question == "alignment") & (j[["left", "right"]].isin(["better"]).any(axis=1))]
    wins = ((a.choice == "left") & (a.left == "better")) | ((a.choice == "right") & (a.right == "better"))
    losses = ((a.choice == "left") & (a.left == "base")) | ((a.choice == "right") & (a.right == "base"))
    assert wins.sum() > 3 * losses.sum()
    same = j[j[["left", "right"]].isin(["same"]).any(axis=1)]
    assert (same.choice == "tie").all()  # identical sets, noise below the tie margin
    again = raters.simulate(gold, fid, SYSTEMS, PROMPTS, PAIRS, W, sigma=0.001, raters=3, seed=1)
    assert j.equals(again)


def test_calibration_reaches_the_target_kappa():
    gold, fid = _sets()
    for target in (0.3, 0.5):
        sigma = raters.calibrate_sigma(gold, fid, SYSTEMS, PROMPTS, PAIRS, W, target, raters=3, seed=2)
        j = raters.simulate(gold, fid, SYSTEMS, PROMPTS, PAIRS, W, sigma, raters=3, seed=2)
        assert abs(raters.kappa(j) - target) < 0.02
    with pytest.raises(ValueError, match="target_kappa"):
        raters.calibrate_sigma(gold, fid, SYSTEMS, PROMPTS, PAIRS, W, 1.5)


def test_bad_inputs_are_refused():
    gold, fid = _sets()
    with pytest.raises(ValueError, match="unknown systems"):
        raters.simulate(gold, fid, SYSTEMS, PROMPTS, [("x", "base")], W, 0.1)
    with pytest.raises(ValueError, match="weights"):
        raters.simulate(gold, fid, SYSTEMS, PROMPTS, PAIRS, {"alignment": (0, 0)}, 0.1)
    with pytest.raises(ValueError, match="weights"):
        raters.simulate(gold, fid, SYSTEMS, PROMPTS, PAIRS, {"beauty": (1, 0)}, 0.1)
    with pytest.raises(ValueError, match="arrays"):
        raters.simulate(gold[:2], fid[:2], SYSTEMS, PROMPTS, PAIRS, W, 0.1)
    with pytest.raises(ValueError, match="sigma"):
        raters.simulate(gold, fid, SYSTEMS, PROMPTS, PAIRS, W, float("nan"))


def _named(j, mapping):
    out = j.copy()
    out["left"], out["right"] = out.left.map(mapping), out.right.map(mapping)
    return out


def test_kappa_by_hand_and_independent_of_the_systems_names():
    import pandas as pd
    from statsmodels.stats.inter_rater import fleiss_kappa

    # two raters, three items (prompts) of the pair (A, B): both say A; A and tie; B and B
    rows = [
        ("p0", "A", "B", "left"),
        ("p0", "B", "A", "right"),
        ("p1", "A", "B", "left"),
        ("p1", "A", "B", "tie"),
        ("p2", "B", "A", "left"),
        ("p2", "A", "B", "right"),
    ]
    j = pd.DataFrame(
        [
            {"rater": f"r{k % 2}", "prompt": p, "question": "alignment", "left": a, "right": b, "choice": c}
            for k, (p, a, b, c) in enumerate(rows)
        ]
    )
    # counts per item of (A wins, B wins, tie), and each item again the other way round
    counts = [[2, 0, 0], [1, 0, 1], [0, 2, 0]]
    counts += [[b, a, t] for a, b, t in counts]
    assert raters.kappa(j) == pytest.approx(fleiss_kappa(counts, method="fleiss"))
    assert raters.kappa(_named(j, {"A": "z", "B": "a"})) == pytest.approx(raters.kappa(j))
    gold, fid = _sets()
    big = raters.simulate(gold, fid, SYSTEMS, PROMPTS, PAIRS, W, sigma=0.1, raters=3, seed=3)
    renamed = _named(big, {"base": "zz", "better": "aa", "same": "mm"})
    assert raters.kappa(renamed) == pytest.approx(raters.kappa(big))


def test_a_rater_sees_a_set_the_same_way_in_every_pair():
    gold, fid = _sets()
    pairs = [("better", "base"), ("same", "base"), ("better", "same")]
    j = raters.simulate(gold, fid, SYSTEMS, PROMPTS, pairs, W, sigma=0.3, raters=2, tie_margin=0.0, seed=4)

    def beats(g, a, b):
        x = g[((g.left == a) & (g.right == b)) | ((g.left == b) & (g.right == a))].iloc[0]
        return (x.choice == "left") == (x.left == a)

    for _, g in j.groupby(["rater", "prompt", "question"]):  # no cycle a > b > c > a within one rater
        wins = {(a, b): beats(g, a, b) for a, b in pairs}
        order = sorted(
            SYSTEMS,
            key=lambda s: -sum(wins[(a, b)] if a == s else (not wins[(a, b)]) if b == s else 0 for a, b in pairs),
        )
        for a, b in pairs:
            assert wins[(a, b)] == (order.index(a) < order.index(b))


def test_calibration_refuses_raters_who_only_tie():
    gold, fid = _sets()
    with pytest.raises(ValueError, match="not a number"):
        raters.calibrate_sigma(gold, fid, SYSTEMS, PROMPTS, [("same", "base")], W, 0.4, tie_margin=1e9)
