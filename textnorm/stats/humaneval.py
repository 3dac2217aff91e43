"""Statistics of pairwise human evaluations: is one system really preferred over another?

Input: one row per judgment (see :data:`COLUMNS`): a rater saw images of the same prompt from
two systems, ``left`` and ``right``, and chose ``left``, ``right`` or ``tie``.

- Win/tie/loss counts per pair of systems; the win rate w / (w + l) with Wilson and
  Clopper-Pearson intervals (statsmodels ``proportion_confint``).
- The sign test: under H0 each non-tied judgment is a win with probability 1/2.
  Ties dropped: k = w, n = w + l. Ties split: each tie counts half a win and half a loss,
  k = w + t/2, n = w + l + t (an odd number of ties drops one tie, since the test needs whole
  counts). Exact binomial p-values (scipy ``binomtest``), Holm-corrected across pairs.
- Judgments of one prompt are not independent (several raters judge the same pair of images), so
  :func:`compare_by_prompt` takes the prompt as the unit: the win rate's percentile interval from
  a bootstrap over prompts (each resample pools the decided judgments of the drawn prompts; a pair
  with decided judgments on fewer than two prompts is an error, its interval would have no width), and
  the sign test over prompts: a prompt counts as a win for a when a won more of its judgments
  than b, a loss when fewer; prompts with equal counts are dropped. Holm across pairs.
- Bradley-Terry: P(i beats j) = sigmoid(b_i - b_j), fitted by logistic regression without
  intercept on non-tied judgments (x = +1 for the left system, -1 for the right, the reference
  system's column dropped so b_ref = 0); standard errors clustered by prompt (statsmodels GLM,
  ``cov_type="cluster"``), and a prompt-clustered bootstrap (prompts resampled with replacement).
  The maximum-likelihood strengths exist only when the graph of wins (an edge from winner to
  loser) is strongly connected (Zermelo, 1929; Ford, 1957): a system that never lost (or never
  won) against the rest has an infinite strength. Such data, comparisons that fall apart into
  unconnected groups, all-tie data and fewer than two prompts (no clusters) are errors that say
  which; bootstrap resamples without a finite fit are left out and counted. :func:`strongest` picks
  the strongest of several systems by Bradley-Terry, and by the share of decided judgments won when no
  finite fit exists (saying which rule chose).
- Power: the number of non-tied judgments for a two-sided exact sign test at level alpha to detect
  a true win rate p (e.g. 2/3, "twice as many wins") with the given power; and the normal
  approximation (statsmodels ``NormalIndPower`` on Cohen's h).
"""

from __future__ import annotations

import codecs
import csv
import io
import warnings
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_confint, proportion_effectsize

from textnorm.stats.metrics import holm

COLUMNS: tuple[str, ...] = ("rater", "prompt", "left", "right", "choice")
CHOICES: tuple[str, ...] = ("left", "right", "tie")


class JudgmentError(ValueError):
    """The judgments file or table is malformed; the message says where."""


class JudgmentWarning(UserWarning):
    """The judgments file is readable but suspicious (e.g. repeated rows); the message says how."""


def validate(df: pd.DataFrame) -> pd.DataFrame:
    """Check a judgments table and return it with clean string columns."""
    if len(df) == 0:
        raise JudgmentError("no judgments: the table is empty")
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise JudgmentError(f"missing column(s) {missing}; expected columns {list(COLUMNS)}")
    df = df[list(COLUMNS)].copy()
    empty = df.isna().any(axis=1) | (df.astype(str).apply(lambda s: s.str.strip()) == "").any(axis=1)
    if empty.any():
        rows = (np.flatnonzero(empty.to_numpy()) + 2).tolist()[:5]  # +2: header line, 1-based
        raise JudgmentError(f"{int(empty.sum())} judgment(s) have empty fields (file lines {rows})")
    for c in COLUMNS:
        df[c] = df[c].astype(str).str.strip()
    df["choice"] = df["choice"].str.lower()
    bad = ~df["choice"].isin(CHOICES)
    if bad.any():
        values = sorted(df.loc[bad, "choice"].unique())[:5]
        raise JudgmentError(f"unknown choice value(s) {values} in {int(bad.sum())} row(s); allowed: {list(CHOICES)}")
    same = df["left"] == df["right"]
    if same.any():
        first = df[same].iloc[0]
        raise JudgmentError(
            f"{int(same.sum())} judgment(s) compare a system with itself "
            f"(e.g. {first['left']!r} on prompt {first['prompt']!r})"
        )
    _check_system_case(df)
    return df.reset_index(drop=True)


