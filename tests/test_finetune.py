"""The fine-tuning loop on tiny models: the methods optimise what they are given (brightness
controls in both directions), resume, KL, LoRA, export, bad configurations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from textnorm import testing
from textnorm.finetune.adapters import make_adapter
from textnorm.finetune.config import FinetuneConfig
from textnorm.finetune.loop import Finetuner, best_of_n, finetune, load_pipeline
from textnorm.finetune.task import plain_task
from textnorm.paths import repo_root
from textnorm.synth.generator import SynthPipeline

torch.set_num_threads(1)

PROMPTS = ["a red circle", "two blue squares"]


def brightness(images, prompts):
    return images.astype(float).mean(axis=(1, 2, 3)) / 255


def darkness(images, prompts):
    return -brightness(images, prompts)


def task():
    return plain_task(PROMPTS, eval_prompts=["three green triangles"])


def small(**kw) -> FinetuneConfig:
    base = dict(
        method="ddpo",
        reward="gold",
        steps=2,
        n_prompts=2,
        samples_per_prompt=4,
        sample_steps=4,
        lr=1e-3,
        batch_size=4,
        inner_epochs=1,
        pool_size=8,
        top_fraction=0.25,
        task="prompts",
        prompts=PROMPTS,
    )
    base.update(kw)
    return FinetuneConfig(**base)


def strip(metrics):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in metrics]


# ---------------------------------------------------------------- controls: the methods optimise
# The trained synthetic generator (the random-init one draws clipped noise, whose brightness any
# weight change moves); at learning rates of 1e-3 every run brightened whatever the reward's sign:
# drift of Adam's early updates, not optimisation. These settings were chosen so the signal wins.
CONTROL = {
    "ddpo": dict(
        steps=6, samples_per_prompt=8, batch_size=8, inner_epochs=2, lr=1e-4, clip_range=1e-2, warmup=0, sample_steps=10
    ),
    "rwsft": dict(
        steps=60,
        pool_size=32,
        top_fraction=0.0625,
        batch_size=8,
        lr=1e-4,
        pretrain_weight=1.0,
        warmup=0,
        sample_steps=10,
    ),
}
BRIGHT_PROMPTS = ["three yellow squares", "four yellow circles"]


@pytest.mark.parametrize("method", ["ddpo", "rwsft"])
@pytest.mark.parametrize("sign", [1, -1])
def test_method_moves_brightness_the_way_the_reward_asks(method, sign):
    """Optimising brightness raises it and optimising its negative lowers it, on fixed evaluation
    noise, under the training sampler (eta 1) and deterministic sampling (eta 0)."""

    def reward(images, prompts):
        return sign * brightness(images, prompts)

    cfg = small(method=method, eval_samples=4, prompts=BRIGHT_PROMPTS, **CONTROL[method])
    tuner = Finetuner(
        cfg,
        pipe=load_pipeline(str(repo_root() / "data/synth/generator")),
        reward_fn=reward,
        task=plain_task(BRIGHT_PROMPTS),
    )
    before = {eta: tuner.evaluate(eta=eta)["eval_reward"] for eta in (1.0, 0.0)}
    tuner.train(progress=False)
    after = {eta: tuner.evaluate(eta=eta)["eval_reward"] for eta in (1.0, 0.0)}
    for eta in (1.0, 0.0):
        # eval_reward is the optimised reward (sign x brightness): it must rise
        assert after[eta] - before[eta] > 0.003, (method, sign, eta, before, after)


def test_best_of_n_picks_the_pool_maximum():
    pipe = SynthPipeline.build()
    out = best_of_n(pipe, brightness, PROMPTS, n=6, sample_steps=4, keep_pool=True)
    assert out["pool_reward"].shape == (2, 6) and out["images"].shape == (2, 16, 16, 3)
    np.testing.assert_array_equal(out["reward"], out["pool_reward"].max(1))
    np.testing.assert_array_equal(brightness(out["images"], PROMPTS), out["reward"])
    # the chosen image is the pool's brightest
    pool = out["pool_images"].reshape(12, 16, 16, 3)
    assert np.allclose(brightness(pool, []).reshape(2, 6).max(1), out["reward"])
    with pytest.raises(ValueError, match="n >= 1"):
        best_of_n(pipe, brightness, ["a red circle"], n=0)


def test_ddpo_ratio_moves_and_clipping_binds():
    """The first minibatch of a round is on-policy (ratio 1); later ones are not, so PPO's clip acts."""
    tuner = Finetuner(
        small(steps=1, batch_size=2, inner_epochs=2, clip_range=1e-5),
        pipe=SynthPipeline.build(),
        reward_fn=brightness,
        task=task(),
    )
    row = tuner.run_step()
    assert row["clipfrac"] > 0 and row["approx_kl"] > 0
    assert len(row["grad_norms"]) == len(tuner.trained_steps) and all(g > 0 for g in row["grad_norms"])


