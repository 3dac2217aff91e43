from __future__ import annotations

import numpy as np
import pandas as pd

from textnorm.stats import selection


def make_table(seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(30):
        best = 2 if p % 3 else 0  # most prompts prefer param 2
        for param in range(3):
            rows.append(
                {
                    "subset": "s",
                    "prompt": f"p{p}",
                    "param": param,
                    "auroc": 0.7 + 0.1 * (param == best) + 0.01 * rng.random(),
                }
            )
    return pd.DataFrame(rows)


def test_per_prompt_best_is_the_oracle():
    t = make_table()
    best = selection.per_prompt_best(t, "auroc")
    assert len(best) == 30
    assert (best.groupby("prompt").auroc.first() == t.groupby("prompt").auroc.max()).all()


def test_cross_validated_choice_is_not_the_oracle():
    t = make_table()
    cv = selection.cross_validated(t, "auroc", folds=5, seed=0)
    assert len(cv) == 30 and set(cv.fold) == set(range(5))
    assert (cv.param == 2).all()  # the majority choice, learned on the other folds
    assert cv.auroc.mean() < selection.per_prompt_best(t, "auroc").auroc.mean()
