"""The DDIM chain with log-probabilities: equal to diffusers' scheduler and pipelines, exact densities."""

from __future__ import annotations

import itertools

import pytest
import torch
from diffusers import DDIMScheduler

from textnorm import ddim, testing
from textnorm.finetune.adapters import make_adapter
from textnorm.finetune.loop import load_pipeline
from textnorm.synth.generator import SynthPipeline

torch.set_num_threads(1)

CONFIGS = [
    dict(beta_schedule="squaredcos_cap_v2", clip_sample=True, set_alpha_to_one=True),  # the synthetic world
    dict(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    ),  # Stable Diffusion
    dict(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="v_prediction",
    ),  # SD 2.1 (768)
    dict(
        beta_schedule="linear",
        clip_sample=True,
        clip_sample_range=2.0,
        set_alpha_to_one=False,
        prediction_type="sample",
        timestep_spacing="trailing",
    ),
]


@pytest.mark.parametrize("config, steps, eta", list(itertools.product(CONFIGS, [7, 10], [0.0, 1.0])))
def test_step_equals_diffusers_scheduler(config, steps, eta):
    sched = DDIMScheduler(num_train_timesteps=1000, **config)
    chain = ddim.Chain.from_scheduler(sched, steps)
    sched.set_timesteps(steps)
    assert torch.equal(chain.timesteps, sched.timesteps)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 5, 5, generator=g)
    for i, t in enumerate(sched.timesteps):
        out = torch.randn(x.shape, generator=g)
        noise = torch.randn(x.shape, generator=g)
        ours, _ = chain.step(i, out, x, eta, noise)
        ref = sched.step(out, t, x, eta=eta, variance_noise=noise if eta > 0 else None).prev_sample
        assert torch.equal(ours, ref), (i, int(t))
        x = ref


def test_log_prob_equals_torch_normal():
    chain = ddim.Chain.from_scheduler(DDIMScheduler(**CONFIGS[1]), 10)
    g = torch.Generator().manual_seed(1)
    x, out = torch.randn(4, 3, 6, 6, generator=g), torch.randn(4, 3, 6, 6, generator=g)
    for i in range(10):
        x_prev, mean = chain.step(i, out, x, 1.0, torch.randn(x.shape, generator=g))
        expected = torch.distributions.Normal(mean, chain.sigma(i, 1.0)).log_prob(x_prev).flatten(1).sum(1)
        assert torch.allclose(chain.log_prob(i, x_prev, mean, 1.0), expected, rtol=1e-5, atol=1e-2)


def test_deterministic_steps_have_no_density():
    chain = ddim.Chain.from_scheduler(DDIMScheduler(**CONFIGS[0]), 10)
    # set_alpha_to_one: the last step goes to a = 1, with sigma exactly 0
    assert chain.stochastic(1.0) == list(range(9)) and chain.stochastic(0.0) == []
    x = torch.zeros(1, 3)
    with pytest.raises(ValueError, match="deterministic"):
        chain.log_prob(9, x, x, 1.0)
    with pytest.raises(ValueError, match="deterministic"):
        chain.kl(9, x, x, 1.0)
    # every step that does have a density has a sigma well away from the 1e-6 clamp of old
    assert min(float(chain.sigma(i, 1.0)) for i in chain.stochastic(1.0)) > 1e-3


def test_kl_of_equal_sigma_gaussians():
    chain = ddim.Chain.from_scheduler(DDIMScheduler(**CONFIGS[1]), 10)
    m, r = torch.zeros(2, 8), torch.full((2, 8), 0.1)
    s = chain.sigma(3, 1.0)
    expected = torch.distributions.kl_divergence(torch.distributions.Normal(m, s), torch.distributions.Normal(r, s))
    assert torch.allclose(chain.kl(3, m, r, 1.0), expected.sum(1), rtol=1e-5)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_synth_pipeline_samples_the_chain_diffusers_defines(eta):
    """The pipeline's own sampling (textnorm.ddim) equals a loop over diffusers' DDIMScheduler.step."""
    pipe = SynthPipeline.build()
    prompts = ["a red circle", "two blue squares"]
    gen = torch.Generator("cpu").manual_seed(5)
    states, pooled = pipe.encode_prompt(prompts)
    x = torch.randn((2, 3, 16, 16), generator=gen)
    pipe.scheduler.set_timesteps(6)
    with torch.no_grad():
        for t in pipe.scheduler.timesteps:
            eps = pipe.predict_noise(x, t, states, pooled)
            noise = torch.randn(x.shape, generator=gen) if eta > 0 else None
            x = pipe.scheduler.step(eps, t, x, eta=eta, variance_noise=noise).prev_sample
    ours = pipe(prompts, num_inference_steps=6, seed=5, eta=eta, output="tensor")
    assert torch.equal(ours, x)


def test_fine_tuning_sampler_reproduces_stable_diffusion_pipeline(tmp_path):
    """eta 0, same initial latents: the adapter's chain gives diffusers' StableDiffusionPipeline images."""
    pipe = load_pipeline(str(testing.save_stable_diffusion(tmp_path / "sd")))
    from diffusers import DDIMScheduler as Sched

    pipe.scheduler = Sched.from_config(pipe.scheduler.config)
    ad = make_adapter(pipe)
    prompts = ["a red circle", "a cat"]
    latents = torch.randn((2, *ad.latent_shape), generator=torch.Generator().manual_seed(0))
    expected = pipe(
        prompts, num_inference_steps=5, guidance_scale=1.0, latents=latents.clone(), output_type="latent", eta=0.0
    ).images
    cond = ad.encode(prompts)
    with torch.no_grad():
        traj = ddim.sample(
            lambda x, t: ad.eps(ad.unet, x, t, cond), ad.chain(5), latents, 0.0, torch.Generator(), record=False
        )
    assert torch.allclose(traj.x0, expected, atol=1e-5)
