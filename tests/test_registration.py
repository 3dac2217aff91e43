"""What changed between the registered over-optimisation grids, computed from their files
(textnorm.experiments.registration): the chapter's table of changes must list every change."""

from __future__ import annotations

import copy
import json

from textnorm.experiments import overopt, registration
from textnorm.paths import repo_root


def _first_grid() -> dict:
    return json.loads((repo_root() / "data" / "overopt_first" / "grid.json").read_text())


def test_the_two_registrations_differ_in_exactly_the_settings_the_second_changed():
    rows = registration.grid_changes(_first_grid(), overopt.default_grid())
    by = {r["setting"]: (r["earlier grid"], r["this grid"]) for r in rows}
    # the second registration: 4x the samples per prompt at a higher learning rate, the contrastive pair left out
    assert by["ddpo: samples_per_prompt"] == ("16", "64")
    assert by["ddpo: lr"] == ("0.0003", "0.001")
    assert by["pairs"] == ("contrastive vs TextNorm(contrastive) (left out)", "")
    assert "contrastive; TextNorm(contrastive) (left out)" == by["rewards"][0]
    assert by["rewards per method: rwsft"][1] == "gold; random; preference; TextNorm(preference)"
    assert not any(s.startswith("rwsft:") for s in by)  # RWSFT's settings did not change
    assert len(rows) == 6  # nothing else changed: model, judge, seeds, pool, every other setting


def test_the_third_registration_changes_only_the_prompts_and_samples_per_prompt():
    import yaml

    second = yaml.safe_load((repo_root() / "params" / "overopt_cpu.yaml").read_text())
    third = yaml.safe_load((repo_root() / "params" / "overopt_cpu_16prompts.yaml").read_text())
    rows = registration.grid_changes(second, third)
    by = {r["setting"]: (r["earlier grid"], r["this grid"]) for r in rows}
    # the second grid trained the task's own prompts (an empty list), shown as such, not as "[]"
    assert by["ddpo: prompts"][0] == by["rwsft: prompts"][0] == "(the task's)"
    assert by["ddpo: prompts"][1].startswith("16 prompts: four green circles; four yellow triangles; ")
    assert by["ddpo: n_prompts"] == ("8", "16") and by["ddpo: samples_per_prompt"] == ("64", "32")
    assert len(rows) == 4  # the registration's "nothing else changes": rewards, pairs, seeds, pool, lr, rounds
    task = overopt.pool_prompts(second)  # the task's 8 training prompts: the first 8 of the 16
    assert third["methods"]["ddpo"]["prompts"][:8] == task == third["methods"]["rwsft"]["prompts"][:8]
    assert len(set(third["methods"]["ddpo"]["prompts"])) == 16


def test_a_grid_against_itself_has_no_changes_and_every_kind_of_change_is_a_row():
    grid = overopt.default_grid()
    assert registration.grid_changes(grid, copy.deepcopy(grid)) == []
    other = copy.deepcopy(grid)
    del other["methods"]["rwsft"]["lr"]  # a key left out: its default
    other["methods"]["best"] = {"method": "best"}  # a method only one grid runs
    other["seeds"] = [0, 1]
    name = next(iter(other["rewards"]))
    other["rewards"][name] = {**other["rewards"][name], "spec": "another"}  # same name, another reward
    other["method_rewards"] = {}  # every method trains every reward
    other["pairs"] = [*other["pairs"], ["random", "gold"]]
    other["bon"] = {**other["bon"], "pool": 256}
    other["model"], other["judge"] = "another-model", {"kind": "another"}
    by = {r["setting"]: (r["earlier grid"], r["this grid"]) for r in registration.grid_changes(grid, other)}
    assert by["rwsft: lr"] == (str(grid["methods"]["rwsft"]["lr"]), "(the default)")
    assert by["best"] == ("not run", "run")
    assert by["seeds"] == (json.dumps(grid["seeds"]), "[0, 1]")  # lists as JSON
    assert f"reward {name}" in by
    assert by["rewards per method: rwsft"][1] == "(every reward)"
    assert by["pairs"] == ("", "random vs gold (added)")
    assert '"pool": 256' in by["best-of-n pool"][1] and by["model"][1] == "another-model"
    assert by["gold judge"][1] == '{"kind": "another"}'
    assert set(by) == {
        "rwsft: lr",
        "best",
        "seeds",
        f"reward {name}",
        "rewards per method: rwsft",
        "pairs",
        "best-of-n pool",
        "model",
        "gold judge",
    }


def test_an_earlier_grids_summary_is_the_endpoint_functions_on_its_logs():
    from textnorm.stats import endpoint

    L = overopt.load(repo_root() / "data" / "overopt_first")
    got = registration.summary(L)
    E = L["evaluations"]
    assert set(got["ends"]) == {"gold", "random"} and got["grid"] == L["grid"]
    assert got["ends"]["gold"] == endpoint.end_change(E, "gold", "ddpo")
    assert set(got["shapes"]) == set(L["grid"]["rewards"])  # every reward ran under DDPO
    pairs = [tuple(p) for p in L["grid"]["pairs"]]
    assert got["primary"].equals(endpoint.primary_endpoint(E, pairs, "ddpo"))


def test_a_summary_leaves_out_what_ddpo_did_not_run():
    L = overopt.load(repo_root() / "data" / "overopt_first")
    raw, cal = L["grid"]["pairs"][0]
    E = L["evaluations"]
    partial = {**L, "evaluations": E[~((E.method == "ddpo") & (E.reward_name == cal))]}
    got = registration.summary(partial)
    assert cal not in got["shapes"] and raw in got["shapes"] and got["primary"] is None
    assert registration.summary({**L, "grid": {**L["grid"], "pairs": []}})["primary"] is None


def test_identify_names_each_registered_grid_and_no_other():
    from textnorm.files import read_data

    for path, name in registration.REGISTERED.items():
        grid = read_data(repo_root() / path)
        assert registration.identify(grid) == (path, name)
        assert registration.identify(json.loads(json.dumps(grid))) == (path, name)  # as grid.json holds it
        other = copy.deepcopy(grid)
        other["seeds"] = [*other["seeds"], 99]
        assert registration.identify(other) is None
    assert registration.identify(overopt.default_grid())[0] == overopt.GRID_FILE
    logs = {
        "data/overopt_first": "the first registration",
        "data/overopt": "the second registration",
        "data/overopt_16prompts": "the third registration",
    }
    for folder, name in logs.items():  # the shipped logs are the grids their registrations name
        assert registration.identify(json.loads((repo_root() / folder / "grid.json").read_text()))[1] == name
