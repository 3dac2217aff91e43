"""Settings of a fine-tuning run: one dataclass whose fields (with their help texts) are also
the ``textnorm finetune`` options, and their validation. Imports nothing heavy, so the CLI's
``--help`` is quick."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

METHODS = ("rwsft", "ddpo")


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


def _lf(help: str):
    return field(default_factory=list, metadata={"help": help})


@dataclass
class FinetuneConfig:
    """Every setting of a run; the CLI's options are generated from these fields and their help."""

    method: str = _f("ddpo", "rwsft or ddpo", choices=METHODS)
    reward: str = _f(
        "gold",
        "reward spec: gold, raw:PATH, raw-mean:P1,P2, textnorm:PATH, textnorm-mean:P1,P2, textnorm-ur:P1,P2 "
        "(PATH may be NAME=PATH for a registered reward, e.g. raw:pickscore=ID)",
    )
    model: str = _f(
        "data/synth/generator", "the synthetic generator's folder or a StableDiffusionPipeline (hub id or folder)"
    )
    task: str = _f(
        "auto",
        "a registered task: prompts (the --prompt list, no gold) or synth (the synthetic world: captions, "
        "contrastive rules, gold judge); auto: the task registered for the pipeline (synth for the synthetic "
        "generator), else prompts",
    )
    prompts: list[str] = _lf("training prompts (repeat the option); default: the task's")
    steps: int = _f(20, "DDPO: sampling rounds; RWSFT: optimiser updates")
    n_prompts: int = _f(8, "DDPO: prompts per round (all training prompts when it equals their number)")
    samples_per_prompt: int = _f(8, "DDPO: samples per prompt and round")
    sample_steps: int = _f(10, "DDIM steps per sample")
    eta: float = _f(1.0, "DDIM eta of the training policy (> 0)")
    guidance_scale: float = _f(
        1.0,
        "classifier-free guidance scale in sampling and in DDPO's log-probabilities (1: one conditional pass; "
        "the paper: 5)",
    )
    negative_prompt: str = _f("", "the unconditional prompt of classifier-free guidance")
    sample_batch: int = _f(
        0,
        "samples per UNet/VAE call in sampling, decoding, evaluation and pools, per process (0: the whole batch); "
        "results do not depend on it beyond float rounding",
    )
    lr: float = _f(1e-4, "AdamW learning rate")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    lora_rank: int = _f(0, "LoRA rank on the attention projections; 0: full fine-tuning")
    warmup: int = _f(
        10,
        "optimiser updates of linear learning-rate warm-up (Adam's first updates move every "
        "weight by about lr whatever the gradient; warm-up keeps them small)",
    )
    max_grad_norm: float = _f(1.0, "gradient clipping")
    grad_accum: int = _f(1, "minibatches per optimiser update")
    batch_size: int = _f(32, "training minibatch (samples)")
    # DDPO
    inner_epochs: int = _f(1, "DDPO: passes over each round's samples")
    clip_range: float = _f(1e-3, "DDPO: PPO clip range of the per-dimension ratio")
    adv_clip: float = _f(5.0, "DDPO: advantages clipped to +-adv_clip")
    stat_buffer: int = _f(
        0,
        "DDPO: per-prompt statistics over each prompt's last k rewards (ddpo-pytorch's tracking; the paper: 32); "
        "0: this round's samples of the prompt",
    )
    stat_min_count: int = _f(
        16, "DDPO with stat_buffer: a prompt with fewer rewards in its buffer uses the round's mean and sd"
    )
    min_train_sigma: float = _f(
        0.05,
        "DDPO: train only steps with sigma >= this (0: every stochastic step; "
        "see textnorm.finetune.loop for the measurement behind the default)",
    )
    kl_weight: float = _f(0.0, "DDPO: KL penalty to the base model (per dimension, DPOK)")
    timestep_fraction: float = _f(
        1.0,
        "DDPO: share of the trained steps each minibatch trains on (a random subset per minibatch, as "
        "ddpo-pytorch's timestep_fraction; 1: all)",
    )
    untrained_steps: str = _f(
        "policy",
        "which model runs the DDIM steps that are not trained (sigma < min_train_sigma, deterministic steps): "
        "policy (the fine-tuned model at every step, as DDPO and diffusers do) or base (the frozen base model: "
        "then the logged path KL over the trained steps is an upper bound on the KL of the final images)",
        choices=("policy", "base"),
    )
    # RWSFT
    pool_size: int = _f(64, "RWSFT: samples per training prompt in the pool")
    top_fraction: float = _f(0.1, "RWSFT: share of each prompt's pool kept")
    pretrain_weight: float = _f(
        1.0,
        "RWSFT: weight of the pre-training loss (the denoising loss on the task's "
        "pre-training data; without such data, the distance to the base model's "
        "prediction)",
    )
    sft_min_t: int = _f(0, "RWSFT: denoising loss at timesteps t >= this only (0: all timesteps)")
    pool_eta: float = _f(
        0.0,
        "RWSFT: DDIM eta of the pool's sampler (0: the pipeline's deterministic sampler, "
        "with which the authors drew their pool)",
    )
    pool_every: int = _f(
        0, "RWSFT: redraw the pool from the current model every k updates (0: one pool from the base model)"
    )
    # reward calibration
    contrastive: str = _f(
        "",
        "TextNorm's contrastive prompts: a JSON file {prompt: [contrastive prompts]} (the TIA2 prompt files have "
        "this shape), 'rules' (the rule-based counting and composition generators), or '' (the task's own)",
    )
    temperature: float = _f(1.0, "TextNorm softmax temperature")
    lam: float = _f(1.0, "UR ensemble: mean - lam * variance")
    judge: str = _f(
        "",
        "a reward model logged as gold in place of the task's judge, as Gao et al. used a larger reward model as gold: "
        "raw:PATH or raw:NAME=PATH (e.g. raw:imagereward=ID); '' = the task's gold judge",
    )
    # evaluation and bookkeeping
    eval_every: int = _f(0, "evaluate every k steps and after the last (0: never)")
    eval_schedule: str = _f(
        "every",
        "with eval_every > 0: every (every eval_every steps) or log (steps 0, 1, 2, 3, 4, 6, 8, 11, 16, 23, 32, ...: "
        "every step early, where the KL is small, then about 1.4x apart)",
        choices=("every", "log"),
    )
    eval_samples: int = _f(8, "images per evaluation prompt (same noise at every evaluation)")
    heldout_samples: int = _f(0, "images per held-out prompt at an evaluation (0: eval_samples)")
    eval_prompts: list[str] = _lf("held-out evaluation prompts (repeat); default: the task's")
    resolution: int | None = _f(None, "image side in pixels (Stable Diffusion; default: the model's)")
    mixed_precision: str = _f(
        "no", "fp16 or bf16 autocast on GPUs (frozen weights cast, trainable in fp32)", choices=("no", "fp16", "bf16")
    )
    seed: int = _f(0, "seed of every random draw of the run (the synthetic task's prompt set is fixed)")
    device: str = _f("cpu", "torch device")
    checkpoint_every: int = _f(0, "write a checkpoint every k steps (0: only at the end)")
    report_to: str = _f(
        "",
        "an experiment tracker for every step's metrics and a few images per evaluation: tensorboard or wandb "
        "(off by default; the tracker's package must be installed; needs an output folder)",
        choices=("", "tensorboard", "wandb"),
    )


