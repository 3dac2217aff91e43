"""Chapters refuse, in words and before any heavy work, what would give a silently wrong answer or a
crash later: per-image scores that cannot prove which subset's images they are (no prompt column),
a reference reward the scores do not hold, an over-optimisation `logs` folder that does not exist."""

from __future__ import annotations

import numpy as np
import pandas as pd
import papermill
import pytest

from textnorm import params, tia2
from textnorm.paths import repo_root
from textnorm.tia2 import evaluation

TIA2_CHAPTER = repo_root() / "notebooks" / "01_tia2.ipynb"
OVEROPT_CHAPTER = repo_root() / "notebooks" / "03_overoptimization.ipynb"


@pytest.fixture(scope="module")
def counting(mirror):
    return tia2.load_images(["counting"], mirror=mirror)


def _scores(images: pd.DataFrame, columns=("clip", "clip_textnorm"), n_prompts: int = 3) -> pd.DataFrame:
    """Per-image scores of the first prompts, in the layout `textnorm score` writes."""
    keep = images[images.prompt.isin(images.prompt.unique()[:n_prompts])]
    rng = np.random.default_rng(0)
    out = keep[["subset", "prompt", "image"]].reset_index(drop=True)
    for c in columns:
        out[c] = keep["aligned"].to_numpy() + rng.normal(0, 0.5, len(keep))
    return out


def _run(notebook, tmp_path, **parameters):
    return papermill.execute_notebook(
        str(notebook), str(tmp_path / "out.ipynb"), kernel_name="python3", parameters=parameters, progress_bar=False
    )


def _refused(notebook, tmp_path, **parameters) -> papermill.PapermillExecutionError:
    with pytest.raises(papermill.PapermillExecutionError) as err:
        _run(notebook, tmp_path, **parameters)
    return err.value


# ------------------------------------------------- chapter 01: scores without a prompt column
def test_scores_without_prompt_column_are_refused_by_the_chapter(mirror, counting, tmp_path):
    # counting's images declared as composition: the file names exist there too (image_0_* ...)
    csv = tmp_path / "scores.csv"
    _scores(counting).drop(columns=["subset", "prompt"]).to_csv(csv, index=False)
    err = _refused(
        TIA2_CHAPTER,
        tmp_path,
        subsets=["composition"],
        scores_path=str(csv),
        reference="clip_textnorm",
        n_boot=50,
        tia2_mirror=str(mirror),
    )
    assert "the scores have no 'prompt' column" in str(err)
    assert "image file names repeat across subsets" in str(err) and "match_by_image_name" in str(err)
    assert err.exec_count == 3  # the check after the parameters: before the labels are loaded


def test_prompt_less_scores_run_when_asked_and_coverage_is_printed(mirror, counting, tmp_path):
    csv = tmp_path / "scores.csv"
    _scores(counting).drop(columns=["subset", "prompt"]).to_csv(csv, index=False)
    _run(
        TIA2_CHAPTER,
        tmp_path,
        subsets=["counting"],
        scores_path=str(csv),
        reference="clip_textnorm",
        match_by_image_name=True,
        n_boot=50,
        tia2_mirror=str(mirror),
    )
    text = (tmp_path / "out.ipynb").read_text()
    assert "coverage: 3 of 150 counting prompts scored (150 of 7500 images)" in text
    assert "matched by image name alone" in text


def test_match_by_image_name_must_be_a_boolean(mirror, tmp_path):
    err = _refused(TIA2_CHAPTER, tmp_path, match_by_image_name="yes", tia2_mirror=str(mirror))
    assert "match_by_image_name = 'yes': expected True or False" in str(err) and err.exec_count == 3


def test_library_keeps_prompt_less_scores_for_the_cli_and_refuses_them_on_request(counting):
    s = _scores(counting, columns=("r",)).drop(columns="prompt")
    assert len(evaluation.metrics_from_scores(s, counting))  # the default: `textnorm evaluate` prints coverage
    assert int(evaluation.coverage(s, counting).n_scored.sum()) == 150
    with pytest.raises(ValueError, match="no 'prompt' column.*only the prompt column proves"):
        evaluation.metrics_from_scores(s, counting, match_by_image_name=False)
    with pytest.raises(ValueError, match="no 'prompt' column"):
        evaluation.coverage(s, counting, match_by_image_name=False)
    with_prompt = _scores(counting, columns=("r",))
    assert len(evaluation.metrics_from_scores(with_prompt, counting, match_by_image_name=False))


# ------------------------------------------------- chapter 01: a reference the scores do not hold
def test_reference_not_among_the_score_columns_is_refused_at_once(mirror, counting, tmp_path):
    csv = tmp_path / "scores.csv"
    _scores(counting).to_csv(csv, index=False)
    # the default reference, TextNorm, against the columns `textnorm score --textnorm` writes
    err = _refused(TIA2_CHAPTER, tmp_path, subsets=["counting"], scores_path=str(csv), tia2_mirror=str(mirror))
    assert "reference = 'TextNorm': expected one of the score columns of" in str(err)
    assert "['clip', 'clip_textnorm']" in str(err) and err.exec_count == 3


