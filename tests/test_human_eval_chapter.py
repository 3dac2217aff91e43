"""The human-evaluation chapter runs on a study of fine-tuned models: a tiny grid of the synthetic
world, its study images, the chapter executed with papermill (a smoke run: sizes too small for the
numbers to mean anything)."""

from __future__ import annotations

import json

import papermill
import pytest

from textnorm import testing
from textnorm.experiments import overopt, study
from textnorm.paths import repo_root

CHAPTER = repo_root() / "notebooks" / "04_human_eval.ipynb"
PROMPTS = ["two red circles", "three blue squares"]


def _grid():
    rewards = {
        "preference": {"spec": "raw:data/synth/proxy_preference"},
        "TextNorm(preference)": {"spec": "textnorm:data/synth/proxy_preference", "temperature": 3.0},
    }
    return testing.tiny_synth_grid(rewards, PROMPTS, pairs=[["preference", "TextNorm(preference)"]], lr=3e-3)


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    from textnorm.cli import main

    root = tmp_path_factory.mktemp("human")
    overopt.run(root / "logs", _grid(), workers=2, progress=False)
    # the command line's path: systems from the grid's pairs, 12 held-out captions, 4 images each
    args = ["study", "--logs", str(root / "logs"), "--out", str(root / "study"), "--prompts", "12", "--quiet"]
    assert main(args) == 0
    assert main(args) == 1  # a second run refuses to overwrite the study without --overwrite
    return root / "study"


def test_the_chapter_runs_on_a_study_of_fine_tuned_models(tiny_study, tmp_path):
    out = tmp_path / "04.ipynb"
    papermill.execute_notebook(
        str(CHAPTER),
        str(out),
        kernel_name="python3",
        progress_bar=False,
        parameters={
            "study": str(tiny_study),
            "logs": str(tiny_study.parent / "logs"),
            "n_boot": 50,
            "selection_share": 0.34,
            "sensitivity": [[1.0, 0.0]],
            "tie_margin": 0.0,
        },
    )
    nb = json.loads(out.read_text())
    text = "\n".join(
        "".join(o.get("text", ""))
        + "".join(o.get("data", {}).get("text/plain", ""))
        + "".join(o.get("data", {}).get("text/markdown", ""))
        for c in nb["cells"]
        for o in c.get("outputs", [])
    )
    assert "strongest baseline" in text and "The claim" in text and "A real study" in text
    assert "nan" not in text.lower()
    assert "its raw reward's model" in text  # the secondary comparison's table
    S = study.load_study(tiny_study)
    roles = [s["role"] for s in S["systems"]]
    assert roles[0] == "base" and roles.count("raw") >= 1 and roles.count("textnorm") >= 1
    assert "The claim" in text and ("holds for" in text or "not shown" in text or "does not hold" in text)
