"""Sampling for a run: the current policy's DDIM chain on this process's share of a global batch
(noise drawn for the whole batch and sliced), evaluations with fixed noise, and the scoring of a
batch (rewards, gold, image statistics) gathered over processes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from textnorm import ddim
from textnorm.finetune.adapters import Cond
from textnorm.finetune.distributed import gather, shard
from textnorm.finetune.imagestats import image_stat_arrays
from textnorm.finetune.seeding import SALT_EVAL, SALT_HELDOUT, make_generator
from textnorm.rewards.scoring import repeat_prompts

if TYPE_CHECKING:
    from textnorm.finetune.loop import Finetuner


def eps_fn(tuner: Finetuner, unet: torch.nn.Module, cond: Cond) -> ddim.EpsFn:
    return lambda x, t: tuner.adapter.eps(unet, x, t, cond)


@torch.no_grad()
def sample(
    tuner: Finetuner,
    prompts: list[str],
    generator: torch.Generator,
    eta: float | None = None,
    unet=None,
    rows: tuple[int, slice] | None = None,
    record: bool = True,
) -> tuple[ddim.Trajectory, object]:
    """Trajectories of the given prompts under the current policy (or ``unet``), with the
    training autocast policy (``record=False``: x_0 only, for evaluation and pools). ``rows=(total, slice)``: the prompts are those rows of a batch of
    ``total`` (this process's shard); the noise is the whole batch's, sliced."""
    ad = tuner.adapter
    total, sl = rows if rows is not None else (len(prompts), slice(None))
    cond = ad.encode(prompts)
    x = torch.randn((total, *ad.latent_shape), generator=generator)[sl].to(ad.device)
    was_training = tuner.unet.training
    tuner.unet.eval()
    with tuner.accelerator.autocast():
        traj = ddim.sample(
            eps_fn(tuner, unet or tuner.policy, cond),
            tuner.chain,
            x,
            tuner.cfg.eta if eta is None else eta,
            generator,
            rows=rows,
            record=record,
        )
    tuner.unet.train(was_training)
    return traj, cond


def rows_of(tuner: Finetuner, n: int) -> tuple[int, slice]:
    """This process's rows of a global batch of n (all of them in a single process)."""
    return n, shard(n, tuner.processes, tuner.rank)


@torch.no_grad()
def evaluate(tuner: Finetuner, eta: float | None = None) -> dict:
    """Reward and gold of ``eval_samples`` images for each training prompt (``eval_*``) and each
    held-out prompt (``heldout_*``), drawn with the same noise at every evaluation (paired).
    eta: the training policy's by default; 0 for deterministic sampling."""
    out = {}
    for key, prompts, salt in (
        ("eval", tuner.task.train_prompts, SALT_EVAL),
        ("heldout", tuner.task.eval_prompts, SALT_HELDOUT),
    ):
        if not prompts:
            continue
        flat = repeat_prompts(prompts, tuner.cfg.eval_samples)
        rows = rows_of(tuner, len(flat))
        local = flat[rows[1]]
        traj, _ = sample(tuner, local, make_generator(tuner.cfg.seed, 0, salt), eta=eta, rows=rows, record=False)
        images = tuner.adapter.decode(traj.x0)
        values = {"reward": np.asarray(tuner.reward_fn(images, local), dtype=float)}
        if tuner.task.gold is not None:
            values["gold"] = np.asarray(tuner.task.gold(images, local), dtype=float)
        out.update({f"{key}_{k}": float(np.mean(v)) for k, v in gather(tuner.accelerator, values).items()})
    return out


def score(tuner: Finetuner, images: np.ndarray, local: list[str]) -> tuple[np.ndarray, dict]:
    """Rewards of this process's images, gathered over processes (the global batch, in order),
    and the logged means."""
    per_image = {"reward": np.asarray(tuner.reward_fn(images, local), dtype=float), **image_stat_arrays(images)}
    if tuner.task.gold is not None:
        per_image["gold"] = np.asarray(tuner.task.gold(images, local), dtype=float)
    # gathered before any check, so every process sees the same values and stops together
    per_image = gather(tuner.accelerator, per_image)
    if not np.all(np.isfinite(per_image["reward"])):
        raise FloatingPointError(f"step {tuner.step}: the reward returned non-finite values")
    row = {k: float(per_image[k].mean()) for k in ("reward", "gold") if k in per_image}
    row.update({k: float(v.mean()) for k, v in per_image.items() if k not in row})
    row["samples"] = len(per_image["reward"])
    return per_image["reward"], row


def draw_prompts(tuner: Finetuner) -> list[str]:
    prompts = tuner.task.train_prompts
    if tuner.cfg.n_prompts == len(prompts):
        return list(prompts)
    rng = np.random.default_rng(tuner.cfg.seed * 1_000_003 + tuner.step)
    return rng.choice(prompts, tuner.cfg.n_prompts, replace=len(prompts) < tuner.cfg.n_prompts).tolist()
