"""`textnorm contrastive`: contrastive prompts of any prompts from a local LLM (tiny random model) or
the rules, as the JSON file that --contrastive reads; prompts left without a set are named."""

from __future__ import annotations

import json

import torch

from textnorm import testing
from textnorm.cli import main
from textnorm.finetune.task import contrastive_from

torch.set_num_threads(1)
PROMPTS = ["a realistic photo of two cats", "a realistic photo of a dog and a cat"]


def test_sets_from_a_local_llm_are_what_finetune_reads(tmp_path, capsys):
    lm = testing.save_causal_lm(tmp_path / "lm")
    out = tmp_path / "sets.json"
    # one prompt: a random tiny LM gives it lines with seed 0 (for another prompt it may give none,
    # which is refused as the rules' test shows)
    args = ["contrastive", "--llm", str(lm), "-n", "3", "--out", str(out), f"--prompt={PROMPTS[0]}"]
    assert main(args) == 0, capsys.readouterr().err
    sets = json.loads(out.read_text())
    assert list(sets) == PROMPTS[:1] and 1 <= len(sets[PROMPTS[0]]) <= 3
    lookup, path = contrastive_from(str(out))
    assert str(path) == str(out) and lookup(PROMPTS[0])
    assert main(args) == 1 and "exists" in capsys.readouterr().err  # never overwritten silently
    assert main(args + ["--overwrite"]) == 0
    assert json.loads(out.read_text()) == sets  # seeded: the same sets again


def test_rules_name_the_prompts_they_cannot_read(tmp_path, capsys):
    out = tmp_path / "sets.json"
    assert main(["contrastive", "--rules", "--prompt", PROMPTS[0], "--prompt", "hello world", "--out", str(out)]) == 1
    assert "'hello world'" in capsys.readouterr().err and not out.exists()
    assert main(["contrastive", "--rules", "--out", str(out)] + [f"--prompt={p}" for p in PROMPTS]) == 0
    assert "a realistic photo of three cats" in json.loads(out.read_text())[PROMPTS[0]]
