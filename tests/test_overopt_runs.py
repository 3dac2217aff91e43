"""The over-optimisation grid's runner: logs written once, never overwritten by accident, resumed
exactly, and refused when incomplete or tampered with."""

from __future__ import annotations

import copy
import json

import pandas as pd
import pytest

from textnorm.experiments import overopt


@pytest.fixture(scope="module")
def tiny_grid():
    grid = overopt.default_grid()
    grid["rewards"] = {k: grid["rewards"][k] for k in ("gold", "preference")}
    grid.pop("pairs", None)
    grid["methods"] = {
        "ddpo": {
            **grid["methods"]["ddpo"],
            "steps": 2,
            "n_prompts": 2,
            "samples_per_prompt": 2,
            "batch_size": 4,
            "eval_every": 2,
            "eval_samples": 1,
            "heldout_samples": 1,
            "sample_steps": 4,
        }
    }
    grid["method_rewards"] = {}
    grid["seeds"] = [0]
    grid["bon"] = {"prompts": 2, "pool": 3, "sample_steps": 4, "seed": 0}
    return grid


@pytest.fixture(scope="module")
def logs(tiny_grid, tmp_path_factory):
    return overopt.run(tmp_path_factory.mktemp("oo") / "logs", tiny_grid, workers=1, progress=False)


def test_logs_hold_every_run_and_the_pool(logs, tiny_grid):
    L = overopt.load(logs)
    assert set(L["logs"]) == {"ddpo__gold__seed0", "ddpo__preference__seed0"}
    assert set(L["steps"].step) == {0, 1} and L["steps"].kl.notna().all()
    assert L["evals"].eval_gold_after.notna().all()
    assert L["bon"]["gold"].shape == (2, 3) and set(L["bon"]) >= {"prompts", "reward:preference"}
    assert L["grid"] == json.loads(json.dumps(tiny_grid))


def test_the_wall_time_is_recorded_and_adds_up_over_resumes(logs, tiny_grid, tmp_path):
    wall = json.loads((logs / "wall.json").read_text())
    assert wall["seconds"] > 0 and wall["workers"] == 1
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(logs, copy)
    (copy / "runs" / "ddpo__gold__seed0.json").unlink()  # one run lost: a resume redoes it and adds its time
    overopt.run(copy, tiny_grid, workers=1, resume=True, progress=False)
    assert json.loads((copy / "wall.json").read_text())["seconds"] > wall["seconds"]


def test_an_existing_folder_is_not_overwritten(logs, tiny_grid):
    with pytest.raises(FileExistsError, match="resume"):
        overopt.run(logs, tiny_grid, workers=1, progress=False)
    other = {**tiny_grid, "seeds": [1]}
    with pytest.raises(ValueError, match="another grid"):
        overopt.run(logs, other, workers=1, progress=False, resume=True)


def test_resume_removes_the_temporary_files_of_killed_writes(logs, tiny_grid):
    stale = [logs / "runs" / ".ddpo__gold__seed0.json.k2x9", logs / ".bon.npz.a1b2"]
    for p in stale:
        p.write_bytes(b"partial")
    overopt.run(logs, tiny_grid, workers=1, progress=False, resume=True)  # nothing missing: only the clean-up
    assert not any(p.exists() for p in stale)


def test_resume_reruns_only_what_is_missing_and_gets_the_same_numbers(logs, tiny_grid):
    path = logs / "runs" / "ddpo__preference__seed0.json"
    before = json.loads(path.read_text())
    kept = (logs / "runs" / "ddpo__gold__seed0.json").stat().st_mtime_ns
    path.unlink()
    overopt.run(logs, tiny_grid, workers=1, progress=False, resume=True)
    after = json.loads(path.read_text())
    assert (logs / "runs" / "ddpo__gold__seed0.json").stat().st_mtime_ns == kept
    for a, b in zip(before["rows"], after["rows"], strict=True):
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}


def test_replay_is_bit_for_bit_on_one_machine(logs):
    L = overopt.load(logs)
    [(diffs, weights)] = overopt.replay([L["logs"]["ddpo__preference__seed0"]], [2])
    assert diffs and all(v == 0 for v in diffs.values()) and weights
    with pytest.raises(ValueError, match="holds 2 steps"):
        overopt.replay([L["logs"]["ddpo__preference__seed0"]], [3])


