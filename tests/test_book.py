"""The book's cross-references: glued numbers on the first page exist in the executed chapters,
every citation is in the bibliography, and the run-time table reads the notebooks' metadata. The
book's local extensions (book/_ext) and the page check's helpers (book/check_pages.py) without a
browser; a tiny book built with the extensions under -W."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
import tomllib

import pytest
import yaml

from textnorm.paths import repo_root

ROOT = repo_root()
sys.path.insert(0, str(ROOT / "book" / "_ext"))
sys.path.insert(0, str(ROOT / "book"))
import check_pages  # noqa: E402  (the page check; playwright is imported only when it runs)
import package_version  # noqa: E402  (the book's local Sphinx extensions)
import repository_buttons  # noqa: E402
import runtimes  # noqa: E402


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


# ---- each chapter's run time and parameters under its title (book/_ext/runtimes.py) ----------------


def _code(source: str, tags: list[str]) -> dict:
    return {"cell_type": "code", "metadata": {"tags": tags}, "source": source, "outputs": [], "execution_count": None}


def test_chapter_parameters_are_the_parameters_cell_with_papermill_injections():
    nb = {
        "cells": [
            _code("import os", []),
            _code(
                '# Parameters\nseed = 0          # a comment\nsubsets = ["a",\n           "b"]  # two lines\n'
                "n: int = 5\nx = y = 1.5\n",
                ["parameters"],
            ),
            _code('# Parameters\nseed = 3\nextra = "new"\n', ["injected-parameters"]),
            _code("seed = 99", []),  # a later cell is not a parameter
        ],
    }
    assert runtimes.chapter_parameters(nb) == [
        ("seed", "3", True),
        ("subsets", "['a', 'b']", False),
        ("n", "5", False),
        ("x", "1.5", False),
        ("y", "1.5", False),
        ("extra", '"new"', True),
    ]
    assert runtimes.chapter_parameters({"cells": [_code("%matplotlib inline", ["parameters"])]}) == []


def test_chapter_run_box_states_run_time_date_and_parameters():
    nb = {
        "metadata": {"papermill": {"duration": 318.2, "end_time": "2026-12-05T21:00:01+00:00"}},
        "cells": [_code('seed = 0\nlogs = "data/overopt"', ["parameters"]), _code("seed = 1", ["injected-parameters"])],
    }
    node = runtimes.chapter_run_node(nb)
    assert node["summary"] == "Executed by papermill on 2026-12-05 in 5.3 min · 2 parameters"
    assert node[0].astext() == 'seed = 1  # set by papermill\nlogs = "data/overopt"'
    assert "set by papermill" in node[1].astext()
    assert runtimes.chapter_run_node({"metadata": {}, "cells": []}) is None  # never run by papermill
    bare = runtimes.chapter_run_node({"metadata": {"papermill": {"duration": 3}}, "cells": []})
    assert bare["summary"] == "Executed by papermill in 3 s · no parameters" and not bare.children


def test_every_chapter_gets_a_run_box_with_its_parameters():
    for path in sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")):
        nb = json.loads(path.read_text())
        node = runtimes.chapter_run_node(nb)
        assert node is not None, f"{path.name}: no papermill metadata"
        names = [name for name, _, _ in runtimes.chapter_parameters(nb)]
        assert names and len(names) == len(set(names)), path.name
        assert f"{len(names)} parameter" in node["summary"]


# ---- the package version on the page (book/_ext/package_version.py) --------------------------------


def test_version_is_read_from_the_package_not_typed(tmp_path):
    import textnorm

    assert package_version.package_version(ROOT) == textnorm.__version__
    (tmp_path / "textnorm").mkdir()
    (tmp_path / "textnorm" / "__init__.py").write_text('"""doc"""\nimport os\n__version__ = "9.8.7"\n')
    assert package_version.package_version(tmp_path) == "9.8.7"
    (tmp_path / "textnorm" / "__init__.py").write_text("version = 1\n")
    with pytest.raises(ValueError, match="assigns no string to __version__"):
        package_version.package_version(tmp_path)


# ---- repository and launch buttons (book/_ext/repository_buttons.py) --------------------------------


@pytest.mark.parametrize(
    ("remote", "url"),
    [
        ("https://github.com/org/repo", "https://github.com/org/repo"),
        ("https://github.com/org/repo.git/", "https://github.com/org/repo"),
        ("git@github.com:org/repo.git", "https://github.com/org/repo"),
        ("ssh://git@gitlab.com/group/sub/repo.git", "https://gitlab.com/group/sub/repo"),
        ("https://user@github.com/org/repo", "https://github.com/org/repo"),
        ("/srv/git/repo.git", None),
        ("file:///srv/git/repo.git", None),
        ("https://github.com/org", None),
        ("", None),
        (None, None),
    ],
)
def test_remote_urls_are_normalised(remote, url):
    assert repository_buttons.normalise(remote) == url


def test_repository_url_comes_from_the_environment_then_git(tmp_path):
    env = {"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "org/from-actions"}
    assert repository_buttons.repository_url(env) == "https://github.com/org/from-actions"
    env["TEXTNORM_REPOSITORY_URL"] = "git@github.com:org/explicit.git"
    assert repository_buttons.repository_url(env) == "https://github.com/org/explicit"
    assert repository_buttons.repository_url({}, tmp_path) is None  # not a git repository
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert repository_buttons.repository_url({}, tmp_path) is None  # a repository without origin
    subprocess.run(["git", "-C", str(tmp_path), "remote", "add", "origin", "git@gitlab.com:g/r.git"], check=True)
    assert repository_buttons.repository_url({}, tmp_path) == "https://gitlab.com/g/r"
    assert repository_buttons.repository_branch({}) == "main"
    assert repository_buttons.repository_branch({"GITHUB_REF_NAME": "dev", "GITHUB_REF_TYPE": "branch"}) == "dev"
    assert repository_buttons.repository_branch({"GITHUB_REF_NAME": "v1", "GITHUB_REF_TYPE": "tag"}) == "main"


def test_buttons_only_with_a_known_repository():
    launch = {"binderhub_url": "https://mybinder.org", "colab_url": "https://colab.research.google.com"}
    off = repository_buttons.theme_options(None, "main", launch)
    assert off["repository_url"] == "" and off["launch_buttons"] == {}
    assert not any(off[k] for k in ("use_repository_button", "use_edit_page_button", "use_issues_button"))
    assert repository_buttons.theme_options("https://example.org/a/b", "main", launch) == off  # no provider
    gh = repository_buttons.theme_options("https://github.com/a/b", "dev", launch)
    assert gh["repository_url"] == "https://github.com/a/b" and gh["repository_branch"] == "dev"
    assert gh["use_repository_button"] and gh["use_edit_page_button"] and gh["launch_buttons"] == launch
    gl = repository_buttons.theme_options("https://gitlab.com/a/b", "main", launch)
    assert gl["launch_buttons"] == {"binderhub_url": "https://mybinder.org"}  # Colab opens GitHub only


# ---- a tiny book built with the extensions under -W -------------------------------------------------

CONF = """
import sys
sys.path.insert(0, {ext!r})
project = "tiny"
extensions = ["myst_nb", "runtimes", "package_version", "repository_buttons"]
html_theme = "sphinx_book_theme"
# Jupyter Book's defaults: its own repository, unless the extension replaces it
html_theme_options = {{"repository_url": "https://github.com/executablebooks/jupyter-book",
                       "launch_buttons": {{"binderhub_url": "https://mybinder.org",
                                          "colab_url": "https://colab.research.google.com"}}}}
