"""The logged KL: on a linear-Gaussian chain, where the final distribution is known in closed form,
the path KL that sampling logs is an upper bound on the KL of the final samples, and 0 when the
policy is the base model; DDPO and RWSFT log the same KL."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from textnorm import ddim


def _chain(steps: int = 10, last_stochastic: bool = True) -> ddim.Chain:
    # set_alpha_to_one=False: the last step ends at alphas_cumprod[0], so it has a small sigma (as the
    # synthetic generator's last step, sigma about 0.006); True: a deterministic last step
    return ddim.Chain.from_scheduler(DDIMScheduler(set_alpha_to_one=not last_stochastic, clip_sample=False), steps)


def _slope(chain: ddim.Chain, i: int, k: float, eta: float) -> float:
    """The step mean of a model eps(x) = k x is m x; m of step i."""
    return float(chain.mean(i, torch.tensor(k), torch.tensor(1.0), eta))


def _variances(chain, ks, eta):
    """Var x after every step, from x_T ~ N(0, 1): v' = m^2 v + sigma^2."""
    v, out = 1.0, []
    for i, k in enumerate(ks):
        v = _slope(chain, i, k, eta) ** 2 * v + float(chain.sigma(i, eta)) ** 2
        out.append(v)
    return out


def _gauss_kl(vp: float, vr: float) -> float:
    return 0.5 * (vp / vr - 1 - np.log(vp / vr))


def _exact(chain, k_policy, k_base, steps, eta):
    """(exact KL of the final samples, exact path KL over ``steps``), per dimension."""
    vp, vr = _variances(chain, k_policy, eta), _variances(chain, k_base, eta)
    path = 0.0
    for i in steps:
        v_in = 1.0 if i == 0 else vp[i - 1]  # Var x_t under the policy before step i
        dm = _slope(chain, i, k_policy[i], eta) - _slope(chain, i, k_base[i], eta)
        path += dm**2 * v_in / (2 * float(chain.sigma(i, eta)) ** 2)
    return _gauss_kl(vp[-1], vr[-1]), path


def _logged(chain, k_policy, k_base, steps, eta, n=200_000, dims=1):
    table_p, table_b = dict(zip(chain.timesteps.tolist(), k_policy)), dict(zip(chain.timesteps.tolist(), k_base))
    g = torch.Generator().manual_seed(0)
    x = torch.randn((n, dims), generator=g, dtype=torch.float64)
    traj = ddim.sample(
        lambda x_, t: table_p[int(t)] * x_,
        chain,
        x,
        eta,
        g,
        record=False,
        ref_fn=lambda x_, t: table_b[int(t)] * x_,
        kl_steps=steps,
    )
    return float(traj.kl.mean()) / dims, traj


@pytest.mark.parametrize("mode", ["base", "policy"])
def test_logged_path_kl_bounds_the_final_kl_on_a_linear_gaussian_chain(mode):
    eta, chain = 1.0, _chain()
    trained = chain.trained_steps(eta, 0.05)
    assert len(trained) < len(chain)  # the last step (sigma about 0.006) is not trained
    k_base = [0.9] * len(chain)
    # the policy changes eps at the trained steps; mode "policy": also at the others (shared weights)
    k_policy = [0.6 if (i in trained or mode == "policy") else 0.9 for i in range(len(chain))]
    steps = trained if mode == "base" else chain.stochastic(eta)
    image_kl, path_kl = _exact(chain, k_policy, k_base, steps, eta)
    logged, _ = _logged(chain, k_policy, k_base, steps, eta)
    assert image_kl > 1e-4  # the final distributions differ
    assert logged == pytest.approx(path_kl, rel=0.02)  # the logged value estimates the path KL
    assert logged >= image_kl  # and bounds the images' KL (data processing)
    if mode == "base":  # counting only the trained steps would not bound it had the last step changed too
        _, only_trained = _exact(chain, [0.6] * len(chain), k_base, trained, eta)
        assert only_trained < _exact(chain, [0.6] * len(chain), k_base, chain.stochastic(eta), eta)[1]


def test_logged_kl_is_zero_when_the_policy_is_the_base_model():
    eta, chain = 1.0, _chain()
    k = [0.8] * len(chain)
    logged, traj = _logged(chain, k, k, chain.stochastic(eta), eta, n=1000)
    assert logged == 0.0 and torch.all(traj.kl == 0)


def test_untrained_steps_on_the_base_model_make_the_logged_kl_a_bound_in_the_trainer():
    from textnorm.finetune.config import FinetuneConfig
    from textnorm.finetune.loop import Finetuner
    from textnorm.finetune.sampling import kl_is_bound, kl_steps
    from textnorm.synth.generator import SynthPipeline

    common = dict(
        reward="random",
        task="synth",
        steps=1,
        n_prompts=2,
        samples_per_prompt=4,
        batch_size=8,
        sample_steps=10,
        eval_every=1,
        eval_samples=2,
        lr=1e-3,
        warmup=0,
    )
    pipe = SynthPipeline.build()
    for mode in ("policy", "base"):
        tuner = Finetuner(FinetuneConfig(untrained_steps=mode, **common), pipe=pipe)
        assert tuner.evaluate()["eval_kl"] == 0.0
        steps = kl_steps(tuner, 1.0)
        if mode == "base":
            assert steps == tuner.trained_steps and kl_is_bound(tuner, 1.0)
        else:
            assert steps == tuner.chain.stochastic(1.0)
        tuner.run_step()
        assert tuner.evaluate()["eval_kl"] > 0
    # with the base model at the untrained steps the last step's output equals the base model's
    tuner = Finetuner(FinetuneConfig(untrained_steps="base", **common), pipe=pipe)
    tuner.run_step()
    from textnorm.finetune.sampling import eps_fn

    cond = tuner.adapter.encode(["four green circles"])
    x = torch.randn(1, *tuner.adapter.latent_shape)
    last = tuner.chain.timesteps[-1]
    first = tuner.chain.timesteps[tuner.trained_steps[0]]
    with torch.no_grad():
        mixed = eps_fn(tuner, tuner.policy, cond)
        base = eps_fn(tuner, tuner.ref_unet, cond)
        policy_only = lambda x_, t: tuner.adapter.eps(tuner.policy, x_, t, cond)  # noqa: E731
        assert torch.equal(mixed(x, last), base(x, last))
        assert torch.equal(mixed(x, first), policy_only(x, first)) and not torch.equal(mixed(x, first), base(x, first))


def test_ddpo_and_rwsft_log_the_same_kl():
    """The KL is a property of the model, not of how it was trained: an RWSFT-trained model's weights
    evaluated by a DDPO trainer log the same eval_kl."""
    from textnorm.finetune.config import FinetuneConfig
    from textnorm.finetune.loop import Finetuner
    from textnorm.synth.generator import SynthPipeline

    common = dict(
        reward="random",
        task="synth",
        steps=2,
        sample_steps=10,
        eval_every=1,
        eval_samples=2,
        warmup=0,
        untrained_steps="base",
        prompts=["four green circles", "a blue circle and a red square"],
        n_prompts=2,
    )
    rw = Finetuner(
        FinetuneConfig(method="rwsft", pool_size=8, top_fraction=0.5, batch_size=4, lr=1e-3, **common),
        pipe=SynthPipeline.build(),
    )
    rw.run_step()
    rw.run_step()
    kl_rw = rw.evaluate()
    assert kl_rw["eval_kl"] > 0
    dd = Finetuner(
        FinetuneConfig(method="ddpo", samples_per_prompt=4, batch_size=8, **common), pipe=SynthPipeline.build()
    )
    dd.policy.load_state_dict(rw.policy.state_dict())
    kl_dd = dd.evaluate()
    assert kl_dd["eval_kl"] == kl_rw["eval_kl"] and kl_dd["eval_prompt_kl"] == kl_rw["eval_prompt_kl"]


def test_an_untrained_policy_has_kl_zero_under_mixed_precision_and_base_mode_needs_trained_steps():
    from textnorm.finetune.config import FinetuneConfig
    from textnorm.finetune.loop import Finetuner
    from textnorm.synth.generator import SynthPipeline

    common = dict(
        reward="random",
        task="synth",
        steps=1,
        n_prompts=2,
        samples_per_prompt=2,
        batch_size=4,
        sample_steps=4,
        eval_samples=1,
        min_train_sigma=0.05,
    )
    for mode in ("policy", "base"):  # full fine-tuning in bf16 autocast: the reference must not be a half copy
        tuner = Finetuner(
            FinetuneConfig(mixed_precision="bf16", untrained_steps=mode, **common), pipe=SynthPipeline.build()
        )
        assert tuner.evaluate()["eval_kl"] == 0.0
    bad = {**common, "min_train_sigma": 5.0, "method": "rwsft", "pool_size": 4}
    with pytest.raises(ValueError, match="no DDIM step has sigma"):
        Finetuner(FinetuneConfig(untrained_steps="base", **bad), pipe=SynthPipeline.build())
