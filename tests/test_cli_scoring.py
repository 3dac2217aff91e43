"""`textnorm score` / `textnorm evaluate` end to end on tiny models and generated image files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from textnorm import testing, tia2
from textnorm.cli import main
from textnorm.rewards import calibration

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return testing.save_clip(tmp_path_factory.mktemp("m") / "clip")


@pytest.fixture(scope="module")
def counting_images(mirror, tmp_path_factory):
    """Random 32 px JPEGs for the first two counting prompts, named as in the annotations."""
    folder = tmp_path_factory.mktemp("img")
    table = tia2.load_images(["counting"], mirror=mirror)
    first = table[table.prompt.isin(table.prompt.unique()[:2])]
    rng = np.random.default_rng(0)
    for name in first.image:
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / name)
    return folder, first


def _score(args, mirror):
    return main(["score", "--mirror", str(mirror), "--quiet", *args])


def test_score_and_evaluate(clip_dir, counting_images, mirror, tmp_path):
    folder, first = counting_images
    out = tmp_path / "scores.csv"
    assert (
        _score(
            [
                "--images",
                str(folder),
                "--subset",
                "counting",
                "--reward",
                "clip",
                "--model",
                str(clip_dir),
                "--out",
                str(out),
                "--textnorm",
                "--limit-prompts",
                "2",
            ],
            mirror,
        )
        == 0
    )
    scores = pd.read_csv(out)
    assert list(scores.columns) == ["subset", "prompt", "image", "clip", "clip_textnorm"]
    assert len(scores) == 100 and scores.image.tolist() == first.image.tolist()
    assert scores.clip_textnorm.between(0, 1).all()

    # the TextNorm column is the softmax over the prompt and its published contrastive prompts
    from textnorm.rewards import load_reward

    reward = load_reward("clip", str(clip_dir))
    prompt = scores.prompt.iloc[0]
    contrast = tia2.load_contrastive_prompts("counting", mirror=mirror)[prompt]
    imgs = [Image.open(folder / n).convert("RGB") for n in scores.image[:50]]
    R = reward.score_matrix(imgs, [prompt, *contrast])
    assert np.allclose(scores.clip_textnorm[:50], calibration.textnorm(R[:, 0], R[:, 1:]), atol=1e-5)

    metrics_out = tmp_path / "metrics.json"
    assert main(["evaluate", "--mirror", str(mirror), "--scores", str(out), "--out", str(metrics_out)]) == 0
    layout = json.loads(metrics_out.read_text())
    scorable = tia2.prompt_summary(first).query("scorable").prompt.tolist()
    assert sorted(layout) == sorted(scorable)
    entry = layout[scorable[0]]
    assert set(entry) == {"human", "clip", "clip_textnorm"}
    assert set(entry["clip"]) == {"auroc", "auprc", "ap5", "ap10", "ap25", "spearman", "kendall"}


def test_rule_based_contrastive_prompts_option(clip_dir, counting_images, mirror, tmp_path):
    folder, _ = counting_images
    out = tmp_path / "rules.csv"
    assert (
        _score(
            [
                "--images",
                str(folder),
                "--subset",
                "counting",
                "--reward",
                "clip",
                "--model",
                str(clip_dir),
                "--out",
                str(out),
                "--textnorm",
                "--contrastive",
                "rules",
                "--limit-prompts",
                "2",
            ],
            mirror,
        )
        == 0
    )
    published = tmp_path / "pub.csv"
    _score(
        [
            "--images",
            str(folder),
            "--subset",
            "counting",
            "--reward",
            "clip",
            "--model",
            str(clip_dir),
            "--out",
            str(published),
            "--textnorm",
            "--limit-prompts",
            "2",
        ],
        mirror,
    )
    # the rules reproduce the published counting sets, so the columns agree
    assert np.allclose(pd.read_csv(out).clip_textnorm, pd.read_csv(published).clip_textnorm)


def test_missing_images_fail_before_loading_and_write_nothing(clip_dir, counting_images, mirror, tmp_path, capsys):
    folder, _ = counting_images
    out = tmp_path / "scores.csv"
    code = _score(
        [
            "--images",
            str(folder),
            "--subset",
            "counting",
            "--reward",
            "clip",
            "--model",
            "/nonexistent",
            "--out",
            str(out),
            "--limit-prompts",
            "3",
        ],
        mirror,
    )
    err = capsys.readouterr().err
    assert code == 1 and "50 of 150 images are missing" in err and not out.exists()


def test_unreadable_image(clip_dir, counting_images, mirror, tmp_path, capsys):
    folder, first = counting_images
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in first.image:
        (bad / name).write_bytes((folder / name).read_bytes())
    (bad / first.image.iloc[7]).write_bytes(b"not a jpeg")
    out = tmp_path / "scores.csv"
    code = _score(
        [
            "--images",
            str(bad),
            "--subset",
            "counting",
            "--reward",
            "clip",
            "--model",
            str(clip_dir),
            "--out",
            str(out),
            "--limit-prompts",
            "2",
        ],
        mirror,
    )
    assert code == 1 and "cannot read image" in capsys.readouterr().err
    assert list(tmp_path.glob("*.csv")) == [] and list(tmp_path.glob(".scores*")) == []


def test_unknown_reward_and_missing_rules(counting_images, mirror, tmp_path, capsys):
    folder, _ = counting_images
    assert (
        _score(
            [
                "--images",
                str(folder),
                "--subset",
                "counting",
                "--reward",
                "nope",
                "--out",
                str(tmp_path / "x.csv"),
                "--limit-prompts",
                "2",
            ],
            mirror,
        )
        == 1
    )
    assert "unknown reward 'nope'" in capsys.readouterr().err
    code = _score(
        [
            "--images",
            str(folder),
            "--subset",
            "comprehensive",
            "--reward",
            "clip",
            "--out",
            str(tmp_path / "x.csv"),
            "--textnorm",
            "--contrastive",
            "rules",
        ],
        mirror,
    )
    assert code == 1 and "no rule-based contrastive prompts" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_prompt_without_contrastive_set():
    from textnorm.rewards.scoring import prompt_matrices

    with pytest.raises(KeyError, match="no contrastive prompt set"):
        prompt_matrices(model=None, images=["x.jpg"], prompts=["a cat"], contrastive={"a dog": ["two dogs"]})


def test_evaluate_errors(mirror, tmp_path, capsys):
    csv = tmp_path / "s.csv"
    csv.write_text("picture,score\nx.jpg,1.0\n")
    assert (
        main(
            [
                "evaluate",
                "--mirror",
                str(mirror),
                "--scores",
                str(csv),
                "--subset",
                "counting",
                "--out",
                str(tmp_path / "m.json"),
            ]
        )
        == 1
    )
    assert "no 'image' column" in capsys.readouterr().err
    csv.write_text("image,score\nimage_0_0_0.jpg,1.0\n")
    assert main(["evaluate", "--mirror", str(mirror), "--scores", str(csv), "--out", str(tmp_path / "m.json")]) == 1
    assert "--subset" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()
