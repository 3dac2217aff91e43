"""DDPO's arithmetic as pure functions (Black et al., 2023), apart from models and processes.

Advantages, per prompt y over the round's samples of y, clipped:

    A_i = clip((r_i - mean_y) / (std_y + 1e-6), -c_A, c_A)     (std: population, ddof 0)

The clipped surrogate of one denoising step k over a minibatch, with the per-dimension ratio (log
probabilities are summed over the D dimensions of x, so the ratio is taken per dimension and the
clip range c does not depend on the resolution):

    rho_i = exp((log p_theta(x_k-1 | x_k) - log p_old(x_k-1 | x_k)) / D)
    L = mean_i max(-A_i rho_i, -A_i clip(rho_i, 1 - c, 1 + c))

Logged beside it: approx_kl = mean(0.5 (log rho)^2) and clipfrac = share of |rho - 1| > c.

Per-prompt statistics tracking (ddpo-pytorch's, the paper's choice with a buffer of 32): each
prompt's mean and sd are those of its last ``buffer`` rewards, this round's included; a prompt
whose buffer holds fewer than ``min_count`` rewards uses the round's mean and sd over all prompts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np
import torch

from textnorm.rewards.scoring import group_by_prompt


def per_prompt_advantages(rewards: np.ndarray, prompts: Sequence[str], clip: float) -> np.ndarray:
    """A_i above, for rewards (n,) of samples whose prompts are ``prompts`` (n,)."""
    rewards = np.asarray(rewards, dtype=float)
    if len(rewards) != len(prompts):
        raise ValueError(f"{len(rewards)} rewards for {len(prompts)} prompts")
    adv = np.zeros_like(rewards)
    for idx in group_by_prompt(list(prompts)).values():
        r = rewards[idx]
        adv[idx] = (r - r.mean()) / (r.std() + 1e-6)
    return np.clip(adv, -clip, clip)


def ppo_loss(
    log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, clip_range: float, dims: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The clipped surrogate L above, with the per-dimension log-ratio and ratio it used
    (for approx_kl and clipfrac)."""
    log_ratio = (log_prob - old_log_prob) / dims
    ratio = torch.exp(log_ratio)
    pg = torch.maximum(-advantages * ratio, -advantages * ratio.clamp(1 - clip_range, 1 + clip_range))
    return pg.mean(), log_ratio, ratio


def approx_kl(log_ratio: torch.Tensor) -> float:
    return float(0.5 * (log_ratio.detach() ** 2).mean())


def clipfrac(ratio: torch.Tensor, clip_range: float) -> float:
    return float(((ratio.detach() - 1).abs() > clip_range).float().mean())


class PerPromptStats:
    """The per-prompt buffers of statistics tracking (see the module docstring); plain-data state
    for checkpoints, so a resumed run normalises as the uninterrupted one."""

    def __init__(self, buffer: int, min_count: int = 16) -> None:
        if buffer < 1 or min_count < 0:
            raise ValueError(f"per-prompt statistics need buffer >= 1 and min_count >= 0, got {buffer}, {min_count}")
        self.buffer, self.min_count = buffer, min_count
        self.buffers: dict[str, deque] = {}

    def advantages(self, rewards: np.ndarray, prompts: Sequence[str], clip: float) -> np.ndarray:
        rewards = np.asarray(rewards, dtype=float)
        if len(rewards) != len(prompts):
            raise ValueError(f"{len(rewards)} rewards for {len(prompts)} prompts")
        adv = np.zeros_like(rewards)
        for prompt, idx in group_by_prompt(list(prompts)).items():
            buf = self.buffers.setdefault(prompt, deque(maxlen=self.buffer))
            buf.extend(rewards[idx].tolist())
            ref = np.asarray(buf) if len(buf) >= self.min_count else rewards
            adv[idx] = (rewards[idx] - ref.mean()) / (ref.std() + 1e-6)
        return np.clip(adv, -clip, clip)

    def state(self) -> dict[str, list[float]]:
        return {p: list(b) for p, b in self.buffers.items()}

    def load(self, state: dict[str, list[float]]) -> None:
        self.buffers = {p: deque(map(float, v), maxlen=self.buffer) for p, v in state.items()}
