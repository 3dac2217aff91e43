"""Parts of the trainer: the run log (every step's row on disk as the step ends, the same rows as the
checkpoint's metrics.json, rewritten (not duplicated) by a resume, a last line cut short by a crash
left out when read) and runs of different mixed precision in one process."""

from __future__ import annotations

import json

import pytest
import torch

from textnorm.finetune import runlog
from textnorm.finetune.config import FinetuneConfig
from textnorm.finetune.loop import finetune
from textnorm.synth.generator import SynthPipeline

torch.set_num_threads(1)


def brightness(images, prompts):
    return images.astype(float).mean(axis=(1, 2, 3)) / 255


def cfg(steps: int) -> FinetuneConfig:
    return FinetuneConfig(
        method="ddpo",
        steps=steps,
        n_prompts=2,
        samples_per_prompt=2,
        sample_steps=4,
        batch_size=4,
        task="prompts",
        prompts=["a red circle", "two blue squares"],
        checkpoint_every=1,
    )


def test_rows_are_logged_as_they_end_and_a_resume_does_not_repeat_them(tmp_path):
    out = tmp_path / "run"
    finetune(cfg(2), out=out, pipe=SynthPipeline.build(), reward_fn=brightness, progress=False)
    rows = runlog.read(out / "metrics.jsonl")
    assert rows == json.loads((out / "metrics.json").read_text()) and [r["step"] for r in rows] == [0, 1]
    finetune(cfg(3), out=out, resume=True, pipe=SynthPipeline.build(), reward_fn=brightness, progress=False)
    assert [r["step"] for r in runlog.read(out / "metrics.jsonl")] == [0, 1, 2]


def test_a_line_cut_by_a_crash_is_left_out_and_a_bad_line_elsewhere_is_named(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = runlog.RunLog(path, [{"step": 0}])
    log.append({"step": 1})
    with open(path, "a") as f:
        f.write('{"step": 2, "rew')  # kill -9 mid-append
    assert runlog.read(path) == [{"step": 0}, {"step": 1}]
    path.write_text('{"step": 0}\nnot json\n{"step": 2}\n')
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        runlog.read(path)


def test_runs_of_different_precision_in_one_process(tmp_path):
    # accelerate's state is process-wide: a bf16 run after an fp32 one used to raise ValueError
    from textnorm.finetune.loop import Finetuner

    a = Finetuner(cfg(1), pipe=SynthPipeline.build(), reward_fn=brightness)
    a.train(progress=False)
    b = Finetuner(
        FinetuneConfig(**{**cfg(1).__dict__, "mixed_precision": "bf16"}),
        pipe=SynthPipeline.build(),
        reward_fn=brightness,
    )
    assert b.accelerator.mixed_precision == "bf16"
    rows = b.train(progress=False)
    assert len(rows) == 1 and rows[0]["loss"] == rows[0]["loss"]  # ran, finite
    c = Finetuner(cfg(1), pipe=SynthPipeline.build(), reward_fn=brightness)
    assert c.accelerator.mixed_precision == "no"


def test_learning_rate_schedules_at_hand_computed_steps():
    from textnorm.schedules import finetuning_lr, pretraining_lr, proxy_lr_factor

    assert finetuning_lr(1e-4, 0, 10) == pytest.approx(1e-4 / 11) and finetuning_lr(1e-4, 10, 10) == 1e-4
    assert finetuning_lr(1e-4, 500, 10) == 1e-4 and finetuning_lr(1e-4, 0, 0) == 1e-4
    assert pretraining_lr(0, 1e-3, 100, 3000) == pytest.approx(1e-5)
    assert pretraining_lr(100, 1e-3, 100, 3000) == pytest.approx(1e-3)  # the cosine starts at its top
    assert pretraining_lr(3000, 1e-3, 100, 3000) == pytest.approx(1e-4)  # and ends at 10%
    assert proxy_lr_factor(0, 75, 1500) == pytest.approx(1 / 75)
    assert proxy_lr_factor(750, 75, 1500) == pytest.approx(0.5) and proxy_lr_factor(1500, 75, 1500) == pytest.approx(0)


def test_the_synthetic_world_registers_itself_without_installed_entry_points(monkeypatch):
    # a source tree on PYTHONPATH (the GPU scripts) has no entry points: textnorm.plugins lists the built-in ones
    import importlib.metadata
    import sys

    from textnorm.finetune import registry
    from textnorm.finetune.loop import load_pipeline
    from textnorm.finetune.task import make_task

    for name, empty in (("PIPELINES", {}), ("TASKS", {}), ("ADAPTERS", []), ("DEFAULT_TASKS", [])):
        monkeypatch.setattr(registry, name, empty)
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [])
    monkeypatch.delitem(sys.modules, "textnorm.synth.register")
    pipe = load_pipeline("data/synth/generator")
    assert type(pipe).__name__ == "SynthPipeline" and registry.default_task(pipe) == "synth"
    assert make_task("synth").gold is not None


def test_a_failing_third_party_plugin_is_named_and_skipped(monkeypatch):
    import importlib.metadata

    from textnorm.finetune import registry

    class Broken:
        name, value = "broken", "nowhere.plugin"

        def load(self):
            raise ImportError("No module named 'nowhere'")

    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [Broken()])
    with pytest.warns(UserWarning, match=r"textnorm plugin broken \(nowhere.plugin\) failed to load"):
        registry.load_plugins()
    assert registry.task_factory("synth") is not None  # the built-in ones are there all the same
