"""One DDIM step with its log-probability, derived from a diffusers ``DDIMScheduler``'s config.

Both the synthetic pipeline's own sampling and fine-tuning (best-of-n, reward-weighted SFT,
DDPO) run the chain defined here, so the images a policy is trained on are the images the
pipeline draws. With a_t the cumulative alphas at timestep t and s the step's previous timestep
(s = t - 1000 / T as diffusers has it; a_s = ``final_alpha_cumprod`` when s < 0, i.e. 1 if the
scheduler's ``set_alpha_to_one`` is set, else alphas_cumprod[0]):

    x0_hat = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)            (prediction_type "epsilon"; "sample"
                                                              and "v_prediction" convert likewise)
    x0_hat = clip(x0_hat, -r, r)                              (if ``clip_sample``; r = clip_sample_range)
    sigma  = eta sqrt((1 - a_s) / (1 - a_t)) sqrt(1 - a_t / a_s)
    mean   = sqrt(a_s) x0_hat + sqrt(1 - a_s - sigma^2) eps
    x_s    = mean + sigma z,   z ~ N(0, I)

The timesteps come from the scheduler's own ``set_timesteps`` (spacing, ``steps_offset``), and
the arithmetic follows ``DDIMScheduler.step`` operation for operation in float32, so with the same
noise both give the same samples (tested).

Log-probabilities are SUMMED over the D dimensions of x:

    log p(x_s | x_t) = sum_d [ -(x_s - mean)_d^2 / (2 sigma^2) - log sigma - log sqrt(2 pi) ],

the log-density of the step in nats, so that KL values are KL divergences in nats and the sum over
the chain is the log-density of the trajectory. (DDPO's PPO ratio divides the log-ratio by D; see
:mod:`textnorm.finetune.loop`.) A step with sigma = 0 (eta = 0, or the last step when
``final_alpha_cumprod`` is 1) is deterministic and has no density: :meth:`Chain.stochastic` leaves
it out, and log-probabilities, gradients and KL use only stochastic steps. Between two models
that share sigma, the KL of one stochastic step is ||mean_theta - mean_ref||^2 / (2 sigma^2).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t, t) -> model output


@dataclass(frozen=True)
class Chain:
    """The T steps of a DDIM sampler: timesteps and the cumulative alphas each step moves between."""

    timesteps: torch.Tensor  # (T,) int64, first (noisiest) to last
    alpha: torch.Tensor  # (T,) float32, a_t
    alpha_prev: torch.Tensor  # (T,) float32, a_s
    prediction_type: str
    clip_range: float | None  # None: no clipping of x0_hat

    @classmethod
    def from_scheduler(cls, scheduler, steps: int) -> Chain:
        """The chain a ``DDIMScheduler`` (or any scheduler whose config it accepts) samples with."""
        from diffusers import DDIMScheduler

        if steps < 1:
            raise ValueError(f"need at least one sampling step, got {steps}")
        ddim = DDIMScheduler.from_config(scheduler.config)
        if ddim.config.thresholding:
            raise ValueError("dynamic thresholding is not supported by the DDIM chain with log-probabilities")
        if ddim.config.prediction_type not in ("epsilon", "sample", "v_prediction"):
            raise ValueError(f"unknown prediction_type {ddim.config.prediction_type!r}")
        ddim.set_timesteps(steps)
        ts = ddim.timesteps.to(torch.int64)
        ac = ddim.alphas_cumprod
        prev = ts - ddim.config.num_train_timesteps // steps
        alpha = ac[ts]
        alpha_prev = torch.stack([ac[p] if p >= 0 else ddim.final_alpha_cumprod.to(ac.dtype) for p in prev.tolist()])
        clip = float(ddim.config.clip_sample_range) if ddim.config.clip_sample else None
        return cls(ts, alpha, alpha_prev, ddim.config.prediction_type, clip)

    def __len__(self) -> int:
        return len(self.timesteps)

    def sigma(self, i: int, eta: float) -> torch.Tensor:
        """Standard deviation of step i (a 0-d float32 tensor, as the scheduler computes it)."""
        a_t, a_s = self.alpha[i], self.alpha_prev[i]
        variance = ((1 - a_s) / (1 - a_t)) * (1 - a_t / a_s)
        return eta * variance**0.5

    def stochastic(self, eta: float) -> list[int]:
        """Indices of the steps with sigma > 0: the only ones with a log-probability."""
        return [i for i in range(len(self)) if float(self.sigma(i, eta)) > 0]

    def trained_steps(self, eta: float, min_sigma: float) -> list[int]:
        """The stochastic steps whose sigma is at least ``min_sigma`` (those DDPO trains)."""
        return [i for i in self.stochastic(eta) if float(self.sigma(i, eta)) >= min_sigma]

    def mean(self, i: int, model_output: torch.Tensor, x: torch.Tensor, eta: float) -> torch.Tensor:
        """Mean of p(x_s | x_t) at step i."""
        a_t, a_s = self.alpha[i], self.alpha_prev[i]
        beta_t = 1 - a_t
        if self.prediction_type == "epsilon":
            x0 = (x - beta_t**0.5 * model_output) / a_t**0.5
            eps = model_output
        elif self.prediction_type == "sample":
            x0 = model_output
            eps = (x - a_t**0.5 * x0) / beta_t**0.5
        else:  # v_prediction
            x0 = (a_t**0.5) * x - (beta_t**0.5) * model_output
            eps = (a_t**0.5) * model_output + (beta_t**0.5) * x
        if self.clip_range is not None:
            x0 = x0.clamp(-self.clip_range, self.clip_range)
        std = self.sigma(i, eta)
        return a_s**0.5 * x0 + (1 - a_s - std**2) ** 0.5 * eps

    def step(
        self, i: int, model_output: torch.Tensor, x: torch.Tensor, eta: float, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_s, mean) for step i; ``noise`` is z (required when sigma > 0)."""
        mean = self.mean(i, model_output, x, eta)
        std = self.sigma(i, eta)
        if float(std) == 0:
            return mean, mean
        if noise is None:
            raise ValueError(f"step {i} has sigma {float(std):.3g} > 0: pass its noise")
        return mean + std * noise, mean

    def log_prob(self, i: int, x_prev: torch.Tensor, mean: torch.Tensor, eta: float) -> torch.Tensor:
        """log p(x_prev | x_t) of step i, summed over all but the batch dimension (nats)."""
        std = float(self.sigma(i, eta))
        if std == 0:
            raise ValueError(f"step {i} is deterministic (sigma 0): it has no log-probability")
        lp = -((x_prev.detach() - mean) ** 2) / (2 * std**2) - math.log(std) - 0.5 * math.log(2 * math.pi)
        return lp.flatten(1).sum(1)

    def kl(self, i: int, mean: torch.Tensor, ref_mean: torch.Tensor, eta: float) -> torch.Tensor:
        """KL(N(mean, sigma^2) || N(ref_mean, sigma^2)) of step i, summed over dimensions (nats)."""
        std = float(self.sigma(i, eta))
        if std == 0:
            raise ValueError(f"step {i} is deterministic (sigma 0): it has no KL")
        return ((mean - ref_mean) ** 2).flatten(1).sum(1) / (2 * std**2)


