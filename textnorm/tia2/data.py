"""Fetching the TIA2 benchmark files, verified by sha256.

The nine JSON files are published by the TextNorm authors in the public repository
``kykim0/TextNorm`` at a fixed commit. A file is obtained in one of two ways:

- **mirror**: an existing folder with the upstream layout (``human_annotations/...``), given as
  ``mirror=`` or through the ``TEXTNORM_TIA2_MIRROR`` environment variable. Files are read in place.
- **download**: from ``{base_url}/{path}`` into a cache folder (``TEXTNORM_TIA2_CACHE``, default
  ``data/tia2`` in the repository). The download goes to a temporary file beside the target and is
  renamed into place only after its sha256 matches, so a failed or tampered download leaves no
  partial file behind.

Either way the file's sha256 must equal the sum recorded in ``tia2_sha256.txt`` (copied from the
upstream commit); otherwise :class:`TIA2IntegrityError` names the file and both hashes.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from textnorm.paths import repo_root

TIA2_REPO = "kykim0/TextNorm"
TIA2_COMMIT = "5ed52025b1c4a62f31765165a14dff41d304b4a9"
TIA2_BASE_URL = f"https://raw.githubusercontent.com/{TIA2_REPO}/{TIA2_COMMIT}"
SUBSETS: tuple[str, ...] = ("counting", "composition", "comprehensive")

ENV_MIRROR = "TEXTNORM_TIA2_MIRROR"
ENV_CACHE = "TEXTNORM_TIA2_CACHE"
ENV_URL = "TEXTNORM_TIA2_URL"


class TIA2IntegrityError(RuntimeError):
    """A TIA2 file is missing or its sha256 differs from the recorded sum."""


def expected_sha256() -> dict[str, str]:
    """Relative path -> sha256 hex digest, as recorded for the pinned upstream commit."""
    text = resources.files("textnorm.tia2").joinpath("tia2_sha256.txt").read_text()
    sums: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip():
            digest, path = line.split(maxsplit=1)
            sums[path.strip()] = digest
    return sums


def tia2_files(subsets: Iterable[str] = SUBSETS) -> list[str]:
    """Relative paths of the TIA2 files of the given subsets."""
    subsets = list(subsets)
    unknown = sorted(set(subsets) - set(SUBSETS))
    if unknown:
        raise ValueError(f"unknown TIA2 subset(s) {unknown}; choose from {list(SUBSETS)}")
    out = []
    for s in subsets:
        out += [
            f"human_annotations/human_labels_{s}.json",
            f"prompts/prompt_set_{s}.json",
            f"alignment_scores/alignment_scores_{s}.json",
        ]
    return out


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _check(path: Path, relpath: str, source: str) -> None:
    want = expected_sha256()[relpath]
    got = sha256_of(path)
    if got != want:
        raise TIA2IntegrityError(
            f"sha256 mismatch for TIA2 file {relpath} ({source}): expected {want}, got {got}. "
            "The file is corrupt or from another commit; delete it and fetch again, "
            f"or point {ENV_MIRROR} at a correct mirror."
        )


def default_cache_dir() -> Path:
    env = os.environ.get(ENV_CACHE)
    return Path(env) if env else repo_root() / "data" / "tia2"


def resolve_mirror(mirror: str | os.PathLike | None) -> Path | None:
    """The mirror folder to use: the argument, else ``$TEXTNORM_TIA2_MIRROR``, else none."""
    value = mirror if mirror is not None else os.environ.get(ENV_MIRROR) or None
    if not value:
        return None
    path = Path(value).expanduser()
    _check_not_a_loop(path)
    return path.resolve()


def _check_not_a_loop(path: Path) -> None:
    """Name a symbolic-link loop: Path.resolve raises a bare RuntimeError on one up to Python 3.12
    and silently returns the loop from 3.13 on, which would surface as every file 'missing'."""
    try:
        path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise TIA2IntegrityError(
                f"TIA2 mirror {path} is a symbolic link loop; point --mirror or ${ENV_MIRROR} at the folder of TIA2 files"
            ) from None
        # any other failure (e.g. an absent mirror): tia2_path names the missing file, as before


def _download(url: str, target: Path, relpath: str, timeout: float) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while block := resp.read(1 << 20):
                out.write(block)
        _check(tmp, relpath, f"downloaded from {url}")
        os.replace(tmp, target)  # atomic: the target is either absent or complete and verified
    except urllib.error.URLError as exc:
        raise TIA2IntegrityError(
            f"could not download TIA2 file {relpath} from {url}: {exc}. Offline? Set {ENV_MIRROR} "
            "to a folder holding the nine files (e.g. ../shared/tia2)."
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)


def tia2_path(
    relpath: str,
    *,
    mirror: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    base_url: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Path of a verified TIA2 file: from the mirror if one is set, else the cache, downloading
    into it when absent. Raises :class:`TIA2IntegrityError` on a missing file or a bad hash."""
    if relpath not in expected_sha256():
        raise ValueError(f"{relpath!r} is not a TIA2 file; known: {sorted(expected_sha256())}")
    mirror_dir = resolve_mirror(mirror)
    if mirror_dir is not None:
        path = mirror_dir / relpath
        if not path.is_file():
            raise TIA2IntegrityError(
                f"TIA2 file {relpath} is missing from mirror {mirror_dir} "
                f"(expected sha256 {expected_sha256()[relpath]})."
            )
        _check(path, relpath, f"mirror {mirror_dir}")
        return path
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache / relpath
    if not path.is_file():
        url = f"{(base_url or os.environ.get(ENV_URL) or TIA2_BASE_URL).rstrip('/')}/{relpath}"
        _download(url, path, relpath, timeout)
    _check(path, relpath, f"cache {cache}")
    return path


def fetch(subsets: Iterable[str] = SUBSETS, **kwargs) -> dict[str, Path]:
    """Fetch (or locate in a mirror) and verify every file of ``subsets``."""
    return {rel: tia2_path(rel, **kwargs) for rel in tia2_files(subsets)}