def _check_system_case(df: pd.DataFrame) -> None:
    """Refuse system names that differ only in case: 'TextNorm' and 'textnorm' are almost surely one
    system typed two ways, and counting them apart would split its judgments over two pairs."""
    spellings: dict[str, list[str]] = {}
    for name in sorted(set(df.left) | set(df.right)):
        spellings.setdefault(name.casefold(), []).append(name)
    clashes = [names for names in spellings.values() if len(names) > 1]
    if clashes:
        listed = "; ".join(" and ".join(repr(n) for n in names) for names in clashes)
        raise JudgmentError(
            f"system names that differ only in case: {listed}; they are almost certainly one system, "
            "so spell each system the same way in every row"
        )


def load_judgments(path: str | Path, allow_repeats: bool = False) -> pd.DataFrame:
    """Read and validate a judgments CSV (columns rater, prompt, left, right, choice; UTF-8 text).

    Refuses a file that is not UTF-8 text, a header that repeats a column name and a file in which
    every row appears at least twice (a file concatenated with itself); warns
    (:class:`JudgmentWarning`) when only some rows are exact copies of others. ``allow_repeats``:
    the protocol had raters judge pairs more than once (test-retest), so copies are judgments."""
    path = Path(path)
    if not path.is_file():
        raise JudgmentError(f"judgments file {path} does not exist")
    text = _read_utf8(path)
    _check_header(text, path)
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as exc:
        raise JudgmentError(f"judgments file {path} is empty") from exc
    except pd.errors.ParserError as exc:
        raise JudgmentError(f"judgments file {path} is not a well-formed CSV: {exc}".strip()) from exc
    df = validate(df)
    if not allow_repeats:
        _check_repeated_rows(df, path)
    return df


def _read_utf8(path: Path) -> str:
    """The file's text; a UTF-16 or binary file would otherwise surface as a raw UnicodeDecodeError
    or, worse, a ParserError about field counts that does not say what is wrong."""
    raw = path.read_bytes()
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise JudgmentError(f"judgments file {path} is UTF-16, not UTF-8 text CSV; save it as UTF-8")
    if b"\x00" in raw:  # NUL bytes: UTF-16 without a byte-order mark, or binary data
        raise JudgmentError(f"judgments file {path} is not UTF-8 text CSV (it holds NUL bytes: binary or UTF-16)")
    try:
        return raw.decode("utf-8-sig")  # -sig: a byte-order mark from spreadsheet programs is harmless
    except UnicodeDecodeError as exc:
        raise JudgmentError(
            f"judgments file {path} is not UTF-8 text CSV (undecodable byte at offset {exc.start}); save it as UTF-8"
        ) from None


def _check_header(text: str, path: Path) -> None:
    """Refuse repeated column names: pandas silently renames the copies ('left.1'), so one of the two
    columns would be read and the other ignored without a word."""
    header = next((row for row in csv.reader(io.StringIO(text)) if row), None)
    if header is None:
        return  # an empty file: read_csv says so
    names = [name.strip() for name in header]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise JudgmentError(f"judgments file {path} repeats column name(s) {repeated} in its header")


def _check_repeated_rows(df: pd.DataFrame, path: Path) -> None:
    """Exact copies (same rater, prompt, left, right and choice) count as separate judgments. A rater
    may judge a pair twice when the protocol says so, hence only a warning; but when every row has a
    copy the file is almost surely concatenated with itself, which doubles every count: an error."""
    copies = int(df.duplicated().sum())
    if copies == 0:
        return
    if df.duplicated(keep=False).all():
        raise JudgmentError(
            f"every judgment in {path} appears at least twice ({copies} of {len(df)} rows are exact copies): "
            "the file looks concatenated with itself; remove the copies (or, if raters judged every pair twice by "
            "design, load_judgments(path, allow_repeats=True))"
        )
    warnings.warn(
        f"{copies} of {len(df)} rows of {path} are exact duplicates of another row (same rater, prompt, left, "
        "right and choice) and count as separate judgments; remove them unless raters judged pairs twice by design",
        JudgmentWarning,
        stacklevel=2,
    )


