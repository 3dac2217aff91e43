"""Files: writing one so that a crash never leaves it half written, and reading a parameter file.

``atomic_write(path, write)`` calls ``write(f)`` on a binary file in the same folder, flushes and
fsyncs it, gives it the mode a plain ``open`` would (the umask's; mkstemp's is 0600) and renames
it over ``path``: readers see the old file or the new one, never a part.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_data(path: str | Path) -> Any:
    """A JSON or YAML file as data. JSON is tried first: PyYAML (YAML 1.1) reads JSON's ``6e-05`` as a
    string. ValueError names the file when it is neither."""
    import yaml

    text = Path(path).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{path} is neither JSON nor YAML: {exc}") from None
