"""The GitHub Actions workflows: valid against GitHub's workflow schema (check-jsonschema's
vendored copy, offline), and the Pages workflow builds the book the way `make book-only` does."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from textnorm.paths import repo_root

ROOT = repo_root()
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def _lint(path: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent)) or shutil.which("check-jsonschema")
    assert exe, "check-jsonschema is a dev dependency (pyproject.toml); reinstall with make install"
    return subprocess.run(
        [exe, "--builtin-schema", "vendor.github-workflows", str(path)], capture_output=True, text=True
    )


def test_there_is_a_pages_workflow():
    assert "book.yml" in [p.name for p in WORKFLOWS]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_is_valid(path):
    result = _lint(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_lint_catches_a_broken_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text((ROOT / ".github" / "workflows" / "book.yml").read_text().replace("runs-on:", "run-on:", 1))
    assert _lint(bad).returncode != 0


def test_pages_workflow_builds_like_make_book_only():
    text = (ROOT / ".github" / "workflows" / "book.yml").read_text()
    make = (ROOT / "Makefile").read_text()
    built = re.search(r"^\t\$\(BIN\)/(jupyter-book build .*)$", make, flags=re.M).group(1)
    assert f"run: {built}" in text
    assert "path: _build/html" in text
    assert "actions/deploy-pages@" in text and "pages: write" in text and "id-token: write" in text
