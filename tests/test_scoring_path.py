"""The one scoring path (textnorm.rewards.scoring): grouping by prompt, the score matrices, raw and
TextNorm scores back in input order; and the package's structure rules (no private names imported
across modules, no warning filter installed by ``import textnorm``)."""

from __future__ import annotations

import ast
import subprocess
import sys

import numpy as np
import pytest

from textnorm.paths import repo_root
from textnorm.rewards import calibration, scoring


class TableReward:
    """r(x, y) from a table: images are ints, the reward is x * len(y) (distinct per pair)."""

    name = "table"

    def __init__(self):
        self.calls = []

    def score_matrix(self, images, prompts, progress=False):
        self.calls.append((list(images), list(prompts)))
        return np.array([[float(x) * len(p) for p in prompts] for x in images])


def contrast(prompt):
    return [prompt + "!", prompt + "??"]


def test_groups_and_repeats():
    assert scoring.repeat_prompts(["a", "b"], 3) == ["a", "a", "a", "b", "b", "b"]
    groups = scoring.group_by_prompt(["b", "a", "b", "c", "a"])
    assert list(groups) == ["b", "a", "c"]  # order of first appearance
    assert [g.tolist() for g in groups.values()] == [[0, 2], [1, 4], [3]]


def test_matrices_raw_and_textnorm_in_input_order():
    model = TableReward()
    images = [1, 2, 3, 4, 5]
    prompts = ["ab", "xyz", "ab", "xyz", "ab"]
    mats = scoring.prompt_matrices(model, images, prompts, contrast)
    # one call per prompt, with the prompt first and its contrasts after it
    assert model.calls == [([1, 3, 5], ["ab", "ab!", "ab??"]), ([2, 4], ["xyz", "xyz!", "xyz??"])]
    raw = scoring.raw(mats)
    assert raw.tolist() == [x * len(p) for x, p in zip(images, prompts)]
    tn = scoring.textnorm(mats, 0.5)
    for i, (x, p) in enumerate(zip(images, prompts)):
        expected = calibration.textnorm(np.array([x * len(p)]), np.array([[x * (len(p) + 1), x * (len(p) + 2)]]), 0.5)
        assert tn[i] == pytest.approx(expected[0])
    mm = scoring.textnorm_minmax(mats, 10.0)
    assert mm.shape == (5,) and np.all((mm > 0) & (mm < 1))
    # a mapping of contrastive sets gives the same matrices as the function
    mapped = scoring.prompt_matrices(TableReward(), images, prompts, {p: contrast(p) for p in set(prompts)})
    assert all(np.array_equal(mapped[p][1], mats[p][1]) for p in mats)


def test_raw_only_and_loading():
    model = TableReward()
    mats = scoring.prompt_matrices(model, ["1", "2"], ["a", "a"], None, load=int)
    assert model.calls == [([1, 2], ["a"])] and scoring.raw(mats).tolist() == [1.0, 2.0]


def test_bad_inputs():
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        scoring.prompt_matrices(TableReward(), [1, 2], ["a"])
    with pytest.raises(KeyError, match="no contrastive prompt set"):
        scoring.prompt_matrices(TableReward(), [1], ["a"], {"b": ["c"]})


def _python_files():
    root = repo_root()
    return [p for d in ("textnorm", "benchmarks", "tests") for p in (root / d).rglob("*.py")]


def test_no_private_names_imported_across_modules():
    offenders = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("textnorm"):
                offenders += [
                    f"{path.name}: {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert not offenders, offenders


def test_import_installs_no_warning_filter():
    # third-party imports first (some install filters of their own), then textnorm's modules
    code = (
        "import warnings, numpy, pandas, scipy.stats, scipy.special, PIL.Image, tqdm, torch; "
        "before = list(warnings.filters); "
        "import textnorm, textnorm.tia2, textnorm.stats.metrics, textnorm.rewards.calibration; "
        "print(warnings.filters == before)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"
