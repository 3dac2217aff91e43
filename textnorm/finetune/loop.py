"""One fine-tuning loop for diffusers text-to-image pipelines and the synthetic generator.

The policy is the DDIM chain of :mod:`textnorm.ddim` (eta > 0) run by the UNet being trained
(all weights, or LoRA adapters through peft); the reference is the base model. Two methods:

``ddpo`` (Black et al., 2023; PPO on the denoising chain). Each step (a *round*) samples
``n_prompts`` x ``samples_per_prompt`` trajectories with the current policy, scores them, and forms
per-prompt advantages A = clip((r - mean_y) / (std_y + 1e-6), -adv_clip, adv_clip). Then
``inner_epochs`` passes over the samples in random minibatches of ``batch_size`` (stratified:
each window of n / batch_size consecutive samples gives one sample to every minibatch, so that
the minibatches do not depend on the number of processes); each minibatch is one optimiser
update of

    L = mean over trained steps k and samples of  max(-A rho_k, -A clip(rho_k, 1 - c, 1 + c))
        + kl_weight * KL_k / D,      rho_k = exp((log p_theta(x_k-1 | x_k) - log p_old(...)) / D)

with D the number of dimensions of x: log-probabilities are summed over dimensions (nats,
:mod:`textnorm.ddim`), and the ratio uses the per-dimension log-ratio, as DDPO does, so the clip
range c does not depend on the resolution. The first update of a round has rho = 1; later ones
move rho, and clipping binds (``clipfrac`` in the metrics). KL_k is the step's KL to the
reference model (DPOK's regulariser, Fan et al., 2023), also per dimension in the loss.

Trained steps: the stochastic steps whose sigma is at least ``min_train_sigma`` (default 0.05).
Measured with the logged per-step gradient norms on the synthetic generator (10 DDIM steps, eta
1): the step from t = 100 to 0, sigma 0.006, had a gradient norm 20-40 times that of any other
step (0.64-0.98 against 0.01-0.04), so after gradient clipping every update was about the last
pixels' detail, while counts and layout are decided at high noise. The 0.05 threshold leaves out
such near-deterministic steps (there: that one; for Stable Diffusion's schedule at 20 steps, the
last two, sigma 0.04 and 0.02) and keeps all the others.

``rwsft`` (reward-weighted SFT, the recipe the TextNorm authors took from Lee et al., 2023):
a pool of ``pool_size`` samples per training prompt from the model, the top ``top_fraction`` of
each prompt's pool by reward kept with weights w = (r - min_y) / (max_y - min_y) (min and max over
the prompt's whole pool, so a kept sample is weighted by where it stands; a prompt whose pool is
all ties carries no signal and is dropped), then ``steps`` updates of

    L = mean_i w_i || f_theta(x_t, t, y) - target ||^2 + pretrain_weight * L_pre

on minibatches of kept samples at uniform random t (target eps, v or x_0 by the scheduler's
``prediction_type``). L_pre is the same denoising loss on the task's pre-training data (Lee et
al.'s regulariser; the synthetic world renders fresh scenes of its training captions) or, for a
task without such data, || f_theta - f_ref ||^2 on the same x_t. The pool is drawn once from the
base model (offline, the authors' recipe) or, with ``pool_every = k``, redrawn from the current model every k updates (iterated, online).

Every DDPO round is logged: proxy reward and gold alignment (when the task has a judge) of the
samples, the KL of the trained steps to the reference model (nats, per sample; without a KL penalty
estimated on 32 evenly spaced samples of the round), image statistics
that reveal reward hacking, ``approx_kl``, ``clipfrac`` and per-step gradient norms (of the
round's first minibatch, before unscaling: under fp16 they carry the loss scale). Every RWSFT
update logs its loss, and the updates that draw a pool log the pool's reward, gold and image
statistics. ``eval_every`` measures reward and gold on the task's training prompts (primary)
and held-out prompts with the same noise each time, so successive evaluations are paired. All
randomness comes from CPU generators seeded by (seed, step), and a checkpoint holds weights,
optimiser and (RWSFT) pool, so a resumed run continues exactly as an uninterrupted one.

Under ``accelerate launch`` the settings stay global (a round's samples, a minibatch) and every
process takes an equal share; rewards are gathered before advantages or selection, DDP averages
the gradients, and the main process alone writes files (:mod:`textnorm.finetune.distributed`).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext as _nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from textnorm import ddim
from textnorm.files import atomic_write
from textnorm.finetune.adapters import Cond, make_adapter
from textnorm.finetune.config import FinetuneConfig, validate
from textnorm.finetune.distributed import gather, local_rows, minibatches, resolve_device, shard
from textnorm.finetune.inputs import check_device, resolve_path, source_digest, weights_digest
from textnorm.finetune.rewards import make_reward, spec_sources
from textnorm.finetune.task import Judge, Task, make_task
from textnorm.rewards.scoring import group_by_prompt, repeat_prompts

# images (n, H, W, 3) uint8 and their prompts -> one reward per image
RewardFn = Callable[[np.ndarray, Sequence[str]], np.ndarray]


def load_pipeline(path: str, device: str = "cpu") -> Any:
    """The synthetic generator or any diffusers StableDiffusionPipeline-family model (a local
    folder, checked to exist and to hold ``model_index.json``, or a hub id)."""
    source = resolve_path(path, "model folder", marker="model_index.json")
    index = Path(source) / "model_index.json"
    if index.is_file():
        try:
            name = json.loads(index.read_text()).get("_class_name")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
            raise ValueError(f"{index} is not a diffusers model index (JSON object with _class_name)") from exc
        if name == "SynthPipeline":
            from textnorm.synth.generator import SynthPipeline

            return SynthPipeline.from_pretrained(source).to(device)
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(source, safety_checker=None).to(device)


def input_digests(pipe: Any, reward: str | None) -> dict:
    """What a run starts from: the sha256 of the pipeline's weights as loaded and of each file
    folder the reward spec loads (``reward`` None: a reward given as a function, not recorded)."""
    modules = [(k, v) for k, v in sorted(pipe.components.items()) if isinstance(v, torch.nn.Module)]
    out: dict = {"model": weights_digest(modules)}
    if reward is not None:
        out["reward"] = {src: source_digest(resolve_path(src, "reward model folder")) for src in spec_sources(reward)}
    return out


def image_stat_arrays(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per image: mean brightness, mean saturation (max - min channel) and the share of
    near-grey pixels (saturation < 0.15), all in [0, 1]."""
    x = images.astype(float) / 255
    sat = x.max(-1) - x.min(-1)
    return {
        "brightness": x.mean(axis=(1, 2, 3)),
        "saturation": sat.mean(axis=(1, 2)),
        "background_share": (sat < 0.15).mean(axis=(1, 2)),
    }