def test_an_incomplete_grid_is_refused(logs, tmp_path):
    import shutil

    copy_ = tmp_path / "copy"
    shutil.copytree(logs, copy_)
    (copy_ / "runs" / "ddpo__gold__seed0.json").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete"):
        overopt.load(copy_)
    with pytest.raises(FileNotFoundError, match="no grid.json"):
        overopt.load(tmp_path)


def test_bad_grids_fail_before_any_run(tiny_grid, tmp_path):
    bad = copy.deepcopy(tiny_grid)
    bad["method_rewards"] = {"ddpo": ["nope"]}
    with pytest.raises(ValueError, match="unknown rewards"):
        overopt.run(tmp_path / "a", bad, workers=1, progress=False)
    bad = copy.deepcopy(tiny_grid)
    bad["methods"]["ddpo"]["lr"] = float("nan")
    with pytest.raises(ValueError, match="lr must be a finite"):
        overopt.run(tmp_path / "b", bad, workers=1, progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_bon_prompts_are_held_out_and_fixed():
    from textnorm.finetune.task import make_task

    a, b = overopt.bon_prompts(5), overopt.bon_prompts(5)
    assert a == b and len(set(a)) == 5 and not set(a) & set(make_task("synth").train_prompts)
    with pytest.raises(ValueError, match="holds out"):
        overopt.bon_prompts(10_000)


def test_logs_that_disagree_with_the_grid_are_refused(logs, tmp_path):
    import shutil

    copy_ = tmp_path / "copy"
    shutil.copytree(logs, copy_)
    path = copy_ / "runs" / "ddpo__gold__seed0.json"
    log = json.loads(path.read_text())
    path.write_text(json.dumps({**log, "rows": log["rows"][:1]}))
    with pytest.raises(ValueError, match="truncated"):
        overopt.load(copy_)
    path.write_text(json.dumps({**log, "config": {**log["config"], "lr": 1.0}}))
    with pytest.raises(ValueError, match="other settings"):
        overopt.load(copy_)


def test_overwrite_swaps_in_the_new_logs_only_at_the_end(logs, tiny_grid, tmp_path):
    import shutil

    copy_ = tmp_path / "copy"
    shutil.copytree(logs, copy_)
    marker = copy_ / "runs" / "ddpo__gold__seed0.json"
    marker.write_text(marker.read_text() + " ")  # the old file, marked
    overopt.run(copy_, tiny_grid, workers=1, progress=False, overwrite=True)
    assert not marker.read_text().endswith("\n ") and not (tmp_path / "copy.new").exists()
    assert not (tmp_path / "copy.old").exists()
    with pytest.raises(ValueError, match="not both"):
        overopt.run(copy_, tiny_grid, workers=1, progress=False, overwrite=True, resume=True)


def test_a_killed_overwrite_goes_on_where_it_stopped(logs, tiny_grid, tmp_path):
    import shutil

    copy_, new = tmp_path / "copy", tmp_path / "copy.new"
    shutil.copytree(logs, copy_)
    shutil.copytree(logs, new)  # what a kill leaves: the same grid, one run not written yet
    (new / "runs" / "ddpo__gold__seed0.json").unlink()
    kept = new / "runs" / "ddpo__preference__seed0.json"
    kept.write_text(kept.read_text() + " ")  # marked: a finished run is kept, not run again
    overopt.run(copy_, tiny_grid, workers=1, progress=False, overwrite=True)
    assert (copy_ / "runs" / "ddpo__preference__seed0.json").read_text().endswith("\n ")
    assert (copy_ / "runs" / "ddpo__gold__seed0.json").exists() and not new.exists()
    # a folder left by another grid is not resumed
    other = copy.deepcopy(tiny_grid)
    other["seeds"] = [1]
    shutil.copytree(logs, new)
    overopt.run(copy_, other, workers=1, progress=False, overwrite=True)
    assert sorted(p.name for p in (copy_ / "runs").iterdir()) == [
        "ddpo__gold__seed1.json",
        "ddpo__preference__seed1.json",
    ]


def test_reward_names_that_would_share_a_log_file_are_refused(tiny_grid):
    grid = copy.deepcopy(tiny_grid)
    grid["rewards"]["preference!"] = grid["rewards"]["preference"]
    with pytest.raises(ValueError, match="share a log file"):
        overopt.jobs(grid)


def test_a_run_killed_midway_goes_on_from_its_checkpoint_with_the_same_numbers(logs, tiny_grid, tmp_path, monkeypatch):
    import shutil

    from textnorm.finetune.loop import Finetuner

    copy_ = tmp_path / "copy"
    shutil.copytree(logs, copy_)
    name = "ddpo__preference__seed0"
    before = json.loads((copy_ / "runs" / f"{name}.json").read_text())
    (copy_ / "runs" / f"{name}.json").unlink()
    monkeypatch.setattr(overopt, "CHECKPOINT_SECONDS", 0.0)  # a checkpoint after every step
    real_step, calls = Finetuner.run_step, []

    def killed_in_step_1(self):
        if self.step == 1:
            calls.append(self.step)
            raise KeyboardInterrupt  # as a kill: the grid stops, step 0's checkpoint stays
        return real_step(self)

    monkeypatch.setattr(Finetuner, "run_step", killed_in_step_1)
    with pytest.raises(KeyboardInterrupt):
        overopt.run(copy_, tiny_grid, workers=1, progress=False, resume=True)
    partial = copy_ / "partial" / name
    assert calls == [1] and (partial / "checkpoint.pt").is_file()
    assert json.loads((partial / "state.json").read_text())["step"] == 1
    wall = json.loads((copy_ / "wall.json").read_text())["seconds"]
    stale = partial / ".checkpoint.pt.x1y2"
    stale.write_bytes(b"partial")  # a write the kill interrupted
    (partial / "minutes.json").write_text("100.0")  # as if the killed invocation had trained 100 minutes

    resumed_from = []
    real_load = Finetuner.load_checkpoint

    def load(self, out, allow_changed_inputs=False):
        assert not stale.exists()  # removed before the checkpoint is read
        real_load(self, out, allow_changed_inputs)
        resumed_from.append(self.step)

    monkeypatch.setattr(Finetuner, "run_step", real_step)
    monkeypatch.setattr(Finetuner, "load_checkpoint", load)
    overopt.run(copy_, tiny_grid, workers=1, progress=False, resume=True)
    after = json.loads((copy_ / "runs" / f"{name}.json").read_text())
    assert resumed_from == [1]  # went on from step 1, did not start again
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(after["rows"]) == strip(before["rows"]) and after["after"] == before["after"]
    assert after["evals"] == before["evals"]
    assert 100.0 <= after["minutes"] < 101.0  # the killed invocation's minutes, plus this one's
    assert not (copy_ / "partial").exists()  # removed once every run is logged
    assert json.loads((copy_ / "wall.json").read_text())["seconds"] > wall
    overopt.load(copy_)


def test_a_checkpoint_that_does_not_match_the_run_is_refused_with_what_to_do(logs, tiny_grid, tmp_path):
    import dataclasses

    cfg = overopt.run_config(tiny_grid, "ddpo", "gold", 0)
    overopt.train_run(cfg, steps=1, partial=tmp_path / "p")
    other = dataclasses.replace(cfg, lr=cfg.lr * 2)
    with pytest.raises(ValueError, match="remove .* to start this run afresh"):
        overopt.train_run(other, partial=tmp_path / "p")


def test_the_wall_clock_writes_between_jobs(tmp_path, monkeypatch):
    import time

    monkeypatch.setattr(overopt, "WALL_SECONDS", 0.05)
    path = tmp_path / "wall.json"
    path.write_text(json.dumps({"seconds": 10.0, "workers": 2}))  # an earlier invocation's time
    with overopt._WallClock(path, 2):
        first = json.loads(path.read_text())["seconds"]
        time.sleep(0.5)
        ticked = json.loads(path.read_text())["seconds"]  # no job ended: written by the clock alone
    assert 10.0 <= first < 10.2 and ticked >= 10.3
    assert json.loads(path.read_text())["seconds"] >= ticked


def test_an_overwrite_into_a_new_folder_killed_midway_keeps_its_finished_runs(tiny_grid, tmp_path, monkeypatch):
    from textnorm.finetune.loop import Finetuner

    out = tmp_path / "fresh"
    real_step = Finetuner.run_step

    def killed_in_preference(self):
        if "preference" in self.cfg.reward:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(Finetuner, "run_step", killed_in_preference)
    with pytest.raises(KeyboardInterrupt):
        overopt.run(out, tiny_grid, workers=1, progress=False, overwrite=True)
    done = tmp_path / "fresh.new" / "runs" / "ddpo__gold__seed0.json"
    assert done.exists() and not out.exists()  # written into .new, nothing swapped in yet
    done.write_text(done.read_text() + " ")  # marked: kept, not run again
    monkeypatch.setattr(Finetuner, "run_step", real_step)
    overopt.run(out, tiny_grid, workers=1, progress=False, overwrite=True)
    assert (out / "runs" / "ddpo__gold__seed0.json").read_text().endswith("\n ")
    assert not (tmp_path / "fresh.new").exists()
    overopt.load(out)


def test_a_swap_cut_short_is_finished_by_the_same_command_and_an_old_folder_is_never_removed(logs, tiny_grid, tmp_path):
    import shutil

    final, new, old = tmp_path / "copy", tmp_path / "copy.new", tmp_path / "copy.old"
    shutil.copytree(logs, old)  # killed between moving the replaced logs away and moving the new ones in
    shutil.copytree(logs, new)
    marker = new / "runs" / "ddpo__gold__seed0.json"
    marker.write_text(marker.read_text() + " ")
    overopt.run(final, tiny_grid, workers=1, progress=False, overwrite=True)  # nothing to run: the swap ends
    assert (final / "runs" / "ddpo__gold__seed0.json").read_text().endswith("\n ") and not new.exists()
    assert old.exists()  # not ours to remove: it may be someone's copy
    with pytest.raises(FileExistsError, match="copy.old exists"):
        overopt.run(final, tiny_grid, workers=1, progress=False, overwrite=True)
    assert old.exists() and final.exists() and not new.exists()  # refused before anything was touched


@pytest.fixture(scope="module")
def seed_folders(tiny_grid, tmp_path_factory):
    """The tiny grid without its pool (gold only), run as seeds [0, 1] in one folder and as [0] and [1] apart."""
    grid = {k: v for k, v in copy.deepcopy(tiny_grid).items() if k != "bon"}
    grid["rewards"] = {"gold": grid["rewards"]["gold"]}
    root = tmp_path_factory.mktemp("seeds")
    out = {}
    for name, seeds in (("both", [0, 1]), ("a", [0]), ("b", [1])):
        out[name] = overopt.run(root / name, {**grid, "seeds": seeds}, workers=1, progress=False)
    return grid, out


def test_folders_of_one_grid_read_together_equal_one_folder_with_every_seed(seed_folders):
    grid, f = seed_folders
    both, together = overopt.load(f["both"]), overopt.load_together([f["b"], f["a"]])
    assert together["grid"] == both["grid"] and together["grid"]["seeds"] == [0, 1]
    assert set(together["logs"]) == set(both["logs"]) == {"ddpo__gold__seed0", "ddpo__gold__seed1"}
    assert together["seeds_of"] == {str(f["b"]): [1], str(f["a"]): [0]}
    key = ["seed", "prompt", "step"]
    a = together["evaluations"].sort_values(key).reset_index(drop=True)
    b = both["evaluations"].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[sorted(a.columns)], b[sorted(b.columns)])  # runs are deterministic
    assert together["bon"] is None


