"""data/MANIFEST.json: for every artifact this project commits, its files' sha256 and the command
and parameters that made it, so anyone can check and regenerate it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from textnorm.files import atomic_write
from textnorm.paths import repo_root


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def record(
    artifact: str | Path,
    command: str,
    params: dict,
    manifest: str | Path | None = None,
    extra: dict | None = None,
    recorded_as: str | Path | None = None,
) -> dict | None:
    """Add or replace the entry of ``artifact`` (a file or folder). Without an explicit ``manifest``
    only artifacts inside the repository's ``data/`` are recorded (the manifest lists what the
    project ships; a user's own outputs elsewhere are not its business): others return None.
    ``recorded_as``: the path the entry is named by, when it is not ``artifact``'s (a folder about to
    be renamed into place: its files, the final name)."""
    root = repo_root()
    artifact = Path(artifact).resolve()
    name = artifact if recorded_as is None else Path(recorded_as).resolve()
    if manifest is None and not name.is_relative_to((root / "data").resolve()):
        return None
    rel = name.relative_to(root).as_posix() if name.is_relative_to(root) else str(name)
    # hidden files are left out: the temporary files of an interrupted atomic write, never part of an artifact
    files = (
        [artifact]
        if artifact.is_file()
        else sorted(p for p in artifact.rglob("*") if p.is_file() and not p.name.startswith("."))
    )
    entry = {
        "command": command,
        "params": params,
        **(extra or {}),  # e.g. the wall time it took
        "files": {
            p.relative_to(artifact if artifact.is_dir() else artifact.parent).as_posix(): _sha256(p) for p in files
        },
    }
    path = Path(manifest) if manifest else root / "data" / "MANIFEST.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[rel] = entry
    atomic_write(path, lambda f: f.write((json.dumps(data, indent=1, sort_keys=True) + "\n").encode()))
    return entry


def verify(manifest: str | Path | None = None) -> list[str]:
    """Paths whose files differ from the manifest (empty when all match)."""
    root = repo_root()
    path = Path(manifest) if manifest else root / "data" / "MANIFEST.json"
    bad = []
    for rel, entry in json.loads(path.read_text()).items():
        base = root / rel
        for name, digest in entry["files"].items():
            f = base / name if base.is_dir() else base.parent / name
            if not f.is_file() or _sha256(f) != digest:
                bad.append(f"{rel}/{name}")
    return bad
