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


def test_real_dual_encoder_on_arrays_equals_the_direct_loop(tmp_path):
    """A tiny CLIP (text cache, minibatches smaller than a prompt's images) on uint8 arrays, the
    chapters' case: the same matrices as calling score_matrix prompt by prompt, and a pandas Series
    of images is read by position, not by its index labels."""
    import pandas as pd

    from textnorm import testing
    from textnorm.rewards import load_reward

    model = load_reward("clip", str(testing.save_clip(tmp_path / "clip")), batch_size=2)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (7, 32, 32, 3), dtype=np.uint8)
    prompts = ["a cat", "two dogs", "a cat", "a cat", "two dogs", "a cat", "two dogs"]
    mats = scoring.prompt_matrices(model, images, prompts, contrast)
    fresh = load_reward("clip", str(tmp_path / "clip"), batch_size=2)
    for p in ("a cat", "two dogs"):
        idx = [i for i, q in enumerate(prompts) if q == p]
        direct = fresh.score_matrix(list(images[idx]), [p, *contrast(p)])
        assert np.array_equal(mats[p][0], idx) and np.allclose(mats[p][1], direct, rtol=0, atol=1e-6)
    assert np.allclose(scoring.raw(mats), model.score(list(images), prompts), rtol=0, atol=1e-6)
    shuffled = pd.Series(list(images), index=[6, 5, 4, 3, 2, 1, 0])
    again = scoring.prompt_matrices(model, shuffled, prompts, contrast)
    assert all(np.allclose(again[p][1], mats[p][1], rtol=0, atol=1e-6) for p in mats)


def test_bad_inputs():
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        scoring.prompt_matrices(TableReward(), [1, 2], ["a"])
    with pytest.raises(KeyError, match="no contrastive prompt set"):
        scoring.prompt_matrices(TableReward(), [1], ["a"], {"b": ["c"]})
    model = TableReward()
    with pytest.raises(ValueError, match="gave no prompt for 1 prompts"):
        scoring.prompt_matrices(model, [1, 2], ["a", "b"], lambda p: [] if p == "b" else ["c"])
    assert model.calls == []  # checked before any scoring


def _sources():
    """(name, source) of every Python file of the package, benchmarks, tests and book scripts, and
    of every notebook's code cells."""
    import json

    root = repo_root()
    out = [
        (p.name, p.read_text()) for d in ("textnorm", "benchmarks", "tests", "book") for p in (root / d).rglob("*.py")
    ]
    for nb in sorted((root / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        out.append((nb.name, "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!")))))
    return out


def test_no_private_names_imported_across_modules():
    offenders = []
    for name, source in _sources():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("textnorm"):
                offenders += [
                    f"{name}: {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert not offenders, offenders


def test_import_installs_no_warning_filter():
    # third-party imports first (some install filters of their own), then textnorm's modules
    modules = [
        "textnorm",
        "textnorm.tia2",
        "textnorm.tia2.scoring",
        "textnorm.tia2.evaluation",
        "textnorm.stats.metrics",
        "textnorm.stats.humaneval",
        "textnorm.rewards",
        "textnorm.rewards.calibration",
        "textnorm.rewards.scoring",
        "textnorm.rewards.clip",
        "textnorm.synth.generator",
        "textnorm.synth.judge",
        "textnorm.finetune.loop",
        "textnorm.plots",
        "textnorm.tables",
        "textnorm.cli",
    ]
    code = (
        "import warnings, numpy, pandas, scipy.stats, scipy.special, PIL.Image, tqdm, torch, transformers, "
        "diffusers, accelerate, matplotlib.pyplot, seaborn, statsmodels.api; "
        "before = list(warnings.filters); import importlib; "
        f"[importlib.import_module(m) for m in {modules!r}]; "
        "print([f for f in warnings.filters if f not in before])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
