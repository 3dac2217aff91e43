"""Shared fixtures. Tests never touch a model hub or the network beyond 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from textnorm.paths import repo_root  # noqa: E402
from textnorm.tia2.data import tia2_files  # noqa: E402


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The offline TIA2 mirror: $TEXTNORM_TIA2_MIRROR, else ../shared/tia2 beside the repo."""
    path = Path(os.environ.get("TEXTNORM_TIA2_MIRROR") or repo_root().parent / "shared" / "tia2")
    if not (path / "SHA256SUMS").is_file():
        raise RuntimeError(f"TIA2 mirror not found at {path}; set TEXTNORM_TIA2_MIRROR")
    return path


@pytest.fixture()
def mirror_copy(mirror: Path, tmp_path: Path) -> Path:
    """A writable copy of the mirror's nine files, for tampering."""
    dst = tmp_path / "mirror"
    for rel in tia2_files():
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mirror / rel, dst / rel)
    return dst


@pytest.fixture()
def http_server(mirror_copy: Path):
    """Serves ``mirror_copy`` on 127.0.0.1 (an ephemeral port) and yields (base_url, folder)."""
    handler = functools.partial(_QuietHandler, directory=str(mirror_copy))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", mirror_copy
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass
