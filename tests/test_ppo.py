"""DDPO's arithmetic against hand-computed values: per-prompt advantages (normalised within each
prompt, clipped) and the clipped surrogate with the per-dimension ratio, clipping active and not."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from textnorm.finetune.ppo import approx_kl, clipfrac, per_prompt_advantages, ppo_loss


def test_advantages_are_normalised_within_each_prompt():
    # prompt a: rewards 1, 3 (mean 2, population sd 1); prompt b: all equal -> 0, not a division by 0
    adv = per_prompt_advantages(np.array([1.0, 2.0, 3.0, 2.0]), ["a", "b", "a", "b"], clip=5.0)
    d = 1 + 1e-6
    np.testing.assert_allclose(adv, [-1 / d, 0.0, 1 / d, 0.0], rtol=0, atol=1e-15)


def test_advantages_are_clipped():
    # one prompt, rewards 0, 0, 0, 10: mean 2.5, sd sqrt(18.75); the outlier's 7.5 / 4.330 = 1.732 is clipped
    adv = per_prompt_advantages(np.array([0.0, 0.0, 0.0, 10.0]), ["y"] * 4, clip=1.5)
    sd = math.sqrt(18.75) + 1e-6
    np.testing.assert_allclose(adv, [-2.5 / sd] * 3 + [1.5], rtol=1e-12)
    assert per_prompt_advantages(np.array([0.0, 0.0, 0.0, 10.0]), ["y"] * 4, clip=5.0)[3] == pytest.approx(7.5 / sd)


def test_advantages_refuse_mismatched_lengths():
    with pytest.raises(ValueError, match="3 rewards for 2 prompts"):
        per_prompt_advantages(np.zeros(3), ["a", "b"], clip=5.0)


def _logp(ratios, dims):
    # log-probabilities summed over `dims` dimensions whose per-dimension ratio to the old policy is `ratios`
    return torch.tensor([dims * math.log(r) for r in ratios], dtype=torch.float64, requires_grad=True)


def test_surrogate_with_clipping_active():
    dims, c = 2, 0.1
    lp = _logp([1.2, 0.5, 1.0], dims)
    adv = torch.tensor([1.0, -1.0, 2.0], dtype=torch.float64)
    loss, log_ratio, ratio = ppo_loss(lp, torch.zeros(3, dtype=torch.float64), adv, c, dims)
    # rho 1.2 with A = 1: max(-1.2, -1.1) = -1.1 (clipped); rho 0.5 with A = -1: max(0.5, 0.9) = 0.9 (clipped);
    # rho 1 with A = 2: -2
    assert float(loss.detach()) == pytest.approx((-1.1 + 0.9 - 2.0) / 3, abs=1e-12)
    np.testing.assert_allclose(ratio.detach().numpy(), [1.2, 0.5, 1.0], rtol=1e-12)
    assert clipfrac(ratio, c) == pytest.approx(2 / 3)
    assert approx_kl(log_ratio) == pytest.approx(0.5 * (math.log(1.2) ** 2 + math.log(0.5) ** 2) / 3)
    loss.backward()
    # the clipped samples give no gradient; the unclipped one d/dlp (-A exp(lp / D) / 3) = -2 / (3 D)
    np.testing.assert_allclose(lp.grad.numpy(), [0.0, 0.0, -2.0 / (3 * dims)], atol=1e-12)


def test_surrogate_with_clipping_inactive():
    dims, c = 4, 0.1
    lp = _logp([0.95, 1.2], dims)
    adv = torch.tensor([1.0, -1.0], dtype=torch.float64)
    loss, _, ratio = ppo_loss(lp, torch.zeros(2, dtype=torch.float64), adv, c, dims)
    # rho 0.95 inside the range: -0.95; rho 1.2 with A = -1: max(1.2, 1.1) = 1.2, the unclipped (pessimistic) term
    assert float(loss.detach()) == pytest.approx((-0.95 + 1.2) / 2, abs=1e-12)
    loss.backward()
    np.testing.assert_allclose(lp.grad.numpy(), [-0.95 / (2 * dims), 1.2 / (2 * dims)], rtol=1e-12)
    assert clipfrac(ratio, c) == pytest.approx(0.5)


def test_the_first_update_of_a_round_has_ratio_one():
    lp = torch.tensor([-3.0, -7.5])
    loss, log_ratio, ratio = ppo_loss(lp, lp.clone(), torch.tensor([0.5, -0.5]), 1e-3, 48)
    assert torch.equal(ratio, torch.ones(2)) and float(loss) == 0.0 and approx_kl(log_ratio) == 0.0
