"""Chapter 01 (TIA2) under other parameters than its defaults.

The chapter's conclusion ("What the data show") is built by :mod:`textnorm.tia2.findings` from the
numbers it reports. Here the chapter is executed with papermill (few bootstrap resamples) with
another reference reward and with one subset, and each sentence of its conclusion is checked
against counts recomputed from the executed tables (which are themselves checked against Wilcoxon
tests and Holm corrections recomputed here with scipy and statsmodels). The committed chapter is
checked for what a reader sees: no NaN or identifiers, each table's label directly above it, the
figures' captions, alt text, width and font size, and which cells show their code.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import papermill
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from textnorm import plots, tables, tia2
from textnorm.paths import repo_root
from textnorm.tia2 import findings

CHAPTER = repo_root() / "notebooks" / "01_tia2.ipynb"
READER_NAMES = {"clip": "CLIP", "blip2": "BLIP-2", "imagereward": "ImageReward", "pickscore": "PickScore"}
READER_NAMES["textnorm"] = "TextNorm"
TESTED = {"AUROC": "auroc", "AUPRC": "auprc", "AP@10": "ap10", "Spearman": "spearman"}
# identifiers that must never reach a reader (column names of the library's frames)
IDENTIFIERS = re.compile(
    r"\b(auroc|auprc|ap5|ap10|ap25|spearman|kendall|p_holm\w*|p_value|mean_diff|median_diff|ci_low|ci_high"
    r"|n_prompts|n_images|kappa_\w+|unsure_rate|model_[ab]|wins_[ab]|aligned_rate|label_positive_rate)\b"
)


# ------------------------------------------------------------------ reading an executed chapter
def _execute(tmp_path_factory, mirror: Path, **parameters) -> dict:
    out = tmp_path_factory.mktemp("ch01") / "out.ipynb"
    papermill.execute_notebook(
        str(CHAPTER),
        str(out),
        kernel_name="python3",
        parameters={"tia2_mirror": str(mirror), "n_boot": 200, **parameters},
        progress_bar=False,
    )
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def pickscore(tmp_path_factory, mirror) -> dict:
    return _execute(tmp_path_factory, mirror, reference="PickScore")


@pytest.fixture(scope="module")
def one_subset(tmp_path_factory, mirror) -> dict:
    return _execute(tmp_path_factory, mirror, subsets=["comprehensive"], ci_level=0.975)


@pytest.fixture(scope="module")
def committed() -> dict:
    return json.loads(CHAPTER.read_text())


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else value


def _outputs(nb: dict):
    """(cell, output) for every output of every code cell."""
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            for out in cell.get("outputs", []):
                yield cell, out


def _conclusion(nb: dict) -> str:
    """The Markdown output of the code cell after the "What the data show" heading."""
    cells = nb["cells"]
    start = next(i for i, c in enumerate(cells) if _text(c["source"]).startswith("## What the data show"))
    cell = next(c for c in cells[start + 1 :] if c["cell_type"] == "code")
    return next(_text(o["data"]["text/markdown"]) for o in cell["outputs"] if "text/markdown" in o.get("data", {}))


def _bullets(text: str) -> dict[str, str]:
    """'* **Head.** sentence' lines -> {head: sentence}."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^\* \*\*(.+?)\*\* ?(.*)$", text, flags=re.M)}


def _html_rows(html: str) -> tuple[list[str], list[tuple[tuple[str, ...], list[str]]]]:
    """A pandas HTML table: (column labels, [(index labels, cell texts)]); a first index level spanning
    several rows (rowspan) is carried down to them."""
    head, body = html.split("<tbody>")
    columns = re.findall(r"<th>([^<]*)</th>", head.split("</tr>")[0])
    rows, carried = [], None
    for row in re.findall(r"<tr>(.*?)</tr>", body, flags=re.S):
        ths = [t.strip() for t in re.findall(r"<th[^>]*>(.*?)</th>", row, flags=re.S)]
        tds = [t.strip() for t in re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)]
        if len(ths) >= 2:
            carried = ths[0]
        rows.append(((carried, ths[-1]) if carried is not None and len(ths) < 2 else tuple(ths), tds))
    return columns, rows


