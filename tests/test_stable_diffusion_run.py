"""What the paper's Stable Diffusion runs need, on tiny random models: classifier-free guidance equal
to diffusers' pipeline, micro-batches that no UNet or VAE call exceeds and that do not change the
samples, per-prompt statistics tracking, raw-mean independent of how a batch is split, TextNorm
contrasts from a TIA2-shaped JSON file, and the whole command with --export loaded by diffusers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from textnorm import ddim, testing
from textnorm.finetune.adapters import Guided, make_adapter
from textnorm.finetune.config import FinetuneConfig
from textnorm.finetune.loop import Finetuner, finetune, load_pipeline
from textnorm.finetune.ppo import PerPromptStats
from textnorm.finetune.rewards import BatchReward
from textnorm.finetune.task import plain_task

torch.set_num_threads(1)
PROMPTS = ["a realistic photo of two cats", "a realistic photo of a dog and a cat"]


def brightness(images, prompts):
    return images.astype(float).mean(axis=(1, 2, 3)) / 255


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    return testing.save_stable_diffusion(tmp_path_factory.mktemp("sd") / "sd")


def test_guided_sampling_equals_diffusers_pipeline(sd):
    from diffusers import DDIMScheduler

    pipe = load_pipeline(str(sd))
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    ad = make_adapter(pipe)
    latents = torch.randn((2, *ad.latent_shape), generator=torch.Generator().manual_seed(0))
    expected = pipe(
        PROMPTS, num_inference_steps=5, guidance_scale=5.0, latents=latents.clone(), output_type="latent", eta=0.0
    ).images
    cond = Guided(ad.encode(PROMPTS), ad.encode(["", ""]), 5.0)
    with torch.no_grad():
        traj = ddim.sample(lambda x, t: ad.eps(ad.unet, x, t, cond), ad.chain(5), latents, 0.0, torch.Generator())
        unguided = ddim.sample(
            lambda x, t: ad.eps(ad.unet, x, t, ad.encode(PROMPTS)), ad.chain(5), latents, 0.0, torch.Generator()
        )
    assert torch.allclose(traj.x0, expected, atol=1e-5)
    assert not torch.allclose(unguided.x0, expected, atol=1e-3)  # guidance 5 is not guidance 1


def _cfg(**kw) -> FinetuneConfig:
    base = dict(
        method="ddpo",
        steps=1,
        n_prompts=2,
        samples_per_prompt=4,
        sample_steps=3,
        batch_size=4,
        task="prompts",
        prompts=PROMPTS,
        eval_every=1,
        eval_samples=2,
        lora_rank=2,
    )
    return FinetuneConfig(**{**base, **kw})


def _record_batches(pipe) -> list[tuple[str, int]]:
    seen: list[tuple[str, int]] = []
    unet_forward, decode = pipe.unet.forward, pipe.vae.decode
    pipe.unet.forward = lambda x, *a, **k: (seen.append(("unet", len(x))), unet_forward(x, *a, **k))[1]
    pipe.vae.decode = lambda z, *a, **k: (seen.append(("vae", len(z))), decode(z, *a, **k))[1]
    return seen


def test_micro_batches_bound_every_call_and_leave_the_samples_unchanged(sd):
    rows = {}
    for size in (0, 3):
        pipe = load_pipeline(str(sd))
        seen = _record_batches(pipe)
        tuner = Finetuner(_cfg(sample_batch=size, batch_size=2, kl_weight=0.1), pipe=pipe, reward_fn=brightness)
        traj, _ = tuner.sample(PROMPTS * 4, torch.Generator().manual_seed(3))
        rows[size] = (traj.x0, tuner.run_step())
        if size:
            # sampling, decoding, evaluation and the reference passes: at most 3 samples per call; the
            # training minibatch (batch_size 2) is the other bound
            assert max(n for _, n in seen) <= 3, sorted(set(seen))
            assert any(n == 3 for _, n in seen)
    assert torch.allclose(rows[0][0], rows[3][0], atol=1e-5)
    for key in ("reward", "kl", "eval_reward"):
        assert rows[0][1][key] == pytest.approx(rows[3][1][key], rel=1e-4, abs=1e-6), key


def test_micro_batches_of_a_process_shard_under_guidance(sd):
    # rows 3..7 of a batch of 8 (a second process's shard), guided, in micro-batches of 2: the same samples
    out = {}
    for size in (0, 2):
        pipe = load_pipeline(str(sd))
        tuner = Finetuner(_cfg(sample_batch=size, guidance_scale=5.0), pipe=pipe, reward_fn=brightness)
        g = torch.Generator().manual_seed(11)
        out[size] = tuner.sample((PROMPTS * 4)[3:8], g, rows=(8, slice(3, 8)))[0], g.get_state()
    assert torch.allclose(out[0][0].x0, out[2][0].x0, rtol=1e-4, atol=1e-4)  # float rounding of other batch sizes
    assert torch.allclose(out[0][0].log_probs, out[2][0].log_probs, atol=1e-3)
    assert torch.equal(out[0][1], out[2][1])  # the generator ends where the whole batch leaves it


def test_guidance_doubles_the_unet_batch_only(sd):
    pipe = load_pipeline(str(sd))
    seen = _record_batches(pipe)
    tuner = Finetuner(
        _cfg(sample_batch=2, batch_size=2, guidance_scale=5.0, eval_every=0), pipe=pipe, reward_fn=brightness
    )
    tuner.run_step()
    assert max(n for k, n in seen if k == "unet") == 4 and max(n for k, n in seen if k == "vae") == 2


def test_per_prompt_statistics_by_hand():
    stats = PerPromptStats(buffer=3, min_count=2)
    # round 1: prompt a has 1 reward (< min_count): the round's mean 2 and sd sqrt(2/3) of [1, 2, 3]
    adv = stats.advantages(np.array([1.0, 2.0, 3.0]), ["a", "b", "b"], clip=10.0)
    sd_all = np.std([1.0, 2.0, 3.0]) + 1e-6
    assert adv[0] == pytest.approx((1 - 2) / sd_all)
    assert adv[1:] == pytest.approx([(2 - 2.5) / (0.5 + 1e-6), (3 - 2.5) / (0.5 + 1e-6)])  # b's own two
    # round 2: a's buffer [1, 5] (mean 3, sd 2); b's holds the last 3: [3, 4, 4] after [2, 3] + [4, 4]
    adv = stats.advantages(np.array([5.0, 4.0, 4.0]), ["a", "b", "b"], clip=10.0)
    assert adv[0] == pytest.approx((5 - 3) / (2 + 1e-6))
    b = np.array([3.0, 4.0, 4.0])
    assert adv[1] == pytest.approx((4 - b.mean()) / (b.std() + 1e-6))
    assert stats.state() == {"a": [1.0, 5.0], "b": [3.0, 4.0, 4.0]}


def test_a_resumed_run_with_statistics_tracking_continues_exactly(tmp_path):
    from textnorm.synth.generator import SynthPipeline

    cfg = dict(
        method="ddpo",
        n_prompts=2,
        samples_per_prompt=4,
        sample_steps=4,
        batch_size=8,
        task="prompts",
        prompts=["a red circle", "two blue squares"],
        stat_buffer=6,
        stat_min_count=2,
        checkpoint_every=1,
    )
    whole = finetune(FinetuneConfig(steps=3, **cfg), pipe=SynthPipeline.build(), reward_fn=brightness, progress=False)
    finetune(
        FinetuneConfig(steps=1, **cfg), out=tmp_path, pipe=SynthPipeline.build(), reward_fn=brightness, progress=False
    )
    resumed = finetune(
        FinetuneConfig(steps=3, **cfg),
        out=tmp_path,
        resume=True,
        pipe=SynthPipeline.build(),
        reward_fn=brightness,
        progress=False,
    )
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(resumed) == strip(whole)


def test_raw_mean_does_not_depend_on_how_the_batch_is_split(tmp_path):
    from textnorm.finetune.rewards import make_reward

    a, b = testing.save_clip(tmp_path / "a", seed=0), testing.save_clip(tmp_path / "b", seed=1)
    reward = make_reward(f"raw-mean:clip={a},clip={b}")
    assert isinstance(reward, BatchReward)
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    prompts = ["a red circle", "two blue squares"] * 4
    whole = reward(images, prompts)
    # two processes: each scores its half, the parts are gathered in process order, then combined
    halves = np.concatenate([reward.parts(images[:4], prompts[:4]), reward.parts(images[4:], prompts[4:])])
    assert np.allclose(reward.combine(halves, prompts), whole, atol=1e-12)
    per_half = np.concatenate([reward(images[:4], prompts[:4]), reward(images[4:], prompts[4:])])
    assert not np.allclose(per_half, whole)  # z-scores within each half: what the old code logged


def test_contrastive_prompts_from_a_json_file_are_checked_up_front(sd, tmp_path):
    pipe = load_pipeline(str(sd))
    clip = testing.save_clip(tmp_path / "clip")
    (tmp_path / "c.json").write_text(json.dumps({PROMPTS[0]: ["a realistic photo of three cats"]}))
    cfg = _cfg(reward=f"textnorm:clip={clip}", contrastive=str(tmp_path / "c.json"))
    with pytest.raises(ValueError, match=r"1 prompt\(s\) have none: 'a realistic photo of a dog and a cat'"):
        Finetuner(cfg, pipe=pipe)
    (tmp_path / "dirty.json").write_text(json.dumps({p: [p, "a realistic photo of three cats"] * 2 for p in PROMPTS}))
    with pytest.warns(UserWarning, match="dropped 2 repeated prompts and 4 copies of the prompt itself from 2 sets"):
        dirty = Finetuner(_cfg(reward=f"textnorm:clip={clip}", contrastive=str(tmp_path / "dirty.json")), pipe=pipe)
    assert dirty.task.contrastive(PROMPTS[1]) == ["a realistic photo of three cats"]
    rules = Finetuner(_cfg(reward=f"textnorm:clip={clip}", contrastive="rules"), pipe=load_pipeline(str(sd)))
    assert "a realistic photo of three cats" in rules.task.contrastive(PROMPTS[0])
    with pytest.raises(ValueError, match="needs contrastive prompts"):
        Finetuner(_cfg(reward=f"textnorm:clip={clip}"), pipe=load_pipeline(str(sd)), task=plain_task(PROMPTS))


def test_the_paper_shaped_run_from_the_command_line_exports_a_lora_diffusers_loads(sd, tmp_path, capsys):
    from diffusers import StableDiffusionPipeline

    from textnorm.cli import main

    clip = testing.save_clip(tmp_path / "clip")
    contrasts = {
        PROMPTS[0]: ["a realistic photo of a cat", "a realistic photo of three cats"],
        PROMPTS[1]: ["a realistic photo of a dog", "a realistic photo of two dogs and a cat"],
    }
    (tmp_path / "prompt_set.json").write_text(json.dumps(contrasts))  # the TIA2 prompt files' shape
    args = ["finetune", "--model", str(sd), "--task", "prompts", "--reward", f"textnorm:clip={clip}"]
    args += ["--contrastive", str(tmp_path / "prompt_set.json"), "--guidance-scale", "5", "--sample-batch", "4"]
    args += ["--n-prompts", "2", "--samples-per-prompt", "8", "--batch-size", "8", "--inner-epochs", "2"]
    args += ["--stat-buffer", "32", "--lora-rank", "4", "--sample-steps", "3", "--steps", "2", "--quiet"]
    args += [f"--prompt={p}" for p in PROMPTS]
    args += ["--out", str(tmp_path / "run"), "--export", str(tmp_path / "model")]
    assert main(args) == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(0 <= r["reward"] <= 1 for r in rows)  # TextNorm probabilities
    assert rows[1]["approx_kl"] > 0  # two inner epochs: the second moves the ratio
    fresh = StableDiffusionPipeline.from_pretrained(sd, safety_checker=None)
    fresh.load_lora_weights(tmp_path / "model" / "lora")
    assert any("lora" in n for n, _ in fresh.unet.named_parameters())


def test_bf16_autocast_with_lora_and_guidance_on_the_cpu(sd):
    pipe = load_pipeline(str(sd))
    tuner = Finetuner(
        _cfg(mixed_precision="bf16", guidance_scale=5.0, sample_batch=2, batch_size=2), pipe=pipe, reward_fn=brightness
    )
    assert pipe.vae.dtype == torch.bfloat16 and all(p.dtype == torch.float32 for p in tuner.params)
    row = tuner.run_step()
    # four minibatches: after the first update the ratio moves, under bf16 autocast as in fp32
    assert np.isfinite(row["loss"]) and np.isfinite(row["kl"]) and row["approx_kl"] > 0


def test_the_published_tia2_sets_by_name(mirror, monkeypatch):
    from textnorm.finetune.task import contrastive_from

    monkeypatch.setenv("TEXTNORM_TIA2_MIRROR", str(mirror))
    lookup, path = contrastive_from("tia2:counting")
    assert path is None and "a realistic photo of two horses" in lookup("a realistic photo of three horses")
    with pytest.raises(ValueError, match="the TIA2 subsets are"):
        contrastive_from("tia2:colours")


def test_a_resume_with_another_contrastive_file_is_refused(tmp_path):
    from textnorm.synth.generator import SynthPipeline

    sets = {"a red circle": ["two red circles"], "two blue squares": ["a blue square"]}
    (tmp_path / "c.json").write_text(json.dumps(sets))
    cfg = dict(
        method="ddpo",
        n_prompts=2,
        samples_per_prompt=2,
        sample_steps=4,
        batch_size=4,
        task="prompts",
        prompts=list(sets),
        reward="textnorm:data/synth/proxy_preference",
        contrastive=str(tmp_path / "c.json"),
    )
    finetune(FinetuneConfig(steps=1, **cfg), out=tmp_path / "run", pipe=SynthPipeline.build(), progress=False)
    (tmp_path / "c.json").write_text(json.dumps({**sets, "a red circle": ["three red circles"]}))
    with pytest.raises(ValueError, match="the contrastive prompts file changed"):
        finetune(
            FinetuneConfig(steps=2, **cfg),
            out=tmp_path / "run",
            resume=True,
            pipe=SynthPipeline.build(),
            progress=False,
        )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(guidance_scale=0.5), "guidance_scale must be >= 1"),
        (dict(stat_buffer=8), "stat_min_count=16 > stat_buffer=8"),
        (dict(stat_buffer=32, method="rwsft"), "stat_buffer .* is a DDPO setting"),
    ],
)
def test_settings_that_would_silently_do_something_else(change, message):
    from textnorm.finetune.config import validate

    with pytest.raises(ValueError, match=message):
        validate(_cfg(**change))


def test_the_readme_command_for_the_papers_runs_is_valid():
    import re
    import shlex

    from textnorm.cli import build_parser, config_from_args
    from textnorm.finetune.config import validate
    from textnorm.paths import repo_root

    readme = (repo_root() / "README.md").read_text()
    block = re.search(
        r"```bash\n(textnorm finetune --model stabilityai[^`]*?--contrastive tia2:counting.*?)```", readme, re.S
    )
    args = build_parser().parse_args(shlex.split(block.group(1).replace("\\\n", " "))[1:])
    cfg = config_from_args(FinetuneConfig, args)
    validate(cfg)
    assert (cfg.guidance_scale, cfg.stat_buffer, cfg.sample_steps, cfg.min_train_sigma) == (5.0, 32, 50, 0.0)
    n = cfg.n_prompts * cfg.samples_per_prompt
    assert n == 256 and n // (cfg.batch_size * cfg.grad_accum) == 4  # 4 updates of 64 per epoch, as the paper
