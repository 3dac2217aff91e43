"""The TIA2 chapter's conclusions in words: plain numbers in, Markdown sentences out.

Every sentence is built from the numbers it reports, so that it stays right for any of the chapter's
parameters (the reference reward, one subset or several, the interval level): counts and plurals
follow the data, the comparisons the reference loses are reported beside those it wins and those
left unresolved, and one subset is never "lowest" and "highest" at once.

The inputs are the chapter's plain tables:

- ``auroc``: one row per (subset, model) with the mean AUROC over prompts and its bootstrap
  interval (columns subset, model, mean, ci_low, ci_high; :func:`textnorm.stats.metrics.summarize`)
- ``tests``: one row per paired comparison of the reference with another reward (columns subset,
  metric, versus, mean_diff = reference minus the other, p_holm = Holm within one subset and
  metric, p_holm_all = Holm over every comparison; :func:`textnorm.stats.metrics.paired_tests`)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from textnorm.tables import count, interval, join_words, name, p_value, percent

ALPHA = 0.05  # the level of the adjusted p-values the chapter reports


def outcomes(tests: pd.DataFrame, column: str = "p_holm_all", alpha: float = ALPHA) -> dict[str, pd.DataFrame]:
    """The paired comparisons split by what the adjusted p-value in ``column`` resolves: ``favour``
    (p < alpha, the reference's mean is higher), ``against`` (p < alpha, the other reward's mean is
    higher), ``unresolved`` (p >= alpha, or no p-value) and ``no_difference`` (p < alpha but a mean
    difference of exactly 0, which no direction describes)."""
    p, d = tests[column], tests["mean_diff"]
    resolved = p < alpha
    return {
        "favour": tests[resolved & (d > 0)],
        "against": tests[resolved & (d < 0)],
        "unresolved": tests[~resolved],
        "no_difference": tests[resolved & (d == 0)],
    }


def leaders(auroc: pd.DataFrame) -> dict[str, list[str]]:
    """Subset -> the rewards with the highest mean (every one of them when tied), in row order."""
    out = {}
    for subset, part in auroc.groupby("subset", sort=False, observed=True):
        part = part.dropna(subset=["mean"])
        if len(part):
            out[str(subset)] = [str(m) for m in part.loc[part["mean"] == part["mean"].max(), "model"]]
    return out


def _verb(n: int, singular: str, plural: str) -> str:
    return singular if n == 1 else plural


def _comparison(r, column: str) -> str:
    return f"{r.subset} {name(r.metric)} vs {r.versus}, mean difference {r.mean_diff:+.3f}, p = {p_value(r[column])}"


def _listed(rows: pd.DataFrame, column: str) -> str:
    """' (a; b)' listing each comparison, or '' for none."""
    return " (" + "; ".join(_comparison(r, column) for _, r in rows.iterrows()) + ")" if len(rows) else ""


def labels_sentence(rule: Mapping[str, float]) -> str:
    """How many published per-prompt human fractions the two-of-three rule reproduces
    (:func:`textnorm.tia2.label_rule_check`'s dict)."""
    matched, published = int(rule["matched"]), int(rule["published_prompts"])
    if published == 0:
        return "* **Labels.** No published prompt to compare the two-of-three rule with."
    if matched == published:
        which = "the one published prompt" if published == 1 else f"all {published} published prompts"
        return f"* **Labels.** The two-of-three rule reproduces the published human fraction of {which} exactly."
    return (
        f"* **Labels.** The two-of-three rule reproduces the published human fraction of {matched} of "
        f"{count(published, 'published prompt')} exactly (to 1e-9); the largest difference is "
        f"{rule['max_abs_diff']:.3g}."
    )


def highest_sentence(auroc: pd.DataFrame, reference: str, subsets: Sequence[str], ci_level: float) -> str:
    """The rewards with the highest mean AUROC on each subset, and on how many the reference is one."""
    top = leaders(auroc)
    rows = auroc.set_index(["subset", "model"])

    def shown(subset: str, model: str) -> str:
        r = rows.loc[(subset, model)]
        return f"{model} {interval(r['mean'], r.ci_low, r.ci_high)}"

    parts = []
    for s in subsets:
        if s not in top:
            parts.append(f"{s}: no scored prompts")
            continue
        text = f"{s}: {join_words([shown(s, m) for m in top[s]])}" + (" (tied)" if len(top[s]) > 1 else "")
        if reference not in top[s] and (s, reference) in rows.index:
            text += f" ({shown(s, reference)})"
        parts.append(text)
    where = [s for s in subsets if reference in top.get(s, [])]
    n, k = len(subsets), len(where)
    if n == 1:
        status = f"{reference} {'has' if k else 'does not have'} the highest mean on {subsets[0]}"
    elif k == n:
        status = f"{reference} has the highest mean on {'both subsets' if n == 2 else f'all {n} subsets'}"
    elif k == 0:
        status = f"{reference} has the highest mean on {'neither subset' if n == 2 else f'none of the {n} subsets'}"
    else:
        status = f"{reference} has the highest mean on {k} of the {n} subsets ({join_words(where)})"
    return (
        f"* **Highest mean AUROC** ({percent(ci_level)} bootstrap interval over prompts; whether {reference} "
        f"differs from the others is the next point). " + "; ".join(parts) + f". {status}."
    )


def comparisons_sentence(tests: pd.DataFrame, reference: str, alpha: float = ALPHA) -> str:
    """The paired comparisons of the reference with each other reward, by outcome: Holm over all of
    them (each one listed unless it favours the reference), then Holm within each subset and metric."""
    head = f"* **{reference} against the other rewards.**"
    n = len(tests)
    if n == 0:
        return f"{head} There is no other reward to compare it with."
    n_s, n_m, n_o = (tests[c].nunique() for c in ("subset", "metric", "versus"))
    shape = (
        f" ({count(n_s, 'subset')} x {count(n_m, 'metric')} x {count(n_o, 'other reward')})"
        if n_s * n_m * n_o == n
        else ""
    )

    def split(column: str, listed: bool, qualifier: str = "") -> str:
        o = outcomes(tests, column, alpha)
        a, b, c, z = (len(o[k]) for k in ("favour", "against", "unresolved", "no_difference"))
        text = (
            f"{a} {_verb(a, 'favours', 'favour')} {reference}{qualifier}, "
            f"{b} {_verb(b, 'favours', 'favour')} the other reward"
            + (_listed(o["against"], column) if listed else "")
            + f"{',' if z else ' and'} {c} {_verb(c, 'does', 'do')} not reach it"
            + (_listed(o["unresolved"], column) if listed else "")
        )
        if z:
            text += f" and {z} {_verb(z, 'reaches', 'reach')} it with a mean difference of 0" + (
                _listed(o["no_difference"], column) if listed else ""
            )
        return text

    family = "(1 comparison per family, so no correction)" if n_o == 1 else f"({count(n_o, 'comparison')} per family)"
    return (
        f"{head} Of {count(n, 'paired comparison')}{shape}, with Holm-adjusted p < {alpha:g} over all {n}: "
        f"{split('p_holm_all', listed=True)}. Corrected only within each subset and metric {family}, "
        f"{split('p_holm', listed=False, qualifier=f' with adjusted p < {alpha:g}')}."
    )


def _spread(values: pd.Series, lowest: bool = True) -> str:
    """'is lowest on a (0.1) and highest on b (0.3)' over the subsets where the value is defined."""
    defined = values.dropna()
    undefined = [str(s) for s in values.index[values.isna()]]
    note = f" (undefined on {join_words(undefined)})" if undefined else ""
    if len(defined) == 0:
        return "is undefined"
    if defined.min() == defined.max():
        where = "every subset" if not undefined else join_words([str(s) for s in defined.index])
        return f"is {defined.min():.3f} on {where}{note}"
    lo = join_words([str(s) for s in defined.index[defined == defined.min()]])
    hi = join_words([str(s) for s in defined.index[defined == defined.max()]])
    high = f"highest on {hi} ({defined.max():.3f})"
    return (f"is lowest on {lo} ({defined.min():.3f}) and {high}" if lowest else f"is {high}") + note


def annotators_sentence(kappa: Mapping[str, float], unsure: Mapping[str, float]) -> str:
    """Where the annotators agree least and most (Fleiss' kappa, unsure as its own category), and
    where the share of 'unsure' labels is highest; one subset: its two values."""
    kappa, unsure = pd.Series(kappa, dtype=float), pd.Series(unsure, dtype=float)
    head = "* **Annotators.** Fleiss' kappa (unsure as its own category)"
    if len(unsure) == 1:
        s = unsure.index[0]
        k = kappa.get(s, float("nan"))
        value = "is undefined" if pd.isna(k) else f"is {k:.3f}"
        return f"{head} {value} on {s}, and {unsure.iloc[0]:.3f} of its labels are 'unsure'."
    return f"{head} {_spread(kappa)}; the share of labels that are 'unsure' {_spread(unsure, lowest=False)}."


def conclusions(
    *,
    reference: str,
    subsets: Sequence[str],
    rule: Mapping[str, float],
    auroc: pd.DataFrame,
    tests: pd.DataFrame,
    kappa: Mapping[str, float],
    unsure: Mapping[str, float],
    ci_level: float,
    textnorm_caveat: bool,
    alpha: float = ALPHA,
) -> str:
    """The chapter's "What the data show" as Markdown bullets. ``textnorm_caveat``: the published
    TextNorm scores are among the compared rewards (their per-prompt scale was chosen with the labels)."""
    lines = [
        labels_sentence(rule),
        highest_sentence(auroc, reference, subsets, ci_level),
        comparisons_sentence(tests, reference, alpha),
        annotators_sentence(kappa, unsure),
    ]
    if textnorm_caveat:
        lines.append(
            "* **Caveat.** The published TextNorm scores use a softmax scale (and, for the uncertainty-regularized "
            "ensemble, a penalty weight lambda) picked per prompt with the evaluation labels, so every comparison "
            "with TextNorm is optimistic for TextNorm; the synthetic-world chapter chooses them by cross-validation "
            "instead."
        )
    return "\n".join(lines)


def verdict(tests: pd.DataFrame, subsets: Sequence[str], column: str = "p_holm_all", alpha: float = ALPHA) -> str:
    """The claim "the reference ranks images closer to people's verdicts than every other reward", per
    subset: *holds* where every comparison of the subset favours the reference (adjusted p in
    ``column`` < alpha), *does not hold* where any favours another reward, *not shown* otherwise;
    e.g. "holds on counting and composition; not shown on comprehensive"."""
    split = outcomes(tests, column, alpha)
    by_verdict: dict[str, list[str]] = {}
    for s in subsets:
        n = int((tests.subset == s).sum())
        if n == 0:
            raise ValueError(f"verdict: no comparison on subset {s!r}")
        if (split["against"].subset == s).any():
            v = "does not hold"
        elif int((split["favour"].subset == s).sum()) == n:
            v = "holds"
        else:
            v = "not shown"
        by_verdict.setdefault(v, []).append(str(s))
    return "; ".join(f"{v} on {join_words(names)}" for v, names in by_verdict.items())