def _table_after(nb: dict, label: str) -> str:
    """The HTML table displayed right after the Markdown output that contains ``label``."""
    outs = [o for _, o in _outputs(nb)]
    i = next(i for i, o in enumerate(outs) if label in _text(o.get("data", {}).get("text/markdown", "")))
    return _text(outs[i + 1]["data"]["text/html"])


def _grid(nb: dict, label: str) -> dict[tuple[str, str, str], tuple[str, float]]:
    """(subset, other reward, metric) -> (mean difference as shown, Holm-adjusted p as shown)."""
    columns, rows = _html_rows(_table_after(nb, label))
    metrics = columns[2:]  # after the blank corner and the columns' name
    out = {}
    for (subset, versus), cells in rows:
        for metric, cell in zip(metrics, cells):
            diff, p = re.fullmatch(r"([+-]\d\.\d{3}) \(([^)]+)\)", cell).groups()
            out[(subset, versus, metric)] = (diff, float(p))
    return out


def _means(nb: dict) -> dict[tuple[str, str], float]:
    """(subset, reward) -> mean AUROC, from the per-subset table (the one with AP@5 and Kendall)."""
    html = next(
        _text(o["data"]["text/html"])
        for _, o in _outputs(nb)
        if "Kendall" in _text(o.get("data", {}).get("text/html", ""))
    )
    columns, rows = _html_rows(html)
    k = columns[2:].index("AUROC")
    return {index: float(cells[k]) for index, cells in rows}


def _glued(nb: dict) -> dict[str, float | str]:
    """The glued values: numbers as floats, texts (the verdict) as strings."""
    out = {}
    for _, o in _outputs(nb):
        if "scrapbook" in o.get("metadata", {}):
            text = _text(o["data"]["application/papermill.record/text/plain"])
            out[o["metadata"]["scrapbook"]["name"]] = text.strip("'\"") if text[:1] in "'\"" else float(text)
    return out


def _independent_grid(mirror: Path, subsets: list[str], reference: str, column: str) -> dict:
    """The grid recomputed from the published per-prompt values with scipy's Wilcoxon test and
    statsmodels' Holm correction (within each subset and metric, or over all comparisons)."""
    pub = tia2.load_published_scores(subsets, mirror=mirror)
    pub["model"] = pub["model"].astype(str).map(READER_NAMES)
    others = [m for m in READER_NAMES.values() if m != reference]
    rows = []
    for shown, metric in TESTED.items():
        wide = pub.pivot_table(index=["subset", "prompt"], columns="model", values=metric, observed=True)
        for subset in subsets:
            part = wide.loc[subset]
            for other in others:
                d = (part[reference] - part[other]).dropna().to_numpy()
                p = stats.wilcoxon(d).pvalue if np.any(d != 0) else 1.0
                rows.append({"subset": subset, "versus": other, "metric": shown, "diff": d.mean(), "p": p})
    df = pd.DataFrame(rows)
    if column == "p_holm_all":
        df["adj"] = multipletests(df.p, method="holm")[1]
    else:
        df["adj"] = df.groupby(["subset", "metric"]).p.transform(lambda p: multipletests(p, method="holm")[1])
    return {(r.subset, r.versus, r.metric): (f"{r['diff']:+.3f}", r.adj) for _, r in df.iterrows()}


def _split(grid: dict) -> dict[str, list]:
    """Comparisons by outcome at adjusted p < 0.05, from the grid as shown."""
    assert not any(p == 0.05 for _, p in grid.values()), "a p-value shown as 0.050 is ambiguous at 0.05"
    out = {"favour": [], "against": [], "unresolved": []}
    for key, (diff, p) in grid.items():
        kind = "unresolved" if p >= 0.05 else "favour" if diff.startswith("+") else "against"
        out[kind].append((key, diff))
    assert not any(float(d) == 0 for k in ("favour", "against") for _, d in out[k]), "no direction at 3 decimals"
    return out


def _check_comparisons(nb: dict, reference: str, n_subsets: int) -> dict[str, list]:
    """The comparisons sentence against the two executed grids; returns the split over all."""
    sentence = _bullets(_conclusion(nb))[f"{reference} against the other rewards."]
    over_all = _grid(nb, "over all")
    within = _grid(nb, "within each subset and metric")
    n = len(over_all)
    assert n == n_subsets * 4 * 4 == len(within)
    subsets = tables.count(n_subsets, "subset")
    assert f"Of {n} paired comparisons ({subsets} x 4 metrics x 4 other rewards)" in sentence
    s = _split(over_all)
    a, b, c = (len(s[k]) for k in ("favour", "against", "unresolved"))
    assert a + b + c == n
    verb = "favours" if b == 1 else "favour"
    assert (
        f"with Holm-adjusted p < 0.05 over all {n}: {a} {'favours' if a == 1 else 'favour'} {reference}, "
        f"{b} {verb} the other reward" in sentence
    )
    assert f"and {c} {'does' if c == 1 else 'do'} not reach it" in sentence
    # every comparison the reference loses or leaves open is named, with its mean difference
    for kind in ("against", "unresolved"):
        for (subset, versus, metric), diff in s[kind]:
            assert f"{subset} {metric} vs {versus}, mean difference {diff}, p = " in sentence, (kind, subset, metric)
    for (subset, versus, metric), diff in s["favour"]:
        assert f"{subset} {metric} vs {versus}, mean difference {diff}" not in sentence
    f = _split(within)
    a2, b2, c2 = (len(f[k]) for k in ("favour", "against", "unresolved"))
    assert (
        f"Corrected only within each subset and metric (4 comparisons per family), {a2} "
        f"{'favours' if a2 == 1 else 'favour'} {reference} with adjusted p < 0.05, {b2} "
        f"{'favours' if b2 == 1 else 'favour'} the other reward and {c2} {'does' if c2 == 1 else 'do'} not reach it."
    ) in sentence
    return s


def _check_highest(nb: dict, reference: str, subsets: list[str], level: str) -> None:
    sentence = _bullets(_conclusion(nb))["Highest mean AUROC"]
    assert sentence.startswith(f"({level} bootstrap interval over prompts;")
    means = _means(nb)
    where = []
    for s in subsets:
        best = max(m for (subset, _), m in means.items() if subset == s)
        top = [r for (subset, r), m in means.items() if subset == s and m == best]
        assert len(top) == 1 and f"{s}: {top[0]} {best:.3f} [" in sentence
        if reference in top:
            where.append(s)
        else:
            assert f"({reference} {means[(s, reference)]:.3f} [" in sentence
    n, k = len(subsets), len(where)
    if n == 1:
        assert f"{reference} {'has' if k else 'does not have'} the highest mean on {subsets[0]}." in sentence
    else:
        phrase = {n: f"all {n} subsets", 0: f"none of the {n} subsets"}.get(k, f"{k} of the {n} subsets")
        assert f"{reference} has the highest mean on {phrase}" in sentence


def _check_plurals(text: str) -> None:
    for m in re.finditer(
        r"\b(\d+) (subset|metric|other reward|paired comparison|comparison|published prompt)(s?)\b", text
    ):
        assert (m.group(1) == "1") == (m.group(3) == ""), f"wrong plural: {m.group(0)!r}"


def _check_reader_outputs(nb: dict) -> None:
    """No NaN, identifier or set literal in any output a reader sees; each table's label right above it."""
    for cell, out in _outputs(nb):
        data = out.get("data", {})
        texts = [_text(out["text"])] if out["output_type"] == "stream" else []
        texts += [_text(data[k]) for k in ("text/markdown",) if k in data]
        texts += [re.sub(r"<style.*?</style>", "", _text(data["text/html"]), flags=re.S)] if "text/html" in data else []
        for text in texts:
            assert not re.search(r"\bnan\b", text, flags=re.I), text[:300]
            assert not IDENTIFIERS.search(text), IDENTIFIERS.search(text).group(0)
            assert not re.search(r"\{[^{}]*\}", re.sub(r"<[^>]+>", "", text)), text[:300]
        tables_shown = [o for o in cell.get("outputs", []) if "text/html" in o.get("data", {})]
        if len(tables_shown) > 1:  # several tables in one cell: each after its own label, no stream above
            outs = cell["outputs"]
            assert all(o["output_type"] != "stream" for o in outs)
            for i, o in enumerate(outs):
                if "text/html" in o.get("data", {}):
                    assert i > 0 and "text/markdown" in outs[i - 1].get("data", {})


# ------------------------------------------------------------------ another reference reward
def test_pickscore_conclusion_reports_what_it_loses(pickscore, mirror):
    s = _check_comparisons(pickscore, "PickScore", 3)
    assert len(s["against"]) >= 1  # the case the old text dropped: comparisons PickScore loses
    text = _conclusion(pickscore)
    assert "favour PickScore" in text and "TextNorm against" not in text
    _check_highest(pickscore, "PickScore", ["counting", "composition", "comprehensive"], "95%")
    _check_plurals(text)
    glued = _glued(pickscore)
    assert glued["n_tests"] == 48 and glued["n_favour"] == len(s["favour"]) and glued["n_weak"] == len(s["unresolved"])


@pytest.mark.parametrize("label, column", [("over all", "p_holm_all"), ("within each subset", "p_holm")])
def test_executed_grids_match_an_independent_recomputation(pickscore, mirror, label, column):
    shown = _grid(pickscore, label)
    expected = _independent_grid(mirror, ["counting", "composition", "comprehensive"], "PickScore", column)
    assert shown.keys() == expected.keys()
    for key, (diff, p) in expected.items():
        assert shown[key][0] == diff and shown[key][1] == float(tables.p_value(p)), key


def test_pickscore_chapter_shows_readers_no_nan_or_identifiers(pickscore):
    _check_reader_outputs(pickscore)


# ------------------------------------------------------------------ one subset, another interval level
def test_one_subset_conclusion_reads_as_one(one_subset, mirror):
    text = _conclusion(one_subset)
    _check_plurals(text)
    assert "1 subsets" not in text and "lowest on" not in text
    for s in ("counting", "composition"):
        assert s not in text
    _check_comparisons(one_subset, "TextNorm", 1)
    _check_highest(one_subset, "TextNorm", ["comprehensive"], "97.5%")
    # the annotators: the one subset's values, from the executed agreement table
    columns, rows = _html_rows(
        next(_text(o["data"]["text/html"]) for _, o in _outputs(one_subset) if "kappa (unsure a category)" in str(o))
    )
    row = {index[-1]: cells for index, cells in rows}
    kappa, unsure = float(row["kappa (unsure a category)"][0]), float(row["unsure labels"][0])
    assert _bullets(text)["Annotators."] == (
        f"Fleiss' kappa (unsure as its own category) is {kappa:.3f} on comprehensive, and {unsure:.3f} of its "
        "labels are 'unsure'."
    )
    assert "98%" not in json.dumps(one_subset)  # 0.975 is not rounded to a whole percent anywhere


def test_one_subset_chapter_shows_readers_no_nan_or_identifiers(one_subset):
    _check_reader_outputs(one_subset)


# ------------------------------------------------------------------ the committed chapter
def test_committed_conclusion_agrees_with_its_tables_and_glued_numbers(committed, mirror):
    s = _check_comparisons(committed, "TextNorm", 3)
    _check_highest(committed, "TextNorm", ["counting", "composition", "comprehensive"], "95%")
    glued = _glued(committed)
    assert (glued["n_favour"], glued["n_weak"], glued["n_tests"]) == (len(s["favour"]), len(s["unresolved"]), 48)
    assert glued["n_weak_comprehensive"] == sum(key[0] == "comprehensive" for key, _ in s["unresolved"])
    assert glued["ref_highest"] == 3 and glued["n_subsets"] == 3
    _check_plurals(_conclusion(committed))
    _check_reader_outputs(committed)


def test_committed_figures_have_captions_alt_text_and_fit_the_column(committed):
    from PIL import Image

    figures = [c for c in committed["cells"] if any("image/png" in o.get("data", {}) for o in c.get("outputs", []))]
    assert len(figures) == 2
    names = set()
    for cell in figures:
        meta = cell["metadata"]["mystnb"]
        assert len(meta["figure"]["caption"]) > 80 and len(meta["image"]["alt"]) > 80
        names.add(meta["figure"]["name"])
        assert "plots.show(fig)" in _text(cell["source"]) and "plt.show" not in _text(cell["source"])
        (out,) = [o for o in cell["outputs"] if o["output_type"] in ("display_data", "execute_result")]
        png = base64.b64decode(_text(out["data"]["image/png"]))
        width = Image.open(io.BytesIO(png)).size[0]
        assert width <= plots.COLUMN_INCHES * plots.DPI, width
        assert plots.png_min_font_px(png) >= 9 * plots.DPI / 72
    assert len(names) == 2


def test_committed_chapter_shows_teaching_code_and_hides_bookkeeping(committed):
    code = [c for c in committed["cells"] if c["cell_type"] == "code"]

    def tags(marker: str) -> list[str]:
        return next(c["metadata"].get("tags", []) for c in code if marker in _text(c["source"]))

    for marker in ("tia2.load_images(", "metrics.summarize(", "metrics.paired_tests(", "agreement.agreement_table("):
        assert not {"remove-input", "hide-input"} & set(tags(marker)), marker
    for marker in ("glue(", "findings.conclusions(", "plots.show(fig)", "def grid("):
        assert "remove-input" in tags(marker), marker
    glue_cell = next(c for c in code if "glue(" in _text(c["source"]))
    assert all("scrapbook" in o.get("metadata", {}) for o in glue_cell["outputs"])  # shows nothing


# ------------------------------------------------------------------ the sentence builders, on small tables
def _auroc(rows):
    return pd.DataFrame(rows, columns=["subset", "model", "mean", "ci_low", "ci_high"])


def _tests(rows):
    return pd.DataFrame(rows, columns=["subset", "metric", "versus", "mean_diff", "p_holm", "p_holm_all"])


def test_sentences_for_one_subset_a_losing_reference_and_one_other_reward():
    auroc = _auroc([("counting", "A", 0.7, 0.6, 0.8), ("counting", "B", 0.8, 0.7, 0.9)])
    tests = _tests(
        [("counting", m, "B", -0.1, 0.01, 0.04) for m in ("auroc", "ap10")]
        + [("counting", "spearman", "B", 0.02, 0.3, 0.6)]
    )
    text = findings.conclusions(
        reference="A",
        subsets=["counting"],
        rule={"matched": 1, "published_prompts": 1, "max_abs_diff": 0.0},
        auroc=auroc,
        tests=tests,
        kappa={"counting": 0.5},
        unsure={"counting": 0.0},
        ci_level=0.975,
        textnorm_caveat=False,
    )
    b = _bullets(text)
    assert b["Labels."].endswith("of the one published prompt exactly.")
    assert "(97.5% bootstrap interval" in b["Highest mean AUROC"]
    assert "counting: B 0.800 [0.700, 0.900] (A 0.700 [0.600, 0.800])" in b["Highest mean AUROC"]
    assert b["Highest mean AUROC"].endswith("A does not have the highest mean on counting.")
    c = b["A against the other rewards."]
    assert "Of 3 paired comparisons (1 subset x 3 metrics x 1 other reward)" in c
    assert "0 favour A, 2 favour the other reward (counting AUROC vs B, mean difference -0.100, p = 0.040;" in c
    assert "and 1 does not reach it (counting Spearman vs B, mean difference +0.020, p = 0.600)" in c
    assert "(1 comparison per family, so no correction), 0 favour A with adjusted p < 0.05, 2 favour" in c
    assert "lowest" not in b["Annotators."] and "is 0.500 on counting, and 0.000 of its labels" in b["Annotators."]
    assert "Caveat." not in b
    _check_plurals(text)


