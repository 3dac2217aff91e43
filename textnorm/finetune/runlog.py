"""The run log: ``metrics.jsonl``, one JSON object per step, appended, flushed and fsynced as the
step ends, so a crash (even kill -9) loses no finished step. A resumed run first rewrites the file
(atomically) with the rows its checkpoint holds, then appends; the steps after the checkpoint are
run again and logged again, never twice."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from textnorm.files import atomic_write


class RunLog:
    def __init__(self, path: str | Path, rows: Sequence[dict] = ()) -> None:
        self.path = Path(path)
        text = "".join(json.dumps(r) + "\n" for r in rows)
        atomic_write(self.path, lambda f: f.write(text.encode()))

    def append(self, row: dict) -> None:
        with open(self.path, "ab") as f:
            f.write((json.dumps(row) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())


def read(path: str | Path) -> list[dict]:
    """The rows of a run log; a last line cut short by a crash mid-append is left out."""
    lines = Path(path).read_text().splitlines()
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break  # the write a crash interrupted
            raise ValueError(f"{path}: line {i + 1} is not JSON") from None
    return rows
