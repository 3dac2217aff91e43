"""The book's cross-references: glued numbers on the first page exist in the executed chapters,
every citation is in the bibliography, and the run-time table reads the notebooks' metadata."""

from __future__ import annotations

import json
import re
import sys

import pytest

from textnorm.paths import repo_root

ROOT = repo_root()
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import runtimes  # noqa: E402  (the book's local Sphinx extension)


def _glued_keys(notebook: str) -> set[str]:
    nb = json.loads((ROOT / notebook).read_text())
    return {
        out["metadata"]["scrapbook"]["name"]
        for cell in nb["cells"]
        if cell["cell_type"] == "code"
        for out in cell.get("outputs", [])
        if "scrapbook" in out.get("metadata", {})
    }


def _book_texts() -> dict[str, str]:
    texts = {str(p.relative_to(ROOT)): p.read_text() for p in (ROOT / "book").glob("*.md")}
    for p in (ROOT / "notebooks").glob("[0-9]*.ipynb"):
        nb = json.loads(p.read_text())
        texts[str(p.relative_to(ROOT))] = "\n".join(
            "".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"
        )
    return texts


def test_every_number_pasted_from_another_chapter_is_glued_there():
    refs = re.findall(
        r"\{glue:text\}`/(notebooks/\w+\.ipynb)::(\w+)(?::[^`]*)?`", (ROOT / "book" / "intro.md").read_text()
    )
    assert len(refs) >= 20  # the findings table
    missing = [(nb, key) for nb, key in refs if key not in _glued_keys(nb)]
    assert not missing, f"keys the first page pastes but no executed chapter glues: {missing}"


def test_every_citation_is_in_the_bibliography_and_every_entry_is_cited():
    entries = set(re.findall(r"^@\w+\{([^,]+),", (ROOT / "book" / "references.bib").read_text(), flags=re.M))
    cited = {
        key.strip()
        for text in _book_texts().values()
        for keys in re.findall(r"\{cite:[pt]\}`([^`]+)`", text)
        for key in keys.split(",")
    }
    assert cited - entries == set(), f"cited but not in book/references.bib: {cited - entries}"
    assert entries - cited == set(), f"in book/references.bib but never cited: {entries - cited}"


def _notebook(path, title: str, duration: float | None) -> None:
    meta = {"papermill": {"duration": duration}} if duration is not None else {}
    path.write_text(
        json.dumps({"cells": [{"cell_type": "markdown", "source": [f"# {title}\n", "text"]}], "metadata": meta})
    )


def test_run_times_come_from_papermill_metadata(tmp_path):
    (tmp_path / "notebooks").mkdir()
    _notebook(tmp_path / "notebooks" / "02_b.ipynb", "Second", 75.5)
    _notebook(tmp_path / "notebooks" / "01_a.ipynb", "First", 3.25)
    _notebook(tmp_path / "notebooks" / "scratch.ipynb", "Not a chapter", 1.0)
    assert runtimes.chapter_runtimes(tmp_path) == [("01_a.ipynb", "First", 3.25), ("02_b.ipynb", "Second", 75.5)]
    assert runtimes._minutes(75.5) == "76 s" and runtimes._minutes(600) == "10.0 min"
    _notebook(tmp_path / "notebooks" / "03_c.ipynb", "Never executed", None)
    with pytest.raises(ValueError, match="03_c.ipynb has no papermill duration"):
        runtimes.chapter_runtimes(tmp_path)


def test_committed_chapters_have_run_times():
    rows = runtimes.chapter_runtimes(ROOT)
    assert [r[0] for r in rows] == sorted(p.name for p in (ROOT / "notebooks").glob("[0-9]*.ipynb"))
    assert all(seconds > 0 for _, _, seconds in rows)


def test_the_citation_file_names_this_version_and_the_paper():
    import tomllib

    import yaml

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert (
        cff["cff-version"] == "1.2.0"
        and cff["version"] == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    )
    assert cff["preferred-citation"]["year"] == 2024 and len(cff["preferred-citation"]["authors"]) == 7