def test_sentences_for_ties_partial_matches_and_several_subsets():
    auroc = _auroc(
        [("x", "A", 0.8, 0.7, 0.9), ("x", "B", 0.8, 0.75, 0.85), ("y", "A", 0.6, 0.5, 0.7), ("y", "B", 0.7, 0.6, 0.8)]
    )
    text = findings.highest_sentence(auroc, "A", ["x", "y"], 0.95)
    assert "x: A 0.800 [0.700, 0.900] and B 0.800 [0.750, 0.850] (tied)" in text
    assert text.endswith("A has the highest mean on 1 of the 2 subsets (x).")
    assert findings.highest_sentence(auroc, "B", ["x", "y"], 0.9).endswith("B has the highest mean on both subsets.")
    assert findings.leaders(auroc) == {"x": ["A", "B"], "y": ["B"]}
    partial = findings.labels_sentence({"matched": 3, "published_prompts": 4, "max_abs_diff": 0.25})
    assert "of 3 of 4 published prompts exactly (to 1e-9); the largest difference is 0.25." in partial
    ann = findings.annotators_sentence({"x": 0.3, "y": 0.3, "z": 0.6}, {"x": 0.0, "y": 0.0, "z": 0.0})
    assert "is lowest on x and y (0.300) and highest on z (0.600)" in ann and "'unsure' is 0.000 on every subset" in ann
    out = findings.outcomes(_tests([("x", "auroc", "B", 0.0, 0.01, 0.01), ("x", "auroc", "C", 0.1, 0.2, float("nan"))]))
    assert len(out["no_difference"]) == 1 and len(out["unresolved"]) == 1 and not len(out["favour"])
    assert "There is no other reward" in findings.comparisons_sentence(_tests([]), "A")


def test_number_words():
    assert tables.count(1, "subset") == "1 subset" and tables.count(0, "family", "families") == "0 families"
    assert tables.join_words(["a", "b", "c"]) == "a, b and c" and tables.join_words(["a"]) == "a"
    assert tables.percent(0.95) == "95%" and tables.percent(0.975) == "97.5%" and tables.percent(0.999) == "99.9%"


def test_verdict_per_subset():
    from textnorm.tia2 import findings

    tests = pd.DataFrame(
        {
            "subset": ["counting", "counting", "composition", "composition", "comprehensive"],
            "mean_diff": [0.1, 0.2, 0.1, -0.05, 0.01],
            "p_holm_all": [0.001, 0.01, 0.001, 0.02, 0.5],
        }
    )
    assert findings.verdict(tests, ["counting", "composition", "comprehensive"]) == (
        "holds on counting; does not hold on composition; not shown on comprehensive"
    )
    assert findings.verdict(tests[tests.subset == "counting"], ["counting"]) == "holds on counting"
    with pytest.raises(ValueError, match="no comparison"):
        findings.verdict(tests, ["nope"])


def test_committed_verdict_follows_the_holm_tables(mirror):
    from textnorm.tia2 import findings

    subsets = ["counting", "composition", "comprehensive"]
    grid = _independent_grid(mirror, subsets, "TextNorm", "p_holm_all")  # scipy + statsmodels, recomputed
    tests = pd.DataFrame([{"subset": k[0], "mean_diff": float(d), "p_holm_all": p} for k, (d, p) in grid.items()])
    assert _glued(json.loads(CHAPTER.read_text()))["verdict"] == findings.verdict(tests, subsets)
