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
    scores["noise"] = rng.normal(0, 1, len(images))                       # uninformative
    csv = tmp_path / "scores.csv"
    scores.to_csv(csv, index=False)
    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(
        str(repo_root() / "notebooks" / "01_tia2.ipynb"), str(out), kernel_name="python3",
        parameters={"subsets": ["counting"], "n_boot": 200, "scores_path": str(csv), "reference": "good",
                    "tia2_mirror": str(mirror)}, progress_bar=False)
    text = out.read_text()
    assert "recomputed from 7500 per-image scores" in text
    assert "highest mean AUROC on counting: good" in text
    assert "no published scale / lambda choices" in text
