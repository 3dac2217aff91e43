from __future__ import annotations

import pytest

from textnorm import tia2
from textnorm.rewards import contrastive


def test_counting_sets_reproduced(mirror):
    published = tia2.load_contrastive_prompts("counting", mirror=mirror)
    ours = {p: contrastive.counting_contrastive(p) for p in published}
    assert sum(ours[p] == published[p] for p in published) == 150


def test_composition_rule_based_part_reproduced(mirror):
    published = tia2.load_contrastive_prompts("composition", mirror=mirror)
    same = sum(contrastive.composition_contrastive(p) == published[p][:12] for p in published)
    assert same == 300


@pytest.mark.parametrize(
    "noun, plural",
    [
        ("cat", "cats"),
        ("bus", "buses"),
        ("cherry", "cherries"),
        ("wolf", "wolves"),
        ("teddy bear", "teddy bears"),
        ("toothbrush", "toothbrushes"),
        ("person", "people"),
    ],
)
def test_pluralize(noun, plural):
    assert contrastive.pluralize(noun) == plural


def test_phrases_and_errors():
    assert contrastive.phrase("umbrella", 1) == "an umbrella"
    assert contrastive.parse_phrase("three horses") == contrastive.CountPhrase("horse", 3)
    with pytest.raises(ValueError, match="does not start"):
        contrastive.counting_contrastive("a cartoon of a cat")
    with pytest.raises(ValueError, match="and"):
        contrastive.composition_contrastive("a realistic photo of a cat")
    with pytest.raises(ValueError, match="count"):
        contrastive.phrase("cat", 11)


def test_parse_llm_lines():
    text = '1. two dogs on a sofa\n- a cat\n\n2) A CAT\n"three birds"\ntwo dogs on a sofa\n* four fish'
    assert contrastive.parse_llm_lines(text, "a cat", 10) == ["two dogs on a sofa", "three birds", "four fish"]
    assert contrastive.parse_llm_lines(text, "a cat", 2) == ["two dogs on a sofa", "three birds"]


def test_llm_generator_plumbing(tmp_path):
    from textnorm import testing

    path = testing.save_causal_lm(tmp_path / "lm")
    asked = ["a realistic photo of two cats", "a dog"]
    out = contrastive.llm_contrastive_prompts(asked, str(path), n=5, max_new_tokens=40)
    again = contrastive.llm_contrastive_prompts(asked, str(path), n=5, max_new_tokens=40)
    assert list(out) == asked and out == again  # seeded: reproducible
    for prompt, lines in out.items():
        assert len(lines) <= 5 and prompt not in lines and all(s.strip() == s and s for s in lines)
