"""Nothing silently wrong, nothing lost: evaluation coverage and duplicates, refusals to overwrite,
output paths checked before any work, the manifest kept to the repository's artifacts."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from textnorm import manifest, tia2
from textnorm.cli import main
from textnorm.paths import repo_root
from textnorm.tia2 import evaluation


@pytest.fixture(scope="module")
def counting(mirror):
    return tia2.load_images(["counting"], mirror=mirror)


def _scores(images: pd.DataFrame, n_prompts: int = 3, seed: int = 0) -> pd.DataFrame:
    keep = images[images.prompt.isin(images.prompt.unique()[:n_prompts])]
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "subset": keep.subset.to_numpy(),
            "prompt": keep.prompt.to_numpy(),
            "image": keep.image.to_numpy(),
            "r": rng.normal(size=len(keep)),
        }
    )


def _evaluate(mirror, scores: pd.DataFrame | None, tmp_path, *extra, csv=None):
    if csv is None:
        csv = tmp_path / "s.csv"
        scores.to_csv(csv, index=False)
    return main(["evaluate", "--mirror", str(mirror), "--scores", str(csv), "--out", str(tmp_path / "m.json"), *extra])


# ---------------------------------------------------------------- evaluation: wrong input is an error
def test_duplicated_rows_are_refused(mirror, counting, tmp_path, capsys):
    s = _scores(counting)
    dup = pd.concat([s, s.iloc[:5].assign(r=9.0)])  # conflicting scores for five images
    assert _evaluate(mirror, dup, tmp_path) == 1
    assert "10 rows share their subset and image" in capsys.readouterr().err
    with pytest.raises(ValueError, match="share their"):
        evaluation.metrics_from_scores(pd.concat([s, s.iloc[:1]]), counting)  # equal scores too
    assert not (tmp_path / "m.json").exists()


def test_scores_of_another_subset_are_refused(mirror, counting, tmp_path, capsys):
    # image names repeat across subsets: counting scores relabelled as composition
    s = _scores(counting).assign(subset="composition")
    assert _evaluate(mirror, s, tmp_path) == 1
    assert "another prompt than in the TIA2 annotations" in capsys.readouterr().err
    # without a prompt column nothing tells the subsets apart (the first prompts of each have the
    # same 50 file names): the coverage line is what shows it
    assert _evaluate(mirror, s.drop(columns="prompt"), tmp_path) == 0
    assert "3 of 300 composition prompts scored" in capsys.readouterr().out


def test_unknown_images_are_refused(counting):
    s = _scores(counting)
    s.loc[0, "image"] = "image_999_0_0.jpg"
    with pytest.raises(ValueError, match="1 scored images are not TIA2 images of counting"):
        evaluation.metrics_from_scores(s, counting)


def test_partial_prompts_are_refused_unless_asked(mirror, counting, tmp_path, capsys):
    s = _scores(counting)
    first = s.prompt.iloc[0]
    cut = s.drop(s.index[s.prompt == first][10:])  # 10 of the first prompt's 50 images
    assert _evaluate(mirror, cut, tmp_path) == 1
    err = capsys.readouterr().err
    assert "1 prompts are only partly scored" in err and "10 of 50" in err
    assert _evaluate(mirror, cut, tmp_path, "--partial") == 0
    out = capsys.readouterr().out
    assert "3 of 150 counting prompts scored" in out and "1 prompts PARTLY scored" in out
    layout = json.loads((tmp_path / "m.json").read_text())
    if first in layout:  # a 10-image subset can be all one verdict, then the prompt is not scorable
        assert layout[first]["coverage"] == [10, 50]
    assert all("coverage" not in v for k, v in layout.items() if k != first)
    table = evaluation.metrics_from_scores(cut, counting, partial=True)
    assert set(table.query("prompt != @first").n_scored) == {50}


def test_partial_coverage_changes_numbers_it_is_reported_for(counting):
    s = _scores(counting, n_prompts=1)
    full = evaluation.metrics_from_scores(s, counting)
    part = evaluation.metrics_from_scores(s.iloc[:25], counting, partial=True)
    assert int(full.n_scored.iloc[0]) == 50 and int(part.n_scored.iloc[0]) == 25


def test_absent_prompts_are_not_partial(counting):
    table = evaluation.metrics_from_scores(_scores(counting, n_prompts=2), counting)
    assert set(table.n_scored) == {50} and table.prompt.nunique() <= 2


def test_header_only_csv_and_index_column(mirror, counting, tmp_path, capsys):
    csv = tmp_path / "h.csv"
    csv.write_text("subset,prompt,image,r\n")
    assert _evaluate(mirror, None, tmp_path, "--subset", "counting", csv=csv) == 1
    assert "no rows" in capsys.readouterr().err
    s = _scores(counting)
    s.to_csv(tmp_path / "idx.csv")  # pandas' index saved as 'Unnamed: 0'
    assert _evaluate(mirror, None, tmp_path, csv=tmp_path / "idx.csv") == 0
    layout = json.loads((tmp_path / "m.json").read_text())
    assert {k for v in layout.values() for k in v} == {"human", "r"}


# ---------------------------------------------------------------- outputs: never overwritten silently
def test_evaluate_out_checks(mirror, counting, tmp_path, capsys):
    s = _scores(counting)
    csv = tmp_path / "s.csv"
    s.to_csv(csv, index=False)
    before = csv.read_bytes()
    assert main(["evaluate", "--mirror", str(mirror), "--scores", str(csv), "--out", str(csv)]) == 1
    assert "also an input" in capsys.readouterr().err and csv.read_bytes() == before
    assert main(["evaluate", "--mirror", str(mirror), "--scores", str(csv), "--out", str(tmp_path)]) == 1
    assert "is a folder" in capsys.readouterr().err
    out = tmp_path / "m.json"
    out.write_text("my results")
    assert main(["evaluate", "--mirror", str(mirror), "--scores", str(csv), "--out", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err and out.read_text() == "my results"
    assert main(["evaluate", "--mirror", str(mirror), "--scores", str(csv), "--out", str(out), "--overwrite"]) == 0
    assert json.loads(out.read_text())
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_train_generator_refuses_a_folder_that_holds_a_model(tmp_path, capsys):
    target = tmp_path / "gen"
    target.mkdir()
    (target / "model_index.json").write_text("{}")
    assert main(["train-generator", "--out", str(target), "--steps", "1", "--quiet"]) == 1
    assert "not empty" in capsys.readouterr().err and (target / "model_index.json").read_text() == "{}"
    # the default --out is the shipped generator: refused the same way, before any training
    shipped = repo_root() / "data" / "synth" / "generator"
    assert main(["train-generator", "--steps", "1", "--quiet"]) == 1
    assert "--overwrite" in capsys.readouterr().err and not manifest.verify()
    assert (shipped / "model_index.json").is_file()


def test_score_arguments_are_checked_before_any_work(tmp_path, capsys, mirror):
    base = [
        "score",
        "--mirror",
        str(mirror),
        "--images",
        str(tmp_path),
        "--subset",
        "counting",
        "--reward",
        "clip",
        "--out",
        str(tmp_path / "s.csv"),
    ]
    for extra, message in (
        (["--limit-prompts", "-1"], "--limit-prompts must be >= 0"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--dtype", "float16"], "needs a GPU"),
        (["--temperature", "nan"], "--temperature must be a finite number > 0"),
        (["--temperature", "0"], "--temperature must be a finite number > 0"),
    ):
        assert main(base + extra) == 1
        assert message in capsys.readouterr().err
    import torch

    if not torch.cuda.is_available():
        assert main(base + ["--device", "cuda"]) == 1
        assert "no CUDA GPU" in capsys.readouterr().err


def test_manifest_records_only_the_repository_artifacts(tmp_path):
    path = repo_root() / "data" / "MANIFEST.json"
    before = path.read_bytes()
    (tmp_path / "model.bin").write_bytes(b"x")
    assert manifest.record(tmp_path, "textnorm train-generator", {}) is None
    assert path.read_bytes() == before
    own = tmp_path / "own.json"
    entry = manifest.record(tmp_path / "model.bin", "cmd", {"a": 1}, manifest=own)  # an explicit manifest
    assert entry["files"] == {"model.bin": manifest._sha256(tmp_path / "model.bin")}
    assert str(tmp_path / "model.bin") in json.loads(own.read_text())
    # a folder about to be renamed into place: its files, under the final name
    (tmp_path / "logs.new").mkdir()
    (tmp_path / "logs.new" / "a.json").write_text("{}")
    entry = manifest.record(tmp_path / "logs.new", "cmd", {}, manifest=own, recorded_as=tmp_path / "logs")
    assert entry["files"] == {"a.json": manifest._sha256(tmp_path / "logs.new" / "a.json")}
    assert str(tmp_path / "logs") in json.loads(own.read_text())
    assert str(tmp_path / "logs.new") not in json.loads(own.read_text())


def test_published_contrastive_sets_are_cleaned(mirror):
    comp, dropped = tia2.clean_contrastive(tia2.load_contrastive_prompts("composition", mirror=mirror))
    assert dropped["sets"] == 32 and dropped["duplicates"] > 0
    assert all(len(set(c)) == len(c) and p not in c for p, c in comp.items())
    _, dropped = tia2.clean_contrastive(tia2.load_contrastive_prompts("comprehensive", mirror=mirror))
    assert dropped["self"] == 1
    assert tia2.clean_contrastive({"a": ["b", "a", "b", "c"]}) == (
        {"a": ["b", "c"]},
        {"duplicates": 1, "self": 1, "sets": 1},
    )


def test_missing_local_reward_folder_is_named():
    from textnorm.finetune.rewards import make_reward

    with pytest.raises(FileNotFoundError, match="reward model folder /missing/proxy does not exist"):
        make_reward("raw:/missing/proxy")


def test_filesystem_errors_are_messages(mirror, counting, tmp_path, capsys):
    csv = tmp_path / "s.csv"
    _scores(counting).to_csv(csv, index=False)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    # a file where a folder should be: one line naming the problem, exit 1, no traceback
    assert main(["evaluate", "--mirror", str(mirror), "--scores", str(csv), "--out", str(blocker / "m.json")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("textnorm evaluate:") and "Traceback" not in err


def test_score_columns_are_checked(mirror, counting, tmp_path, capsys):
    s = _scores(counting)
    text = s.assign(tn=s.r.astype(object))
    text.loc[3, "tn"] = "abc"  # one text value: the column is refused, not dropped
    assert _evaluate(mirror, text, tmp_path) == 1
    assert "score column 'tn' is not numeric (e.g. 'abc' in row 5 of the file)" in capsys.readouterr().err
    for name in ("human", "coverage", "aligned"):
        assert _evaluate(mirror, s.rename(columns={"r": name}), tmp_path) == 1
        assert f"column {name!r} cannot be a score column" in capsys.readouterr().err
    csv = tmp_path / "ok.csv"
    s.to_csv(csv, index=False)
    for cols, message in ((["prompt"], "cannot be a score column"), (["r", "r"], "score columns repeat")):
        assert (
            main(
                [
                    "evaluate",
                    "--mirror",
                    str(mirror),
                    "--scores",
                    str(csv),
                    "--out",
                    str(tmp_path / "c.json"),
                    "--column",
                    *cols,
                ]
            )
            == 1
        )
        assert message in capsys.readouterr().err
    (tmp_path / "bin.csv").write_bytes(b"\xd0\xcf\x11\xe0" * 50)
    assert _evaluate(mirror, None, tmp_path, "--subset", "counting", csv=tmp_path / "bin.csv") == 1
    assert "cannot read scores CSV" in capsys.readouterr().err


def test_scores_without_subset_against_several_subsets(mirror, counting):
    labels = tia2.load_images(["counting", "composition"], mirror=mirror)
    with pytest.raises(ValueError, match="no 'subset' column but the labels hold several subsets"):
        evaluation.metrics_from_scores(_scores(counting).drop(columns=["subset", "prompt"]), labels)


def test_only_unscorable_prompts(counting):
    summary = tia2.prompt_summary(counting)
    one_verdict = summary[~summary.scorable].prompt.iloc[0]
    rows = counting[counting.prompt == one_verdict]
    s = pd.DataFrame({"subset": rows.subset, "prompt": rows.prompt, "image": rows.image, "r": 0.5})
    with pytest.raises(ValueError, match="none of the scored prompts can be evaluated"):
        evaluation.metrics_from_scores(s, counting)


def test_benchmark_out_is_checked_under_the_name_numpy_writes(tmp_path, capsys):
    (tmp_path / "bench.npz").write_text("precious")
    assert (
        main(
            [
                "build-synth-benchmark",
                "--generator",
                str(tmp_path / "nogen"),
                "--out",
                str(tmp_path / "bench"),
                "--quiet",
            ]
        )
        == 1
    )
    assert "--overwrite" in capsys.readouterr().err and (tmp_path / "bench.npz").read_text() == "precious"
