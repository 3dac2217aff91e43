"""Best-of-n from the base model: no training, the reward picks one of n samples per prompt.

The pool is drawn with the DDIM chain of :mod:`textnorm.ddim` at any eta (0: the pipeline's
deterministic sampler; the training policy's eta to compare with DDPO on the same sampler), with
classifier-free guidance as in fine-tuning, in micro-batches of ``sample_batch`` samples whose
noise is the whole pool's (so the pool does not depend on the micro-batch size)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from textnorm import ddim
from textnorm.finetune.adapters import Guided, index_cond, make_adapter
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
    eta: float = 0.0,
    guidance_scale: float = 1.0,
    negative_prompt: str = "",
    sample_batch: int = 0,
) -> dict[str, np.ndarray]:
    """Per prompt, the sample with the highest reward among n from the base model. Returns arrays
    over prompts: reward, gold (if a judge is given), the chosen images, the whole pool's rewards
    (prompts x n) and, with ``keep_pool``, its images (prompts x n x H x W x 3)."""
    if n < 1:
        raise ValueError("best-of-n needs n >= 1")
    if eta < 0 or guidance_scale < 1 or sample_batch < 0:
        raise ValueError(
            f"best-of-n: need eta >= 0, guidance_scale >= 1, sample_batch >= 0; got {eta}, "
            f"{guidance_scale}, {sample_batch}"
        )
    ad = make_adapter(pipe)
    flat = repeat_prompts(prompts, n)
    chain = ad.chain(sample_steps)
    g = make_generator(seed, 0)
    cond = ad.encode(flat)
    if guidance_scale != 1.0:
        cond = Guided(cond, ad.encode([negative_prompt] * len(flat)), guidance_scale)
    total = len(flat)
    x = torch.randn((total, *ad.latent_shape), generator=g).to(ad.device)
    start = g.get_state()
    size = sample_batch or total
    images = []
    with torch.no_grad():
        for a in range(0, total, size):
            part = slice(a, min(a + size, total))
            g.set_state(start)  # every micro-batch replays the pool's draws and keeps its rows
            sub = index_cond(cond, torch.arange(part.start, part.stop, device=ad.device)) if size < total else cond
            traj = ddim.sample(
                lambda x_, t, c=sub: ad.eps(ad.unet, x_, t, c), chain, x[part], eta, g, record=False, rows=(total, part)
            )
            images.append(ad.decode(traj.x0))
    images = np.concatenate(images)
    r = np.asarray(reward_fn(images, flat), dtype=float).reshape(len(prompts), n)
    pick = r.argmax(1)
    chosen = images.reshape(len(prompts), n, *images.shape[1:])[np.arange(len(prompts)), pick]
    out = {"reward": r[np.arange(len(prompts)), pick], "images": chosen, "pool_reward": r}
    if keep_pool:
        out["pool_images"] = images.reshape(len(prompts), n, *images.shape[1:])
    if gold is not None:
        out["gold"] = np.asarray(gold(chosen, list(prompts)), dtype=float)
    return out
