"""The longer gold control read beside its grid (textnorm.experiments.longer): the same numbers as the endpoint
functions on the runs themselves, the grid's runs recognised when continued, and every inconsistent folder refused
with the parameter that leaves it out."""

from __future__ import annotations

import pytest

from textnorm.experiments import longer, overopt
from textnorm.stats import endpoint


def _ddpo(steps: int) -> dict:
    return {
        "method": "ddpo",
        "steps": steps,
        "prompts": ["four green circles", "three green circles", "a blue circle and a red square"],
        "n_prompts": 3,
        "samples_per_prompt": 2,
        "batch_size": 6,
        "lr": 3e-4,
        "lora_rank": 2,
        "sample_steps": 4,
        "min_train_sigma": 0.05,
        "untrained_steps": "base",
        "eval_every": 1,
        "eval_samples": 2,
        "heldout_samples": 1,
    }


def _gold_only(steps: int, seeds: list[int], **ddpo) -> dict:
    return {
        "model": "data/synth/generator",
        "rewards": {"gold": {"spec": "gold"}},
        "methods": {"ddpo": {**_ddpo(steps), **ddpo}},
        "seeds": seeds,
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("longer")
    grid = {**_gold_only(2, [0, 1]), "rewards": {"gold": {"spec": "gold"}, "random": {"spec": "random"}}}
    out = {"grid": overopt.load(overopt.run(root / "grid", grid, workers=2, progress=False))}
    for key, seeds in (("a", [0]), ("b", [1]), ("fresh", [3])):
        out[key] = str(overopt.run(root / key, _gold_only(3, seeds), workers=1, progress=False))
    out["root"] = root
    return out


def test_the_summary_is_the_endpoint_functions_on_the_runs(runs):
    got = longer.read(runs["grid"], {runs["a"]: "first", runs["b"]: "second"}, {runs["fresh"]: "fresh"})
    assert got["rounds"] == (2, 3) and got["seeds"] == [0, 1] and got["complete"] and got["prompts"] == 3
    assert [q["label"] for q in got["parts"]] == ["all of the grid's seeds", "first", "second"]
    assert [q["seeds"] for q in got["parts"]] == [[0, 1], [0], [1]]
    E = got["evaluations"]
    assert got["parts"][0]["end"] == endpoint.end_change(E, "gold", "ddpo")
    assert got["parts"][2]["end"] == endpoint.end_change(E[E.seed == 1], "gold", "ddpo")
    # the longer runs share the grid's seeds and settings: their first rounds are the grid's runs, continued
    gm = got["grid_match"]
    assert gm["max_diff"] == 0 and gm["seeds"] == 2 and gm["step"] == 2
    conf = got["confirm"]
    EC = overopt.load(runs["fresh"])["evaluations"]
    assert conf["seeds"] == [3] and conf["labels"] == ["fresh"]
    assert conf["end"] == endpoint.end_change(EC, "gold", "ddpo")
    assert conf["mde"] == endpoint.mde(conf["end"]["se"], conf["end"]["df"])
    one = longer.read(runs["grid"], {runs["b"]: "second"})
    assert (
        not one["complete"]
        and one["confirm"] is None
        and one["parts"][0]["label"] == "not all of the grid's seeds: second"
    )


def test_inconsistent_folders_are_refused_naming_the_parameter(runs):
    root = runs["root"]
    with pytest.raises(
        ValueError, match=r"confirm_gold \[.*\]: seeds \[0\] were run before \(in the grid or longer_gold\)"
    ):
        longer.read(runs["grid"], {runs["b"]: "b"}, {runs["a"]: "seen"})
    short = str(overopt.run(root / "short", _gold_only(2, [4]), workers=1, progress=False))
    with pytest.raises(ValueError, match="longer_gold .*: 2 rounds, not more than the grid's 2"):
        longer.read(runs["grid"], {short: "short"})
    other = str(overopt.run(root / "other", _gold_only(3, [5], lr=1e-3), workers=1, progress=False))
    with pytest.raises(ValueError, match=r"differs from the grid's gold control in \['lr'\].*longer_gold = \{\}"):
        longer.read(runs["grid"], {other: "other"})
    with pytest.raises(
        ValueError, match=r"confirm_gold .*another grid than longer_gold's \(they differ in \['methods'\]\)"
    ):
        longer.read(runs["grid"], {runs["a"]: "a"}, {other: "other"})
    with pytest.raises(ValueError, match="longer_gold .*expected DDPO runs on the gold judge alone"):
        longer.read(runs["grid"], {str(root / "grid"): "the grid itself"})


def test_folders_spelled_with_a_trailing_slash_and_runs_of_other_seeds(runs):
    got = longer.read(runs["grid"], {runs["a"] + "/": "first", runs["b"]: "second"})
    assert [(q["label"], q["seeds"]) for q in got["parts"][1:]] == [("first", [0]), ("second", [1])]
    other = longer.read(runs["grid"], {runs["fresh"]: "a seed the grid did not run"})
    assert other["grid_match"] is None and other["seeds"] == [3] and not other["complete"]


def test_a_grid_without_a_ddpo_gold_control_and_the_parameters_named(runs):
    no_gold = {**runs["grid"], "evaluations": runs["grid"]["evaluations"].query("reward_name != 'gold'")}
    with pytest.raises(ValueError, match="^where: the grid has no DDPO gold control"):
        longer.read(no_gold, {runs["a"]: "a"}, params=("where", "there"))
    with pytest.raises(ValueError, match=r"^there \[.*\]: seeds \[1\] were run before \(in the grid or where\)"):
        longer.read(runs["grid"], {runs["a"]: "a"}, {runs["b"]: "b"}, params=("where", "there"))
