"""The study's images of fine-tuned models: the runs trained again reproduce their logs bit for bit,
step 0 is the base model (every run draws the same images from the same noise), a checkpoint is
chosen by KL, and the study refuses bad systems and never overwrites without the flag."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from textnorm import testing
from textnorm.experiments import overopt, study
from textnorm.synth import scenes

PROMPTS = ["two red circles", "three blue squares"]


def _grid():
    rewards = {
        "gold": {"spec": "gold"},
        "preference": {"spec": "raw:data/synth/proxy_preference"},
        "TextNorm(preference)": {"spec": "textnorm:data/synth/proxy_preference", "temperature": 3.0},
    }
    return testing.tiny_synth_grid(rewards, PROMPTS, lr=1e-3)


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    out = tmp_path_factory.mktemp("grid")
    overopt.run(out / "logs", _grid(), workers=2, progress=False)
    return overopt.load(out / "logs")


def test_checkpoint_near_picks_the_closest_logged_kl():
    log = {
        "evals": [
            {"step": 0, "eval_kl": 0.0},
            {"step": 1, "eval_kl": 0.25},
            {"step": 2, "eval_kl": 1.0},
            {"step": 3, "eval_kl": 4.0},
        ]
    }
    assert study.checkpoint_near(log, 0.0) == 0
    assert study.checkpoint_near(log, 0.6) == 1  # sqrt KL 0.5 is closer than 1.0
    assert study.checkpoint_near(log, 0.75) == 1  # equally close to 0.5 and 1.0: the earlier
    assert study.checkpoint_near(log, 9.0) == 3
    with pytest.raises(ValueError, match="no evaluation"):
        study.checkpoint_near({"evals": [{"step": 0}]}, 1.0)
    with pytest.raises(ValueError, match="finite"):
        study.checkpoint_near(log, float("nan"))


def test_study_images_reproduce_the_runs_and_share_the_base(logs, tmp_path):
    held = sorted(scenes.caption_text(c) for c in scenes.all_captions("counting"))[:3]
    runs = {name: overopt.run_name("ddpo", name, 0) for name in ("gold", "preference")}
    systems = [
        {"name": "base", "run": runs["gold"], "step": 0},
        {"name": "gold, end", "run": runs["gold"], "step": 3},
        {"name": "preference, 1", "run": runs["preference"], "step": 1},
        {"name": "preference, end", "run": runs["preference"], "step": 3},
    ]
    out = study.make_study(logs, systems, held, tmp_path / "study", n_images=3, workers=2)
    s = study.load_study(out)
    assert s["images"].shape[:3] == (4, 3, 3) and s["images"].dtype == np.uint8
    # the base model drawn by another run: the same images, KL exactly 0
    other = study.load_study(
        study.make_study(
            logs,
            [{"name": "base", "run": runs["preference"], "step": 0}],
            held,
            tmp_path / "other",
            n_images=3,
            workers=1,
        )
    )
    assert np.array_equal(s["images"][0], other["images"][0]) and not s["kl"][0].any() and not other["kl"].any()
    # trained models differ from the base and have a positive KL; gold is a verdict per image
    assert not np.array_equal(s["images"][3], s["images"][0]) and (s["kl"][1:] > 0).all()
    assert set(np.unique(s["gold"])) <= {0.0, 1.0}
    # trained again on this CPU: every logged number identical
    assert all(v == 0 for diffs in s["replay_max_diff"].values() for v in diffs.values())
    assert all({"loss", "reward", "kl", "gold"} <= set(diffs) for diffs in s["replay_max_diff"].values())
    assert [x["reward"] for x in s["systems"]] == [
        "gold",
        "gold",
        "raw:data/synth/proxy_preference",
        "raw:data/synth/proxy_preference",
    ]
    with pytest.raises(FileExistsError, match="overwrite"):
        study.make_study(logs, systems, held, out, n_images=3)
    # the chapter checks a study against the logs it reads: these pass, other logs are refused
    study.check_against_logs(s, logs)
    other = copy.deepcopy(logs)
    other["logs"][runs["preference"]]["config"]["reward"] = "gold"  # another run under the same name
    with pytest.raises(ValueError, match="another run"):
        study.check_against_logs(s, other)
    del other["logs"][runs["preference"]]
    with pytest.raises(ValueError, match="not in these logs"):
        study.check_against_logs(s, other)
    study.check_against_logs(s, logs, systems=systems)  # exactly the systems asked for
    with pytest.raises(ValueError, match="other systems"):
        study.check_against_logs(s, logs, systems=systems[:3])  # a study of more (or other) systems
    with pytest.raises(ValueError, match="other systems"):
        study.check_against_logs(s, logs, systems=[{**systems[0], "step": 1}, *systems[1:]])
    logged = copy.deepcopy(s)  # a system that recorded its KL: it must be the KL these logs hold at its step
    logged["systems"][3]["sqrt_kl_logged"] = 123.0
    with pytest.raises(ValueError, match="logged KL"):
        study.check_against_logs(logged, logs)


def test_study_refuses_bad_systems(logs, tmp_path):
    run = overopt.run_name("ddpo", "gold", 0)
    for systems, match in (
        ([{"name": "a", "run": "nope", "step": 0}], "no run"),
        ([{"name": "a", "run": run, "step": 4}], "step must be"),
        ([{"name": "a", "run": run, "step": 0}, {"name": "a", "run": run, "step": 1}], "distinct"),
    ):
        with pytest.raises(ValueError, match=match):
            study.make_study(logs, systems, ["two red circles"], tmp_path / "s")
    with pytest.raises(ValueError, match="distinct non-empty"):
        study.make_study(logs, [{"name": "a", "run": run, "step": 0}], ["x", "x"], tmp_path / "s")
    with pytest.raises(ValueError, match="trained on"):  # the grid trains on PROMPTS
        study.make_study(logs, [{"name": "a", "run": run, "step": 0}], PROMPTS[:1], tmp_path / "t")


def test_study_systems_take_each_pair_at_its_common_kl_and_at_the_end(logs):
    from textnorm.stats.endpoint import reach

    systems = study.study_systems(logs, pairs=[("preference", "TextNorm(preference)")])
    assert systems[0]["role"] == "base" and {s["role"] for s in systems[1:]} == {"raw", "textnorm"}
    assert len({(s["run"], s["step"]) for s in systems}) == len(systems)  # no model twice
    budget = min(reach(logs["evaluations"], n) for n in ("preference", "TextNorm(preference)"))
    for s in systems[1:]:
        log = logs["logs"][s["run"]]
        kl = {e["step"]: np.sqrt(e["eval_kl"]) for e in log["evals"]}
        assert s["sqrt_kl_logged"] == pytest.approx(kl[s["step"]])
        if s["checkpoint"] == "end":
            assert s["step"] == log["config"]["steps"]
        else:  # at the budget (possibly also the end of training)
            assert abs(kl[s["step"]] - budget) == min(abs(v - budget) for v in kl.values())
    # the run that sets the budget reaches it at its end: one system, not two copies
    assert any(s["checkpoint"] == "budget and end" for s in systems)
    # a name says where the model stands: its reward, round and own sqrt KL
    for s in systems[1:]:
        assert s["name"].endswith(f", round {s['step']}, sqrt KL {s['sqrt_kl_logged']:.2f}")
    with pytest.raises(ValueError, match="pairs"):
        study.study_systems(logs)  # the grid names none
    with pytest.raises(ValueError, match="a raw reward"):
        study.study_systems(logs, pairs=[("TextNorm(preference)", "preference")])
    with pytest.raises(ValueError, match="a raw reward"):
        study.study_systems(logs, pairs=[("preference", "gold")])
