"""Locating the repository root, so notebooks resolve paths the same way under
papermill, nbval and the book builder (each runs from a different working directory)."""

from __future__ import annotations

from pathlib import Path


def repo_root() -> Path:
    """The folder holding ``pyproject.toml`` above this package (editable installs),
    else the current working directory."""
    here = Path(__file__).resolve().parent
    for candidate in (here, *here.parents):
        if (candidate / "pyproject.toml").is_file() and (candidate / "textnorm").is_dir():
            return candidate
    return Path.cwd()
