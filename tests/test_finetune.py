"""The fine-tuning loop on tiny models: each method's step, resume, KL penalty, LoRA, bad configs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from textnorm import testing
from textnorm.finetune import sampling
from textnorm.finetune.adapters import make_adapter
from textnorm.finetune.loop import FinetuneConfig, Finetuner, best_of_n, finetune, load_pipeline
from textnorm.synth.generator import SynthPipeline

torch.set_num_threads(1)


def brightness(images, prompts):
    return images.astype(float).mean(axis=(1, 2, 3)) / 255


def small(**kw) -> FinetuneConfig:
    base = dict(method="ddpo", reward="gold", steps=2, n_prompts=2, samples_per_prompt=2, sample_steps=4, lr=1e-3)
    base.update(kw)
    return FinetuneConfig(**base)


def strip(metrics):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in metrics]


@pytest.mark.parametrize("method", ["ddpo", "rwsft"])
def test_step_changes_the_model_and_logs(method):
    pipe = SynthPipeline.build()
    before = [p.detach().clone() for p in pipe.unet.parameters()]
    metrics = finetune(small(method=method), pipe=pipe, progress=False, reward_fn=brightness)
    assert [r["step"] for r in metrics] == [0, 1]
    assert set(metrics[0]) >= {"reward", "gold", "kl", "brightness", "saturation", "background_share", "loss"}
    assert metrics[0]["kl"] == 0.0 and metrics[1]["kl"] > 0  # policy starts at the reference
    assert any(not torch.equal(a, b) for a, b in zip(before, pipe.unet.parameters()))


@pytest.mark.parametrize("method", ["ddpo", "rwsft"])
def test_resume_equals_uninterrupted(method, tmp_path):
    cfg = small(method=method, steps=4, kl_weight=0.1, checkpoint_every=2)
    full = finetune(cfg, out=tmp_path / "a", pipe=SynthPipeline.build(), progress=False, reward_fn=brightness)
    finetune(small(method=method, steps=2, kl_weight=0.1), out=tmp_path / "b", pipe=SynthPipeline.build(),
             progress=False, reward_fn=brightness)
    resumed = finetune(cfg, out=tmp_path / "b", resume=True, pipe=SynthPipeline.build(), progress=False,
                       reward_fn=brightness)
    assert strip(full) == strip(resumed)
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["trainable"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["trainable"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_kl_penalty_keeps_the_policy_closer():
    kls = {}
    for weight in (0.0, 10.0):
        tuner = Finetuner(small(steps=6, kl_weight=weight, lr=3e-3), pipe=SynthPipeline.build(), reward_fn=brightness)
        tuner.train(progress=False)
        kls[weight] = tuner.metrics[-1]["kl"]
    assert kls[10.0] < kls[0.0]


def test_lora_trains_adapters_only():
    pipe = SynthPipeline.build()
    base = {k: v.detach().clone() for k, v in pipe.unet.named_parameters()}
    tuner = Finetuner(small(lora_rank=4), pipe=pipe, reward_fn=brightness)
    assert tuner.params and all("lora" in n for n, p in pipe.unet.named_parameters() if p.requires_grad)
    tuner.train(progress=False)
    for name, value in pipe.unet.named_parameters():
        if "lora" not in name:
            key = name.replace(".base_layer", "")
            assert torch.equal(value, base[key]), name
    assert tuner.metrics[1]["kl"] > 0  # the reference is the base model with adapters off


def test_stable_diffusion_family(tmp_path):
    path = testing.save_stable_diffusion(tmp_path / "sd")
    pipe = load_pipeline(str(path))
    adapter = make_adapter(pipe)
    assert adapter.latent_shape == (4, 8, 8) and adapter.resolution == 16
    metrics = finetune(small(gold=False, lora_rank=4), pipe=pipe, progress=False, reward_fn=brightness)
    assert len(metrics) == 2 and np.isfinite(metrics[1]["loss"])
    with pytest.raises(ValueError, match="multiple"):
        make_adapter(pipe, resolution=15)


def test_sampling_log_probs_are_consistent():
    pipe = SynthPipeline.build()
    ad = make_adapter(pipe)
    cond = ad.encode(["a red circle"] * 3)
    traj = sampling.sample(ad, ad.unet, cond, 3, 4, 1.0, torch.Generator().manual_seed(0))
    for i in range(4):
        lp, kl = sampling.step_log_prob_and_kl(ad, ad.unet, ad.unet, cond, traj, i, 1.0)
        assert torch.allclose(lp, traj.log_probs[i], rtol=1e-4, atol=1e-3)
        assert torch.allclose(kl, torch.zeros(3))


def test_best_of_n_picks_the_maximum():
    pipe = SynthPipeline.build()
    one = best_of_n(pipe, brightness, ["a red circle", "two blue squares"], n=1, sample_steps=4)
    many = best_of_n(pipe, brightness, ["a red circle", "two blue squares"], n=6, sample_steps=4)
    assert many["images"].shape == (2, 16, 16, 3)
    assert np.all(many["reward"] >= one["reward"])
    with pytest.raises(ValueError, match="n >= 1"):
        best_of_n(pipe, brightness, ["a red circle"], n=0)


@pytest.mark.parametrize("kw, message", [
    (dict(method="dpo"), "unknown method"),
    (dict(samples_per_prompt=0), "at least one"),
    (dict(samples_per_prompt=1), "samples_per_prompt must be >= 2"),
    (dict(reward="oracle"), "unknown reward kind"),
    (dict(reward="raw"), "needs a model"),
    (dict(resolution=32), "16 px"),
])
def test_bad_configurations(kw, message):
    with pytest.raises(ValueError, match=message):
        Finetuner(small(**kw), pipe=SynthPipeline.build())


def test_cli_finetune_and_resume(tmp_path, capsys):
    from textnorm.cli import main

    SynthPipeline.build().save_pretrained(tmp_path / "gen")
    args = ["finetune", "--model", str(tmp_path / "gen"), "--reward", "gold", "--method", "rwsft",
            "--n-prompts", "2", "--samples-per-prompt", "2", "--sample-steps", "3", "--out", str(tmp_path / "run"),
            "--quiet"]
    assert main(args + ["--steps", "1"]) == 0
    assert main(args + ["--steps", "2", "--resume"]) == 0
    import json

    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [m["step"] for m in metrics] == [0, 1]
    assert main(args[:5] + ["--reward", "magic:x"] + args[7:] + ["--steps", "1"]) == 1
    assert "unknown reward kind" in capsys.readouterr().err


def test_trajectory_kl_matches_step_by_step():
    pipe = SynthPipeline.build()
    ad = make_adapter(pipe)
    ref = SynthPipeline.build(seed=1).unet  # a different model as the reference
    cond = ad.encode(["a red circle"] * 2)
    traj = sampling.sample(ad, ad.unet, cond, 2, 4, 1.0, torch.Generator().manual_seed(0))
    stepwise = sum(sampling.step_log_prob_and_kl(ad, ad.unet, ref, cond, traj, i, 1.0)[1] for i in range(4))
    assert torch.allclose(sampling.trajectory_kl(ad, ref, cond, traj), stepwise.detach(), rtol=1e-4)


def test_fixed_prompt_evaluation_is_paired_and_logged():
    tuner = Finetuner(small(steps=2, eval_every=1, eval_samples=2, eval_prompts=["a red circle"]),
                      pipe=SynthPipeline.build(), reward_fn=brightness)
    first = tuner.evaluate()
    assert first == tuner.evaluate()  # same noise, same model: same numbers
    tuner.train(progress=False)
    assert all("eval_gold" in r and "eval_reward" in r for r in tuner.metrics)
    assert tuner.metrics[0]["eval_reward"] == first["eval_reward"]
    assert tuner.final_eval["step"] == 2 and tuner.final_eval["eval_reward"] != first["eval_reward"]
