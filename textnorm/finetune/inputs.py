"""What a fine-tuning run loads: checked before any work, and fingerprinted so that a resumed run
continues from the same inputs.

- :func:`resolve_path` tells a local folder from a hub id: a path that exists is local; a relative
  path missing from the working directory but present under the repository (the shipped defaults,
  e.g. ``data/synth/generator``) is read from there, so commands work from any directory; a hub id
  is ``name`` or ``owner/name``; anything else is a folder that does not exist, said in those words
  instead of the hub client's message about repo ids.
- :func:`check_device`: a CUDA device where torch sees none is an error in words, not an assertion.
- :func:`weights_digest` and :func:`files_digest`: sha256 of a model's weights as loaded (their
  names, dtypes, shapes and bytes, in order) and of the files under a folder (their relative paths
  and bytes, sorted), so that a checkpoint can record what it was trained from.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path

import torch

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")  # huggingface_hub's repo id shape
_CHUNK = 1 << 20


def resolve_path(path: str, what: str, marker: str | None = None) -> str:
    """``path`` as a local folder (a str) or, when it is shaped as a hub id and no such folder
    exists, the hub id unchanged. ``marker``: a file a local folder of this kind must hold
    (e.g. ``model_index.json`` for a diffusers pipeline). ``what`` names it in errors."""
    local = Path(path).expanduser()
    if not local.exists() and not local.is_absolute():
        from textnorm.paths import repo_root

        shipped = repo_root() / local
        if shipped.exists():  # a default such as data/synth/generator, run from another directory
            local = shipped
    if local.exists():
        if not local.is_dir():
            raise ValueError(f"{what} {path} is a file; name the folder that holds the model")
        if marker and not (local / marker).is_file():
            raise ValueError(f"{what} {path} is not the right kind of folder: it holds no {marker}")
        return str(local)
    if _HUB_ID.match(path) and not path.startswith((".", "~")):
        return path  # a hub id: downloaded or read from the hub cache by the loader
    if Path(path).expanduser().is_absolute():
        raise FileNotFoundError(f"{what} {path} does not exist")
    from textnorm.paths import repo_root

    places = " and ".join(dict.fromkeys(str(p) for p in (Path.cwd(), repo_root())))
    raise FileNotFoundError(f"{what} {path} does not exist (looked in {places})")


def check_device(device: str) -> None:
    """Refuse a CUDA device on a machine where torch has none (torch would fail with an assertion
    deep inside the first transfer)."""
    try:
        kind = torch.device(device).type
    except RuntimeError as exc:
        raise ValueError(f"device {device!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from exc
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device}: no CUDA GPU is available here (torch.cuda.is_available() is False)")
    index = torch.device(device).index
    if kind == "cuda" and index is not None and index >= torch.cuda.device_count():
        raise ValueError(f"device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s), numbered from 0")


def weights_digest(modules: Iterable[tuple[str, torch.nn.Module]]) -> str:
    """sha256 over named modules' state dicts: each entry's name, dtype, shape and bytes."""
    h = hashlib.sha256()
    for prefix, module in modules:
        for key, value in module.state_dict().items():
            t = value.detach().cpu().contiguous().reshape(-1)
            h.update(f"{prefix}.{key}:{t.dtype}:{tuple(value.shape)}\0".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # raw bytes: bf16 too
    return h.hexdigest()


def files_digest(folder: str | Path) -> str:
    """sha256 over every file under ``folder`` (or of one file): relative paths and bytes, sorted."""
    folder = Path(folder)
    files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for p in files:
        h.update((p.relative_to(folder).as_posix() if p != folder else p.name).encode() + b"\0")
        with open(p, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def source_digest(path: str) -> str | None:
    """The digest of a model's files: a local folder's, or a hub id's snapshot in the local hub
    cache (None when it is not cached: nothing to compare)."""
    if Path(path).exists():
        return files_digest(path)
    try:
        from huggingface_hub import snapshot_download

        return files_digest(snapshot_download(path, local_files_only=True))
    except Exception:  # not cached, or not a hub id: the loader reports that itself
        return None
