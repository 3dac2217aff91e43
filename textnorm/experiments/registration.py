"""What changed between two registered grids (:mod:`textnorm.experiments.overopt`): one row per
setting in which they differ, so that a chapter reporting a re-registration lists every change,
computed from the two grid files, never typed.

A row is ``{"setting", "earlier grid", "this grid"}`` with text values:

- a method's setting (``"ddpo: lr"``): the two values; a key one grid leaves out reads
  ``"(the default)"``; a method one grid does not run reads ``"run"`` / ``"not run"``;
- rewards and pairs: the names one grid has and the other not (``"... (left out)"``,
  ``"... (added)"``; a pair is ``"raw vs TextNorm"``); a reward of both whose definition changed
  (``"reward NAME"``): both definitions as JSON;
- rewards per method: one row per method whose list changed (a method without a list trains
  every reward: ``"(every reward)"``);
- seeds, the best-of-n pool, the model and the gold judge: the two values.

Lists and dicts are written as JSON, other values as they print; an empty prompt list (the task's own
training prompts) reads ``"(the task's)"``, a list of prompts ``"N prompts: a; b; ..."``.

:func:`identify` names the registration a grid is (:data:`REGISTERED`: the grid files, in the order
they were registered), by equality of the whole grid.

:func:`summary` gives an earlier grid's results in brief, from its logs (:mod:`textnorm.stats.endpoint`):
its controls' gold change at the end of DDPO (pointwise t intervals, seeds and prompts random), every
reward's shape under DDPO (simultaneous bands) and its primary endpoint (Holm over its pairs).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from textnorm.stats import endpoint

COLUMNS = ("setting", "earlier grid", "this grid")

# The registered over-optimisation grids, in the order they were registered: the file holding each (relative
# to the repository root; the first registration's yaml was replaced, its grid survives with its logs) -> its name.
REGISTERED = {
    "data/overopt_first/grid.json": "the first registration",
    "params/overopt_cpu.yaml": "the second registration",
    "params/overopt_cpu_16prompts.yaml": "the third registration",
}


def identify(grid: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(file, name)`` of the registered grid equal to ``grid`` (every key; numbers by value, so 1.0e-3 in a
    YAML file equals 0.001 in grid.json), or None for any other grid. A registered file missing from the
    checkout is skipped; the files are read as they are now, so a grid whose file was edited is no longer
    named."""
    from textnorm.files import read_data
    from textnorm.paths import repo_root

    for path, name in REGISTERED.items():
        if (repo_root() / path).is_file() and read_data(repo_root() / path) == grid:
            return path, name
    return None


def _text(value: Any) -> str:
    """A setting as text: lists and dicts as JSON, anything else as it prints."""
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else str(value)


def _setting(key: str, value: Any) -> Any:
    """A method's setting for the table: an empty prompt list means the runs trained on their task's own
    training prompts, not on none; a list of prompts reads "N prompts: a; b; ..." rather than as JSON."""
    if key == "prompts" and isinstance(value, list):
        return "(the task's)" if not value else f"{len(value)} prompts: " + "; ".join(map(str, value))
    return value


def _names(key: str, value: Any) -> list[str]:
    if key == "rewards":
        return list(value or {})
    return [" vs ".join(p) for p in value or []]


def grid_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[dict[str, str]]:
    """Every setting in which grid ``old`` (an earlier registration) and ``new`` differ, in the
    order: methods' settings, rewards, pairs, rewards per method, seeds, best-of-n pool, model, gold
    judge (every key of ``overopt.GRID_KEYS``). Empty when the grids agree on all of them."""
    rows: list[dict[str, str]] = []

    def row(setting: str, first: Any, this: Any) -> None:
        rows.append({"setting": setting, "earlier grid": _text(first), "this grid": _text(this)})

    old_m, new_m = old.get("methods", {}), new.get("methods", {})
    for m in dict.fromkeys([*old_m, *new_m]):
        a, b = old_m.get(m), new_m.get(m)
        if a is None or b is None:
            row(m, "run" if a is not None else "not run", "run" if b is not None else "not run")
            continue
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                row(f"{m}: {k}", _setting(k, a.get(k, "(the default)")), _setting(k, b.get(k, "(the default)")))
    for key, label in (("rewards", "rewards"), ("pairs", "pairs")):
        a, b = _names(key, old.get(key)), _names(key, new.get(key))
        gone, added = [n for n in a if n not in b], [n for n in b if n not in a]
        if gone or added:
            row(label, "; ".join(gone) + " (left out)" if gone else "", "; ".join(added) + " (added)" if added else "")
    old_r, new_r = old.get("rewards") or {}, new.get("rewards") or {}
    for n in old_r:
        if n in new_r and old_r[n] != new_r[n]:  # the same name, another reward
            row(f"reward {n}", old_r[n], new_r[n])
    a, b = old.get("method_rewards") or {}, new.get("method_rewards") or {}
    for m in dict.fromkeys([*a, *b]):
        if a.get(m) != b.get(m):
            every = "(every reward)"
            row(f"rewards per method: {m}", "; ".join(a[m]) if m in a else every, "; ".join(b[m]) if m in b else every)
    for key, label in (("seeds", "seeds"), ("bon", "best-of-n pool"), ("model", "model"), ("judge", "gold judge")):
        if old.get(key) != new.get(key):
            row(label, old.get(key, "(the default)"), new.get(key, "(the default)"))
    return rows


def summary(loaded: Mapping[str, Any]) -> dict[str, Any]:
    """An earlier grid's results in brief, from :func:`textnorm.experiments.overopt.load`'s dict: ``grid``,
    ``specs`` (reward name -> spec), ``ends`` (``"gold"``/``"random"`` -> :func:`endpoint.end_change` of that
    control under DDPO, where the grid ran it), ``shapes`` (reward name -> :func:`endpoint.rise_and_fall`
    under DDPO) and ``primary`` (:func:`endpoint.primary_endpoint` over its pairs, or None unless DDPO ran every
    reward of its pairs)."""
    evals, grid = loaded["evaluations"], loaded["grid"]
    if evals is None:
        raise ValueError(f"no per-prompt evaluations with a bounding KL: {loaded['evaluations_missing']}")
    specs = {n: r["spec"] for n, r in grid["rewards"].items()}
    ran = set(evals[evals.method == "ddpo"].reward_name)
    ends = {
        specs[n]: endpoint.end_change(evals, n, "ddpo") for n in specs if specs[n] in ("gold", "random") and n in ran
    }
    shapes = {n: endpoint.rise_and_fall(evals, n, "ddpo") for n in specs if n in ran}
    pairs = [tuple(p) for p in grid.get("pairs", [])]
    ran_pairs = bool(pairs) and all(a in ran and b in ran for a, b in pairs)
    primary = endpoint.primary_endpoint(evals, pairs, "ddpo") if ran_pairs else None
    return {"grid": grid, "specs": specs, "ends": ends, "shapes": shapes, "primary": primary}