def _check_level(level, name: str = "level") -> None:
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ValueError(f"{name} must be a number strictly between 0 and 1, got {level!r}")


def outcomes(df: pd.DataFrame, a: str, b: str) -> tuple[int, int, int]:
    """(wins of a, wins of b, ties) over the judgments comparing a and b, either side."""
    ab = df[(df.left == a) & (df.right == b)]
    ba = df[(df.left == b) & (df.right == a)]
    wins_a = int((ab.choice == "left").sum() + (ba.choice == "right").sum())
    wins_b = int((ab.choice == "right").sum() + (ba.choice == "left").sum())
    ties = int((ab.choice == "tie").sum() + (ba.choice == "tie").sum())
    return wins_a, wins_b, ties


def sign_test(wins: int, losses: int, ties: int = 0, tie_rule: str = "drop") -> float:
    """Two-sided exact sign test p-value (see the module docstring for the tie rules)."""
    if tie_rule == "drop":
        k, n = wins, wins + losses
    elif tie_rule == "split":
        half = ties // 2
        k, n = wins + half, wins + losses + 2 * half
    else:
        raise ValueError(f"tie_rule must be 'drop' or 'split', got {tie_rule!r}")
    return 1.0 if n == 0 else float(stats.binomtest(k, n, 0.5).pvalue)


def compare(df: pd.DataFrame, pairs: Sequence[tuple[str, str]] | None = None, level: float = 0.95) -> pd.DataFrame:
    """One row per pair (a, b): counts, a's win rate over non-tied judgments with Wilson and
    Clopper-Pearson intervals, sign-test p-values (ties dropped / split) and their Holm
    adjustments across the pairs."""
    df = validate(df)
    _check_level(level)
    rows = []
    for a, b in _pairs(df, pairs):
        w, lost, t = outcomes(df, a, b)
        n = w + lost
        wil = proportion_confint(w, n, alpha=1 - level, method="wilson") if n else (np.nan, np.nan)
        cp = proportion_confint(w, n, alpha=1 - level, method="beta") if n else (np.nan, np.nan)
        rows.append(
            {
                "system_a": a,
                "system_b": b,
                "judgments": w + lost + t,
                "wins_a": w,
                "wins_b": lost,
                "ties": t,
                "win_rate_a": w / n if n else np.nan,
                "wilson_low": wil[0],
                "wilson_high": wil[1],
                "cp_low": cp[0],
                "cp_high": cp[1],
                "p_sign_drop": sign_test(w, lost, t, "drop"),
                "p_sign_split": sign_test(w, lost, t, "split"),
            }
        )
    out = pd.DataFrame(rows)
    for col in ("p_sign_drop", "p_sign_split"):
        out[col + "_holm"] = holm(out[col]) if len(out) else []
    return out


def _pairs(df: pd.DataFrame, pairs) -> list[tuple[str, str]]:
    """The pairs to compare: the given ones, each checked to have judgments (a pair without any
    would otherwise come out as a NaN win rate with sign-test p = 1), else every judged pair."""
    systems = sorted(set(df.left) | set(df.right))
    if pairs is None:
        pairs = [p for p in combinations(systems, 2) if sum(outcomes(df, *p)) > 0]
    pairs = list(pairs)
    if not pairs:
        raise ValueError("no pair of systems to compare")
    for pair in pairs:
        if isinstance(pair, str) or len(pair) != 2:
            raise ValueError(f"each pair must be (system_a, system_b), got {pair!r}")
        if sum(outcomes(df, *pair)) == 0:
            raise ValueError(f"no judgment compares {pair[0]!r} with {pair[1]!r} (systems judged: {systems})")
    return [tuple(pair) for pair in pairs]


