"""Experiment trackers: every step's metrics and each evaluation's sample images reach an accelerate
tracker; a tracker whose package is missing is refused in words before anything loads."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from accelerate.tracking import GeneralTracker

from textnorm.finetune.config import FinetuneConfig
from textnorm.finetune.loop import Finetuner
from textnorm.finetune.task import plain_task
from textnorm.synth.generator import SynthPipeline

torch.set_num_threads(1)
PROMPTS = ["a red circle", "two blue squares"]


class Recorder(GeneralTracker):
    name = "recorder"
    requires_logging_directory = False

    def __init__(self):
        super().__init__()
        self.config, self.rows, self.images = None, [], []

    @property
    def tracker(self):
        return self

    def store_init_configuration(self, values):
        self.config = values

    def log(self, values, step=None, **kwargs):
        self.rows.append((step, values))

    def log_images(self, values, step=None, **kwargs):
        self.images.append((step, values))


def _cfg(**kw):
    base = dict(
        method="ddpo",
        task="prompts",
        prompts=PROMPTS,
        n_prompts=2,
        samples_per_prompt=2,
        batch_size=4,
        sample_steps=4,
        steps=3,
        eval_every=2,
        eval_samples=3,
        min_train_sigma=0.0,
    )
    return FinetuneConfig(**{**base, **kw})


def test_metrics_and_evaluation_images_reach_the_tracker(tmp_path):
    rec = Recorder()
    tuner = Finetuner(
        _cfg(),
        pipe=SynthPipeline.build(),
        reward_fn=lambda im, p: im.mean(axis=(1, 2, 3)),
        task=plain_task(PROMPTS),
        trackers=[rec],
        log_dir=tmp_path,
    )
    tuner.train(progress=False)
    assert rec.config["steps"] == 3 and rec.config["prompts"] == str(PROMPTS)
    steps = [s for s, _ in rec.rows]
    assert steps == [0, 1, 2, 3]  # every step, then the final evaluation
    assert {"reward", "kl", "loss", "eval_reward"} <= set(rec.rows[0][1]) and "grad_norms" not in rec.rows[0][1]
    assert all(isinstance(v, float) for _, row in rec.rows for v in row.values())
    assert [s for s, _ in rec.images] == [0, 2, 3]  # evaluations before steps 0 and 2, and after the last
    images, prompts = rec.images[0][1]["evaluation samples"]
    assert images.dtype == np.uint8 and images.shape[1:] == (16, 16, 3) and len(images) == 6
    assert prompts[:2] == PROMPTS  # the first image of every prompt first


def test_a_tracker_without_its_package_is_refused_in_words(tmp_path, monkeypatch):
    from textnorm.finetune import tracking

    real = importlib.util.find_spec
    monkeypatch.setattr(
        tracking.importlib.util, "find_spec", lambda name: None if name == "tensorboard" else real(name)
    )
    with pytest.raises(ValueError, match="pip install tensorboard"):
        Finetuner(
            _cfg(report_to="tensorboard"),
            pipe=SynthPipeline.build(),
            reward_fn=lambda im, p: im.mean((1, 2, 3)),
            task=plain_task(PROMPTS),
            log_dir=tmp_path,
        )


def test_a_tracker_needs_an_output_folder(monkeypatch):
    from textnorm.finetune import tracking

    monkeypatch.setattr(tracking, "check_available", lambda name: None)
    with pytest.raises(ValueError, match="needs an output folder"):
        Finetuner(
            _cfg(report_to="wandb"),
            pipe=SynthPipeline.build(),
            reward_fn=lambda im, p: im.mean((1, 2, 3)),
            task=plain_task(PROMPTS),
        )
