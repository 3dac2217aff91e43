"""Best-of-n from the base model: no training, the reward picks one of n samples per prompt."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from textnorm import ddim
from textnorm.finetune.adapters import make_adapter
from textnorm.finetune.rewards import RewardFn
from textnorm.finetune.seeding import make_generator
from textnorm.finetune.task import Judge
from textnorm.rewards.scoring import repeat_prompts


def best_of_n(
    pipe: Any,
    reward_fn: RewardFn,
    prompts: list[str],
    n: int,
    seed: int = 0,
    sample_steps: int = 20,
    gold: Judge | None = None,
    keep_pool: bool = False,
) -> dict[str, np.ndarray]:
    """Per prompt, the sample with the highest reward among n from the base model (deterministic
    DDIM). Returns arrays over prompts: reward, gold (if a judge is given), the chosen images, the
    whole pool's rewards (prompts x n) and, with ``keep_pool``, its images (prompts x n x H x W x 3)."""
    if n < 1:
        raise ValueError("best-of-n needs n >= 1")
    ad = make_adapter(pipe)
    flat = repeat_prompts(prompts, n)
    chain = ad.chain(sample_steps)
    g = make_generator(seed, 0)
    cond = ad.encode(flat)
    x = torch.randn((len(flat), *ad.latent_shape), generator=g).to(ad.device)
    with torch.no_grad():
        traj = ddim.sample(lambda x_, t: ad.eps(ad.unet, x_, t, cond), chain, x, 0.0, g, record=False)
    images = ad.decode(traj.x0)
    r = np.asarray(reward_fn(images, flat), dtype=float).reshape(len(prompts), n)
    pick = r.argmax(1)
    chosen = images.reshape(len(prompts), n, *images.shape[1:])[np.arange(len(prompts)), pick]
    out = {"reward": r[np.arange(len(prompts)), pick], "images": chosen, "pool_reward": r}
    if keep_pool:
        out["pool_images"] = images.reshape(len(prompts), n, *images.shape[1:])
    if gold is not None:
        out["gold"] = np.asarray(gold(chosen, list(prompts)), dtype=float)
    return out