def test_trained_steps_leave_out_deterministic_and_small_sigma_steps():
    tuner = Finetuner(
        small(sample_steps=10, min_train_sigma=0.05), pipe=SynthPipeline.build(), reward_fn=brightness, task=task()
    )
    sigmas = [float(tuner.chain.sigma(i, 1.0)) for i in range(10)]
    assert sigmas[-1] == 0 and 9 not in tuner.trained_steps
    assert tuner.trained_steps == [i for i, s in enumerate(sigmas) if s >= 0.05]


@pytest.mark.parametrize("method", ["ddpo", "rwsft"])
def test_resume_equals_uninterrupted(method, tmp_path):
    kw = dict(method=method, kl_weight=0.1, grad_accum=2, batch_size=2, steps=4, checkpoint_every=2)
    full = finetune(
        small(**kw), out=tmp_path / "a", pipe=SynthPipeline.build(), progress=False, reward_fn=brightness, task=task()
    )
    finetune(
        small(**{**kw, "steps": 2}),
        out=tmp_path / "b",
        pipe=SynthPipeline.build(),
        progress=False,
        reward_fn=brightness,
        task=task(),
    )
    resumed = finetune(
        small(**kw),
        out=tmp_path / "b",
        resume=True,
        pipe=SynthPipeline.build(),
        progress=False,
        reward_fn=brightness,
        task=task(),
    )
    assert strip(full) == strip(resumed)
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["trainable"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["trainable"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_folder_holding_a_run_is_not_overwritten(tmp_path):
    finetune(
        small(steps=1), out=tmp_path, pipe=SynthPipeline.build(), progress=False, reward_fn=brightness, task=task()
    )
    saved = (tmp_path / "metrics.json").read_bytes()
    with pytest.raises(FileExistsError, match="holds a run"):
        finetune(
            small(steps=1), out=tmp_path, pipe=SynthPipeline.build(), progress=False, reward_fn=brightness, task=task()
        )
    assert (tmp_path / "metrics.json").read_bytes() == saved


def test_resume_with_other_settings_is_refused(tmp_path):
    finetune(
        small(steps=1), out=tmp_path, pipe=SynthPipeline.build(), progress=False, reward_fn=brightness, task=task()
    )
    with pytest.raises(ValueError, match=r"other settings \(lr"):
        finetune(
            small(steps=2, lr=5e-4),
            out=tmp_path,
            resume=True,
            pipe=SynthPipeline.build(),
            progress=False,
            reward_fn=brightness,
            task=task(),
        )


def test_kl_penalty_keeps_the_policy_closer():
    kls = {}
    for weight in (0.0, 100.0):
        tuner = Finetuner(
            small(steps=4, kl_weight=weight, lr=3e-3), pipe=SynthPipeline.build(), reward_fn=brightness, task=task()
        )
        tuner.train(progress=False)
        kls[weight] = tuner.metrics[-1]["kl"]
    assert tuner.metrics[0]["kl"] == 0.0  # the policy starts at the reference
    assert kls[100.0] < kls[0.0]


def test_lora_trains_adapters_only_and_exports_for_diffusers(tmp_path):
    from diffusers import StableDiffusionPipeline

    path = testing.save_stable_diffusion(tmp_path / "sd")
    pipe = load_pipeline(str(path))
    base = {k: v.detach().clone() for k, v in pipe.unet.named_parameters()}
    tuner = Finetuner(small(lora_rank=4, lr=1e-2), pipe=pipe, reward_fn=brightness, task=task())
    assert tuner.params and all("lora" in n for n, p in pipe.unet.named_parameters() if p.requires_grad)
    tuner.train(progress=False)
    for name, value in pipe.unet.named_parameters():
        if "lora" not in name:
            assert torch.equal(value, base[name.replace(".base_layer", "")]), name
    assert tuner.metrics[1]["kl"] > 0  # the reference is the base model with adapters off
    exported = tuner.export(tmp_path / "out")
    fresh = StableDiffusionPipeline.from_pretrained(path, safety_checker=None)
    fresh.load_lora_weights(exported)
    ad = make_adapter(pipe)
    x = torch.randn((1, *ad.latent_shape), generator=torch.Generator().manual_seed(0))
    cond = ad.encode(["a cat"])
    with torch.no_grad():
        trained = pipe.unet(x, 500, encoder_hidden_states=cond).sample
        loaded = fresh.unet(x, 500, encoder_hidden_states=cond).sample
        untouched = (
            StableDiffusionPipeline.from_pretrained(path, safety_checker=None)
            .unet(x, 500, encoder_hidden_states=cond)
            .sample
        )
    assert torch.allclose(trained, loaded, atol=1e-5) and not torch.allclose(trained, untouched, atol=1e-5)


def test_full_fine_tuning_exports_a_pipeline(tmp_path):
    tuner = Finetuner(small(steps=1), pipe=SynthPipeline.build(), reward_fn=brightness, task=task())
    tuner.train(progress=False)
    out = tuner.export(tmp_path)
    again = SynthPipeline.from_pretrained(out)
    assert all(torch.equal(a, b) for a, b in zip(again.unet.parameters(), tuner.pipe.unet.parameters()))


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(method="dpo"), "unknown method"),
        (dict(samples_per_prompt=0), "at least one"),
        (dict(samples_per_prompt=1), "samples_per_prompt must be >= 2"),
        (dict(reward="oracle"), "unknown reward kind"),
        (dict(reward="raw"), "needs a model"),
        (dict(reward="gold"), "gold judge"),
        (dict(reward="textnorm:x"), "contrastive"),
        (dict(resolution=32), "16 px"),
        (dict(lr=float("nan")), "lr must be a finite number"),
        (dict(kl_weight=float("inf")), "kl_weight must be a finite"),
        (dict(lr=0.0), "lr must be > 0"),
        (dict(batch_size=3), "minibatches"),
        (dict(grad_accum=0), "grad_accum must be >= 1"),
        (dict(lora_rank=-2), "lora_rank must be >= 0"),
        (dict(min_train_sigma=5.0), "no DDIM step"),
    ],
)
def test_bad_configurations(kw, message):
    with pytest.raises(ValueError, match=message):
        Finetuner(small(**kw), pipe=SynthPipeline.build(), task=task())


