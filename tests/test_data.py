from __future__ import annotations

import json
from pathlib import Path

import pytest

from textnorm.cli import main as cli_main
from textnorm.tia2 import data

REL = "human_annotations/human_labels_counting.json"


def test_recorded_sums_match_shared_sums(mirror: Path):
    shared = {}
    for line in (mirror / "SHA256SUMS").read_text().splitlines():
        digest, path = line.split()
        shared[path] = digest
    assert data.expected_sha256() == shared
    assert sorted(data.tia2_files()) == sorted(shared)


def test_mirror_files_verify(mirror: Path):
    paths = data.fetch(mirror=mirror)
    assert len(paths) == 9
    for rel, path in paths.items():
        assert path == (mirror / rel).resolve()


def test_mirror_from_environment(mirror: Path, monkeypatch):
    monkeypatch.setenv(data.ENV_MIRROR, str(mirror))
    assert data.tia2_path(REL) == (mirror / REL).resolve()


def test_mirror_hash_mismatch_names_file_and_both_hashes(mirror_copy: Path):
    target = mirror_copy / REL
    target.write_bytes(target.read_bytes() + b"\n")
    bad = data.sha256_of(target)
    with pytest.raises(data.TIA2IntegrityError) as info:
        data.tia2_path(REL, mirror=mirror_copy)
    msg = str(info.value)
    assert REL in msg and data.expected_sha256()[REL] in msg and bad in msg


def test_mirror_missing_file(mirror_copy: Path):
    (mirror_copy / REL).unlink()
    with pytest.raises(data.TIA2IntegrityError, match="missing"):
        data.tia2_path(REL, mirror=mirror_copy)


def test_download_into_cache(http_server, tmp_path: Path, monkeypatch):
    monkeypatch.delenv(data.ENV_MIRROR, raising=False)
    url, _ = http_server
    cache = tmp_path / "cache"
    paths = data.fetch(["counting"], cache_dir=cache, base_url=url)
    assert set(paths) == set(data.tia2_files(["counting"]))
    for rel, path in paths.items():
        assert path == cache / rel and data.sha256_of(path) == data.expected_sha256()[rel]
    # a second call uses the cache: it works with the server gone
    assert data.tia2_path(REL, cache_dir=cache, base_url="http://127.0.0.1:9") == cache / REL


def test_download_hash_mismatch_leaves_nothing(http_server, tmp_path: Path, monkeypatch):
    monkeypatch.delenv(data.ENV_MIRROR, raising=False)
    url, served = http_server
    (served / REL).write_text(json.dumps({"tampered": True}))
    cache = tmp_path / "cache"
    with pytest.raises(data.TIA2IntegrityError) as info:
        data.tia2_path(REL, cache_dir=cache, base_url=url)
    assert REL in str(info.value) and data.expected_sha256()[REL] in str(info.value)
    leftovers = [p for p in cache.rglob("*") if p.is_file()]
    assert leftovers == []


def test_download_failure_is_clear(tmp_path: Path, monkeypatch):
    monkeypatch.delenv(data.ENV_MIRROR, raising=False)
    with pytest.raises(data.TIA2IntegrityError, match="could not download"):
        data.tia2_path(REL, cache_dir=tmp_path, base_url="http://127.0.0.1:9", timeout=5)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_unknown_subset_and_file():
    with pytest.raises(ValueError, match="unknown TIA2 subset"):
        data.tia2_files(["cats"])
    with pytest.raises(ValueError, match="not a TIA2 file"):
        data.tia2_path("secrets.json")


def test_cli_fetch(mirror: Path, mirror_copy: Path, capsys):
    assert cli_main(["fetch", "--mirror", str(mirror), "--subset", "counting"]) == 0
    assert "ok  " + REL in capsys.readouterr().out
    (mirror_copy / REL).write_text("{}")
    assert cli_main(["fetch", "--mirror", str(mirror_copy)]) == 1
    assert "sha256 mismatch" in capsys.readouterr().err