def test_a_single_score_column_is_refused_at_once(mirror, counting, tmp_path):
    csv = tmp_path / "scores.csv"
    _scores(counting, columns=("clip",)).to_csv(csv, index=False)
    err = _refused(
        TIA2_CHAPTER, tmp_path, subsets=["counting"], scores_path=str(csv), tia2_mirror=str(mirror), reference="clip"
    )
    assert "holds one score column ['clip']" in str(err) and err.exec_count == 3


def test_reference_rules_name_what_is_expected():
    rule = params.one_of(["a", "b"], of="the score columns of s.csv")
    assert rule("a") is None and rule("c") == "one of the score columns of s.csv: ['a', 'b']"
    assert params.one_of([1])(2) == "one of [1]"
    assert params.boolean(True) is None and params.boolean(0) == "True or False"


# ------------------------------------------------- chapter 03: a logs folder that does not exist
def test_missing_logs_folder_is_an_error_not_an_hour_of_training(tmp_path):
    missing = tmp_path / "no_such_logs"
    err = _refused(OVEROPT_CHAPTER, tmp_path, logs=str(missing))
    text = str(err)
    assert f"no run logs at {missing}" in text
    assert f"textnorm overopt --out {missing}" in text and "run_grid = True" in text
    assert err.exec_count == 3 and not missing.exists()


def test_run_grid_must_be_a_boolean(tmp_path):
    err = _refused(OVEROPT_CHAPTER, tmp_path, run_grid="yes")
    assert "run_grid = 'yes': expected True or False" in str(err) and err.exec_count == 3


def test_longer_gold_must_map_folders_to_what_their_runs_are(tmp_path):
    err = _refused(OVEROPT_CHAPTER, tmp_path, longer_gold=["data/overopt_gold_48"])
    assert "longer_gold = ['data/overopt_gold_48']: expected a dict of folder paths to what their runs are" in str(err)
    assert err.exec_count == 3


def test_confirm_gold_must_map_folders_to_what_their_runs_are(tmp_path):
    err = _refused(OVEROPT_CHAPTER, tmp_path, confirm_gold="data/overopt_gold_48_confirm")
    assert "confirm_gold = 'data/overopt_gold_48_confirm': expected a dict of folder paths" in str(err)
    assert err.exec_count == 3


def test_earlier_grids_must_name_existing_grids_with_a_name(tmp_path):
    err = _refused(OVEROPT_CHAPTER, tmp_path, earlier_grids={"data/overopt_first": "the first"})
    assert "earlier_grids = {'data/overopt_first': 'the first'}: expected a dict of folder paths to {\"name\"" in str(
        err
    )
    assert err.exec_count == 3
    err = _refused(OVEROPT_CHAPTER, tmp_path, earlier_grids={"data/no_such_grid": {"name": "a typo"}})
    assert "earlier_grids: no run logs (grid.json) in ['data/no_such_grid']" in str(err) and err.exec_count == 3
    err = _refused(
        OVEROPT_CHAPTER,
        tmp_path,
        earlier_grids={
            "data/overopt_first": {"name": "the first", "confirm_gold": {"data/overopt_gold_48_confirm": "x"}}
        },
    )
    assert "earlier_grids['data/overopt_first']: its confirm_gold is read beside its longer_gold" in str(err)
    assert err.exec_count == 3
    twice = {"data/overopt_first": {"name": "one"}, "data/overopt_first/": {"name": "two"}}
    err = _refused(OVEROPT_CHAPTER, tmp_path, earlier_grids=twice)
    assert "earlier_grids names the folder 'data/overopt_first/' twice" in str(err) and err.exec_count == 3
    alike = {"data/overopt_first": {"name": "one"}, "data/overopt": {"name": "one"}}
    err = _refused(OVEROPT_CHAPTER, tmp_path, earlier_grids=alike)
    assert "earlier_grids: two grids share a name (['one', 'one'])" in str(err) and err.exec_count == 3


def test_earlier_grids_come_in_the_order_they_were_registered_and_before_the_chapters_grid(tmp_path):
    # each earlier grid is tabled against the next one: a later registration named as earlier would read backwards
    later = {"data/overopt_16prompts": {"name": "the third"}}  # registered after data/overopt's grid
    err = _refused(OVEROPT_CHAPTER, tmp_path, logs="data/overopt", earlier_grids=later)
    assert "earlier_grids: data/overopt_16prompts was registered after data/overopt" in str(err)
    assert err.exec_count == 3
    swapped = {"data/overopt": {"name": "the second"}, "data/overopt_first": {"name": "the first"}}
    err = _refused(OVEROPT_CHAPTER, tmp_path, logs="data/overopt_first", earlier_grids=swapped)
    assert "earlier_grids: data/overopt was registered after data/overopt_first" in str(err)
    err = _refused(OVEROPT_CHAPTER, tmp_path, earlier_grids={"data/overopt_first": {"name": "this chapter"}})
    assert '"this chapter" names this chapter\'s grid' in str(err) and err.exec_count == 3


def test_confirm_gold_needs_the_longer_runs_it_confirms(tmp_path):
    # confirm_gold is checked against longer_gold's settings: without them it would be read against nothing
    err = _refused(OVEROPT_CHAPTER, tmp_path, longer_gold={}, confirm_gold={"data/overopt_gold_48_confirm": "fresh"})
    assert "confirm_gold is read beside longer_gold" in str(err) and "set confirm_gold = {} too" in str(err)
    assert err.exec_count == 3  # refused in the parameters' check, before any heavy work
