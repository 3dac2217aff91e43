"""Tables for reading: human column names and intervals in one cell.

The library's functions return plain data frames with snake_case columns (``ci_low``,
``p_holm_all``, ...); the chapters pass them through :func:`readable` before display, so that a
reader sees "mean [95% interval]" in one column and words instead of identifiers. Numbers are
formatted here only for display; analyses keep using the plain frames. The last few helpers put
numbers into sentences (counts with their plural, lists of words, a level as a percentage).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

# identifiers -> what a reader should see (columns and index names)
NAMES: dict[str, str] = {
    "n_images": "images",
    "n_prompts": "prompts",
    "prompts": "prompts",
    "scorable": "scorable prompts",
    "images": "images",
    "aligned_fraction": "aligned fraction",
    "aligned_rate": "aligned (2 of 3)",
    "kappa_category": "kappa (unsure a category)",
    "kappa_drop": "kappa (unsure dropped)",
    "kappa_negative": "kappa (unsure = no)",
    "unanimous": "unanimous",
    "unsure_rate": "unsure labels",
    "label_positive_rate": "labels 'aligned'",
    "verdict_equals_gold": "verdict = gold",
    "mean_diff": "mean difference",
    "wins": "wins",
    "losses": "losses",
    "p_value": "p",
    "p_holm": "p (Holm, family)",
    "p_holm_all": "p (Holm, all)",
    "versus": "versus",
    "auroc": "AUROC",
    "auprc": "AUPRC",
    "ap5": "AP@5",
    "ap10": "AP@10",
    "ap25": "AP@25",
    "spearman": "Spearman",
    "kendall": "Kendall",
    "subset": "subset",
    "model": "reward",
    "reward": "reward",
    "accepts_own_caption": "accepts its own caption",
    "accepts_other_caption": "accepts another caption",
    "noise": "pixel noise (SD)",
    "gold_alignment": "gold alignment",
    "captions": "captions",
    "fleiss_kappa": "Fleiss' kappa",
    "kripp_alpha_unsure_category": "Krippendorff's alpha (unsure a category)",
    "kripp_alpha_unsure_missing": "Krippendorff's alpha (unsure missing)",
    "win_rate": "win rate",
    "n_exact": "judgments (exact)",
    "n_normal_approx": "judgments (normal approx.)",
    "n_with_ties_like_this_study": "judgments with this study's ties",
    "alpha": "level",
    "power": "power",
}


def name(column: str) -> str:
    return NAMES.get(column, column.replace("_", " "))


def number(x: float, digits: int = 3, signed: bool = False) -> str:
    """x rounded to ``digits`` decimals ('0.012'; signed: '+0.012', '-0.010'). A value that rounds to zero
    prints as '0.000' with no sign either way: '-0.000' would claim a direction the digits do not show."""
    r = round(float(x), digits) + 0.0  # + 0.0 turns -0.0 into 0.0
    return f"{r:+.{digits}f}" if signed and r != 0 else f"{r:.{digits}f}"


def interval(mean: float, low: float, high: float, digits: int = 3, signed: bool = False) -> str:
    """'0.807 [0.781, 0.832]' (signed: '+0.012 [-0.010, +0.034]'; a value rounding to zero: '0.000')."""
    return f"{number(mean, digits, signed)} [{number(low, digits, signed)}, {number(high, digits, signed)}]"


def p_value(p: float) -> str:
    """'4.2e-05' below 0.001, else '0.012' (three decimals would print small p-values as 0.000)."""
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def bracket(low: float, high: float, digits: int = 3) -> str:
    """'[0.781, 0.832]': an interval without its estimate."""
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def with_intervals(
    df: pd.DataFrame, spec: Mapping[str, tuple[str, str, str]], digits: int = 3, signed: bool = False
) -> pd.DataFrame:
    """Replace each (mean, low, high) column triple by one text column named by ``spec``'s key."""
    out = df.copy()
    for label, (m, lo, hi) in spec.items():
        out[label] = [interval(a, b, c, digits, signed) for a, b, c in zip(df[m], df[lo], df[hi])]
    drop = {c for triple in spec.values() for c in triple} - set(spec)
    return out.drop(columns=[c for c in out.columns if c in drop])


def readable(
    df: pd.DataFrame,
    rename: Mapping[str, str] | None = None,
    keep: Sequence[str] | None = None,
    digits: int = 3,
    transpose: bool = False,
) -> pd.DataFrame:
    """Columns (and index levels) renamed for readers; floats rounded to ``digits``; optionally only
    the ``keep`` columns, in that order (identifiers, before renaming). ``transpose``: one column
    per row of ``df`` (for a few rows of many measures); values become text first, so that an
    integer column stays an integer beside float ones."""
    out = df[list(keep)] if keep is not None else df
    if transpose:
        text = out.copy().astype(object)
        for c in out.columns:
            if pd.api.types.is_float_dtype(out[c]):
                text[c] = [f"{v:.{digits}f}" for v in out[c]]
            else:
                text[c] = out[c].astype(str)
        return readable(text, rename=rename, digits=digits).T
    mapping = {c: (rename or {}).get(c, name(c)) if isinstance(c, str) else c for c in out.columns}
    out = out.rename(columns=mapping).round(digits)
    out.index = out.index.set_names(
        [(rename or {}).get(n, name(n)) if isinstance(n, str) else n for n in out.index.names]
    )
    if isinstance(out.columns, pd.MultiIndex):
        out.columns = out.columns.set_names([name(n) if isinstance(n, str) else n for n in out.columns.names])
    elif isinstance(out.columns.name, str):
        out.columns.name = name(out.columns.name)
    return out


# ------------------------------------------------------------------ numbers in sentences
def count(n: int, singular: str, plural: str | None = None) -> str:
    """'1 subset', '3 subsets' (``plural`` for irregular nouns: count(2, "family", "families"))."""
    return f"{n} {singular if n == 1 else (plural or singular + 's')}"


def join_words(items: Sequence[str], last: str = "and") -> str:
    """'a', 'a and b', 'a, b and c' (no Oxford comma); '' for no items."""
    items = [str(i) for i in items]
    if len(items) < 2:
        return "".join(items)
    return f"{', '.join(items[:-1])} {last} {items[-1]}"


def percent(level: float) -> str:
    """A level as a percentage with the decimals it needs: 0.95 -> '95%', 0.975 -> '97.5%' (``:.0%``
    would print 98%)."""
    return f"{round(level * 100, 6):g}%"