def test_synth_task_has_gold_and_held_out_prompts():
    tuner = Finetuner(small(task="synth", prompts=[], n_prompts=8, steps=1, eval_samples=1), pipe=SynthPipeline.build())
    t = tuner.task
    assert len(t.train_prompts) == 8 and len(t.eval_prompts) == 8 and not set(t.train_prompts) & set(t.eval_prompts)
    ev = tuner.evaluate()
    means = {f"{k}_{v}" for k in ("eval", "heldout") for v in ("reward", "gold", "kl", "kl_bound")}
    assert set(ev) == means | {
        f"{k}_prompt_{v}" for k in ("eval", "heldout") for v in ("reward", "gold", "kl", "names")
    }
    assert ev["eval_prompt_names"] == t.train_prompts
    assert len(ev["eval_prompt_gold"]) == 8 and ev["eval_gold"] == pytest.approx(np.mean(ev["eval_prompt_gold"]))
    assert ev["eval_kl"] == 0.0  # the untrained policy is the base model
    # a bound when every step the policy runs is stochastic (and counted)
    assert ev["eval_kl_bound"] is (len(tuner.chain.stochastic(1.0)) == len(tuner.chain))


def test_stable_diffusion_task_has_no_gold(tmp_path):
    pipe = load_pipeline(str(testing.save_stable_diffusion(tmp_path / "sd")))
    cfg = small(task="auto", prompts=["a cat", "a dog"], eval_every=1, eval_samples=1, steps=1)
    tuner = Finetuner(cfg, pipe=pipe, reward_fn=brightness)
    tuner.train(progress=False)
    assert tuner.task.gold is None and "gold" not in tuner.metrics[0] and "eval_gold" not in tuner.metrics[0]


