"""The TIA2 chapter's scores_path branch: per-image scores instead of published per-prompt values."""

from __future__ import annotations

import numpy as np
import papermill
import pytest

from textnorm import tia2
from textnorm.paths import repo_root


def test_tia2_chapter_from_per_image_scores(mirror, tmp_path):
    images = tia2.load_images(["counting"], mirror=mirror)
    rng = np.random.default_rng(0)
    scores = images[["subset", "prompt", "image"]].copy()
    scores["good"] = images["aligned"] + rng.normal(0, 0.5, len(images))  # informative
    scores["noise"] = rng.normal(0, 1, len(images))  # uninformative
    csv = tmp_path / "scores.csv"
    scores.to_csv(csv, index=False)
    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(
        str(repo_root() / "notebooks" / "01_tia2.ipynb"),
        str(out),
        kernel_name="python3",
        parameters={
            "subsets": ["counting"],
            "n_boot": 200,
            "scores_path": str(csv),
            "reference": "good",
            "tia2_mirror": str(mirror),
        },
        progress_bar=False,
    )
    text = out.read_text()
    assert "recomputed from 7500 per-image scores" in text
    assert "highest mean AUROC on counting: good" in text
    assert "no published scale / lambda choices" in text


@pytest.mark.parametrize(
    "parameters, message",
    [
        ({"n_boot": -1}, "n_boot = -1: expected an integer >= 1"),
        ({"ci_level": 1.5}, "ci_level = 1.5: expected a number strictly between 0 and 1"),
        ({"reference": "Nope"}, "reference = 'Nope': expected one of"),
        ({"scores_path": "missing.csv"}, "scores_path = 'missing.csv': expected an existing file"),
        ({"subsets": "counting"}, "subsets = 'counting': expected a non-empty list"),
    ],
)
def test_bad_parameters_stop_the_chapter_at_once(mirror, tmp_path, parameters, message):
    with pytest.raises(papermill.PapermillExecutionError) as err:
        papermill.execute_notebook(
            str(repo_root() / "notebooks" / "01_tia2.ipynb"),
            str(tmp_path / "out.ipynb"),
            kernel_name="python3",
            parameters={"tia2_mirror": str(mirror), **parameters},
            progress_bar=False,
        )
    assert message in str(err.value) and err.value.exec_count == 3  # after the parameters and papermill's injected ones


def test_parameter_rules():
    from textnorm import params

    params.check_parameters(
        {"a": 3, "b": [0.1, 0.2]}, a=params.positive_int, b=params.nonempty_list_of(params.open_unit)
    )
    with pytest.raises(ValueError) as err:
        params.check_parameters(
            {"a": True, "b": [0.1, 0.1], "c": float("nan")},
            a=params.positive_int,
            b=params.nonempty_list_of(params.open_unit),
            c=params.nonnegative_number,
        )
    text = str(err.value)
    assert "a = True" in text and "without repeated items" in text and "c = nan" in text
    with pytest.raises(KeyError):
        params.check_parameters({}, a=params.positive_int)


def test_parameter_rules_edge_cases(tmp_path):
    from textnorm import params

    assert params.positive_number(10**400) and params.open_unit(10**400)  # no OverflowError
    assert params.nonempty_list_of(params.nonnegative_number)([0, 0.0])  # repeated value
    assert params.nonempty_list_of(params.positive_number)([1, 1.0])
    assert params.one_of([0, 1])(True) and params.one_of([0, 1])(1) is None
    (tmp_path / "f").write_text("x")
    assert (
        params.existing_path(tmp_path, kind="folder")("f") and params.existing_path(tmp_path, kind="file")("f") is None
    )


def test_documented_parameter_example_runs(mirror, tmp_path):
    """The example command of book/reproduce.md, as printed there, on the cheapest chapter."""
    import shlex
    import subprocess
    import sys
    from pathlib import Path

    text = (repo_root() / "book" / "reproduce.md").read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith(".venv/bin/papermill notebooks/01_tia2.ipynb"))
    args = shlex.split(line)[1:]
    out = tmp_path / "out.ipynb"
    args[args.index("out.ipynb")] = str(out)
    papermill_exe = str(Path(sys.executable).parent / "papermill")
    done = subprocess.run(
        [papermill_exe, *args, "-p", "tia2_mirror", str(mirror), "--no-progress-bar", "-k", "python3"],
        cwd=repo_root(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    import json

    nb = out.read_text()

    injected = next(
        "".join(c["source"]) for c in json.loads(nb)["cells"] if "injected-parameters" in c["metadata"].get("tags", [])
    )
    assert 'subsets = ["counting"]' in injected and "n_boot = 2000" in injected
    assert "highest mean AUROC on counting" in nb and "highest mean AUROC on composition" not in nb


@pytest.mark.parametrize("chapter", sorted(p.name for p in (repo_root() / "notebooks").glob("[0-9]*.ipynb")))
def test_every_parameter_is_listed_by_papermill(chapter):
    """`papermill --help-notebook` shows every name the parameters cell assigns (a comment that
    papermill cannot parse would drop it)."""
    import ast
    import json

    path = repo_root() / "notebooks" / chapter
    cell = next(c for c in json.loads(path.read_text())["cells"] if "parameters" in c["metadata"].get("tags", []))
    body = ast.parse("".join(cell["source"])).body
    assigned = [t.id for node in body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)]
    assigned += [
        node.target.id for node in body if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    ]
    assert assigned and sorted(papermill.inspect_notebook(str(path))) == sorted(assigned)