def test_reading_together_refuses_a_seed_twice_other_settings_and_a_pool(seed_folders, logs, tmp_path):
    grid, f = seed_folders
    with pytest.raises(ValueError, match="seed 0 is in both"):
        overopt.load_together([f["both"], f["a"]])
    with pytest.raises(ValueError, match="given twice"):
        overopt.load_together([f["a"], f["a"].parent / "." / f["a"].name])
    with pytest.raises(ValueError, match="best-of-n pool"):
        overopt.load_together([f["a"], logs])
    other = {**grid, "seeds": [2], "methods": {"ddpo": {**grid["methods"]["ddpo"], "lr": 2e-3}}}
    with pytest.raises(ValueError, match=r"another grid .*\['methods'\]"):
        overopt.load_together([f["a"], overopt.run(tmp_path / "lr", other, workers=1, progress=False)])
    with pytest.raises(ValueError, match="best-of-n pool"):
        overopt.load_together([logs])
    with pytest.raises(ValueError, match="at least one"):
        overopt.load_together([])


def test_grids_compared_but_for_their_seeds():
    a = {"model": "m", "seeds": [0], "methods": {"ddpo": {"lr": 1e-3}}, "judge": None}
    assert overopt.differ_but_seeds(a, {**a, "seeds": [5, 6]}) == []
    assert overopt.differ_but_seeds(a, {**a, "methods": {"ddpo": {"lr": 2e-3}}, "model": "n"}) == ["methods", "model"]
    # a key one grid lacks differs even from None, and from either side
    no_judge = {k: v for k, v in a.items() if k != "judge"}
    assert overopt.differ_but_seeds(a, no_judge) == overopt.differ_but_seeds(no_judge, a) == ["judge"]
