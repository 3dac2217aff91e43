"""Agreement of the raw TIA2 annotations (three annotators per image).

Fleiss' kappa for N items, n raters each and categories j, with n_ij raters putting item i in j:

    P_i = (sum_j n_ij^2 - n) / (n (n - 1)),  P_bar = mean_i P_i,
    p_j = sum_i n_ij / (N n),                P_e = sum_j p_j^2,
    kappa = (P_bar - P_e) / (1 - P_e).

The unsure label (-1) can be handled three ways (``unsure=``):
``"category"`` keeps it as a third category; ``"drop"`` drops every image with an unsure label;
``"negative"`` merges it into "not aligned", as the verdict rule effectively does.
Computed with statsmodels (``aggregate_raters`` and ``fleiss_kappa``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

UNSURE_MODES: tuple[str, ...] = ("category", "drop", "negative")
LABEL_COLS: tuple[str, ...] = ("label_1", "label_2", "label_3")


def fleiss(labels: np.ndarray, unsure: str = "category") -> float:
    """Fleiss' kappa of an (items, raters) array of labels in {1, 0, -1}."""
    if unsure not in UNSURE_MODES:
        raise ValueError(f"unsure must be one of {UNSURE_MODES}, got {unsure!r}")
    x = np.asarray(labels)
    if unsure == "drop":
        x = x[(x != -1).all(axis=1)]
    elif unsure == "negative":
        x = np.where(x == -1, 0, x)
    if x.shape[0] == 0:
        raise ValueError("no items left to compute Fleiss' kappa")
    counts, _ = aggregate_raters(x)
    return float(fleiss_kappa(counts, method="fleiss"))


def agreement_table(images: pd.DataFrame, label_cols: Sequence[str] = LABEL_COLS) -> pd.DataFrame:
    """Per subset: images, Fleiss' kappa under each unsure mode, the unanimous fraction (all
    three labels equal), the share of unsure labels, the share of labels equal to 1 and the
    share of aligned images (verdict rule)."""
    rows = []
    for subset, grp in images.groupby("subset", sort=False, observed=True):
        x = grp[list(label_cols)].to_numpy()
        row = {"subset": subset, "n_images": len(grp)}
        for mode in UNSURE_MODES:
            row[f"kappa_{mode}"] = fleiss(x, mode)
        row["unanimous"] = float((x == x[:, :1]).all(axis=1).mean())
        row["unsure_rate"] = float((x == -1).mean())
        row["label_positive_rate"] = float((x == 1).mean())
        row["aligned_rate"] = float(grp["aligned"].mean())
        rows.append(row)
    return pd.DataFrame(rows)
