from __future__ import annotations

import pytest

from textnorm import prompts, tia2


def test_counting_sets_reproduced(mirror):
    published = tia2.load_contrastive_prompts("counting", mirror=mirror)
    ours = {p: prompts.counting_contrastive(p) for p in published}
    assert sum(ours[p] == published[p] for p in published) == 150


def test_composition_rule_based_part_reproduced(mirror):
    published = tia2.load_contrastive_prompts("composition", mirror=mirror)
    same = sum(prompts.composition_contrastive(p) == published[p][:12] for p in published)
    assert same == 300


@pytest.mark.parametrize("noun, plural", [
    ("cat", "cats"), ("bus", "buses"), ("cherry", "cherries"), ("wolf", "wolves"),
    ("teddy bear", "teddy bears"), ("toothbrush", "toothbrushes"), ("person", "people")])
def test_pluralize(noun, plural):
    assert prompts.pluralize(noun) == plural


def test_phrases_and_errors():
    assert prompts.phrase("umbrella", 1) == "an umbrella"
    assert prompts.parse_phrase("three horses") == prompts.CountPhrase("horse", 3)
    with pytest.raises(ValueError, match="does not start"):
        prompts.counting_contrastive("a cartoon of a cat")
    with pytest.raises(ValueError, match="and"):
        prompts.composition_contrastive("a realistic photo of a cat")
    with pytest.raises(ValueError, match="count"):
        prompts.phrase("cat", 11)
