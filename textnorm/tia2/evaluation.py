"""From per-image reward scores to per-prompt TIA2 metrics, in the published JSON layout.

Scores (columns subset?, prompt?, image, <reward columns>) are joined to the TIA2 labels on
(subset, image): image file names repeat across subsets, so the subset is part of the key, and a
``prompt`` column, when present, must name each image's TIA2 prompt: that is what catches scores of another subset.
Without a prompt column they cannot be told apart (the first prompts of every subset have the same file names):
``match_by_image_name=False`` refuses such scores (the TIA2 chapter's default); the default, True, matches them by
image name alone, and the caller reports the coverage (how many of the subset's prompts were scored), as
``textnorm evaluate`` does. Before any metric is computed the scores are checked:

- every (subset, image) appears once (duplicates, even with equal scores, would count twice);
- every scored image is a TIA2 image of the subset (unknown names are an error, not dropped);
- coverage per prompt: a prompt is either absent (not evaluated) or has all its annotated images
  scored. A partly scored prompt is refused unless ``partial=True``; then its metrics, and its
  ``human`` fraction, are computed on the scored images and the table says so (``n_scored`` <
  ``n_images``).
- score columns are numeric and named apart from the identifiers and the labels; without a
  ``subset`` column the labels must hold one subset.

Per-prompt metrics follow :mod:`textnorm.stats.metrics` and the label and exclusion rules of
:mod:`textnorm.tia2`. The JSON layout is the authors':
``{prompt: {"human": aligned fraction, <model>: {"auroc": ..., "auprc": ..., "ap5": ..., ...}}}``,
with ``"coverage": [n_scored, n_images]`` added to a prompt only when it was partly scored.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from textnorm.stats.metrics import METRIC_NAMES, per_prompt_metrics

ID_COLUMNS = ("subset", "prompt", "image", "prompt_id")
# names the labels and the output use: a score column of that name would be confused with them
RESERVED = ("human", "coverage", "aligned", "label_1", "label_2", "label_3", "model", "n_scored", "n_images")


def score_columns(scores: pd.DataFrame) -> list[str]:
    """The columns to evaluate: all but the identifying ones and a saved pandas index
    (``Unnamed: 0``). Each must be numeric: a text value in a score column is an error naming
    it, not a reason to drop the column."""
    cols = [c for c in scores.columns if c not in ID_COLUMNS and not str(c).startswith("Unnamed:")]
    check_score_columns(scores, cols)
    return cols


def check_score_columns(scores: pd.DataFrame, columns: Sequence[str]) -> None:
    """Refuse duplicated, reserved, identifying, missing or non-numeric score columns."""
    if len(set(columns)) != len(columns) or len(set(scores.columns)) != len(scores.columns):
        raise ValueError(f"score columns repeat: {list(columns)} (table columns {list(scores.columns)})")
    for c in columns:
        if c in ID_COLUMNS or c in RESERVED:
            raise ValueError(
                f"column {c!r} cannot be a score column (it names the {'identifiers' if c in ID_COLUMNS else 'labels or output'}); "
                "rename it"
            )
        if c not in scores:
            raise KeyError(f"score columns {[c]} not in the scores table ({list(scores.columns)})")
        col = scores[c]
        if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
            bad = col[pd.to_numeric(col, errors="coerce").isna() & col.notna()]
            example = f" (e.g. {bad.iloc[0]!r} in row {bad.index[0] + 2} of the file)" if len(bad) else ""
            raise ValueError(f"score column {c!r} is not numeric{example}; fix it or choose columns with --column")


def _examples(values, k: int = 3) -> str:
    values = list(values)
    more = f" (and {len(values) - k} more)" if len(values) > k else ""
    return ", ".join(map(str, values[:k])) + more


def check_prompt_column(scores: pd.DataFrame, match_by_image_name: bool = True) -> None:
    """Refuse scores without a ``prompt`` column unless ``match_by_image_name``: TIA2 image file names
    repeat across subsets, so without the prompt nothing shows that the scored images are the
    subset's (counting scores declared as composition would be evaluated against composition's labels)."""
    if "prompt" not in scores and not match_by_image_name:
        raise ValueError(
            "the scores have no 'prompt' column: TIA2 image file names repeat across subsets (the first prompts "
            "of every subset have the same file names), so only the prompt column proves which images were "
            "scored; add it (`textnorm score` writes it), or match by image name alone with "
            "match_by_image_name=True (a parameter of the TIA2 chapter, a keyword of textnorm.tia2.evaluation) "
            "and check the coverage it reports"
        )


def coverage(scores: pd.DataFrame, images: pd.DataFrame, match_by_image_name: bool = True) -> pd.DataFrame:
    """Per prompt of ``images``: ``n_images`` annotated, ``n_scored`` present in ``scores``.

    Raises ValueError for duplicated (subset, image) rows, images unknown to the annotations,
    prompts that disagree with the annotations' prompt of an image, and (with
    ``match_by_image_name=False``) scores without a prompt column."""
    if scores.empty:
        raise ValueError("the scores table has no rows")
    check_prompt_column(scores, match_by_image_name)
    key = ["subset", "image"] if "subset" in scores else ["image"]
    dup = scores.duplicated(key, keep=False)
    if dup.any():
        names = scores.loc[dup, "image"].drop_duplicates()
        raise ValueError(
            f"{int(dup.sum())} rows share their {' and '.join(key)} with another row "
            f"({len(names)} images, e.g. {_examples(names)}); keep one score per image"
        )
    known = scores[key].merge(images[key].drop_duplicates(), on=key, how="left", indicator=True)
    unknown = known.loc[known["_merge"] == "left_only", "image"]
    if len(unknown):
        subsets = ", ".join(sorted(images["subset"].unique())) if "subset" in images else "the labels"
        raise ValueError(
            f"{len(unknown)} scored images are not TIA2 images of {subsets} "
            f"(e.g. {_examples(unknown)}); is this the right subset?"
        )
    merged = images.merge(
        scores[key + (["prompt"] if "prompt" in scores else [])], on=key, how="inner", suffixes=("", "_scores")
    )
    if "prompt_scores" in merged:
        wrong = merged[merged["prompt"] != merged["prompt_scores"]]
        if len(wrong):
            raise ValueError(
                f"{len(wrong)} images are listed under another prompt than in the TIA2 annotations "
                f"(e.g. {wrong['image'].iloc[0]}: {wrong['prompt_scores'].iloc[0]!r} in the scores, "
                f"{wrong['prompt'].iloc[0]!r} annotated); are the scores of another subset?"
            )
    by = ["subset", "prompt"] if "subset" in images else ["prompt"]
    total = images.groupby(by, sort=False, observed=True).size().rename("n_images")
    scored = merged.groupby(by, sort=False, observed=True).size().rename("n_scored")
    return pd.concat([total, scored], axis=1).fillna({"n_scored": 0}).astype(int).reset_index()


def metrics_from_scores(
    scores: pd.DataFrame,
    images: pd.DataFrame,
    columns: Sequence[str] | None = None,
    partial: bool = False,
    match_by_image_name: bool = True,
) -> pd.DataFrame:
    """Per-prompt metrics (long table, as :func:`textnorm.stats.metrics.per_prompt_metrics`) with the
    prompt's ``n_scored`` and ``n_images``, for the prompts the scores cover (see the module
    docstring for the checks; ``partial`` admits partly scored prompts, ``match_by_image_name=False``
    refuses scores without a prompt column)."""
    check_prompt_column(scores, match_by_image_name)
    columns = list(columns) if columns is not None else score_columns(scores)
    if not columns:
        raise ValueError("the scores table has no score column")
    check_score_columns(scores, columns)
    if "subset" not in scores and "subset" in images and images["subset"].nunique() > 1:
        raise ValueError(
            "the scores have no 'subset' column but the labels hold several subsets "
            f"({', '.join(sorted(images['subset'].unique()))}), whose image file names repeat; "
            "add the subset column"
        )
    cov = coverage(scores, images, match_by_image_name)
    by = [c for c in ("subset", "prompt") if c in cov]
    part = cov[(cov.n_scored > 0) & (cov.n_scored < cov.n_images)]
    if len(part) and not partial:
        raise ValueError(
            f"{len(part)} prompts are only partly scored (e.g. {part['prompt'].iloc[0]!r}: "
            f"{part['n_scored'].iloc[0]} of {part['n_images'].iloc[0]} images); score every image "
            "of a prompt, or allow partial coverage (partial=True, --partial)"
        )
    key = ["subset", "image"] if "subset" in scores else ["image"]
    merged = images.merge(scores[key + columns], on=key, how="inner")
    if merged.empty:
        raise ValueError("no scored image matches the TIA2 annotations (compare the image names)")
    if merged[columns].isna().any().any():
        raise ValueError("some scores are missing (NaN); score every image of a prompt")
    table = per_prompt_metrics(merged, columns)
    if table.empty:
        raise ValueError(
            "none of the scored prompts can be evaluated: in each, all annotated images share one "
            "verdict (the ranking metrics need aligned and not aligned images)"
        )
    return table.merge(cov, on=by, how="left")


def to_published_layout(table: pd.DataFrame) -> dict[str, dict]:
    """``{prompt: {"human": h, model: {metric: value}}}`` for one subset's per-prompt table (plus
    ``"coverage": [n_scored, n_images]`` for a partly scored prompt)."""
    out: dict[str, dict] = {}
    for (prompt, model), grp in table.groupby(["prompt", "model"], sort=False):
        row = grp.iloc[0]
        entry = out.setdefault(prompt, {"human": float(row["human"])})
        if "n_scored" in row and row["n_scored"] < row["n_images"]:
            entry["coverage"] = [int(row["n_scored"]), int(row["n_images"])]
        entry[model] = {m: float(row[m]) for m in METRIC_NAMES if not np.isnan(row[m])}
    return out