myst_enable_extensions = ["substitution"]
nb_execution_mode = "off"
exclude_patterns = ["_build"]
"""


def _tiny_book(root):
    import nbformat

    (root / "textnorm").mkdir()
    (root / "textnorm" / "__init__.py").write_text('__version__ = "9.8.7"\n')
    (root / "conf.py").write_text(CONF.format(ext=str(ROOT / "book" / "_ext")))
    (root / "index.md").write_text(
        "# Tiny\n\nThis book documents textnorm {{ version }}.\n\n```{toctree}\nchapter\n```\n"
    )
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["papermill"] = {"duration": 42.0, "end_time": "2026-12-01T10:00:00+00:00", "parameters": {}}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A chapter\n\nText."),
        nbformat.v4.new_code_cell("seed = 0", metadata={"tags": ["parameters"]}),
    ]
    nbformat.write(nb, root / "chapter.ipynb")


def _build(root, env):
    out = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(root), str(root / "_build" / "html")],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    html = root / "_build" / "html"  # myst-nb writes beside it (_build/jupyter_execute), outside the sources
    return (html / "index.html").read_text(), (html / "chapter.html").read_text()


def test_tiny_book_shows_version_run_box_and_buttons_only_with_a_repository(tmp_path):
    _tiny_book(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "TEXTNORM_REPOSITORY"))}
    index, chapter = _build(tmp_path, env)
    assert "This book documents textnorm 9.8.7." in index
    assert '<details class="tn-chapter-run">' in chapter
    assert "Executed by papermill on 2026-12-01 in 42 s · 1 parameter" in chapter
    assert chapter.index("tn-chapter-run") > chapter.index("<h1>A chapter")  # under the title
    for page in (index, chapter):
        assert "github.com" not in page and "mybinder" not in page and "colab" not in page
    env["TEXTNORM_REPOSITORY_URL"] = "https://github.com/someone/tiny"
    index, chapter = _build(tmp_path, env)
    assert "https://github.com/someone/tiny/edit/main/chapter.ipynb" in chapter
    assert "https://mybinder.org/v2/gh/someone/tiny/main?urlpath=tree/chapter.ipynb" in chapter
    assert "https://colab.research.google.com/github/someone/tiny/blob/main/chapter.ipynb" in chapter
    assert "executablebooks" not in chapter


# ---- the page check's helpers (book/check_pages.py), without a browser ------------------------------


@pytest.mark.parametrize(
    ("alt", "ok"),
    [
        (None, False),
        ("", False),
        ("  ", False),
        ("../_images/4def33fb7e36c0a7d8082f106bcc33c55bb8c0908b072796b6f5b650d09db6e1.png", False),
        ("figure.PNG", False),
        ("Gold alignment against the square root of KL, one line per reward", True),
    ],
)
def test_alt_text_must_describe_the_figure(alt, ok):
    src = "file:///b/_images/4def33fb7e36c0a7d8082f106bcc33c55bb8c0908b072796b6f5b650d09db6e1.png"
    assert (check_pages.alt_problem(alt, src) is None) == ok


def test_rendered_figure_text_scales_the_stored_font(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from textnorm.plots import figure_png, png_min_font_px

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.set_axis_off()
    ax.set_title("title", fontsize=9)
    data = figure_png(fig)
    plt.close(fig)
    stored = png_min_font_px(data)
    assert stored == pytest.approx(12.5)  # 9 pt at 100 dpi
    natural = Image.open(io.BytesIO(data)).width
    assert check_pages.figure_text_px(stored, natural, natural / 2) == pytest.approx(6.25)
    path = tmp_path / "fig.png"
    path.write_bytes(data)
    assert check_pages.image_bytes(path.as_uri()) == data
    assert check_pages.image_bytes("data:image/png;base64," + base64.b64encode(data).decode()) == data
    assert check_pages.image_bytes("https://example.org/fig.png") is None
    assert check_pages._min_font_reader()(data) == stored


def test_screenshots_default_to_the_first_page_and_the_overoptimization_chapter():
    names = ["book/intro.html", "index.html", "notebooks/03_overoptimization.html", "notebooks/01_tia2.html"]
    assert [n for n in names if check_pages._wants_shot(n, check_pages.SCREENSHOT_PAGES)] == [
        "book/intro.html",
        "notebooks/03_overoptimization.html",
    ]


# ---- glossary, changelog and pins ----------------------------------------------------------------


def _glossary_terms() -> list[str]:
    text = (ROOT / "book" / "glossary.md").read_text()
    block = re.search(r"^```\{glossary\}\n(.*?)^```", text, flags=re.M | re.S)
    assert block, "book/glossary.md is a {glossary} block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip() and not line.startswith(" ")]


def test_glossary_terms_and_every_term_reference_resolves():
    terms = _glossary_terms()
    assert {"AUROC", "TextNorm", "KL", "DDPO", "best-of-n", "Bradley-Terry model"} <= set(terms)
    used = {ref for text in _book_texts().values() for ref in re.findall(r"\{term\}`([^`]+)`", text)}
    target = {re.sub(r".*<(.+)>$", r"\1", ref).strip() for ref in used}  # {term}`text <Term>` links Term
    lower = {t.lower() for t in terms}
    assert {t for t in target if t.lower() not in lower} == set()


def test_changelog_is_in_the_book_under_reference():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    reference = next(p for p in toc["parts"] if p["caption"] == "Reference")
    assert {"file": "CHANGELOG"} in reference["chapters"]
    text = (ROOT / "CHANGELOG.md").read_text()
    assert "## Unreleased" in text and "## 0.1.0" in text


def test_book_theme_pins_match_the_lock():
    book = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["book"]
    lock = (ROOT / "requirements.lock").read_text().splitlines()
    for package in ("sphinx-book-theme", "pydata-sphinx-theme"):
        pin = next(req for req in book if req.startswith(package + "=="))
        assert pin in lock, f"{pin} in pyproject.toml's book extra but not in requirements.lock"
