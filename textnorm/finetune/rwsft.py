"""Reward-weighted SFT (the recipe the TextNorm authors took from Lee et al., 2023): a pool of
samples per training prompt, each prompt's top fraction kept with min-max weights, and the
weighted denoising loss plus the pre-training loss (the loop's docstring states both)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from textnorm import ddim
from textnorm.finetune.adapters import Cond
from textnorm.finetune.distributed import gather
from textnorm.finetune.sampling import decode, rows_of, sample, score
from textnorm.finetune.seeding import SALT_POOL, SALT_TRAIN, make_generator
from textnorm.rewards.scoring import repeat_prompts

if TYPE_CHECKING:
    from textnorm.finetune.loop import Finetuner


def build_pool(tuner: Finetuner) -> dict:
    """``pool_size`` samples per training prompt from the current model; keep each prompt's top
    ``top_fraction`` with min-max weights over the prompt's whole pool."""
    cfg = tuner.cfg
    prompts = tuner.task.train_prompts
    flat = repeat_prompts(prompts, cfg.pool_size)
    rows = rows_of(tuner, len(flat))
    traj, _ = sample(
        tuner, flat[rows[1]], make_generator(cfg.seed, tuner.step, SALT_POOL), eta=cfg.pool_eta, rows=rows, record=False
    )
    rewards, row = score(tuner, decode(tuner, traj.x0), flat[rows[1]])
    x0 = gather(tuner.accelerator, traj.x0.float().cpu())  # the whole pool, on every process
    k = max(1, int(round(cfg.top_fraction * cfg.pool_size)))
    keep, weights, dropped = [], [], 0
    for j in range(len(prompts)):
        r = rewards[j * cfg.pool_size : (j + 1) * cfg.pool_size]
        if r.max() == r.min():
            dropped += 1  # all ties: no sample is better than another
            continue
        top = np.argsort(-r, kind="stable")[:k]
        keep += (j * cfg.pool_size + top).tolist()
        weights += ((r[top] - r.min()) / (r.max() - r.min())).tolist()
    if not keep:
        raise ValueError("every prompt's pool has tied rewards: reward-weighted SFT has nothing to learn from")
    tuner.pool = {
        "x0": x0[keep],
        "prompt": [flat[i] for i in keep],
        "weight": torch.tensor(weights, dtype=torch.float32),
    }
    return {**{f"pool_{k}": v for k, v in row.items()}, "pool_kept": len(keep), "pool_dropped_prompts": dropped}


def rwsft_update(tuner: Finetuner) -> dict:
    """One reward-weighted SFT update (``grad_accum`` minibatches) on the kept pool, drawing the pool
    first when there is none or ``pool_every`` says so."""
    cfg, ad = tuner.cfg, tuner.adapter
    row = {}
    if tuner.pool is None or (cfg.pool_every and tuner.step % cfg.pool_every == 0):
        row.update(build_pool(tuner))
    pool = tuner.pool
    g = make_generator(cfg.seed, tuner.step, SALT_TRAIN)
    losses = []
    pretrain = tuner.task.pretrain_data if cfg.pretrain_weight > 0 else None
    rows = rows_of(tuner, cfg.batch_size)  # this process's share of every minibatch
    for micro in range(cfg.grad_accum):
        idx = torch.randint(0, len(pool["prompt"]), (cfg.batch_size,), generator=g)[rows[1]]
        cond = ad.encode([pool["prompt"][i] for i in idx.tolist()])
        w = pool["weight"][idx].to(ad.device)
        with tuner.accelerator.accumulate(tuner.unet):
            per, pred, xt, t = denoising_loss(tuner, pool["x0"][idx].to(ad.device), cond, g, rows)
            loss = (w * per).mean()
            if pretrain is not None:
                # the authors' regulariser: the denoising loss on pre-training data
                images, prompts = pretrain(cfg.batch_size, (cfg.seed * 1_000_003 + tuner.step) * cfg.grad_accum + micro)
                images, prompts = images[rows[1]], prompts[rows[1]]
                pre, _, _, _ = denoising_loss(tuner, ad.encode_images(images), ad.encode(prompts), g, rows)
                loss = loss + cfg.pretrain_weight * pre.mean()
            elif cfg.pretrain_weight > 0:
                # no pre-training data (e.g. Stable Diffusion): stay near the base model's prediction
                with torch.no_grad(), tuner.accelerator.autocast():
                    ref = ad.eps(tuner.ref_unet, xt, t, cond).float()
                loss = loss + cfg.pretrain_weight * ((pred - ref) ** 2).flatten(1).mean(1).mean()
            tuner.accelerator.backward(loss)
            tuner.optimizer_step()
        losses.append(float(loss.detach()))
    # the mean over processes (equal shares of every minibatch): the global minibatch's loss
    row["loss"] = float(np.mean(gather(tuner.accelerator, np.array([np.mean(losses)]))))
    return row


def denoising_loss(
    tuner: Finetuner, x0: torch.Tensor, cond: Cond, g: torch.Generator, rows: tuple[int, slice] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample || f_theta(x_t, t, y) - target ||^2 at uniform random t >= sft_min_t.
    ``rows=(total, slice)``: x0 holds those rows of a minibatch of ``total``; t and the noise
    are drawn for the whole minibatch and sliced (the same draws under any number of processes)."""
    cfg, ad = tuner.cfg, tuner.adapter
    total, sl = rows if rows is not None else (x0.shape[0], slice(None))
    ac = ad.scheduler.alphas_cumprod.to(torch.float32)
    if cfg.sft_min_t >= ac.shape[0]:
        raise ValueError(f"sft_min_t={cfg.sft_min_t} leaves no timestep below {ac.shape[0]}")
    t = torch.randint(cfg.sft_min_t, ac.shape[0], (total,), generator=g)[sl]
    eps = torch.randn((total, *x0.shape[1:]), generator=g)[sl].to(ad.device)
    a = ac[t].view(-1, *[1] * (x0.dim() - 1)).to(ad.device)
    xt = ddim.add_noise(x0, eps, a)
    target = ddim.training_target(ad.scheduler.config.prediction_type, x0, eps, a)
    t = t.to(ad.device)
    with tuner.accelerator.autocast():
        pred = ad.eps(tuner.unet, xt, t, cond).float()
    return ((pred - target) ** 2).flatten(1).mean(1), pred, xt, t