def test_cli_finetune_and_resume(tmp_path, capsys):
    from textnorm.cli import main

    SynthPipeline.build().save_pretrained(tmp_path / "gen")
    proxy = "raw:" + str(repo_root() / "data/synth/proxy_contrastive")  # a continuous reward: no ties
    args = [
        "finetune",
        "--model",
        str(tmp_path / "gen"),
        "--reward",
        proxy,
        "--method",
        "rwsft",
        "--pool-size",
        "4",
        "--batch-size",
        "2",
        "--sample-steps",
        "3",
        "--out",
        str(tmp_path / "run"),
        "--quiet",
    ]
    assert main(args + ["--steps", "1"]) == 0
    assert main(args + ["--steps", "2", "--resume"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [m["step"] for m in metrics] == [0, 1]
    # the folder holds a run: a new run there is refused unless --overwrite
    assert main(args + ["--steps", "1"]) == 1
    assert "not empty" in capsys.readouterr().err
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == metrics
    assert main(args + ["--steps", "1", "--overwrite"]) == 0
    assert len(json.loads((tmp_path / "run" / "metrics.json").read_text())) == 1
    assert main(args + ["--steps", "1", "--overwrite", "--resume"]) == 1
    bad = args[:5] + ["--reward", "magic:x"] + args[7:-3] + ["--out", str(tmp_path / "run2"), "--quiet", "--steps", "1"]
    assert main(bad) == 1
    assert "unknown reward kind" in capsys.readouterr().err


def test_evaluation_is_paired_and_logged():
    tuner = Finetuner(
        small(steps=2, eval_every=1, eval_samples=2), pipe=SynthPipeline.build(), reward_fn=brightness, task=task()
    )
    first = tuner.evaluate()
    assert first == tuner.evaluate()  # same noise, same model: same numbers
    tuner.train(progress=False)
    assert all("eval_reward" in r and "heldout_reward" in r for r in tuner.metrics)
    assert tuner.metrics[0]["eval_reward"] == first["eval_reward"]
    assert tuner.final_eval["step"] == 2 and tuner.final_eval["eval_reward"] != first["eval_reward"]


# ---------------------------------------------------------------- crash safety and untrusted checkpoints
_CRASH = r"""
import os, signal, sys, torch
from textnorm.finetune import loop
from textnorm.synth.generator import SynthPipeline
sys.path.insert(0, sys.argv[2])
from test_finetune import small, brightness, task

real_save, calls = torch.save, [0]
def dying_save(obj, f, *a, **k):
    calls[0] += 1
    if calls[0] == 2:              # the second checkpoint: half written, then SIGKILL
        f.write(b"\x00" * 1000)
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *a, **k)
torch.save = dying_save
torch.set_num_threads(1)
loop.finetune(small(method=sys.argv[3], steps=4, checkpoint_every=1), out=sys.argv[1], pipe=SynthPipeline.build(),
              progress=False, reward_fn=brightness, task=task())
"""


@pytest.mark.parametrize("method", ["ddpo"])
def test_kill_during_a_checkpoint_write_resumes_from_the_last_complete_one(method, tmp_path):
    import signal
    import subprocess
    import sys
    from pathlib import Path

    # the killed run uses one thread; so must this process's runs (an earlier test, e.g. proxy training
    # with its default threads=2, may have changed it), or the last bits of their sums differ
    torch.set_num_threads(1)
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-c", _CRASH, str(run), str(Path(__file__).parent), method],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    leftovers = [p.name for p in run.iterdir() if p.name.startswith(".checkpoint.pt.")]
    assert leftovers  # the half-written temporary file is there; checkpoint.pt is the first one, whole
    assert json.loads((run / "metrics.json").read_text())[-1]["step"] == 0
    resumed = finetune(
        small(method=method, steps=4, checkpoint_every=1),
        out=run,
        resume=True,
        pipe=SynthPipeline.build(),
        progress=False,
        reward_fn=brightness,
        task=task(),
    )
    full = finetune(
        small(method=method, steps=4, checkpoint_every=1),
        out=tmp_path / "full",
        pipe=SynthPipeline.build(),
        progress=False,
        reward_fn=brightness,
        task=task(),
    )
    assert strip(resumed) == strip(full)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_crafted_checkpoint_does_not_run_code(tmp_path):
    import pickle

    finetune(
        small(steps=1), out=tmp_path, pipe=SynthPipeline.build(), progress=False, reward_fn=brightness, task=task()
    )
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return os.system, (f"touch {marker}",)

    with open(tmp_path / "checkpoint.pt", "wb") as f:
        pickle.dump({"trainable": Evil()}, f)
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        finetune(
            small(steps=2),
            out=tmp_path,
            resume=True,
            pipe=SynthPipeline.build(),
            progress=False,
            reward_fn=brightness,
            task=task(),
        )
    assert not marker.exists()
    (tmp_path / "checkpoint.pt").write_bytes(b"")  # a 0-byte file: a clear error too
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        finetune(
            small(steps=2),
            out=tmp_path,
            resume=True,
            pipe=SynthPipeline.build(),
            progress=False,
            reward_fn=brightness,
            task=task(),
        )


def test_non_finite_rewards_and_weights_stop_the_run():
    tuner = Finetuner(small(), pipe=SynthPipeline.build(), reward_fn=lambda im, p: np.full(len(p), np.inf), task=task())
    with pytest.raises(FloatingPointError, match="step 0: the reward returned non-finite values"):
        tuner.run_step()
    tuner = Finetuner(small(method="rwsft"), pipe=SynthPipeline.build(), reward_fn=brightness, task=task())
    tuner.run_step()
    with torch.no_grad():
        tuner.params[0].view(-1)[0] = float("nan")
    with pytest.raises(FloatingPointError, match="step 1: the loss became nan|step 1: some weights"):
        tuner.run_step()


def test_damaged_checkpoints_are_refused_with_the_reason(tmp_path):
    good = tmp_path / "good"
    finetune(small(steps=1), out=good, pipe=SynthPipeline.build(), progress=False, reward_fn=brightness, task=task())
    original = torch.load(good / "checkpoint.pt", weights_only=True)
    key = next(iter(original["trainable"]))

    def damaged(change, i):
        run = tmp_path / f"d{i}"
        run.mkdir()
        tensors = {k: (dict(v) if isinstance(v, dict) else v) for k, v in original.items()}
        change(tensors)
        torch.save(tensors, run / "checkpoint.pt")
        return run

    cases = [
        (lambda t: t["trainable"].__setitem__(key, torch.zeros(1)), f"weight {key} has shape \\(1,\\)"),
        (lambda t: t["trainable"].pop(key), "do not match this model"),
        (lambda t: t["trainable"].__setitem__("bogus.weight", torch.zeros(1)), "unexpected \\['bogus.weight'\\]"),
        (lambda t: t.__setitem__("state_json", "[1, 2]"), "lacks or mistypes"),
        (lambda t: t.__setitem__("state_json", "{not json"), "not valid JSON"),
        (lambda t: t.pop("optimizer"), "no 'optimizer' entry"),
    ]
    for i, (change, message) in enumerate(cases):
        with pytest.raises(ValueError, match=message):
            finetune(
                small(steps=2),
                out=damaged(change, i),
                resume=True,
                pipe=SynthPipeline.build(),
                progress=False,
                reward_fn=brightness,
                task=task(),
            )
