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

Steps that are not trained (``untrained_steps``) run on the fine-tuned model, as DDPO and
diffusers do, or on the frozen base model. With the base model there, the chains differ only at the
trained steps, so the path KL over those steps bounds the KL of the final images (data processing:
the image is a function of the path); with the fine-tuned model everywhere, the sum over the
stochastic steps is the path KL and the images' KL is bounded only when every step is stochastic.
Evaluations log this path KL (``eval_kl``, nats, :func:`textnorm.finetune.sampling.kl_steps`),
for DDPO and RWSFT alike.

Every DDPO round is logged: proxy reward and gold alignment (when the task has a judge) of the
samples, the KL of the trained steps to the reference model (nats, per sample; without a KL penalty
estimated on 32 evenly spaced samples of the round), image statistics
that reveal reward hacking, ``approx_kl``, ``clipfrac`` and per-step gradient norms (of the
round's first minibatch, before unscaling: under fp16 they carry the loss scale). Every RWSFT
update logs its loss, and the updates that draw a pool log the pool's reward, gold and image
statistics. ``eval_every`` (or the log ``eval_schedule``, dense where the KL is small) measures reward, gold
and path KL on the task's training prompts (primary) and held-out prompts with the same noise each
time, so successive evaluations are paired; means and per-prompt values. A ``judge`` (a reward
model) can stand in for the task's gold, as Gao et al. used a larger reward model as gold. All
randomness comes from CPU generators seeded by (seed, step), and a checkpoint holds weights,
optimiser and (RWSFT) pool, so a resumed run continues exactly as an uninterrupted one.

The parts, one job each: sampling and evaluation (:mod:`~textnorm.finetune.sampling`), the DDPO round
(:mod:`~textnorm.finetune.ddpo`, its arithmetic in :mod:`~textnorm.finetune.ppo`), reward-weighted SFT
(:mod:`~textnorm.finetune.rwsft`), checkpoints (:mod:`~textnorm.finetune.checkpoint`), the run log
(:mod:`~textnorm.finetune.runlog`), export (:mod:`~textnorm.finetune.export`), the random streams
(:mod:`~textnorm.finetune.seeding`); this module sets a run up and steps it.

Under ``accelerate launch`` the settings stay global (a round's samples, a minibatch) and every
process takes an equal share; rewards are gathered before advantages or selection, DDP averages
the gradients, and the main process alone writes files (:mod:`textnorm.finetune.distributed`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from textnorm import ddim
from textnorm.finetune import checkpoint, export, rwsft, sampling, tracking
from textnorm.finetune.adapters import make_adapter
from textnorm.finetune.bestofn import best_of_n
from textnorm.finetune.checkpoint import (
    RUN_FILES,
    CheckpointWriteError,
    changed_inputs,
    clean_stale_temps,
    model_digest,
    reward_digests,
)
from textnorm.finetune.config import FinetuneConfig, validate
from textnorm.finetune.ddpo import KL_LOG_SAMPLES, ddpo_round
from textnorm.finetune.distributed import resolve_device
from textnorm.finetune.imagestats import image_stat_arrays, image_stats
from textnorm.finetune.inputs import check_device, files_digest, resolve_path
from textnorm.finetune.ppo import PerPromptStats
from textnorm.finetune.registry import default_task, pipeline_loader
from textnorm.finetune.rewards import RewardFn, make_reward
from textnorm.finetune.runlog import RunLog
from textnorm.finetune.rwsft import rwsft_update
from textnorm.finetune.seeding import (
    SALT_EVAL,
    SALT_HELDOUT,
    SALT_POOL,
    SALT_SAMPLE,
    SALT_TRAIN,
    make_generator,
)
from textnorm.finetune.task import Task, check_contrastive, contrastive_from, make_task
from textnorm.schedules import finetuning_lr

# names that lived here before the trainer was split into parts (notebooks, benchmarks, tests import them)
__all__ = [
    "Finetuner",
    "finetune",
    "load_pipeline",
    "best_of_n",
    "image_stat_arrays",
    "image_stats",
    "make_generator",
    "CheckpointWriteError",
    "changed_inputs",
    "clean_stale_temps",
    "model_digest",
    "RUN_FILES",
    "KL_LOG_SAMPLES",
    "SALT_EVAL",
    "SALT_HELDOUT",
    "SALT_POOL",
    "SALT_SAMPLE",
    "SALT_TRAIN",
]


def load_pipeline(path: str, device: str = "cpu") -> Any:
    """A pipeline whose class (``_class_name`` of ``model_index.json``) is registered
    (:mod:`textnorm.finetune.registry`, e.g. the synthetic generator), or a Stable Diffusion-family
    model (``StableDiffusionPipeline``): a local folder, checked to exist and to hold
    ``model_index.json``, or a hub id."""
    source = resolve_path(path, "model folder", marker="model_index.json")
    index = Path(source) / "model_index.json"
    if index.is_file():
        try:
            name = json.loads(index.read_text()).get("_class_name")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
            raise ValueError(f"{index} is not a diffusers model index (JSON object with _class_name)") from exc
        loader = pipeline_loader(name) if isinstance(name, str) else None
        if loader is not None:  # a pipeline class registered by a plugin (the synthetic world's)
            return loader(source, device)
        if not (isinstance(name, str) and name.startswith("StableDiffusion") and "XL" not in name):
            raise ValueError(
                f"{path}: pipeline class {name!r} is not supported (a StableDiffusionPipeline-family model, or a "
                "class registered with textnorm.finetune.registry.register_pipeline)"
            )
    from diffusers import StableDiffusionPipeline

    try:
        return StableDiffusionPipeline.from_pretrained(source, safety_checker=None).to(device)
    except (OSError, ValueError) as exc:
        if Path(source).exists():
            raise
        # a hub id that is also no local folder: say both, not only the hub client's view
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FileNotFoundError(f"model {path}: no local folder of that name, and as a hub id: {first}") from None


class Finetuner:
    def __init__(
        self,
        cfg: FinetuneConfig,
        pipe: Any = None,
        reward_fn: RewardFn | None = None,
        task: Task | None = None,
        trackers: list | None = None,
        log_dir: str | Path | None = None,
    ) -> None:
        """``trackers``: accelerate tracker names or ``GeneralTracker`` objects (default: ``cfg.report_to``),
        writing under ``log_dir`` (the run's folder)."""
        validate(cfg)
        check_device(cfg.device)
        self.cfg = cfg
        from accelerate import Accelerator
        from accelerate.utils import ProjectConfiguration

        trackers = list(trackers) if trackers is not None else [cfg.report_to] if cfg.report_to else []
        for name in trackers:
            if isinstance(name, str):
                tracking.check_available(name)
                if log_dir is None:
                    raise ValueError(f"report_to={name!r} needs an output folder (--out) for the tracker's files")
        _release_precision(cfg.mixed_precision)
        # first the Accelerator: under `accelerate launch` it decides this process's device
        self.accelerator = Accelerator(
            mixed_precision=cfg.mixed_precision,
            gradient_accumulation_steps=cfg.grad_accum,
            cpu=cfg.device == "cpu",
            device_placement=False,
            log_with=trackers or None,
            project_config=ProjectConfiguration(project_dir=str(log_dir) if log_dir is not None else None),
        )
        self.tracking = bool(trackers)
        self.eval_images: tuple[np.ndarray, list[str]] | None = None  # an evaluation's first images (trackers)
        self.device = resolve_device(self.accelerator, cfg.device)
        self.processes, self.rank = self.accelerator.num_processes, self.accelerator.process_index
        _check_split(cfg, self.processes)
        torch.manual_seed(cfg.seed)
        self.pipe = pipe.to(self.device) if pipe is not None else load_pipeline(cfg.model, self.device)
        # before any cast or adapter: what a resume must find unchanged
        self.inputs = {"model": model_digest(self.pipe)}  # the reward's files are added once it has loaded
        self.adapter = make_adapter(self.pipe, cfg.resolution)
        self.task = task or self._make_task()
        self.chain = self.adapter.chain(cfg.sample_steps)
        if self.processes > 1:
            batches = {
                "evaluation on the training prompts": len(self.task.train_prompts) * cfg.eval_samples,
                "evaluation on the held-out prompts": len(self.task.eval_prompts)
                * (cfg.heldout_samples or cfg.eval_samples)
                or None,
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
        if (cfg.method == "ddpo" or cfg.untrained_steps == "base") and not self.trained_steps:
            # DDPO would train nothing; with untrained_steps='base' every step would run the base model
            raise ValueError(f"no DDIM step has sigma >= min_train_sigma={cfg.min_train_sigma}")
        if cfg.judge:  # a reward model as gold (Gao et al.): logged as gold, and what a 'gold' reward means
            self.task = dataclasses.replace(self.task, gold=make_reward(cfg.judge, device=str(self.device)))
            self.inputs["judge"] = reward_digests(cfg.judge)
        if reward_fn is None:
            self._contrastive()
        self.reward_fn = reward_fn or make_reward(
            cfg.reward,
            contrastive=self.task.contrastive,
            temperature=cfg.temperature,
            lam=cfg.lam,
            device=str(self.device),
            gold=self.task.gold,
        )
        if reward_fn is None:  # after loading: a hub reward's files are now in the local cache
            self.inputs["reward"] = reward_digests(cfg.reward)

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
            # the reference keeps the policy's fp32 weights: autocast computes both in half precision
            # alike, so an untrained policy has KL exactly 0 (a half-precision copy logged ~0.16 nats)
            self.ref_unet = copy.deepcopy(unet).eval()
            unet.requires_grad_(True)
        self.params = [p for p in unet.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("no trainable parameters (LoRA found no attention projections?)")
        for p in self.params:
            p.data = p.data.float()
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        # several processes: self.unet is the DDP-wrapped model (gradients averaged over processes);
        # sampling and evaluation, which need no gradients, run the bare model (self.policy)
        self.unet, self.opt = self.accelerator.prepare(unet, self.opt)
        self.policy = self.accelerator.unwrap_model(self.unet)
        self.step = 0
        self.updates = 0  # optimiser updates so far (learning-rate warm-up)
        self.metrics: list[dict] = []
        self.final_eval: dict = {}
        self.pool: dict | None = None  # RWSFT: kept samples, their prompts and weights
        # DDPO with stat_buffer: each prompt's recent rewards (saved in checkpoints)
        self.stats = PerPromptStats(cfg.stat_buffer, cfg.stat_min_count) if cfg.stat_buffer else None

    def _make_task(self) -> Task:
        name = self.cfg.task
        if name == "auto":  # the task registered for this pipeline's type, else the given prompts
            name = default_task(self.pipe)
        task = make_task(name, self.cfg.prompts, seed=0, res=self.adapter.resolution)
        if self.cfg.eval_prompts:
            task.eval_prompts = list(self.cfg.eval_prompts)
        return task

    def _contrastive(self) -> None:
        """``--contrastive`` replaces the task's contrastive prompts; a TextNorm reward built here
        needs a set for every prompt the run scores, checked before anything is sampled."""
        if self.cfg.contrastive:
            fn, path = contrastive_from(self.cfg.contrastive)
            self.task = dataclasses.replace(self.task, contrastive=fn)  # the caller's task is left as it was
            if path is not None:  # a resume must find the same sets
                self.inputs["contrastive"] = files_digest(path)
        if self.cfg.reward.startswith("textnorm"):
            check_contrastive(self.task)

    # ------------------------------------------------------------------ the parts (one module each)
    def sample(
        self,
        prompts: list[str],
        generator: torch.Generator,
        eta: float | None = None,
        unet=None,
        rows: tuple[int, slice] | None = None,
        record: bool = True,
    ) -> tuple[ddim.Trajectory, object]:
        return sampling.sample(self, prompts, generator, eta=eta, unet=unet, rows=rows, record=record)

    def evaluate(self, eta: float | None = None) -> dict:
        return sampling.evaluate(self, eta)

    def eval_due(self, step: int) -> bool:
        """Whether the model before ``step`` is evaluated (``eval_every``, ``eval_schedule``)."""
        if not self.cfg.eval_every:
            return False
        if self.cfg.eval_schedule == "log":
            return step in log_schedule(step)
        return step % self.cfg.eval_every == 0

    def build_pool(self) -> dict:
        return rwsft.build_pool(self)

    def check_replicas(self) -> list[str]:
        return checkpoint.check_replicas(self)

    def save_checkpoint(self, out: str | Path) -> Path:
        return checkpoint.save(self, out)

    def load_checkpoint(self, out: str | Path, allow_changed_inputs: bool = False) -> None:
        checkpoint.load(self, out, allow_changed_inputs)

    def export(self, out: str | Path) -> Path:
        return export.export(self, out)

    # ------------------------------------------------------------------ one step
    def run_step(self) -> dict:
        t0 = time.time()
        row = {"step": self.step}
        if self.eval_due(self.step):
            row.update(self.evaluate())
            if self.tracking and self.eval_images is not None and self.accelerator.is_main_process:
                tracking.log_images(self.accelerator.trackers, *self.eval_images, step=self.step)
        self.unet.train()
        row.update(ddpo_round(self) if self.cfg.method == "ddpo" else rwsft_update(self))
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

    def optimizer_step(self) -> None:
        """Clip, set the warmed-up learning rate and step (at the end of a gradient-accumulation group)."""
        if self.accelerator.sync_gradients:
            self.accelerator.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
            lr = finetuning_lr(self.cfg.lr, self.updates, self.cfg.warmup)
            for group in self.opt.param_groups:
                group["lr"] = lr
        self.opt.step()
        if self.accelerator.sync_gradients and not self.opt.step_was_skipped:
            self.updates += 1  # an fp16 step skipped for overflow does not advance the warm-up
        self.opt.zero_grad(set_to_none=True)

    def train(self, out: str | Path | None = None, progress: bool = True) -> list[dict]:
        main = self.accelerator.is_main_process
        bar = tqdm(
            range(self.step, self.cfg.steps),
            disable=not (progress and main),
            desc=f"{self.cfg.method} ({self.cfg.reward})",
        )
        log = RunLog(Path(out) / "metrics.jsonl", self.metrics) if out and main else None
        if self.tracking:
            self.accelerator.init_trackers("textnorm-finetune", config=tracking.scalars_and_text(self.cfg))
        try:
            for _ in bar:
                row = self.run_step()
                if log is not None:
                    log.append(row)  # on disk as the step ends: a crash loses no finished step's row
                if self.tracking:
                    self.accelerator.log(tracking.scalars(row), step=row["step"])
                bar.set_postfix({k: f"{row[k]:.3f}" for k in ("reward", "gold", "loss") if k in row})
                if out and self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0:
                    self.save_checkpoint(out)
            # the model after the last update (kept apart from the per-step metrics)
            self.final_eval = {"step": self.step, **self.evaluate()} if self.cfg.eval_every else {}
            if self.tracking and self.final_eval:
                self.accelerator.log(tracking.scalars(self.final_eval), step=self.step)
                if self.eval_images is not None and main:
                    tracking.log_images(self.accelerator.trackers, *self.eval_images, step=self.step)
        finally:
            if self.tracking:  # a crash closes the tracker's run too
                self.accelerator.end_training()
        if out:
            self.save_checkpoint(out)  # checks that the replicas agree, then writes
        else:
            self.check_replicas()
        return self.metrics


def log_schedule(last: int) -> set[int]:
    """The steps up to ``last`` of the log evaluation schedule: 0, 1, 2, 3, 4, then round(2^(k/2))
    (6, 8, 11, 16, 23, 32, 45, ...): every step while the model is near the base, then about 1.4x apart."""
    out, k = {0}, 0
    while (v := round(2 ** (k / 2))) <= last:
        out.add(v)
        k += 1
    return out | {v for v in range(5) if v <= last}


def _release_precision(mixed_precision: str) -> None:
    """accelerate keeps one mixed-precision setting per process (``AcceleratorState`` is shared by
    every Accelerator) and refuses another: a notebook that runs a bf16 run after an fp32 one would
    fail. When the requested setting differs, the shared precision state is cleared (the process
    group, ``PartialState``, is kept); the earlier run's Accelerator should not be used after."""
    from accelerate.state import AcceleratorState

    shared = AcceleratorState._shared_state
    if shared and shared.get("_mixed_precision") not in (None, mixed_precision):
        AcceleratorState._reset_state(reset_partial_state=False)


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


def finetune(
    cfg: FinetuneConfig,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    pipe: Any = None,
    reward_fn: RewardFn | None = None,
    task: Task | None = None,
    overwrite: bool = False,
    allow_changed_inputs: bool = False,
    export: str | Path | None = None,
) -> list[dict]:
    """Notebook-friendly entry point with the CLI's parameters. A folder ``out`` that holds a run is
    continued (``resume``; refused when the base model's or the reward's files changed since the run
    started, unless ``allow_changed_inputs``) or replaced (``overwrite``), never silently overwritten.
    ``export``: a folder for the trained model after the run (:meth:`Finetuner.export`)."""
    if export is not None and not overwrite and Path(export).is_dir() and any(Path(export).iterdir()):
        raise FileExistsError(f"export folder {export} is not empty; choose another or overwrite it explicitly")
    if out is not None:
        clean_stale_temps(out)
    if out is not None and not resume and not overwrite:
        held = [n for n in RUN_FILES if (Path(out) / n).exists()]
        if held and "checkpoint.pt" not in held:  # e.g. a crash before the first checkpoint: nothing to resume
            raise FileExistsError(
                f"{out} holds an unfinished run without a checkpoint ({', '.join(held)}); nothing can resume it: "
                "overwrite it explicitly (--overwrite)"
            )
        if held:
            raise FileExistsError(f"{out} holds a run ({', '.join(held)}); resume it, or overwrite it explicitly")
    tuner = Finetuner(cfg, pipe=pipe, reward_fn=reward_fn, task=task, log_dir=out)
    if out is not None and overwrite and not resume:
        if tuner.accelerator.is_main_process:
            for name in RUN_FILES:  # no old run left to resume by mistake
                (Path(out) / name).unlink(missing_ok=True)
        tuner.accelerator.wait_for_everyone()
    if resume:
        if out is None or not (Path(out) / "checkpoint.pt").is_file():
            raise FileNotFoundError(f"nothing to resume: no checkpoint.pt in {out} (start the run without --resume)")
        tuner.load_checkpoint(out, allow_changed_inputs)
    metrics = tuner.train(out, progress=progress)
    if export is not None and tuner.accelerator.is_main_process:
        tuner.export(export)  # LoRA weights for diffusers' load_lora_weights, or the whole pipeline
    return metrics
