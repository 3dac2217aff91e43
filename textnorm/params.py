"""Checks of a notebook's parameters, run in the cell after the ``parameters`` cell so that a bad
value (from papermill's ``-p`` / ``-y`` or an edit) stops the chapter at once with a message that
names the parameter, instead of a traceback minutes later.

    check_parameters({"n_boot": n_boot, "ci_level": ci_level},
                     n_boot=positive_int, ci_level=open_unit)

Each rule takes the value and returns None when it is fine or a short description of what is
expected; every broken parameter is listed in one ValueError.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path

Rule = Callable[[object], str | None]


def check_parameters(values: dict, **rules: Rule) -> None:
    problems = []
    for name, rule in rules.items():
        if name not in values:
            raise KeyError(f"no value given for the checked parameter {name!r}")
        expected = rule(values[name])
        if expected:
            problems.append(f"{name} = {values[name]!r}: expected {expected}")
    if problems:
        raise ValueError("bad notebook parameters:\n  " + "\n  ".join(problems))


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an int too large for a float
        return False


def positive_int(v) -> str | None:
    return None if _is_int(v) and v >= 1 else "an integer >= 1"


def nonnegative_int(v) -> str | None:
    return None if _is_int(v) and v >= 0 else "an integer >= 0"


def open_unit(v) -> str | None:
    return None if _is_number(v) and 0 < v < 1 else "a number strictly between 0 and 1"


def positive_number(v) -> str | None:
    return None if _is_number(v) and v > 0 else "a finite number > 0"


def nonnegative_number(v) -> str | None:
    return None if _is_number(v) and v >= 0 else "a finite number >= 0"


def nonempty_text(v) -> str | None:
    return None if isinstance(v, str) and v.strip() else "a non-empty string"


def boolean(v) -> str | None:
    return None if isinstance(v, bool) else "True or False"


def one_of(options: Iterable, of: str = "") -> Rule:
    """One of ``options``; ``of`` says what they are (e.g. "the score columns of scores.csv")."""
    options = list(options)
    expected = f"one of {of}: {options}" if of else f"one of {options}"
    # by type and value: True is not 1, 1.0 is not "1"
    return lambda v: None if any(type(v) is type(o) and v == o for o in options) else expected


def nonempty_list_of(rule_or_options) -> Rule:
    rule = rule_or_options if callable(rule_or_options) else one_of(rule_or_options)

    def check(v) -> str | None:
        if not isinstance(v, list) or not v:
            return "a non-empty list (papermill: -y 'name: [a, b]')"
        bad = [x for x in v if rule(x)]
        if bad:
            return f"a list whose items are each {rule(bad[0])} ({bad[0]!r} is not)"
        if any(a == b for i, a in enumerate(v) for b in v[i + 1 :]):  # 1 == 1.0 == True, 0.0 == -0.0
            return "a list without repeated items"
        return None

    return check


def existing_path(root: str | Path = ".", empty_ok: bool = False, kind: str = "any") -> Rule:
    """A path that exists (relative paths from ``root``): a file (``kind="file"``), a folder
    (``"folder"``) or either; "" allowed when ``empty_ok``."""

    def check(v) -> str | None:
        if empty_ok and v == "":
            return None
        if not isinstance(v, str) or not v:
            return "a path (string)"
        path = Path(root) / v
        ok = {"any": path.exists(), "file": path.is_file(), "folder": path.is_dir()}[kind]
        what = {"any": "file or folder", "file": "file", "folder": "folder"}[kind]
        return None if ok else f"an existing {what} (not found from {root})"

    return check