@dataclass
class Trajectory:
    latents: torch.Tensor  # (T + 1, n, *shape): x_T ... x_0
    log_probs: torch.Tensor  # (T, n): log-probability of each step (NaN for deterministic steps)
    means: torch.Tensor  # (T, n, *shape): the sampling policy's step means
    eta: float
    kl: torch.Tensor | None = None  # (n,): KL of the sampled path to a reference model (kl_steps), nats

    @property
    def x0(self) -> torch.Tensor:
        return self.latents[-1]


def sample(
    eps_fn: EpsFn,
    chain: Chain,
    x: torch.Tensor,
    eta: float,
    generator: torch.Generator,
    record: bool = True,
    rows: tuple[int, slice] | None = None,
    ref_fn: EpsFn | None = None,
    kl_steps: Sequence[int] = (),
) -> Trajectory:
    """Run the chain from x_T = ``x``. With eta > 0 one N(0, I) draw per step comes from
    ``generator`` (on the CPU, so a seed gives the same images on every device); with eta = 0
    nothing is drawn. ``record=False`` keeps only x_0 (cheaper for plain sampling).
    ``rows=(total, slice)``: ``x`` holds those rows of a batch of ``total`` (one process's shard);
    each step's noise is drawn for the whole batch and sliced, so a row's noise does not depend on
    how the batch was split across processes.

    ``ref_fn`` and ``kl_steps`` (stochastic steps): the path KL to the reference model ``ref_fn``,
    sum over those steps of ||mean - mean_ref||^2 / (2 sigma^2) at the sampled x_t, per sample
    (``Trajectory.kl``; its mean over samples estimates the KL of the two chains' paths)."""
    lats, lps, means = [x], [], []
    kl = torch.zeros(x.shape[0], device=x.device) if ref_fn is not None else None
    kl_steps = set(kl_steps)
    total, sl = rows if rows is not None else (x.shape[0], slice(None))
    for i, t in enumerate(chain.timesteps):
        out = eps_fn(x, t.to(x.device))
        noise = torch.randn((total, *x.shape[1:]), generator=generator)[sl].to(x.device, x.dtype) if eta > 0 else None
        x_prev, mean = chain.step(i, out, x, eta, noise)
        if kl is not None and i in kl_steps:
            kl += chain.kl(i, mean.float(), chain.mean(i, ref_fn(x, t.to(x.device)), x, eta).float(), eta)
        if record:
            stochastic = float(chain.sigma(i, eta)) > 0
            lps.append(
                chain.log_prob(i, x_prev, mean, eta)
                if stochastic
                else torch.full((x.shape[0],), float("nan"), device=x.device)
            )
            lats.append(x_prev)
            means.append(mean)
        x = x_prev
    if not record:
        return Trajectory(x[None], torch.empty(0), torch.empty(0), eta, kl)
    return Trajectory(torch.stack(lats), torch.stack(lps), torch.stack(means), eta, kl)


