"""Sampling for a run: the current policy's DDIM chain on this process's share of a global batch
(noise drawn for the whole batch and sliced), evaluations with fixed noise, and the scoring of a
batch (rewards, gold, image statistics) gathered over processes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from textnorm import ddim
from textnorm.finetune.adapters import Cond, Guided, index_cond
from textnorm.finetune.distributed import gather, shard
from textnorm.finetune.imagestats import image_stat_arrays
from textnorm.finetune.rewards import BatchReward
from textnorm.finetune.seeding import SALT_EVAL, SALT_HELDOUT, make_generator
from textnorm.rewards.scoring import repeat_prompts

if TYPE_CHECKING:
    from textnorm.finetune.loop import Finetuner


def eps_fn(tuner: Finetuner, unet: torch.nn.Module, cond: Cond) -> ddim.EpsFn:
    """The chain's model: ``unet`` at every step or, for the policy with ``untrained_steps='base'``,
    at the trained steps only and the frozen base model at the others."""
    if unet is tuner.policy and tuner.cfg.untrained_steps == "base":
        trained = {int(tuner.chain.timesteps[i]) for i in tuner.trained_steps}
        return lambda x, t: tuner.adapter.eps(unet if int(t) in trained else tuner.ref_unet, x, t, cond)
    return lambda x, t: tuner.adapter.eps(unet, x, t, cond)


def kl_steps(tuner: Finetuner, eta: float) -> list[int]:
    """The steps where the policy's chain can differ from the base model's: the trained steps when
    the others run on the base model, else every stochastic step (a deterministic step run by the
    policy has no KL: then the path KL does not bound the images' KL, see :func:`kl_is_bound`)."""
    return list(tuner.trained_steps) if tuner.cfg.untrained_steps == "base" else tuner.chain.stochastic(eta)


def kl_is_bound(tuner: Finetuner, eta: float) -> bool:
    """Whether the logged path KL bounds the KL of the final images (data processing): every step the
    policy runs is stochastic and counted."""
    return tuner.cfg.untrained_steps == "base" or len(tuner.chain.stochastic(eta)) == len(tuner.chain)


def encode(tuner: Finetuner, prompts: list[str]) -> Cond:
    """The prompts' conditioning; with ``guidance_scale`` != 1, :class:`~textnorm.finetune.adapters.Guided`
    (the negative prompt's encoding beside each prompt's)."""
    cond = tuner.adapter.encode(prompts)
    if tuner.cfg.guidance_scale == 1.0:
        return cond
    return Guided(cond, tuner.adapter.encode([tuner.cfg.negative_prompt] * len(prompts)), tuner.cfg.guidance_scale)


def chunks(n: int, size: int) -> list[slice]:
    """[0, n) in consecutive slices of at most ``size`` (0: one slice)."""
    size = size or n
    return [slice(a, min(a + size, n)) for a in range(0, n, max(size, 1))] or [slice(0, 0)]


@torch.no_grad()
def sample(
    tuner: Finetuner,
    prompts: list[str],
    generator: torch.Generator,
    eta: float | None = None,
    unet=None,
    rows: tuple[int, slice] | None = None,
    record: bool = True,
    with_kl: bool = False,
) -> tuple[ddim.Trajectory, object]:
    """Trajectories of the given prompts under the current policy (or ``unet``), with the
    training autocast policy (``record=False``: x_0 only, for evaluation and pools).
    ``rows=(total, slice)``: the prompts are those rows of a batch of ``total`` (this process's
    shard); the noise is the whole batch's, sliced. In micro-batches of ``sample_batch``: each
    replays the generator from the same state and keeps its own rows of every draw, so a sample's
    noise, and hence the samples, do not depend on the micro-batch size. ``with_kl``: each sample's
    path KL to the base model over :func:`kl_steps` (``Trajectory.kl``, nats)."""
    ad = tuner.adapter
    total, sl = rows if rows is not None else (len(prompts), slice(None))
    cond = encode(tuner, prompts)
    x = torch.randn((total, *ad.latent_shape), generator=generator)[sl].to(ad.device)
    was_training = tuner.unet.training
    tuner.unet.eval()
    eta = tuner.cfg.eta if eta is None else eta
    parts = chunks(len(prompts), tuner.cfg.sample_batch)
    start = generator.get_state()
    trajs = []
    with tuner.accelerator.autocast():
        for part in parts:
            if len(parts) == 1:  # the whole batch at once: no re-indexing
                sub_cond, sub_rows = cond, rows
            else:
                generator.set_state(start)
                first = sl.start or 0
                sub_cond = index_cond(cond, torch.arange(part.start, part.stop, device=ad.device))
                sub_rows = (total, slice(first + part.start, first + part.stop))
            trajs.append(
                ddim.sample(
                    eps_fn(tuner, unet or tuner.policy, sub_cond),
                    tuner.chain,
                    x[part] if len(parts) > 1 else x,
                    eta,
                    generator,
                    rows=sub_rows,
                    record=record,
                    ref_fn=eps_fn(tuner, tuner.ref_unet, sub_cond) if with_kl else None,
                    kl_steps=kl_steps(tuner, eta) if with_kl else (),
                )
            )
    tuner.unet.train(was_training)
    return ddim.concat(trajs), cond


def decode(tuner: Finetuner, x0: torch.Tensor) -> np.ndarray:
    """uint8 images of x_0, decoded in micro-batches of ``sample_batch``."""
    return np.concatenate([tuner.adapter.decode(x0[part]) for part in chunks(len(x0), tuner.cfg.sample_batch)])


def rows_of(tuner: Finetuner, n: int) -> tuple[int, slice]:
    """This process's rows of a global batch of n (all of them in a single process)."""
    return n, shard(n, tuner.processes, tuner.rank)


@torch.no_grad()
def evaluate(tuner: Finetuner, eta: float | None = None) -> dict:
    """Reward, gold and path KL to the base model (:func:`kl_steps`, nats) of ``eval_samples`` images
    for each training prompt (``eval_*``) and each held-out prompt (``heldout_*``), drawn with the same
    noise at every evaluation (paired): their means, and per prompt (``eval_prompt_*``: lists in the
    order of the task's prompts). eta: the training policy's by default; 0 for deterministic sampling."""
    out = {}
    eta_ = tuner.cfg.eta if eta is None else eta
    for key, prompts, salt, per_prompt in (
        ("eval", tuner.task.train_prompts, SALT_EVAL, tuner.cfg.eval_samples),
        ("heldout", tuner.task.eval_prompts, SALT_HELDOUT, tuner.cfg.heldout_samples or tuner.cfg.eval_samples),
    ):
        if not prompts:
            continue
        flat = repeat_prompts(prompts, per_prompt)
        rows = rows_of(tuner, len(flat))
        local = flat[rows[1]]
        with_kl = eta_ > 0
        traj, _ = sample(
            tuner, local, make_generator(tuner.cfg.seed, 0, salt), eta=eta, rows=rows, record=False, with_kl=with_kl
        )
        images = decode(tuner, traj.x0)
        if key == "eval" and getattr(tuner, "tracking", False):  # a few of them for the trackers (main process's)
            from textnorm.finetune.tracking import pick_images

            tuner.eval_images = pick_images(images, local, min(per_prompt, len(images)))
        values = reward_parts(tuner, images, local)
        if tuner.task.gold is not None:
            values["gold"] = np.asarray(tuner.task.gold(images, local), dtype=float)
        if with_kl:
            values["kl"] = traj.kl.double().cpu().numpy()
            out[f"{key}_kl_bound"] = kl_is_bound(tuner, eta_)  # whether it bounds the images' KL
        values = combine_rewards(tuner, gather(tuner.accelerator, values))
        out.update({f"{key}_{k}": float(np.mean(v)) for k, v in values.items()})
        by_prompt = np.arange(len(flat)) // per_prompt  # repeat_prompts: each prompt's rows together
        for k, v in values.items():
            out[f"{key}_prompt_{k}"] = [float(np.mean(v[by_prompt == j])) for j in range(len(prompts))]
        out[f"{key}_prompt_names"] = list(prompts)
    return out


def reward_parts(tuner: Finetuner, images: np.ndarray, local: list[str]) -> dict[str, np.ndarray]:
    """This process's rewards, or for a :class:`~textnorm.finetune.rewards.BatchReward` its per-image
    parts and prompts, to be combined over the gathered batch (:func:`combine_rewards`)."""
    if isinstance(tuner.reward_fn, BatchReward):
        return {"reward": np.asarray(tuner.reward_fn.parts(images, local)), "_prompt": np.array(local, dtype=object)}
    return {"reward": np.asarray(tuner.reward_fn(images, local), dtype=float)}


def combine_rewards(tuner: Finetuner, gathered: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if "_prompt" in gathered:
        prompts = gathered.pop("_prompt").tolist()
        gathered["reward"] = np.asarray(tuner.reward_fn.combine(gathered["reward"], prompts), dtype=float)
    return gathered


def score(tuner: Finetuner, images: np.ndarray, local: list[str]) -> tuple[np.ndarray, dict]:
    """Rewards of this process's images, gathered over processes (the global batch, in order),
    and the logged means."""
    per_image = {**reward_parts(tuner, images, local), **image_stat_arrays(images)}
    if tuner.task.gold is not None:
        per_image["gold"] = np.asarray(tuner.task.gold(images, local), dtype=float)
    # gathered before any check, so every process sees the same values and stops together
    per_image = combine_rewards(tuner, gather(tuner.accelerator, per_image))
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