def validate(cfg: FinetuneConfig) -> None:
    if cfg.method not in METHODS:
        raise ValueError(
            f"unknown method {cfg.method!r}; choose from {METHODS} (best-of-n: textnorm.finetune.loop.best_of_n)"
        )
    from dataclasses import fields

    for f in fields(cfg):  # the choices the CLI enforces, for configs made in Python or from grid files
        if "choices" in f.metadata and getattr(cfg, f.name) not in f.metadata["choices"]:
            raise ValueError(f"{f.name} must be one of {f.metadata['choices']}, got {getattr(cfg, f.name)!r}")
    for name in (
        "lr",
        "eta",
        "max_grad_norm",
        "clip_range",
        "adv_clip",
        "kl_weight",
        "min_train_sigma",
        "top_fraction",
        "pool_eta",
        "pretrain_weight",
        "temperature",
        "lam",
        "guidance_scale",
        "timestep_fraction",
        "weight_decay",
    ):
        value = getattr(cfg, name)
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value}")
    positive = ("lr", "eta", "max_grad_norm", "clip_range", "adv_clip", "temperature", "guidance_scale")
    for name in positive:
        if getattr(cfg, name) <= 0:
            raise ValueError(f"{name} must be > 0, got {getattr(cfg, name)}")
    for name in ("kl_weight", "min_train_sigma", "pretrain_weight", "lam", "pool_eta", "weight_decay"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.n_prompts < 1 or cfg.samples_per_prompt < 1:
        raise ValueError(
            f"need at least one prompt and one sample per prompt (got n_prompts={cfg.n_prompts}, "
            f"samples_per_prompt={cfg.samples_per_prompt})"
        )
    if cfg.method == "ddpo" and cfg.samples_per_prompt < 2:
        raise ValueError("DDPO normalises advantages per prompt: samples_per_prompt must be >= 2")
    for name in ("sample_steps", "batch_size", "grad_accum", "inner_epochs", "pool_size", "eval_samples"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    for name in (
        "steps",
        "lora_rank",
        "pool_every",
        "eval_every",
        "checkpoint_every",
        "warmup",
        "sft_min_t",
        "sample_batch",
        "heldout_samples",
        "stat_buffer",
        "stat_min_count",
    ):
        if getattr(cfg, name) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.guidance_scale < 1:
        raise ValueError(f"guidance_scale must be >= 1 (1: no guidance, as in diffusers), got {cfg.guidance_scale}")
    if cfg.stat_buffer and cfg.method != "ddpo":
        raise ValueError("stat_buffer (per-prompt statistics tracking) is a DDPO setting; RWSFT does not use it")
    if cfg.stat_buffer and cfg.stat_min_count > cfg.stat_buffer:
        raise ValueError(
            f"stat_min_count={cfg.stat_min_count} > stat_buffer={cfg.stat_buffer}: the buffers would never be used "
            "(every prompt would fall back to the round's statistics)"
        )
    if not 0 < cfg.timestep_fraction <= 1:
        raise ValueError(f"timestep_fraction must be in (0, 1], got {cfg.timestep_fraction}")
    if cfg.judge and not (cfg.judge.startswith("raw:") and "," not in cfg.judge):
        raise ValueError(
            f"judge {cfg.judge!r}: a judge is one reward model's raw score, raw:PATH (a batch-normalised or calibrated "
            "score would change with the images it is judged beside)"
        )
    if not 0 < cfg.top_fraction <= 1:
        raise ValueError(f"top_fraction must be in (0, 1], got {cfg.top_fraction}")
    if cfg.method == "ddpo":
        n = cfg.n_prompts * cfg.samples_per_prompt
        if n % cfg.batch_size or (n // cfg.batch_size * cfg.inner_epochs) % cfg.grad_accum:
            raise ValueError(
                f"a round of {n} samples must split into minibatches of batch_size={cfg.batch_size}, "
                f"and its {cfg.inner_epochs} epoch(s) of minibatches into groups of grad_accum="
                f"{cfg.grad_accum}"
            )


def complete(recorded: dict) -> dict:
    """A config recorded by an earlier textnorm (a log's or a checkpoint's), with the fields added
    since filled with their defaults, which is what those runs used (a new field's default keeps the
    old behaviour). Unknown keys are kept, so a comparison still sees them."""
    import dataclasses

    out = dict(recorded)
    for f in dataclasses.fields(FinetuneConfig):
        if f.name not in out:
            out[f.name] = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    return out
