"""A DDPO round (Black et al., 2023) with DPOK's KL penalty (Fan et al., 2023): the trainer's
reinforcement-learning step. The arithmetic is :mod:`textnorm.finetune.ppo`; sampling and scoring
:mod:`textnorm.finetune.sampling`; minibatches :mod:`textnorm.finetune.distributed`."""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import TYPE_CHECKING

import numpy as np
import torch

from textnorm.finetune.adapters import index_cond
from textnorm.finetune.distributed import gather, local_rows, minibatches
from textnorm.finetune.ppo import approx_kl, clipfrac, per_prompt_advantages, ppo_loss
from textnorm.finetune.sampling import chunks, decode, draw_prompts, rows_of, sample, score
from textnorm.finetune.seeding import SALT_SAMPLE, SALT_TRAIN, make_generator
from textnorm.rewards.scoring import repeat_prompts

if TYPE_CHECKING:
    from textnorm.finetune.loop import Finetuner

KL_LOG_SAMPLES = 32  # DDPO without a KL penalty: samples per round whose KL to the reference is logged


def ddpo_round(tuner: Finetuner) -> dict:
    """One DDPO round: sample the round with the current policy, score it, per-prompt advantages,
    then ``inner_epochs`` passes of minibatch updates of the clipped surrogate (+ KL penalty) over
    the trained steps (:mod:`textnorm.finetune.ppo`; the loop's docstring states the loss)."""
    cfg, ad, chain = tuner.cfg, tuner.adapter, tuner.chain
    prompts = draw_prompts(tuner)
    flat = repeat_prompts(prompts, cfg.samples_per_prompt)
    n = len(flat)
    rows = rows_of(tuner, n)
    local = flat[rows[1]]
    traj, cond = sample(tuner, local, make_generator(cfg.seed, tuner.step, SALT_SAMPLE), rows=rows)
    rewards, row = score(tuner, decode(tuner, traj.x0), local)  # global, in the order of flat
    if tuner.processes > 1:  # a checksum of each process's samples (they differ: the shards do)
        row["shard_checksums"] = gather(tuner.accelerator, np.array([float(traj.x0.double().sum())])).tolist()
    if tuner.stats is not None:  # per-prompt statistics over each prompt's last stat_buffer rewards
        adv = tuner.stats.advantages(rewards, flat, cfg.adv_clip)
    else:
        adv = per_prompt_advantages(rewards, flat, cfg.adv_clip)
    adv_t = torch.tensor(adv[rows[1]], dtype=torch.float32, device=ad.device)
    steps = tuner.trained_steps
    # the reference model's step means on the sampled path, for the KL penalty (every sample) or
    # only for the logged KL (evenly spaced samples of the global batch, at most KL_LOG_SAMPLES:
    # an unbiased estimate of the round's mean that saves a fifth of the round's UNet passes)
    ref_global = (
        np.arange(n)
        if cfg.kl_weight or n <= KL_LOG_SAMPLES
        else np.round(np.linspace(0, n - 1, KL_LOG_SAMPLES)).astype(int)
    )
    ref_idx = torch.from_numpy(local_rows(ref_global, rows[1]))
    kl = np.zeros(0)
    ref_means = {}
    if len(ref_idx):
        parts = chunks(len(ref_idx), cfg.sample_batch)  # micro-batches of the reference model's passes
        conds = [index_cond(cond, ref_idx[p].to(ad.device)) for p in parts]
        with torch.no_grad(), tuner.accelerator.autocast():
            ref_means = {
                i: torch.cat(
                    [
                        chain.mean(
                            i,
                            ad.eps(tuner.ref_unet, traj.latents[i][ref_idx[p]], chain.timesteps[i].to(ad.device), c),
                            traj.latents[i][ref_idx[p]],
                            cfg.eta,
                        ).float()
                        for p, c in zip(parts, conds)
                    ]
                )
                for i in steps
            }
            kl = sum(chain.kl(i, traj.means[i][ref_idx].float(), ref_means[i], cfg.eta) for i in steps).cpu().numpy()
    row["kl"] = float(np.mean(gather(tuner.accelerator, kl)))
    D = traj.x0[0].numel()
    stats = {"loss": [], "approx_kl": [], "clipfrac": []}
    grad_norms = []
    g = make_generator(cfg.seed, tuner.step, SALT_TRAIN)
    for epoch in range(cfg.inner_epochs):
        # the same minibatches of the global batch for any number of processes (stratified:
        # see textnorm.finetune.distributed.minibatches); this process trains on its rows of each
        for k, rows_mb in enumerate(minibatches(n, cfg.batch_size, g)):
            mb = torch.from_numpy(local_rows(rows_mb, rows[1])).to(ad.device)
            # per-step gradient norms on the round's first minibatch (averaged over processes,
            # except inside a gradient-accumulation group, where they are the main process's)
            track = epoch == 0 and k == 0
            # timestep_fraction < 1: this minibatch trains a random subset of the trained steps (in
            # chain order), an unbiased estimate of the full sum at a fraction of the passes
            mb_steps = steps
            if cfg.timestep_fraction < 1:
                k_steps = max(1, math.ceil(cfg.timestep_fraction * len(steps)))
                pick = torch.randperm(len(steps), generator=g)[:k_steps].sort().values.tolist()
                mb_steps = [steps[p] for p in pick]
            with tuner.accelerator.accumulate(tuner.unet):
                sub = index_cond(cond, mb)
                prev = None
                for j, i in enumerate(mb_steps):
                    # several processes: gradients are averaged once per update, after the last
                    # trained step (DDP decides at the forward pass, so the no_sync context holds
                    # the forward and the backward); on the tracked minibatch after every step
                    sync = j == len(mb_steps) - 1 or track
                    with nullcontext() if sync else tuner.accelerator.no_sync(tuner.unet):
                        t = chain.timesteps[i].to(ad.device)
                        with tuner.accelerator.autocast():
                            mean = chain.mean(
                                i, ad.eps(tuner.unet, traj.latents[i][mb], t, sub), traj.latents[i][mb], cfg.eta
                            ).float()
                        lp = chain.log_prob(i, traj.latents[i + 1][mb].float(), mean, cfg.eta)
                        loss, log_ratio, ratio = ppo_loss(
                            lp, traj.log_probs[i][mb].float(), adv_t[mb], cfg.clip_range, D
                        )
                        if cfg.kl_weight:
                            # with a KL penalty ref_means hold every local sample, in local order
                            loss = loss + cfg.kl_weight * (chain.kl(i, mean, ref_means[i][mb], cfg.eta) / D).mean()
                        loss = loss / len(mb_steps)
                        tuner.accelerator.backward(loss)
                    stats["loss"].append(float(loss.detach()) * len(mb_steps))
                    stats["approx_kl"].append(approx_kl(log_ratio))
                    stats["clipfrac"].append(clipfrac(ratio, cfg.clip_range))
                    if track:
                        grads = torch.cat([p.grad.detach().flatten() for p in tuner.params if p.grad is not None])
                        grad_norms.append(float((grads - prev).norm()) if prev is not None else float(grads.norm()))
                        prev = grads
                tuner.optimizer_step()
    # means over processes (equal shares of every minibatch)
    row.update({k: float(np.mean(gather(tuner.accelerator, np.array([np.mean(v)])))) for k, v in stats.items()})
    row["grad_norms"] = grad_norms  # per step trained on the first minibatch (in chain order)
    return row
