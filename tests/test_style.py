"""The code passes ruff's lint rules and is in ruff's format, as configured in pyproject.toml ([tool.ruff])."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from textnorm.paths import repo_root


def _ruff(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert exe, "ruff is a dev dependency (pyproject.toml); reinstall with make install"
    return subprocess.run([exe, *args], cwd=repo_root(), capture_output=True, text=True)


def test_ruff_lint_passes():
    done = _ruff("check", "--output-format", "concise", ".")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]


def test_ruff_format_is_applied():
    done = _ruff("format", "--check", ".")
    assert done.returncode == 0, "run `.venv/bin/ruff format .`:\n" + done.stdout[-3000:] + done.stderr[-1000:]
