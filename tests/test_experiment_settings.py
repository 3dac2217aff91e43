"""The fine-tuning settings the over-optimisation experiment adds, each shown to do what it claims:
a fraction of the trained steps per minibatch still optimises (brightness control, both signs),
the log evaluation schedule, held-out evaluations of their own size, and proxies trained on a finite
set of comparisons."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from textnorm.finetune.config import FinetuneConfig
from textnorm.finetune.loop import Finetuner, load_pipeline, log_schedule
from textnorm.finetune.task import plain_task
from textnorm.paths import repo_root

torch.set_num_threads(1)
PROMPTS = ["three yellow squares", "four yellow circles"]


def _cfg(**kw) -> FinetuneConfig:
    base = dict(
        method="ddpo",
        reward="gold",
        task="prompts",
        prompts=PROMPTS,
        n_prompts=2,
        samples_per_prompt=8,
        batch_size=8,
        inner_epochs=2,
        lr=1e-4,
        clip_range=1e-2,
        warmup=0,
        sample_steps=10,
        steps=6,
        eval_samples=4,
    )
    return FinetuneConfig(**{**base, **kw})


@pytest.mark.parametrize("sign", [1, -1])
def test_a_fraction_of_the_trained_steps_still_moves_brightness_the_way_the_reward_asks(sign):
    def reward(images, prompts):
        return sign * images.astype(float).mean(axis=(1, 2, 3)) / 255

    tuner = Finetuner(
        _cfg(timestep_fraction=0.25),
        pipe=load_pipeline(str(repo_root() / "data/synth/generator")),
        reward_fn=reward,
        task=plain_task(PROMPTS),
    )
    before = tuner.evaluate()["eval_reward"]
    rows = tuner.train(progress=False)
    after = tuner.evaluate()["eval_reward"]
    assert after - before > 0.003, (sign, before, after)
    # each minibatch trained ceil(0.25 K) of the K trained steps (the first minibatch's gradient norms)
    assert all(len(r["grad_norms"]) == math.ceil(0.25 * len(tuner.trained_steps)) for r in rows)


def test_the_log_schedule_is_dense_early_and_sparse_later():
    assert sorted(log_schedule(40)) == [0, 1, 2, 3, 4, 6, 8, 11, 16, 23, 32]
    tuner = Finetuner(
        _cfg(eval_every=1, eval_schedule="log", steps=7, eval_samples=1, heldout_samples=2),
        reward_fn=lambda im, p: np.zeros(len(im)),
        task=plain_task(PROMPTS, eval_prompts=["a red circle"]),
    )
    assert [s for s in range(7) if tuner.eval_due(s)] == [0, 1, 2, 3, 4, 6]


def test_held_out_evaluations_have_their_own_size(monkeypatch):
    from textnorm.finetune import sampling

    seen = []
    real = sampling.sample
    monkeypatch.setattr(
        sampling, "sample", lambda tuner, prompts, *a, **k: seen.append(len(prompts)) or real(tuner, prompts, *a, **k)
    )
    tuner = Finetuner(
        _cfg(eval_samples=3, heldout_samples=1),
        reward_fn=lambda im, p: np.zeros(len(im)),
        task=plain_task(PROMPTS, eval_prompts=["a red circle", "a blue square"]),
    )
    ev = tuner.evaluate()
    assert seen == [2 * 3, 2 * 1] and len(ev["heldout_prompt_reward"]) == 2


def test_proxies_from_fewer_comparisons_are_trained_on_a_fixed_set(tmp_path):
    from textnorm.synth.config import ProxyConfig
    from textnorm.synth.proxies import simulate_comparisons

    rng = np.random.default_rng(0)
    caps, images, choice = simulate_comparisons(
        rng, ["two red circles", "a blue square and a red circle"], 50, 3.0, 1.5
    )
    assert len(caps) == 50 and images.shape == (50, 2, 16, 16, 3) and choice.dtype == bool
    assert 0.2 < choice.mean() < 0.8
    with pytest.raises(ValueError, match="n_pairs"):
        from textnorm.synth.proxies import train_proxy

        train_proxy(tmp_path / "p", ProxyConfig(kind="preference", steps=1, n_pairs=-1), progress=False)
