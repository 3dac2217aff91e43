from __future__ import annotations

import numpy as np
import pytest

from textnorm import tia2


@pytest.fixture(scope="module")
def images(mirror):
    return tia2.load_images(mirror=mirror)


def test_label_rule():
    labels = np.array([[1, 1, 1], [1, 1, 0], [1, 1, -1], [1, 0, -1], [1, -1, -1], [0, 0, 0]])
    assert tia2.is_aligned(labels).tolist() == [True, True, True, False, False, False]


def test_image_table_shape(images):
    assert len(images) == 27_500
    counts = images.groupby("subset").prompt.nunique().to_dict()
    assert counts == {"counting": 150, "composition": 300, "comprehensive": 100}
    assert (images.groupby(["subset", "prompt"]).size() == 50).all()
    assert set(np.unique(images[["label_1", "label_2", "label_3"]])) <= {-1, 0, 1}


def test_exclusion_rule_counts(images):
    summary = tia2.prompt_summary(images)
    assert summary.groupby("subset").scorable.sum().to_dict() == {
        "counting": 146,
        "composition": 295,
        "comprehensive": 84,
    }
    assert len(tia2.scorable_images(images)) == (146 + 295 + 84) * 50


def test_rules_reproduce_published_human_fractions(images, mirror):
    summary = tia2.prompt_summary(images).query("scorable")
    pub = tia2.load_published_scores(mirror=mirror)
    pub = pub[pub.model == "clip"].set_index(["subset", "prompt"])["human"]
    ours = summary.set_index(["subset", "prompt"])["human"]
    assert set(ours.index) == set(pub.index)
    assert np.allclose(ours.loc[pub.index].to_numpy(), pub.to_numpy())


def test_label_rule_check_counts_matches_and_mismatches(images, mirror):
    pub = tia2.load_published_scores(mirror=mirror)
    check = tia2.label_rule_check(images, pub)
    assert check == {
        "scorable_prompts": 525,
        "published_prompts": 525,
        "matched": 525,
        "max_abs_diff": 0.0,
        "only_ours": 0,
        "only_published": 0,
    }
    # one prompt's published fraction moved by 0.02 (one image of 50), another prompt dropped
    first, second = pub.prompt.unique()[:2]
    bad = pub[pub.prompt != second].copy()
    bad.loc[bad.prompt == first, "human"] += 0.02
    check = tia2.label_rule_check(images, bad)
    assert check["matched"] == 523 and check["max_abs_diff"] == pytest.approx(0.02)
    assert check["only_ours"] == 1 and check["only_published"] == 0


def test_published_scores_table(mirror):
    pub = tia2.load_published_scores(mirror=mirror)
    assert set(pub.model.unique()) == set(tia2.MODELS)
    assert len(pub) == (146 + 295 + 84) * 5
    variants = pub[pub.model == "textnorm"].groupby("subset", observed=True).variant.unique()
    assert {k: list(v) for k, v in variants.items()} == {
        "counting": ["ur"],
        "composition": ["mean"],
        "comprehensive": ["ur"],
    }


def test_contrastive_prompts(mirror):
    sets = tia2.load_contrastive_prompts("composition", mirror=mirror)
    assert len(sets) == 300 and all(len(v) == 32 for v in sets.values())
