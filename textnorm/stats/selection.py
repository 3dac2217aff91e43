"""Choosing a hyper-parameter (TextNorm's temperature, the ensemble's lambda) per subset.

Input: a long table with one row per (subset, prompt, param) and the per-prompt metric value
obtained with that parameter.

- **cross-validated choice** (honest): prompts are split into k folds; for the prompts of each
  fold, the parameter is the one with the best mean metric over the other folds' prompts, and the
  prompt's value is the one obtained with it.
- **per-prompt best** (oracle): every prompt keeps its own best parameter. This is how the
  published TIA2 TextNorm scores were tuned; it uses the evaluation labels and is optimistic.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def cross_validated(
    table: pd.DataFrame,
    value: str,
    param: str = "param",
    folds: int = 5,
    seed: int = 0,
    by: tuple[str, ...] = ("subset",),
) -> pd.DataFrame:
    """One row per prompt: its fold, the chosen param and the value with that param."""
    out = []
    for _, grp in table.groupby(list(by), sort=False, observed=True):
        prompts = grp["prompt"].unique()
        rng = np.random.default_rng(seed)
        fold_of = dict(zip(prompts, rng.permutation(len(prompts)) % folds))
        fold = grp["prompt"].map(fold_of)
        for f in range(folds):
            train, test = grp[fold != f], grp[fold == f]
            if test.empty:
                continue
            best = train.groupby(param)[value].mean().idxmax()
            chosen = test[test[param] == best]
            out.append(chosen.assign(fold=f))
    return pd.concat(out, ignore_index=True)


def per_prompt_best(
    table: pd.DataFrame, value: str, param: str = "param", by: tuple[str, ...] = ("subset",)
) -> pd.DataFrame:
    """One row per prompt with the param that maximises that prompt's own value."""
    idx = table.groupby([*by, "prompt"], observed=True)[value].idxmax()
    return table.loc[idx].reset_index(drop=True)
