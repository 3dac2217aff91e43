"""A grid's DDPO gold control trained for more rounds (a registered addition) and its confirmatory runs on
fresh seeds, read beside the grid's own logs and summarised as plain data for a chapter.

Two sets of folders of run logs (:func:`textnorm.experiments.overopt.load_together` reads each set as one
grid split by seed):

- ``longer``: DDPO on the gold judge alone, every setting the grid's gold control's but the seed and the
  number of rounds, which must exceed the grid's;
- ``confirm``: the same runs as ``longer`` on seeds that no run of the grid or of ``longer`` used.

The summaries, all from :mod:`textnorm.stats.endpoint` on the runs' per-prompt evaluations:

- the shape of the mean gold change over the sqrt KL every run reached (``rise_and_fall``: simultaneous
  bands) and the change after the last round (``end_change``: each run at its own final KL, a pointwise t
  interval with seeds and prompts random), over all the longer runs' seeds and per folder;
- for the confirmatory runs the change after the last round, the smallest true change its two-sided 5%
  test finds with 80% power (``mde(se, df)``) and the shape;
- where a longer run has the seed of one of the grid's runs, the largest difference of gold and sqrt KL over
  the evaluations both made (0: the longer run is the grid's run continued).

Every inconsistency (a grid without a DDPO gold control, other settings, no more rounds than the grid, a seed run
before, runs without per-prompt evaluations) is a ValueError that names the parameter and its folders.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from textnorm.experiments import overopt
from textnorm.stats import endpoint


def _gold_name(grid: Mapping[str, Any]) -> str | None:
    """The name of the grid's reward whose spec is the gold judge (None without one)."""
    return next((name for name, r in grid["rewards"].items() if r["spec"] == "gold"), None)


def _check_like_grid(
    loaded: Mapping[str, Any], together: Mapping[str, Any], name: str, folders: list[str], param: str
) -> None:
    """Refuse runs that differ from the grid's gold control in anything but their seed and rounds (each run's
    completed config against the grid's run of its seed, or of the grid's first seed)."""
    from textnorm.finetune.config import complete

    grid, gname = loaded["grid"], _gold_name(loaded["grid"])
    for s in together["grid"]["seeds"]:
        theirs = complete(together["logs"][overopt.run_name("ddpo", name, s)]["config"])
        mine_seed = s if s in grid["seeds"] else grid["seeds"][0]
        mine = complete(loaded["logs"][overopt.run_name("ddpo", gname, mine_seed)]["config"])
        differ = overopt.differing_keys(mine, theirs, ignore=("seed", "steps"))
        if differ:
            raise ValueError(
                f"{param} {folders}: seed {s} differs from the grid's gold control in {differ}, not only "
                f"in rounds: the folders belong to another grid ({param} = {{}} leaves them out)"
            )


def _shape_and_end(evaluations, name: str, seeds) -> dict[str, Any]:
    part = evaluations[evaluations.seed.isin(seeds)]
    return {
        "seeds": sorted(seeds),
        "rf": endpoint.rise_and_fall(part, name, "ddpo"),
        "end": endpoint.end_change(part, name, "ddpo"),
    }