def concat(trajectories: list[Trajectory]) -> Trajectory:
    """Trajectories of consecutive sample rows as one (along the sample axis)."""
    if len(trajectories) == 1:
        return trajectories[0]

    def cat(name: str) -> torch.Tensor:  # the sample axis: 1 ((steps, n, ...)); an empty record: 0
        parts = [getattr(t, name) for t in trajectories]
        return torch.cat(parts, dim=1 if parts[0].dim() > 1 else 0)

    kl = torch.cat([t.kl for t in trajectories]) if trajectories[0].kl is not None else None
    return Trajectory(cat("latents"), cat("log_probs"), cat("means"), trajectories[0].eta, kl)


def add_noise(x0: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps, the forward process at cumulative alpha ``alpha``
    (broadcast over x0; equal to diffusers' ``DDPMScheduler.add_noise`` bit for bit)."""
    return alpha.sqrt() * x0 + (1 - alpha).sqrt() * eps


def training_target(prediction_type: str, x0: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """What the network predicts for x_t = sqrt(a) x0 + sqrt(1 - a) eps: eps, v = sqrt(a) eps -
    sqrt(1 - a) x0, or x0, by the scheduler's ``prediction_type``."""
    if prediction_type == "epsilon":
        return eps
    if prediction_type == "v_prediction":
        return alpha.sqrt() * eps - (1 - alpha).sqrt() * x0
    if prediction_type == "sample":
        return x0
    raise ValueError(f"unknown prediction_type {prediction_type!r}")
