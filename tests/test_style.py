"""The code passes ruff's lint rules configured in pyproject.toml ([tool.ruff])."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from textnorm.paths import repo_root


def test_ruff_lint_passes():
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert exe, "ruff is a dev dependency (pyproject.toml); reinstall with make install"
    done = subprocess.run([exe, "check", "--output-format", "concise", "."], cwd=repo_root(), capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