def image_stats(images: np.ndarray) -> dict[str, float]:
    return {k: float(v.mean()) for k, v in image_stat_arrays(images).items()}


def make_generator(seed: int, step: int, salt: int = 0) -> torch.Generator:
    """The CPU generator of one random draw: (seed, step, purpose) -> stream."""
    return torch.Generator("cpu").manual_seed(seed * 1_000_003 + step * 7919 + salt)


SALT_SAMPLE, SALT_TRAIN, SALT_EVAL, SALT_HELDOUT, SALT_POOL = 0, 1, 2, 3, 4
KL_LOG_SAMPLES = 32  # DDPO without a KL penalty: samples per round whose KL to the reference is logged


class Finetuner:
    def __init__(
        self, cfg: FinetuneConfig, pipe: Any = None, reward_fn: RewardFn | None = None, task: Task | None = None
    ) -> None:
        validate(cfg)
        check_device(cfg.device)
        self.cfg = cfg
        from accelerate import Accelerator

        # first the Accelerator: under `accelerate launch` it decides this process's device
        self.accelerator = Accelerator(
            mixed_precision=cfg.mixed_precision,
            gradient_accumulation_steps=cfg.grad_accum,
            cpu=cfg.device == "cpu",
            device_placement=False,
        )
        self.device = resolve_device(self.accelerator, cfg.device)
        self.processes, self.rank = self.accelerator.num_processes, self.accelerator.process_index
        _check_split(cfg, self.processes)
        torch.manual_seed(cfg.seed)
        self.pipe = pipe.to(self.device) if pipe is not None else load_pipeline(cfg.model, self.device)
        # before any cast or adapter: what a resume must find unchanged
        self.inputs = input_digests(self.pipe, cfg.reward if reward_fn is None else None)
        self.adapter = make_adapter(self.pipe, cfg.resolution)
        self.task = task or self._make_task()
        self.chain = self.adapter.chain(cfg.sample_steps)
        if self.processes > 1:
            batches = {
                "evaluation on the training prompts": len(self.task.train_prompts) * cfg.eval_samples,
                "evaluation on the held-out prompts": len(self.task.eval_prompts) * cfg.eval_samples or None,
                "the RWSFT pool": len(self.task.train_prompts) * cfg.pool_size if cfg.method == "rwsft" else None,
            }
            small = {k: v for k, v in batches.items() if v is not None and v < self.processes}
            if small:
                raise ValueError(
                    f"with {self.processes} processes every batch needs at least one sample per process: "
                    + ", ".join(f"{k} has {v}" for k, v in small.items())
                )
        # trained steps: by default those with sigma >= 0.05 (FinetuneConfig.min_train_sigma); see
        # the docstring for why the low-noise steps are left out
        self.trained_steps = self.chain.trained_steps(cfg.eta, cfg.min_train_sigma)
        if cfg.method == "ddpo" and not self.trained_steps:
            raise ValueError(f"no DDIM step has sigma >= min_train_sigma={cfg.min_train_sigma}")
        self.reward_fn = reward_fn or make_reward(
            cfg.reward,
            contrastive=self.task.contrastive,
            temperature=cfg.temperature,
            lam=cfg.lam,
            device=str(self.device),
            gold=self.task.gold,
        )
        unet = self.adapter.unet
        unet.requires_grad_(False)
        for module in (getattr(self.pipe, "text_encoder", None), getattr(self.pipe, "vae", None)):
            if module is not None:
                module.requires_grad_(False)
        half = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.mixed_precision)
        if half is not None:  # frozen weights in half precision; trainable ones stay in fp32 (below)
            for module in (getattr(self.pipe, "text_encoder", None), getattr(self.pipe, "vae", None)):
                if module is not None:
                    module.to(half)
        if cfg.lora_rank > 0:
            from peft import LoraConfig

            if half is not None:
                unet.to(half)
            unet.add_adapter(
                LoraConfig(
                    r=cfg.lora_rank,
                    lora_alpha=cfg.lora_rank,
                    init_lora_weights="gaussian",
                    target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                )
            )
            self.ref_unet = _AdaptersOff(unet)
        else:
            self.ref_unet = copy.deepcopy(unet).eval()
            if half is not None:
                self.ref_unet.to(half)
            unet.requires_grad_(True)
        self.params = [p for p in unet.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("no trainable parameters (LoRA found no attention projections?)")
        for p in self.params:
            p.data = p.data.float()
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=0.0)
        # several processes: self.unet is the DDP-wrapped model (gradients averaged over processes);
        # sampling and evaluation, which need no gradients, run the bare model (self.policy)
        self.unet, self.opt = self.accelerator.prepare(unet, self.opt)
        self.policy = self.accelerator.unwrap_model(self.unet)
        self.step = 0
        self.updates = 0  # optimiser updates so far (learning-rate warm-up)
        self.metrics: list[dict] = []
        self.final_eval: dict = {}
        self.pool: dict | None = None  # RWSFT: kept samples, their prompts and weights

    def _make_task(self) -> Task:
        from textnorm.synth.generator import SynthPipeline

        name = self.cfg.task
        if name == "auto":
            name = "synth" if isinstance(self.pipe, SynthPipeline) else "prompts"
        task = make_task(name, self.cfg.prompts, seed=0, res=self.adapter.resolution)
        if self.cfg.eval_prompts:
            task.eval_prompts = list(self.cfg.eval_prompts)
        return task

    # ------------------------------------------------------------------ sampling
    def _eps_fn(self, unet: torch.nn.Module, cond: Cond) -> ddim.EpsFn:
        return lambda x, t: self.adapter.eps(unet, x, t, cond)

    @torch.no_grad()
    def sample(
        self,
        prompts: list[str],
        generator: torch.Generator,
        eta: float | None = None,
        unet=None,
        rows: tuple[int, slice] | None = None,
    ) -> tuple[ddim.Trajectory, object]:
        """Trajectories of the given prompts under the current policy (or ``unet``), with the
        training autocast policy. ``rows=(total, slice)``: the prompts are those rows of a batch of
        ``total`` (this process's shard); the noise is the whole batch's, sliced."""
        ad = self.adapter
        total, sl = rows if rows is not None else (len(prompts), slice(None))
        cond = ad.encode(prompts)
        x = torch.randn((total, *ad.latent_shape), generator=generator)[sl].to(ad.device)
        was_training = self.unet.training
        self.unet.eval()
        with self.accelerator.autocast():
            traj = ddim.sample(
                self._eps_fn(unet or self.policy, cond),
                self.chain,
                x,
                self.cfg.eta if eta is None else eta,
                generator,
                rows=rows,
            )
        self.unet.train(was_training)
        return traj, cond

    def _rows(self, n: int) -> tuple[int, slice]:
        """This process's rows of a global batch of n (all of them in a single process)."""
        return n, shard(n, self.processes, self.rank)

    @torch.no_grad()
    def evaluate(self, eta: float | None = None) -> dict:
        """Reward and gold of ``eval_samples`` images for each training prompt (``eval_*``) and each
        held-out prompt (``heldout_*``), drawn with the same noise at every evaluation (paired).
        eta: the training policy's by default; 0 for deterministic sampling."""
        out = {}
        for key, prompts, salt in (
            ("eval", self.task.train_prompts, SALT_EVAL),
            ("heldout", self.task.eval_prompts, SALT_HELDOUT),
        ):
            if not prompts:
                continue
            flat = repeat_prompts(prompts, self.cfg.eval_samples)
            rows = self._rows(len(flat))
            local = flat[rows[1]]
            traj, _ = self.sample(local, make_generator(self.cfg.seed, 0, salt), eta=eta, rows=rows)
            images = self.adapter.decode(traj.x0)
            values = {"reward": np.asarray(self.reward_fn(images, local), dtype=float)}
            if self.task.gold is not None:
                values["gold"] = np.asarray(self.task.gold(images, local), dtype=float)
            out.update({f"{key}_{k}": float(np.mean(v)) for k, v in gather(self.accelerator, values).items()})
        return out

    # ------------------------------------------------------------------ one step
    def run_step(self) -> dict:
        t0 = time.time()
        row = {"step": self.step}
        if self.cfg.eval_every and self.step % self.cfg.eval_every == 0:
            row.update(self.evaluate())
        self.unet.train()
        row.update(self._ddpo_round() if self.cfg.method == "ddpo" else self._rwsft_update())
        for key in ("loss",):
            if key in row and not np.isfinite(row[key]):
                raise FloatingPointError(
                    f"{self.cfg.method} step {self.step}: the loss became {row[key]}; "
                    "lower the learning rate or check the reward"
                )
        with torch.no_grad():  # one reduction, one device sync per step
            if not bool(torch.stack([torch.isfinite(p).all() for p in self.params]).all()):
                raise FloatingPointError(
                    f"{self.cfg.method} step {self.step}: some weights became non-finite "
                    "(inf or NaN); lower the learning rate or check the reward"
                )
        row["seconds"] = round(time.time() - t0, 3)
        self.metrics.append(row)
        self.step += 1
        return row

    def _score(self, images: np.ndarray, local: list[str]) -> tuple[np.ndarray, dict]:
        """Rewards of this process's images, gathered over processes (the global batch, in order),
        and the logged means."""
        per_image = {"reward": np.asarray(self.reward_fn(images, local), dtype=float), **image_stat_arrays(images)}
        if self.task.gold is not None:
            per_image["gold"] = np.asarray(self.task.gold(images, local), dtype=float)
        # gathered before any check, so every process sees the same values and stops together
        per_image = gather(self.accelerator, per_image)
        if not np.all(np.isfinite(per_image["reward"])):
            raise FloatingPointError(f"step {self.step}: the reward returned non-finite values")
        row = {k: float(per_image[k].mean()) for k in ("reward", "gold") if k in per_image}
        row.update({k: float(v.mean()) for k, v in per_image.items() if k not in row})
        row["samples"] = len(per_image["reward"])
        return per_image["reward"], row

    def _draw_prompts(self) -> list[str]:
        prompts = self.task.train_prompts
        if self.cfg.n_prompts == len(prompts):
            return list(prompts)
        rng = np.random.default_rng(self.cfg.seed * 1_000_003 + self.step)
        return rng.choice(prompts, self.cfg.n_prompts, replace=len(prompts) < self.cfg.n_prompts).tolist()

    def _ddpo_round(self) -> dict:
        cfg, ad, chain = self.cfg, self.adapter, self.chain
        prompts = self._draw_prompts()
        flat = repeat_prompts(prompts, cfg.samples_per_prompt)
        n = len(flat)
        rows = self._rows(n)
        local = flat[rows[1]]
        traj, cond = self.sample(local, make_generator(cfg.seed, self.step, SALT_SAMPLE), rows=rows)
        rewards, row = self._score(ad.decode(traj.x0), local)  # global, in the order of flat
        if self.processes > 1:  # a checksum of each process's samples (they differ: the shards do)
            row["shard_checksums"] = gather(self.accelerator, np.array([float(traj.x0.double().sum())])).tolist()
        adv = np.zeros_like(rewards)
        for idx in group_by_prompt(flat).values():
            r = rewards[idx]
            adv[idx] = (r - r.mean()) / (r.std() + 1e-6)
        adv_t = torch.tensor(np.clip(adv[rows[1]], -cfg.adv_clip, cfg.adv_clip), dtype=torch.float32, device=ad.device)
        steps = self.trained_steps
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
            ref_cond = _index_cond(cond, ref_idx.to(ad.device))
            with torch.no_grad(), self.accelerator.autocast():
                ref_means = {
                    i: chain.mean(
                        i,
                        ad.eps(self.ref_unet, traj.latents[i][ref_idx], chain.timesteps[i].to(ad.device), ref_cond),
                        traj.latents[i][ref_idx],
                        cfg.eta,
                    ).float()
                    for i in steps
                }
                kl = (
                    sum(chain.kl(i, traj.means[i][ref_idx].float(), ref_means[i], cfg.eta) for i in steps).cpu().numpy()
                )
        row["kl"] = float(np.mean(gather(self.accelerator, kl)))
        D = traj.x0[0].numel()
        stats = {"loss": [], "approx_kl": [], "clipfrac": []}
        grad_norms = []
        g = make_generator(cfg.seed, self.step, SALT_TRAIN)
        for epoch in range(cfg.inner_epochs):
            # the same minibatches of the global batch for any number of processes (stratified:
            # see textnorm.finetune.distributed.minibatches); this process trains on its rows of each
            for k, rows_mb in enumerate(minibatches(n, cfg.batch_size, g)):
                mb = torch.from_numpy(local_rows(rows_mb, rows[1])).to(ad.device)
                # per-step gradient norms on the round's first minibatch (averaged over processes,
                # except inside a gradient-accumulation group, where they are the main process's)
                track = epoch == 0 and k == 0
                with self.accelerator.accumulate(self.unet):
                    sub = _index_cond(cond, mb)
                    prev = None
                    for j, i in enumerate(steps):
                        # several processes: gradients are averaged once per update, after the last
                        # trained step (DDP decides at the forward pass, so the no_sync context holds
                        # the forward and the backward); on the tracked minibatch after every step
                        sync = j == len(steps) - 1 or track
                        with _nullcontext() if sync else self.accelerator.no_sync(self.unet):
                            t = chain.timesteps[i].to(ad.device)
                            with self.accelerator.autocast():
                                mean = chain.mean(
                                    i, ad.eps(self.unet, traj.latents[i][mb], t, sub), traj.latents[i][mb], cfg.eta
                                ).float()
                            lp = chain.log_prob(i, traj.latents[i + 1][mb].float(), mean, cfg.eta)
                            log_ratio = (lp - traj.log_probs[i][mb].float()) / D
                            ratio = torch.exp(log_ratio)
                            a = adv_t[mb]
                            pg = torch.maximum(-a * ratio, -a * ratio.clamp(1 - cfg.clip_range, 1 + cfg.clip_range))
                            loss = pg.mean()
                            if cfg.kl_weight:
                                # with a KL penalty ref_means hold every local sample, in local order
                                loss = loss + cfg.kl_weight * (chain.kl(i, mean, ref_means[i][mb], cfg.eta) / D).mean()
                            loss = loss / len(steps)
                            self.accelerator.backward(loss)
                        stats["loss"].append(float(loss.detach()) * len(steps))
                        stats["approx_kl"].append(float(0.5 * (log_ratio.detach() ** 2).mean()))
                        stats["clipfrac"].append(float(((ratio.detach() - 1).abs() > cfg.clip_range).float().mean()))
                        if track:
                            grads = torch.cat([p.grad.detach().flatten() for p in self.params if p.grad is not None])
                            grad_norms.append(float((grads - prev).norm()) if prev is not None else float(grads.norm()))
                            prev = grads
                    self._sync_step()
        # means over processes (equal shares of every minibatch)
        row.update({k: float(np.mean(gather(self.accelerator, np.array([np.mean(v)])))) for k, v in stats.items()})
        row["grad_norms"] = grad_norms  # per trained step (listed in trained_steps order)
        return row

    def _sync_step(self) -> None:
        if self.accelerator.sync_gradients:
            self.accelerator.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
            lr = self.cfg.lr * min(1.0, (self.updates + 1) / (self.cfg.warmup + 1))
            for group in self.opt.param_groups:
                group["lr"] = lr
        self.opt.step()
        if self.accelerator.sync_gradients and not self.opt.step_was_skipped:
            self.updates += 1  # an fp16 step skipped for overflow does not advance the warm-up
        self.opt.zero_grad(set_to_none=True)

    # ------------------------------------------------------------------ RWSFT
    def build_pool(self) -> dict:
        """``pool_size`` samples per training prompt from the current model; keep each prompt's top
        ``top_fraction`` with min-max weights over the prompt's whole pool."""
        cfg = self.cfg
        prompts = self.task.train_prompts
        flat = repeat_prompts(prompts, cfg.pool_size)
        rows = self._rows(len(flat))
        traj, _ = self.sample(
            flat[rows[1]], make_generator(cfg.seed, self.step, SALT_POOL), eta=cfg.pool_eta, rows=rows
        )
        rewards, row = self._score(self.adapter.decode(traj.x0), flat[rows[1]])
        x0 = gather(self.accelerator, traj.x0.float().cpu())  # the whole pool, on every process
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
        self.pool = {
            "x0": x0[keep],
            "prompt": [flat[i] for i in keep],
            "weight": torch.tensor(weights, dtype=torch.float32),
        }
        return {**{f"pool_{k}": v for k, v in row.items()}, "pool_kept": len(keep), "pool_dropped_prompts": dropped}

    def _rwsft_update(self) -> dict:
        cfg, ad = self.cfg, self.adapter
        row = {}
        if self.pool is None or (cfg.pool_every and self.step % cfg.pool_every == 0):
            row.update(self.build_pool())
        pool = self.pool
        g = make_generator(cfg.seed, self.step, SALT_TRAIN)
        losses = []
        pretrain = self.task.pretrain_data if cfg.pretrain_weight > 0 else None
        rows = self._rows(cfg.batch_size)  # this process's share of every minibatch
        for micro in range(cfg.grad_accum):
            idx = torch.randint(0, len(pool["prompt"]), (cfg.batch_size,), generator=g)[rows[1]]
            cond = ad.encode([pool["prompt"][i] for i in idx.tolist()])
            w = pool["weight"][idx].to(ad.device)
            with self.accelerator.accumulate(self.unet):
                per, pred, xt, t = self._denoising_loss(pool["x0"][idx].to(ad.device), cond, g, rows)
                loss = (w * per).mean()
                if pretrain is not None:
                    # the authors' regulariser: the denoising loss on pre-training data
                    images, prompts = pretrain(
                        cfg.batch_size, (cfg.seed * 1_000_003 + self.step) * cfg.grad_accum + micro
                    )
                    images, prompts = images[rows[1]], prompts[rows[1]]
                    pre, _, _, _ = self._denoising_loss(ad.encode_images(images), ad.encode(prompts), g, rows)
                    loss = loss + cfg.pretrain_weight * pre.mean()
                elif cfg.pretrain_weight > 0:
                    # no pre-training data (e.g. Stable Diffusion): stay near the base model's prediction
                    with torch.no_grad(), self.accelerator.autocast():
                        ref = ad.eps(self.ref_unet, xt, t, cond).float()
                    loss = loss + cfg.pretrain_weight * ((pred - ref) ** 2).flatten(1).mean(1).mean()
                self.accelerator.backward(loss)
                self._sync_step()
            losses.append(float(loss.detach()))
        # the mean over processes (equal shares of every minibatch): the global minibatch's loss
        row["loss"] = float(np.mean(gather(self.accelerator, np.array([np.mean(losses)]))))
        return row

    def _denoising_loss(
        self, x0: torch.Tensor, cond: Cond, g: torch.Generator, rows: tuple[int, slice] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-sample || f_theta(x_t, t, y) - target ||^2 at uniform random t >= sft_min_t.
        ``rows=(total, slice)``: x0 holds those rows of a minibatch of ``total``; t and the noise
        are drawn for the whole minibatch and sliced (the same draws under any number of processes)."""
        cfg, ad = self.cfg, self.adapter
        total, sl = rows if rows is not None else (x0.shape[0], slice(None))
        ac = ad.scheduler.alphas_cumprod.to(torch.float32)
        if cfg.sft_min_t >= ac.shape[0]:
            raise ValueError(f"sft_min_t={cfg.sft_min_t} leaves no timestep below {ac.shape[0]}")
        t = torch.randint(cfg.sft_min_t, ac.shape[0], (total,), generator=g)[sl]
        eps = torch.randn((total, *x0.shape[1:]), generator=g)[sl].to(ad.device)
        a = ac[t].view(-1, *[1] * (x0.dim() - 1)).to(ad.device)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        target = ddim.training_target(ad.scheduler.config.prediction_type, x0, eps, a)
        t = t.to(ad.device)
        with self.accelerator.autocast():
            pred = ad.eps(self.unet, xt, t, cond).float()
        return ((pred - target) ** 2).flatten(1).mean(1), pred, xt, t

    # ------------------------------------------------------------------ run, checkpoints, export
    def train(self, out: str | Path | None = None, progress: bool = True) -> list[dict]:
        main = self.accelerator.is_main_process
        bar = tqdm(
            range(self.step, self.cfg.steps),
            disable=not (progress and main),
            desc=f"{self.cfg.method} ({self.cfg.reward})",
        )
        for _ in bar:
            row = self.run_step()
            bar.set_postfix({k: f"{row[k]:.3f}" for k in ("reward", "gold", "loss") if k in row})
            if out and self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0:
                self.save_checkpoint(out)
        # the model after the last update (kept apart from the per-step metrics)
        self.final_eval = {"step": self.step, **self.evaluate()} if self.cfg.eval_every else {}
        if out:
            self.save_checkpoint(out)  # checks that the replicas agree, then writes
        else:
            self.check_replicas()
        return self.metrics

    def check_replicas(self) -> list[str]:
        """The sha256 of every process's trainable weights (their bytes, in parameter order); they
        must be equal, since DDP keeps the replicas identical. Returns one digest per process."""
        import hashlib

        digest = hashlib.sha256()
        with torch.no_grad():
            for p in self.params:
                digest.update(p.detach().float().cpu().contiguous().numpy().tobytes())
        sums = gather(self.accelerator, np.array([digest.hexdigest()])).tolist()
        if len(set(sums)) > 1:
            raise RuntimeError(
                f"the processes' weights differ after step {self.step} (sha256 {sums}): the replicas diverged"
            )
        self.replica_checksums = sums
        return sums

    def save_checkpoint(self, out: str | Path) -> Path:
        """checkpoint.pt: trainable weights, optimiser, RWSFT pool and the run's state (step,
        config, metrics as a JSON string), loadable with ``weights_only=True``; state.json and
        metrics.json are readable copies of the state. Each file is written to a temporary file,
        fsynced and renamed into place, and checkpoint.pt alone is what a resume reads, so a crash
        at any moment leaves the last complete checkpoint to resume from. Under several processes
        the main process writes (the replicas are identical) while the others wait."""
        out = Path(out)
        self.check_replicas()  # every process, before the main one writes what they all hold
        if not self.accelerator.is_main_process:
            self.accelerator.wait_for_everyone()
            return out / "checkpoint.pt"
        out.mkdir(parents=True, exist_ok=True)
        trainable = {
            k: v.detach().cpu()
            for k, v in self.accelerator.unwrap_model(self.unet).named_parameters()
            if v.requires_grad
        }
        tensors = {"trainable": trainable, "optimizer": self.opt.state_dict()}
        if self.pool is not None:
            tensors["pool_x0"], tensors["pool_weight"] = self.pool["x0"], self.pool["weight"]
        if self.accelerator.scaler is not None:  # fp16: the loss scale decides skipped steps
            tensors["scaler"] = self.accelerator.scaler.state_dict()
        state = {
            "step": self.step,
            "updates": self.updates,
            "config": asdict(self.cfg),
            "metrics": self.metrics,
            "final_eval": self.final_eval,
            "pool_prompt": self.pool["prompt"] if self.pool else None,
            "processes": self.processes,
            "replica_checksums": getattr(self, "replica_checksums", None),
            "inputs": self.inputs,
        }
        tensors["state_json"] = json.dumps(state)  # one file, one rename: weights and state agree
        had = (out / "checkpoint.pt").is_file()
        writes = [
            ("checkpoint.pt", lambda f: torch.save(tensors, f)),
            ("state.json", lambda f: f.write(json.dumps(state).encode())),
            ("metrics.json", lambda f: f.write(json.dumps(self.metrics, indent=1).encode())),
        ]
        for name, write in writes:
            try:
                atomic_write(out / name, write)
            except (OSError, RuntimeError) as exc:  # torch.save reports a failed write as RuntimeError
                raise CheckpointWriteError(out, name, self.step, exc, had) from None
        self.accelerator.wait_for_everyone()
        return out / "checkpoint.pt"

    def load_checkpoint(self, out: str | Path) -> None:
        """Restore a run saved by :meth:`save_checkpoint`, after checking that it is whole and
        matches this run (settings other than ``steps``, parameter names and shapes); anything
        else is a ValueError that says what is wrong."""
        path = Path(out) / "checkpoint.pt"

        def bad(why: str) -> ValueError:
            return ValueError(f"cannot resume from {path}: {why}")

        try:
            # weights_only: a checkpoint is data, never code (a crafted pickle must not run)
            tensors = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise bad(
                f"not a complete checkpoint of this program (torch.load with weights_only=True failed: "
                f"{type(exc).__name__})"
            ) from exc
        if not isinstance(tensors, dict) or not isinstance(tensors.get("state_json"), str):
            raise bad("it holds no run state")
        try:
            state = json.loads(tensors["state_json"])
        except json.JSONDecodeError as exc:
            raise bad(f"its run state is not valid JSON ({exc})") from exc
        kinds = {"step": int, "updates": int, "config": dict, "metrics": list}
        if not isinstance(state, dict) or any(
            not isinstance(state.get(k), t) or isinstance(state.get(k), bool) for k, t in kinds.items()
        ):
            raise bad(f"its run state lacks or mistypes one of {list(kinds)}")
        if state["step"] < 0 or state["updates"] < 0:
            raise bad("its step counts are negative")
        saved_p = state.get("processes", 1)
        rounds_split = (
            self.cfg.method == "ddpo" and self.cfg.batch_size < self.cfg.n_prompts * self.cfg.samples_per_prompt
        )
        if saved_p != self.processes and rounds_split:
            # the minibatches are the same for any number of processes, but not the order in which
            # each update sums its samples: allowed for one minibatch per round, refused otherwise so
            # that a resumed run stays the run it continues
            raise bad(
                f"it ran on {saved_p} process(es), this run has {self.processes}; with several minibatches "
                "per round resume with the same number of processes"
            )
        saved = {k: v for k, v in state["config"].items() if k != "steps"}
        now = {k: v for k, v in asdict(self.cfg).items() if k != "steps"}
        diff = sorted(k for k in now if saved.get(k) != now[k])
        if diff:
            raise ValueError(
                "cannot resume: the run in "
                + str(out)
                + " was made with other settings ("
                + ", ".join(f"{k}: {saved.get(k)!r} there, {now[k]!r} now" for k in diff)
                + ")"
            )
        changed = changed_inputs(state.get("inputs"), self.inputs)
        if changed:
            raise ValueError(f"cannot resume the run in {out}: " + "; ".join(changed) + " since it started")
        for key in ("trainable", "optimizer"):
            if not isinstance(tensors.get(key), dict):
                raise bad(f"it has no {key!r} entry")
        named = {k: p for k, p in self.accelerator.unwrap_model(self.unet).named_parameters() if p.requires_grad}
        saved_w = tensors["trainable"]
        if set(saved_w) != set(named):
            missing, extra = sorted(set(named) - set(saved_w)), sorted(set(saved_w) - set(named))
            raise bad(f"its weights do not match this model (missing {missing[:3]}, unexpected {extra[:3]})")
        wrong = [k for k, v in saved_w.items() if not isinstance(v, torch.Tensor) or v.shape != named[k].shape]
        if wrong:
            k = wrong[0]
            raise bad(
                f"weight {k} has shape {tuple(getattr(saved_w[k], 'shape', ()))}, the model's is "
                f"{tuple(named[k].shape)} ({len(wrong)} such weights)"
            )
        pool = None
        if state.get("pool_prompt"):
            x0, w, prompts = tensors.get("pool_x0"), tensors.get("pool_weight"), state["pool_prompt"]
            if not (
                isinstance(x0, torch.Tensor)
                and isinstance(w, torch.Tensor)
                and isinstance(prompts, list)
                and len(x0) == len(w) == len(prompts)
            ):
                raise bad("its reward-weighted SFT pool is incomplete")
            pool = {"x0": x0, "weight": w, "prompt": prompts}
        try:
            self.opt.load_state_dict(tensors["optimizer"])
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise bad(f"its optimiser state does not fit this model ({type(exc).__name__}: {exc})") from exc
        with torch.no_grad():
            for k, v in saved_w.items():
                named[k].copy_(v)
        if self.accelerator.scaler is not None and "scaler" in tensors:
            self.accelerator.scaler.load_state_dict(tensors["scaler"])
        self.step, self.updates = state["step"], state["updates"]
        self.metrics = state["metrics"]
        self.pool = pool

    def export(self, out: str | Path) -> Path:
        """A model that loads without textnorm: with LoRA, ``out/lora`` (diffusers'
        ``pipe.load_lora_weights(out/'lora')`` reads it); else ``out/pipeline``
        (``from_pretrained``; the synthetic generator also needs ``textnorm.synth``). Under mixed
        precision the frozen text encoder and VAE were cast to half precision and are saved so."""
        out = Path(out)
        unet = self.accelerator.unwrap_model(self.unet)
        if self.cfg.lora_rank > 0:
            from diffusers import StableDiffusionPipeline
            from peft.utils import get_peft_model_state_dict

            layers = {k: v.detach().float().cpu() for k, v in get_peft_model_state_dict(unet).items()}
            StableDiffusionPipeline.save_lora_weights(out / "lora", unet_lora_layers=layers)
            return out / "lora"
        self.pipe.unet = unet
        self.pipe.save_pretrained(out / "pipeline")
        return out / "pipeline"


def changed_inputs(saved: dict | None, now: dict) -> list[str]:
    """What differs between the inputs a checkpoint recorded and this run's (:func:`input_digests`),
    in words. A checkpoint without the record (older textnorm) or a reward given as a function
    cannot be checked: a warning says so."""
    import warnings

    if not isinstance(saved, dict):
        warnings.warn(
            "the checkpoint records no sha256 of the model and reward it was trained from (written by an older "
            "textnorm): they cannot be checked on resume",
            stacklevel=3,
        )
        return []
    out = []
    if saved.get("model") != now.get("model"):
        out.append(
            f"the base model's weights changed (sha256 {str(saved.get('model'))[:12]}... then, "
            f"{str(now.get('model'))[:12]}... now)"
        )
    was, nowr = saved.get("reward"), now.get("reward")
    if was is None or nowr is None:
        if was != nowr:
            warnings.warn(
                "the reward was given as a function in one of the two runs: its files cannot be checked", stacklevel=3
            )
        return out
    for src in sorted(set(was) | set(nowr)):
        a, b = was.get(src), nowr.get(src)
        if a != b and a is not None and b is not None:
            out.append(f"the reward model files in {src} changed (sha256 {a[:12]}... then, {b[:12]}... now)")
    return out


class CheckpointWriteError(OSError):
    """A checkpoint file could not be written (a full disk, most often); says what is left."""

    def __init__(self, out: Path, name: str, step: int, exc: BaseException, had: bool) -> None:
        import errno
        import shutil

        try:
            full = shutil.disk_usage(out).free < (64 << 20)
        except OSError:
            full = False
        if getattr(exc, "errno", None) == errno.ENOSPC or full:
            why = "the disk is full"
        else:
            why = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        if name == "checkpoint.pt":
            left = (
                "the last complete checkpoint.pt is intact (resume from it with --resume once there is space)"
                if had
                else "no checkpoint was written before"
            )
        else:  # checkpoint.pt itself was written: it is whole and a resume reads it alone
            left = f"checkpoint.pt of step {step} is complete; only the readable copy {name} is out of date"
        super().__init__(f"could not write {out / name} after step {step}: {why}; {left}")


def _check_split(cfg: FinetuneConfig, processes: int) -> None:
    """Several processes share every minibatch equally (so DDP's average of their gradients is the
    minibatch's gradient): the global sizes must divide by the number of processes."""
    if processes == 1:
        return
    sizes = {"batch_size": cfg.batch_size}
    if cfg.method == "ddpo":
        sizes["n_prompts x samples_per_prompt"] = cfg.n_prompts * cfg.samples_per_prompt
    bad = {k: v for k, v in sizes.items() if v % processes}
    if bad:
        raise ValueError(
            f"with {processes} processes, "
            + " and ".join(f"{k} ({v})" for k, v in bad.items())
            + f" must be a multiple of {processes}: every process takes an equal share"
        )


class _AdaptersOff(torch.nn.Module):
    """The base model under LoRA: the same UNet with its adapters disabled."""

    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self.unet.disable_adapters()
        try:
            return self.unet(*args, **kwargs)
        finally:
            self.unet.enable_adapters()


def _index_cond(cond: Cond, idx: torch.Tensor) -> Cond:
    if isinstance(cond, tuple):
        return tuple(c[idx] for c in cond)
    return cond[idx]


RUN_FILES = ("checkpoint.pt", "state.json", "metrics.json")


def clean_stale_temps(out: str | Path) -> list[Path]:
    """Delete the temporary files that a write killed midway left (``.checkpoint.pt.*`` etc., see
    :func:`textnorm.files.atomic_write`): they are never read, and a folder holding only them holds
    no run. Returns what was removed."""
    folder = Path(out)
    if not folder.is_dir():
        return []
    stale = [p for name in RUN_FILES for p in folder.glob(f".{name}.*") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def finetune(
    cfg: FinetuneConfig,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    pipe: Any = None,
    reward_fn: RewardFn | None = None,
    task: Task | None = None,
    overwrite: bool = False,
) -> list[dict]:
    """Notebook-friendly entry point with the CLI's parameters. A folder ``out`` that holds a run is
    continued (``resume``) or replaced (``overwrite``), never silently overwritten."""
    if out is not None:
        clean_stale_temps(out)
    if out is not None and not resume and not overwrite:
        held = [n for n in RUN_FILES if (Path(out) / n).exists()]
        if held:
            raise FileExistsError(f"{out} holds a run ({', '.join(held)}); resume it, or overwrite it explicitly")
    tuner = Finetuner(cfg, pipe=pipe, reward_fn=reward_fn, task=task)
    if out is not None and overwrite and not resume:
        if tuner.accelerator.is_main_process:
            for name in RUN_FILES:  # no old run left to resume by mistake
                (Path(out) / name).unlink(missing_ok=True)
        tuner.accelerator.wait_for_everyone()
    if resume:
        if out is None or not (Path(out) / "checkpoint.pt").is_file():
            raise FileNotFoundError(f"nothing to resume: no checkpoint.pt in {out} (start the run without --resume)")
        tuner.load_checkpoint(out)
    return tuner.train(out, progress=progress)


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