def compare_by_prompt(
    df: pd.DataFrame,
    pairs: Sequence[tuple[str, str]] | None = None,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per pair (a, b) with the prompt as the unit (module docstring): prompts compared,
    a's win rate over decided judgments, its prompt-bootstrap percentile interval (``boot_low``,
    ``boot_high``; resamples without a decided judgment are left out), prompts won and lost by
    a (``prompt_wins_a``, ``prompt_wins_b``; equal counts: ``prompt_ties``), the sign test over
    prompts (``p_sign_prompts``) and its Holm adjustment across pairs. Raises ValueError for a pair
    without judgments or with decided judgments on fewer than two prompts."""
    df = validate(df)
    _check_level(level)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be an integer >= 1, got {n_boot!r}")
    rng = np.random.default_rng(seed)
    alpha = (1 - level) / 2
    rows = []
    for a, b in _pairs(df, pairs):
        per = _prompt_counts(df, a, b)
        w, lost = per.w.to_numpy(), per.l.to_numpy()
        _check_bootstrap_prompts(a, b, int(((w + lost) > 0).sum()))
        draws = rng.integers(0, len(per), (n_boot, len(per)))
        ws, ns = w[draws].sum(1), (w + lost)[draws].sum(1)
        rates = ws[ns > 0] / ns[ns > 0]
        lo, hi = np.quantile(rates, [alpha, 1 - alpha]) if len(rates) else (np.nan, np.nan)
        pw, pl = int((w > lost).sum()), int((w < lost).sum())
        rows.append(
            {
                "system_a": a,
                "system_b": b,
                "prompts": len(per),
                "win_rate_a": w.sum() / (w + lost).sum() if (w + lost).sum() else np.nan,
                "boot_low": float(lo),
                "boot_high": float(hi),
                "n_boot": int(len(rates)),
                "prompt_wins_a": pw,
                "prompt_wins_b": pl,
                "prompt_ties": int(len(per) - pw - pl),
                "p_sign_prompts": sign_test(pw, pl),
            }
        )
    out = pd.DataFrame(rows)
    out["p_sign_prompts_holm"] = holm(out.p_sign_prompts) if len(out) else []
    return out


def untestable_by_prompt(df: pd.DataFrame, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The pairs :func:`compare_by_prompt` would refuse, each with its reason: no judgment compares the two
    systems, or their decided judgments come from fewer than two prompts. The others can be passed to it."""
    df = validate(df)
    out = {}
    for pair in pairs:
        try:
            (a, b) = _pairs(df, [pair])[0]
            per = _prompt_counts(df, a, b)
            _check_bootstrap_prompts(a, b, int(((per.w + per.l) > 0).sum()))
        except ValueError as exc:
            out[tuple(pair)] = str(exc)
    return out


