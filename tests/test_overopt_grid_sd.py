"""The over-optimisation grid on Stable Diffusion (tiny random models): a reward model as gold (Gao
et al.'s judge), best-of-n on the training prompts with the training sampler, the random-reward
drift control, and per-prompt evaluations with the path KL in every run's log."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from textnorm import testing
from textnorm.experiments import overopt
from textnorm.finetune.bestofn import best_of_n
from textnorm.finetune.loop import load_pipeline
from textnorm.finetune.rewards import make_reward, random_reward

torch.set_num_threads(1)
PROMPTS = ["a realistic photo of two cats", "a realistic photo of a dog and a cat"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("sdgrid")
    return {
        "sd": str(testing.save_stable_diffusion(root / "sd")),
        "proxy": str(testing.save_clip(root / "proxy", seed=1)),
        "judge": str(testing.save_clip(root / "judge", seed=2)),
    }


def _grid(models):
    return {
        "model": models["sd"],
        "judge": f"raw:{models['judge']}",
        "rewards": {
            "gold": {"spec": "gold"},
            "random": {"spec": "random"},
            "proxy": {"spec": f"raw:{models['proxy']}"},
            "TextNorm(proxy)": {"spec": f"textnorm:{models['proxy']}", "temperature": 3.0},
        },
        "methods": {
            "ddpo": dict(
                method="ddpo",
                steps=2,
                prompts=PROMPTS,
                n_prompts=2,
                samples_per_prompt=2,
                batch_size=4,
                sample_steps=4,
                min_train_sigma=0.0,
                guidance_scale=2.0,
                contrastive="rules",
                eval_every=1,
                eval_schedule="log",
                eval_samples=2,
                untrained_steps="base",
                lora_rank=2,
                lr=1e-3,
                warmup=0,
                timestep_fraction=0.5,
            )
        },
        "seeds": [0],
        "bon": {"prompts": "train", "pool": 4, "sample_steps": 4, "seed": 0, "eta": 1.0, "sample_batch": 3},
    }


def test_a_grid_with_a_reward_model_as_gold_runs_on_stable_diffusion(models, tmp_path):
    grid = _grid(models)
    L = overopt.load(overopt.run(tmp_path / "logs", grid, workers=1, progress=False))
    bon = L["bon"]
    assert bon["prompts"].tolist() == PROMPTS and bon["gold"].shape == (2, 4)
    # gold is the judge's score, not a 0/1 judgment, and the judge is not the proxy
    assert len(np.unique(bon["gold"])) == 8 and not np.allclose(bon["gold"], bon["reward:proxy"])
    assert "reward:random" not in bon  # the drift control is not a proxy for best-of-n
    log = L["logs"]["ddpo__proxy__seed0"]
    assert log["config"]["judge"] == grid["judge"]
    steps = [e["step"] for e in log["evals"]]
    assert steps == [0, 1, 2]  # log schedule: before rounds 0 and 1, and after the last
    for e in log["evals"]:
        assert len(e["eval_prompt_gold"]) == 2 and len(e["eval_prompt_kl"]) == 2
        assert e["eval_gold"] == pytest.approx(np.mean(e["eval_prompt_gold"]))
    assert log["evals"][0]["eval_kl"] == 0.0 and log["evals"][-1]["eval_kl"] > 0
    ev = L["evaluations"]  # one row per run, evaluation and training prompt
    assert len(ev) == 4 * 3 * 2 and set(ev.prompt) == set(PROMPTS) and (ev[ev.step == 0].gold_change == 0).all()


def test_a_judge_must_be_one_reward_models_raw_score(models, tmp_path):
    grid = _grid(models)
    grid["judge"] = f"textnorm:{models['judge']}"
    with pytest.raises(ValueError, match="a judge is one reward model's raw score"):
        overopt.run(tmp_path / "x", grid, workers=1, progress=False)
    grid["judge"] = "raw:/no/such/judge"
    with pytest.raises(FileNotFoundError, match="judge"):
        overopt.run(tmp_path / "y", grid, workers=1, progress=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_the_pool_does_not_depend_on_the_micro_batch(models):
    pipe = load_pipeline(models["sd"])
    zero = lambda im, _: np.zeros(len(im))  # noqa: E731
    kw = dict(seed=3, sample_steps=4, keep_pool=True, eta=1.0, guidance_scale=2.0)
    whole = best_of_n(pipe, zero, PROMPTS, 3, **kw)["pool_images"]
    parts = best_of_n(pipe, zero, PROMPTS, 3, sample_batch=2, **kw)["pool_images"]
    assert np.array_equal(whole, parts)
    det = best_of_n(pipe, zero, PROMPTS, 3, seed=3, sample_steps=4, keep_pool=True, guidance_scale=2.0)
    assert not np.array_equal(whole, det["pool_images"])  # eta 1 is another sampler than eta 0


def test_the_random_reward_is_a_function_of_the_pixels_only():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    r = make_reward("random")(images, ["a"] * 6)
    assert np.array_equal(r, random_reward(images[::-1], ["b"] * 6)[::-1])  # order and prompts do not matter
    assert r.min() >= 0 and r.max() < 1 and len(np.unique(r)) == 6
