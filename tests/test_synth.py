"""The synthetic world: captions, the gold judge, annotators, generator and proxy plumbing,
and the committed artifacts (loading, sha256 manifest)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from textnorm import manifest
from textnorm.paths import repo_root
from textnorm.rewards import load_reward
from textnorm.stats import agreement
from textnorm.synth import annotators, benchmark, judge, scenes
from textnorm.synth.generator import SynthPipeline
from textnorm.synth.proxies import ProxyConfig, train_proxy
from textnorm.synth.train import TrainConfig, train_generator

torch.set_num_threads(1)
ALL = [scenes.caption_text(c) for s in ("counting", "composition") for c in scenes.all_captions(s)]


def test_captions():
    assert len(scenes.all_captions("counting")) == 48 and len(scenes.all_captions("composition")) == 528
    assert all(scenes.caption_text(scenes.parse_caption(c)) == c for c in ALL)
    train, held = scenes.split_captions("composition")
    assert not set(train) & set(held) and len(held) == round(0.2 * 528)
    for c in ("three red circles", "a red circle and two blue squares"):
        contrast = scenes.contrastive_captions(c)
        assert c not in contrast and len(contrast) == len(set(contrast))
        assert all(scenes.parse_caption(x) for x in contrast)
    with pytest.raises(ValueError):
        scenes.parse_caption("five purple hexagons")


def test_judge_on_clean_and_noisy_renders():
    caps = ALL * 2
    clean = scenes.draw_batch(caps, seed=1)
    assert judge.judge_batch(clean, caps).all()
    noisy = scenes.draw_batch(caps, seed=1, noise=0.1)
    assert judge.judge_batch(noisy, caps).mean() >= 0.99
    rng = np.random.default_rng(0)
    other = [c for c in rng.permutation(caps)]
    mismatch = [o != c for o, c in zip(other, caps)]
    wrong = judge.judge_batch(clean[mismatch], [o for o, m in zip(other, mismatch) if m])
    assert wrong.mean() <= 0.01


def test_judge_sees_counts_colours_shapes():
    img = scenes.draw("two red circles", np.random.default_rng(0))
    assert judge.matches(img, "two red circles")
    for wrong in ("three red circles", "two blue circles", "two red squares", "a red circle"):
        assert not judge.matches(img, wrong)


def test_annotators_agreement_in_tia2_range():
    rng = np.random.default_rng(0)
    caps = list(rng.choice(ALL, 1500))
    shown = [c if rng.random() < 0.45 else str(rng.choice(scenes.contrastive_captions(c))) for c in caps]
    imgs = scenes.draw_batch(shown, seed=2)
    labels = annotators.simulate_labels(imgs, caps, seed=0)
    assert labels.shape == (1500, 3) and set(np.unique(labels)) <= {-1, 0, 1}
    kappa = agreement.fleiss(labels)
    assert 0.25 <= kappa <= 0.75  # TIA2's subsets span about 0.25 (composition) to 0.68 (counting)
    gold = judge.judge_batch(imgs, caps)
    assert (labels[:, 0] == gold).mean() > (labels[:, 2] == gold).mean()  # annotator 1 errs least


def test_generator_trains_saves_and_loads(tmp_path):
    log = train_generator(
        tmp_path / "gen", TrainConfig(steps=3, eval_every=3, eval_captions=4, threads=1), progress=False
    )
    acc = log["eval"][-1]["heldout_gold_alignment"]
    # a share of 4 judged images (not, e.g., a pixel average): k / 4 for an integer k in 0..4
    assert log["eval"][-1]["step"] == 3 and acc * 4 in {0, 1, 2, 3, 4}
    pipe = SynthPipeline.from_pretrained(tmp_path / "gen")
    a, b = (
        pipe(["a red circle"] * 2, num_inference_steps=3, seed=5),
        pipe(["a red circle"] * 2, num_inference_steps=3, seed=5),
    )
    assert a.shape == (2, 16, 16, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    images, table = benchmark.build(
        pipe,
        {"counting": ["a red circle"], "composition": ["a red circle and a blue square"]},
        n_images=3,
        steps=3,
        progress=False,
    )
    assert {
        "subset",
        "prompt_id",
        "prompt",
        "image",
        "label_1",
        "label_2",
        "label_3",
        "aligned",
        "gold",
        "split",
    } <= set(table.columns)
    benchmark.save(tmp_path / "s.npz", images, table)
    images2, table2 = benchmark.load(tmp_path / "s.npz")
    assert np.array_equal(images, images2)
    pd.testing.assert_frame_equal(table, table2, check_dtype=False)


@pytest.mark.parametrize("kind", ["contrastive", "preference"])
def test_proxy_training_plumbing(kind, tmp_path):
    train_proxy(tmp_path / kind, ProxyConfig(kind=kind, steps=3, batch_size=16, n_images=64, threads=1), progress=False)
    reward = load_reward("clip", str(tmp_path / kind))
    caps = ["three red circles", "a blue square and two red circles"]
    R = reward.score_matrix(list(scenes.draw_batch(caps, seed=0)), caps)
    assert R.shape == (2, 2) and np.isfinite(R).all()
    with pytest.raises(ValueError, match="proxy kind"):
        train_proxy(tmp_path / "x", ProxyConfig(kind="oracle", steps=1), progress=False)


def test_committed_artifacts_load_and_match_manifest():
    root = repo_root()
    assert manifest.verify() == []
    pipe = SynthPipeline.from_pretrained(root / "data/synth/generator")
    assert pipe.unet.config.sample_size == 16
    for kind in ("contrastive", "preference"):
        reward = load_reward("clip", str(root / f"data/synth/proxy_{kind}"))
        assert reward.score_matrix(list(scenes.draw_batch(["a red circle"], seed=0)), ["a red circle"]).shape == (1, 1)
    images, table = benchmark.load(root / "data/synth/tia2_synth.npz")
    assert len(images) == len(table) and (table.groupby("prompt").size() == 50).all()


def test_size_per_object_does_not_grow_with_the_count():
    from textnorm.synth import judge, scenes

    one = scenes.draw_batch(["a red square"] * 20, seed=0)
    four = scenes.draw_batch(["four red squares"] * 20, seed=0)
    assert judge.foreground(four).sum() > 2.5 * judge.foreground(one).sum()
    ratio = judge.size_per_object(four).mean() / judge.size_per_object(one).mean()
    assert 0.6 < ratio < 1.5