def _prompt_counts(df: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Per prompt (sorted), the judgments of a against b (either side) a won (``w``) and lost (``l``)."""
    sub = df[((df.left == a) & (df.right == b)) | ((df.left == b) & (df.right == a))]
    win_a = ((sub.left == a) & (sub.choice == "left")) | ((sub.right == a) & (sub.choice == "right"))
    win_b = (sub.choice != "tie") & ~win_a
    frame = pd.DataFrame({"prompt": sub.prompt, "w": win_a.astype(int), "l": win_b.astype(int)})
    return frame.groupby("prompt", sort=True)[["w", "l"]].sum()


def _check_bootstrap_prompts(a: str, b: str, decided_prompts: int) -> None:
    """Refuse a pair whose decided judgments come from fewer than two prompts: every resample is then
    that one prompt, and the percentile interval collapses to a point that looks like certainty. A
    refusal naming the pair, not NaN, even inside a call for several pairs: NaN would flow silently
    into tables and plots, while the refusal says which pair to drop (or to report with compare())."""
    if decided_prompts < 2:
        raise ValueError(
            f"compare_by_prompt: the prompt bootstrap interval of {a!r} vs {b!r} needs decided judgments on at "
            f"least two prompts, it has {decided_prompts} (with one, every resample is the data); leave the pair "
            "out of pairs or report it with compare()"
        )


def _design(df: pd.DataFrame, systems: list[str], reference: str) -> tuple[np.ndarray, np.ndarray]:
    decided = df[df.choice != "tie"]
    cols = [s for s in systems if s != reference]
    X = np.zeros((len(decided), len(cols)))
    for j, s in enumerate(cols):
        X[:, j] = (decided.left == s).to_numpy(float) - (decided.right == s).to_numpy(float)
    y = (decided.choice == "left").to_numpy(float)
    return X, y


def _components(systems: list[str], left, right, strong: bool) -> list[list[str]]:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    index = {s: i for i, s in enumerate(systems)}
    rows, cols = [index[a] for a in left], [index[b] for b in right]
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(systems), len(systems)))
    n, labels = connected_components(graph, directed=True, connection="strong" if strong else "weak")
    return [[s for s in systems if labels[index[s]] == k] for k in range(n)]


def _winners_losers(decided: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The winner and the loser of each decided (non-tie) judgment."""
    left_won = decided.choice == "left"
    return np.where(left_won, decided.left, decided.right), np.where(left_won, decided.right, decided.left)


def fit_problem(df: pd.DataFrame, systems: list[str] | None = None) -> str | None:
    """Why Bradley-Terry has no finite fit on these judgments, or None when it has one."""
    systems = systems or sorted(set(df.left) | set(df.right))
    groups = _components(systems, df.left, df.right, strong=False)
    if len(groups) > 1:
        return (
            f"the comparisons fall apart into {len(groups)} unconnected groups {groups}: strengths of "
            "systems never compared, directly or through others, are not defined"
        )
    decided = df[df.choice != "tie"]
    if decided.empty:
        return "every judgment is a tie: no win or loss to fit strengths to"
    winners, losers = _winners_losers(decided)
    groups = _components(systems, winners, losers, strong=True)
    if len(groups) > 1:
        return (
            f"separation: the wins do not connect every system both ways (groups {groups}; some group never "
            "lost, or never won, against the others), so the maximum-likelihood strengths are infinite; "
            "report the win counts and the exact sign test (compare) instead"
        )
    return None


def bradley_terry(
    df: pd.DataFrame, reference: str | None = None, level: float = 0.95, cluster: bool = True
) -> pd.DataFrame:
    """Bradley-Terry strengths b_s (b_reference = 0) with prompt-clustered standard errors
    (``cluster=False``: the model-based ones, which treat every judgment as independent; shown
    beside the clustered ones to see what the clustering changes). Raises ValueError when the
    data admit no finite fit (:func:`fit_problem`) or hold fewer than two prompts (no clusters
    for the standard errors)."""
    df = validate(df)
    _check_level(level)
    systems = sorted(set(df.left) | set(df.right))
    reference = reference or systems[0]
    if reference not in systems:
        raise ValueError(f"reference {reference!r} is not among the systems {systems}")
    problem = fit_problem(df, systems)
    if problem:
        raise ValueError(f"Bradley-Terry: {problem}")
    if df.loc[df.choice != "tie", "prompt"].nunique() < 2:
        raise ValueError(
            "Bradley-Terry: prompt-clustered standard errors need decided judgments on at least two prompts"
        )
    X, y = _design(df, systems, reference)
    groups = pd.factorize(df.loc[df.choice != "tie", "prompt"])[0]
    glm = sm.GLM(y, X, family=sm.families.Binomial())
    fit = glm.fit(cov_type="cluster", cov_kwds={"groups": groups}) if cluster else glm.fit()
    if not np.all(fit.bse > 1e-8 * np.maximum(1.0, np.abs(fit.params))):
        raise ValueError(
            "Bradley-Terry: the prompt-clustered standard errors are degenerate (zero): every prompt "
            f"shows the same outcomes ({groups.max() + 1} prompts), so the data say nothing about how "
            "much strengths vary between prompts; use more prompts or the exact sign test (compare)"
        )
    z = stats.norm.ppf(0.5 + level / 2)
    rows = [{"system": reference, "strength": 0.0, "se": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p_value": np.nan}]
    for s, b, se, p in zip([s for s in systems if s != reference], fit.params, fit.bse, fit.pvalues):
        rows.append(
            {
                "system": s,
                "strength": float(b),
                "se": float(se),
                "ci_low": float(b - z * se),
                "ci_high": float(b + z * se),
                "p_value": float(p),
            }
        )
    return pd.DataFrame(rows)


def bradley_terry_bootstrap(
    df: pd.DataFrame, reference: str | None = None, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> pd.DataFrame:
    """Percentile intervals of the strengths from refits on prompts resampled with replacement."""
    df = validate(df)
    _check_level(level)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be an integer >= 1, got {n_boot!r}")
    systems = sorted(set(df.left) | set(df.right))
    reference = reference or systems[0]
    if reference not in systems:
        raise ValueError(f"reference {reference!r} is not among the systems {systems}")
    prompts = df.prompt.unique()
    if df.loc[df.choice != "tie", "prompt"].nunique() < 2:
        raise ValueError(
            "the prompt bootstrap needs decided judgments on at least two prompts (with one, every "
            "resample is the data)"
        )
    problem = fit_problem(df, systems)
    if problem:
        raise ValueError(f"Bradley-Terry: {problem}")
    by_prompt = {p: g for p, g in df.groupby("prompt")}
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        sample = pd.concat([by_prompt[p] for p in rng.choice(prompts, len(prompts))], ignore_index=True)
        if fit_problem(sample, systems):
            continue  # no finite fit on this resample (e.g. a system never lost in it): left out, counted
        X, y = _design(sample, systems, reference)
        res = sm.GLM(y, X, family=sm.families.Binomial()).fit()
        draws.append(res.params)
    if not draws:
        raise ValueError(f"none of the {n_boot} prompt resamples admits a finite Bradley-Terry fit")
    draws = np.array(draws)
    alpha = (1 - level) / 2
    rows = [{"system": reference, "boot_low": 0.0, "boot_high": 0.0, "n_boot": len(draws)}]
    for j, s in enumerate([s for s in systems if s != reference]):
        lo, hi = np.quantile(draws[:, j], [alpha, 1 - alpha])
        rows.append({"system": s, "boot_low": float(lo), "boot_high": float(hi), "n_boot": len(draws)})
    return pd.DataFrame(rows)


def strongest(
    df: pd.DataFrame, candidates: Sequence[str], reference: str | None = None
) -> tuple[str, pd.DataFrame, str]:
    """The strongest of ``candidates`` in the judgments ``df``: the largest Bradley-Terry strength
    (:func:`bradley_terry` on all of ``df``'s systems, ``reference`` fixed at 0), or, only when the
    judgments admit no finite fit (:func:`fit_problem`: separation, unconnected comparisons, all
    ties), the largest share of its decided judgments won (ties left out; a candidate without
    decided judgments ranks last). Any other reason the fit fails (an unknown reference, fewer than
    two prompts) is raised, never replaced by another rule. Returns (name, the candidates' table,
    best first, the rule that chose it: ``"Bradley-Terry strength"`` or ``"share of decided
    judgments won"``, followed by `` (why no fit)``)."""
    df = validate(df)
    candidates = list(candidates)
    systems = sorted(set(df.left) | set(df.right))
    missing = [c for c in candidates if c not in systems]
    if not candidates or missing:
        raise ValueError(f"candidates {missing or candidates} are not judged (systems judged: {systems})")
    if reference is not None and reference not in systems:
        raise ValueError(f"reference {reference!r} is not among the systems {systems}")
    problem = fit_problem(df, systems)
    if problem is None:
        bt = bradley_terry(df, reference=reference).set_index("system")
        bt = bt.loc[candidates].sort_values("strength", ascending=False, kind="stable")
        return str(bt.index[0]), bt[["strength", "ci_low", "ci_high"]], "Bradley-Terry strength"
    decided = df[df.choice != "tie"]
    winners, _ = _winners_losers(decided)
    seen = [int(((decided.left == c) | (decided.right == c)).sum()) for c in candidates]
    won = [int((winners == c).sum()) for c in candidates]
    table = pd.DataFrame({"decided judgments": seen, "won": won}, index=pd.Index(candidates, name="system"))
    table["share won"] = [w / n if n else np.nan for w, n in zip(won, seen)]
    table = table.sort_values("share won", ascending=False, na_position="last", kind="stable")
    return str(table.index[0]), table, f"share of decided judgments won (no finite Bradley-Terry fit: {problem})"


def krippendorff_alpha_nominal(labels: np.ndarray) -> float:
    """Krippendorff's alpha for nominal data; ``labels`` is (units, raters), NaN = missing.

    alpha = 1 - D_o / D_e with the coincidence matrix o_ck over pairable values:
    D_o = sum_{c != k} o_ck / n,  D_e = sum_{c != k} n_c n_k / (n (n - 1)).
    (Neither scipy nor statsmodels provides it; the tests compare with the ``krippendorff`` package.)"""
    x = np.asarray(labels, dtype=float)
    values = np.unique(x[~np.isnan(x)])
    index = {v: i for i, v in enumerate(values)}
    o = np.zeros((len(values), len(values)))
    for unit in x:
        u = unit[~np.isnan(unit)]
        m = len(u)
        if m < 2:
            continue
        counts = np.zeros(len(values))
        for v in u:
            counts[index[v]] += 1
        o += (np.outer(counts, counts) - np.diag(counts)) / (m - 1)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    if n <= 1:
        raise ValueError("Krippendorff's alpha needs at least one unit with two ratings")
    d_o = (o.sum() - np.trace(o)) / n
    d_e = (n_c.sum() ** 2 - (n_c**2).sum()) / (n * (n - 1))
    return float(1 - d_o / d_e) if d_e > 0 else 1.0


def sign_test_power(n: int, p: float, alpha: float = 0.05) -> float:
    """Power of the two-sided exact sign test with n non-tied judgments when the win rate is p."""
    k = np.arange(n + 1)
    # exact two-sided p-value under the symmetric null: 2 P(X <= min(k, n - k)), capped at 1
    pvals = np.minimum(1.0, 2 * stats.binom.cdf(np.minimum(k, n - k), n, 0.5))
    return float(stats.binom.pmf(k, n, p)[pvals <= alpha].sum())


def judgments_needed(p: float = 2 / 3, alpha: float = 0.05, power: float = 0.8, n_max: int = 5000) -> dict:
    """Smallest n with exact sign-test power >= ``power`` (the power is not monotone in n, so the
    smallest n from which every larger n up to n + 10 also reaches it), and the normal
    approximation. ``p`` must lie strictly between 0.5 (no effect to detect) and 1; the test is
    symmetric, so for a win rate below 0.5 ask for 1 - p."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.5 < p < 1:
        raise ValueError(
            f"win rate p must be a number strictly between 0.5 and 1 (for a rate below 0.5 use 1 - p), got {p!r}"
        )
    _check_level(alpha, "alpha")
    _check_level(power, "power")
    approx = NormalIndPower().solve_power(
        effect_size=proportion_effectsize(p, 0.5), alpha=alpha, power=power, ratio=0, alternative="two-sided"
    )
    start = max(2, int(np.floor(approx * 0.5)))
    exact = None
    for n in range(start, n_max):
        if all(sign_test_power(m, p, alpha) >= power for m in range(n, n + 11)):
            exact = n
            break
    return {"win_rate": p, "alpha": alpha, "power": power, "n_exact": exact, "n_normal_approx": float(approx)}


def above_power(n: int, p: float, p0: float, alpha: float = 0.05) -> float:
    """Power of the one-sided exact binomial test of H0: win rate <= p0 with n decided judgments when
    the win rate is p (reject when the wins k have P(Bin(n, p0) >= k) <= alpha)."""
    k = np.arange(n + 1)
    reject = stats.binom.sf(k - 1, n, p0) <= alpha
    return float(stats.binom.pmf(k, n, p)[reject].sum())


def judgments_needed_above(
    p: float, p0: float = 2 / 3, alpha: float = 0.05, power: float = 0.8, n_max: int = 20000
) -> int | None:
    """Decided judgments needed to show a win rate above ``p0`` (e.g. 2/3: "at least twice as many
    wins as losses") when it is ``p`` > p0: the smallest n from which :func:`above_power` stays at or
    above ``power`` for the next 10 n (it is not monotone in n); None when n_max does not suffice."""
    if not (0 < p0 < p < 1):
        raise ValueError(f"need 0 < p0 < p < 1, got p0={p0!r}, p={p!r}")
    _check_level(alpha, "alpha")
    _check_level(power, "power")
    for n in range(2, n_max):
        if all(above_power(m, p, p0, alpha) >= power for m in range(n, n + 11)):
            return n
    return None


def design_effect(df: pd.DataFrame, a: str, b: str, n_boot: int = 2000, seed: int = 0) -> float:
    """How much clustering by prompt inflates the variance of a's win rate against b: the variance of
    the prompt bootstrap (:func:`compare_by_prompt`'s resampling) over the binomial variance of as many
    independent decided judgments, r(1 - r) / n; at least 1 (clustering never makes a study cheaper
    than independent judgments). Multiply a sample size planned for independent judgments by it."""
    df = validate(df)
    per = _prompt_counts(df, a, b)
    w, n = per.w.to_numpy(), (per.w + per.l).to_numpy()
    _check_bootstrap_prompts(a, b, int((n > 0).sum()))
    rate = w.sum() / n.sum()
    if rate in (0.0, 1.0):
        raise ValueError(f"design_effect: {a!r} won every or no decided judgment against {b!r}: no variance to compare")
    draws = np.random.default_rng(seed).integers(0, len(per), (n_boot, len(per)))
    ws, ns = w[draws].sum(1), n[draws].sum(1)
    boot = (ws[ns > 0] / ns[ns > 0]).var(ddof=1)
    return float(max(1.0, boot / (rate * (1 - rate) / n.sum())))