def read(
    loaded: Mapping[str, Any],
    longer: Mapping[str, str],
    confirm: Mapping[str, str] | None = None,
    params: tuple[str, str] = ("longer_gold", "confirm_gold"),
) -> dict[str, Any]:
    """The longer gold control beside the grid ``loaded`` (:func:`overopt.load`'s dict), ``longer`` and
    ``confirm`` each mapping a folder to what its runs are (``confirm`` may be empty); ``params`` names the two
    parameters in refusals. Returns plain data:

    ``name`` (the longer runs' reward), ``rounds`` (the grid's, the longer runs'), ``evaluations`` (their
    per-prompt evaluations), ``seeds``, ``prompts`` (how many), ``complete`` (the same seeds as the grid),
    ``parts`` (first all seeds, labelled by whether they are all of the grid's (with what the folder's runs are
    when there is one folder), then one per folder when several:
    ``label``, ``seeds``, ``rf``, ``end``), ``grid_match`` (None when no seed is the grid's, else ``max_diff``,
    ``step``, ``seeds``, ``prompts``, ``evaluations``) and ``confirm`` (None, or ``seeds``, ``labels``,
    ``prompts``, ``end``, ``rf``, ``mde``)."""
    p_long, p_conf = params
    grid, evals = loaded["grid"], loaded["evaluations"]
    gname = _gold_name(grid)
    if gname is None or evals is None or not ((evals.method == "ddpo") & (evals.reward_name == gname)).any():
        raise ValueError(f"{p_long}: the grid has no DDPO gold control to compare the longer runs with")
    together = overopt.load_together(list(longer))  # checks each folder; one grid but the seeds; no seed twice
    g_long, e_long = together["grid"], together["evaluations"]
    if e_long is None:
        raise ValueError(
            f"{p_long} {list(longer)}: no per-prompt evaluations with a bounding KL: {together['evaluations_missing']}"
        )
    if list(g_long["methods"]) != ["ddpo"] or [r["spec"] for r in g_long["rewards"].values()] != ["gold"]:
        raise ValueError(
            f"{p_long} {list(longer)}: expected DDPO runs on the gold judge alone, not methods "
            f"{list(g_long['methods'])} with rewards {list(g_long['rewards'])}"
        )
    name = next(iter(g_long["rewards"]))
    _check_like_grid(loaded, together, name, list(longer), p_long)
    rounds = (grid["methods"]["ddpo"]["steps"], g_long["methods"]["ddpo"]["steps"])
    if rounds[1] <= rounds[0]:
        raise ValueError(f"{p_long} {list(longer)}: {rounds[1]} rounds, not more than the grid's {rounds[0]}")
    # a longer run's first rounds against the grid's run of its seed, evaluation for evaluation
    both = e_long.merge(
        evals[(evals.method == "ddpo") & (evals.reward_name == gname)],
        on=["seed", "prompt", "step"],
        suffixes=("", "_grid"),
    )
    grid_match = None
    if len(both):
        diff = np.abs(both[["gold", "sqrt_kl"]].to_numpy() - both[["gold_grid", "sqrt_kl_grid"]].to_numpy())
        grid_match = {
            "max_diff": float(diff.max()),
            "step": int(both.step.max()),
            "seeds": int(both.seed.nunique()),
            "prompts": int(both.prompt.nunique()),
            "evaluations": int(both.step.nunique()),
        }
    complete_seeds = sorted(g_long["seeds"]) == sorted(grid["seeds"])
    whole = "all of the grid's seeds" if complete_seeds else "not all of the grid's seeds"
    labelled = [(whole if len(longer) > 1 else f"{whole}: {next(iter(longer.values()))}", g_long["seeds"])]
    if len(longer) > 1:
        # seeds_of's keys are the folders as str(Path(...)) would write them: pair by order, not by name
        labelled += list(zip(longer.values(), together["seeds_of"].values()))
    out = {
        "name": name,
        "rounds": rounds,
        "evaluations": e_long,
        "seeds": list(g_long["seeds"]),
        "prompts": int(e_long.prompt.nunique()),
        "complete": complete_seeds,
        "parts": [{"label": label, **_shape_and_end(e_long, name, seeds)} for label, seeds in labelled],
        "grid_match": grid_match,
        "confirm": None,
    }
    if confirm:  # the same runs on fresh seeds, with the endpoint registered for them
        conf = overopt.load_together(list(confirm))
        g_conf, e_conf = conf["grid"], conf["evaluations"]
        if e_conf is None:
            raise ValueError(f"{p_conf} {list(confirm)}: no per-prompt evaluations: {conf['evaluations_missing']}")
        differ = overopt.differ_but_seeds(g_conf, g_long)
        if differ:
            raise ValueError(
                f"{p_conf} {list(confirm)}: another grid than {p_long}'s (they differ in {differ}), not only other seeds"
            )
        _check_like_grid(loaded, conf, name, list(confirm), p_conf)
        seen = sorted(set(g_conf["seeds"]) & (set(g_long["seeds"]) | set(grid["seeds"])))
        if seen:
            raise ValueError(
                f"{p_conf} {list(confirm)}: seeds {seen} were run before (in the grid or {p_long}): not fresh"
            )
        end = endpoint.end_change(e_conf, name, "ddpo")
        out["confirm"] = {
            "seeds": list(g_conf["seeds"]),
            "labels": list(confirm.values()),
            "prompts": int(e_conf.prompt.nunique()),
            "end": end,
            "rf": endpoint.rise_and_fall(e_conf, name, "ddpo"),
            "mde": endpoint.mde(end["se"], end["df"]),  # the smallest true change this interval finds with 80% power
        }
    return out
