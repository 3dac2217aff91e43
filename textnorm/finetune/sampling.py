"""DDIM sampling with per-step log-probabilities (the policy of DDPO / DPOK).

With a_t the cumulative alphas, a step from x_t to x_s (s the previous timestep) is Gaussian:

    x0_hat = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)                  (clipped to [-1, 1] in pixel space)
    sigma  = eta sqrt((1 - a_s) / (1 - a_t)) sqrt(1 - a_t / a_s)
    mean   = sqrt(a_s) x0_hat + sqrt(1 - a_s - sigma^2) eps
    x_s    = mean + sigma z,   z ~ N(0, I)
    log p(x_s | x_t) = sum_d [ -(x_s - mean)^2 / (2 sigma^2) - log sigma - log sqrt(2 pi) ]

The last step goes to a_0 = alphas_cumprod[0] rather than 1, keeping its sigma positive.
The KL between the policy's and the reference model's step distributions (same sigma) is
||mean_theta - mean_ref||^2 / (2 sigma^2), summed over dimensions: its sum over the chain is the
KL of the two trajectory distributions along the sampled path (the DPOK regulariser).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Trajectory:
    latents: torch.Tensor      # (T + 1, n, *shape): x_T ... x_0
    timesteps: torch.Tensor    # (T,)
    log_probs: torch.Tensor    # (T, n)
    x0: torch.Tensor           # (n, *shape), final sample
    means: torch.Tensor        # (T, n, *shape): the sampling policy's step means
    sigmas: list[float]        # (T,)
    eta: float


def timesteps_for(alphas_cumprod: torch.Tensor, steps: int) -> torch.Tensor:
    n_train = alphas_cumprod.shape[0]
    return torch.arange(0, n_train, n_train // steps).flip(0)[:steps]


def step_stats(eps: torch.Tensor, x: torch.Tensor, t: int, t_prev: int, ac: torch.Tensor, eta: float,
               clip: bool) -> tuple[torch.Tensor, float]:
    """Mean and sigma of p(x_prev | x_t)."""
    a_t = ac[t]
    # the last step goes to alphas_cumprod[0] (not 1), so it keeps a positive sigma and a
    # well-defined log-probability, as in DDPO's sampler
    a_s = ac[t_prev] if t_prev >= 0 else ac[0]
    x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    if clip:
        x0 = x0.clamp(-1, 1)
    sigma = float(eta * ((1 - a_s) / (1 - a_t)).sqrt() * (1 - a_t / a_s).sqrt())
    mean = a_s.sqrt() * x0 + (1 - a_s - sigma ** 2).clamp(min=0).sqrt() * eps
    return mean, sigma


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, sigma: float) -> torch.Tensor:
    """Sum over all but the first dimension."""
    sigma = max(sigma, 1e-6)
    lp = -((x - mean) ** 2) / (2 * sigma ** 2) - math.log(sigma) - 0.5 * math.log(2 * math.pi)
    return lp.flatten(1).sum(1)


def sample(adapter, unet, cond, n: int, steps: int, eta: float, generator: torch.Generator,
           clip: bool | None = None, grad: bool = False) -> Trajectory:
    """Sample n images with the given UNet, recording latents and log-probabilities."""
    ac = adapter.alphas_cumprod
    clip = (len(adapter.latent_shape) == 3 and adapter.latent_shape[0] == 3) if clip is None else clip
    ts = timesteps_for(ac, steps)
    x = torch.randn((n, *adapter.latent_shape), generator=generator).to(adapter.device)
    lats, lps, means, sigmas = [x], [], [], []
    ctx = torch.enable_grad() if grad else torch.no_grad()
    with ctx:
        for i, t in enumerate(ts):
            t_prev = int(ts[i + 1]) if i + 1 < len(ts) else -1
            eps = adapter.eps(unet, x, t, cond)
            mean, sigma = step_stats(eps, x, int(t), t_prev, ac, eta, clip)
            noise = torch.randn(x.shape, generator=generator).to(adapter.device)
            x = (mean + sigma * noise) if sigma > 0 else mean
            lps.append(gaussian_log_prob(x, mean, sigma))
            lats.append(x)
            means.append(mean.detach())
            sigmas.append(sigma)
    return Trajectory(torch.stack(lats), ts, torch.stack(lps), x, torch.stack(means), sigmas, eta)


@torch.no_grad()
def trajectory_kl(adapter, ref_unet, cond, traj: Trajectory, clip: bool | None = None) -> torch.Tensor:
    """Sum over steps of KL(policy step || reference step) along the sampled path, per sample.
    Reuses the policy means recorded while sampling: only the reference model runs again."""
    ac = adapter.alphas_cumprod
    clip = (len(adapter.latent_shape) == 3 and adapter.latent_shape[0] == 3) if clip is None else clip
    ts = traj.timesteps
    total = torch.zeros(traj.x0.shape[0])
    for i in range(len(ts)):
        t_prev = int(ts[i + 1]) if i + 1 < len(ts) else -1
        x = traj.latents[i]
        ref_mean, _ = step_stats(adapter.eps(ref_unet, x, ts[i], cond), x, int(ts[i]), t_prev, ac, traj.eta, clip)
        sigma = max(traj.sigmas[i], 1e-6)
        total += (((traj.means[i] - ref_mean) ** 2).flatten(1).sum(1) / (2 * sigma ** 2)).cpu()
    return total


def step_log_prob_and_kl(adapter, unet, ref_unet, cond, traj: Trajectory, i: int, eta: float,
                         clip: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability under ``unet`` of the recorded step i, and the KL to ``ref_unet`` there."""
    ac = adapter.alphas_cumprod
    clip = (len(adapter.latent_shape) == 3 and adapter.latent_shape[0] == 3) if clip is None else clip
    ts = traj.timesteps
    t = int(ts[i])
    t_prev = int(ts[i + 1]) if i + 1 < len(ts) else -1
    x, x_prev = traj.latents[i], traj.latents[i + 1]
    mean, sigma = step_stats(adapter.eps(unet, x, t, cond), x, t, t_prev, ac, eta, clip)
    lp = gaussian_log_prob(x_prev, mean, sigma)
    if ref_unet is None:
        return lp, torch.zeros_like(lp)
    with torch.no_grad():
        ref_mean, _ = step_stats(adapter.eps(ref_unet, x, t, cond), x, t, t_prev, ac, eta, clip)
    kl = ((mean - ref_mean) ** 2).flatten(1).sum(1) / (2 * max(sigma, 1e-6) ** 2)
    return lp, kl
