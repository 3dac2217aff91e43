"""From per-image reward scores to per-prompt TIA2 metrics, in the published JSON layout.

Scores (columns subset?, prompt?, image, <reward columns>) are joined to the TIA2 labels on the
image name within a subset; per-prompt metrics follow :mod:`textnorm.metrics` and the label and
exclusion rules of :mod:`textnorm.tia2`. The JSON layout is the authors':
``{prompt: {"human": aligned fraction, <model>: {"auroc": ..., "auprc": ..., "ap5": ..., ...}}}``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from textnorm.metrics import METRIC_NAMES, per_prompt_metrics


def score_columns(scores: pd.DataFrame) -> list[str]:
    """Numeric columns other than the identifying ones."""
    ids = {"subset", "prompt", "image", "prompt_id"}
    return [c for c in scores.columns if c not in ids and pd.api.types.is_numeric_dtype(scores[c])]


def metrics_from_scores(scores: pd.DataFrame, images: pd.DataFrame,
                        columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-prompt metrics (long table, as :func:`textnorm.metrics.per_prompt_metrics`)."""
    columns = list(columns) if columns is not None else score_columns(scores)
    if not columns:
        raise ValueError("the scores table has no numeric score column")
    missing = [c for c in columns if c not in scores]
    if missing:
        raise KeyError(f"score columns {missing} not in the scores table ({list(scores.columns)})")
    key = ["subset", "image"] if "subset" in scores else ["image"]
    merged = images.merge(scores[key + columns], on=key, how="inner")
    if merged.empty:
        raise ValueError("no scored image matches the TIA2 annotations (compare the image names)")
    if merged[columns].isna().any().any():
        raise ValueError("some scores are missing (NaN); score every image of a prompt")
    return per_prompt_metrics(merged, columns)


def to_published_layout(table: pd.DataFrame) -> dict[str, dict]:
    """``{prompt: {"human": h, model: {metric: value}}}`` for one subset's per-prompt table."""
    out: dict[str, dict] = {}
    for (prompt, model), grp in table.groupby(["prompt", "model"], sort=False):
        row = grp.iloc[0]
        entry = out.setdefault(prompt, {"human": float(row["human"])})
        entry[model] = {m: float(row[m]) for m in METRIC_NAMES if not np.isnan(row[m])}
    return out
