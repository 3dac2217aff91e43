"""Training the synthetic world's generator from scratch (denoising score matching).

Each step draws a batch of training captions (half counting, half composition), renders a fresh
random clean image for each, and minimises E || eps - eps_theta(x_t, t, text) ||^2 over
t ~ U{0..999}, x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps (DDPM, cosine schedule). AdamW with a
linear warm-up and a cosine decay to a tenth of the learning rate; gradients clipped at norm 1.
Every ``eval_every`` steps the gold judge scores samples for held-out captions.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from diffusers import DDPMScheduler
from tqdm import tqdm

from textnorm import ddim
from textnorm.files import atomic_write
from textnorm.images import to_model_space
from textnorm.schedules import pretraining_lr
from textnorm.synth import judge, scenes
from textnorm.synth.config import TrainConfig
from textnorm.synth.generator import SynthPipeline


def gold_alignment(pipe: SynthPipeline, captions: list[str], seed: int, steps: int = 20) -> float:
    images = pipe(captions, num_inference_steps=steps, seed=seed)
    return float(judge.judge_batch(images, captions).mean())


def train_generator(
    out: str | Path, cfg: TrainConfig | None = None, progress: bool = True, pipe: SynthPipeline | None = None
) -> dict:
    """Train and save to ``out`` (a SynthPipeline folder). Returns the training log."""
    cfg = cfg or TrainConfig()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(out)
    pipe = pipe or SynthPipeline.build(cfg.resolution, seed=cfg.seed)
    noise_sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    params = list(pipe.unet.parameters()) + list(pipe.text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-4)

    train = {s: scenes.split_captions(s, seed=cfg.seed)[0] for s in ("counting", "composition")}
    held = [c for s in ("counting", "composition") for c in scenes.split_captions(s, seed=cfg.seed)[1]]
    rng = np.random.default_rng(cfg.seed)
    eval_caps = list(rng.choice(held, cfg.eval_captions, replace=len(held) < cfg.eval_captions))
    log = {"config": asdict(cfg), "loss": [], "eval": []}
    t0 = time.time()
    pipe.unet.train()
    pipe.text_encoder.train()
    bar = tqdm(range(cfg.steps), disable=not progress, desc="train generator")
    running = 0.0
    for step in bar:
        half = cfg.batch_size // 2
        caps = list(rng.choice(train["counting"], half)) + list(rng.choice(train["composition"], cfg.batch_size - half))
        x0 = to_model_space(scenes.draw_batch(caps, seed=cfg.seed * 1_000_003 + step, res=cfg.resolution))
        eps = torch.randn_like(x0)
        t = torch.randint(0, 1000, (len(caps),))
        xt = ddim.add_noise(x0, eps, noise_sched.alphas_cumprod[t].view(-1, 1, 1, 1))
        states, pooled = pipe.encode_prompt(caps)
        loss = torch.nn.functional.mse_loss(pipe.predict_noise(xt, t, states, pooled), eps)
        for g in opt.param_groups:
            g["lr"] = pretraining_lr(step, cfg.lr, cfg.warmup, cfg.steps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
        if step % 50 == 0:
            log["loss"].append({"step": step, "loss": round(running, 5), "seconds": round(time.time() - t0, 1)})
            bar.set_postfix(loss=f"{running:.4f}")
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            pipe.unet.eval()
            pipe.text_encoder.eval()
            acc = gold_alignment(pipe, eval_caps, seed=cfg.seed, steps=cfg.sample_steps)
            log["eval"].append({"step": step + 1, "heldout_gold_alignment": acc, "seconds": round(time.time() - t0, 1)})
            pipe.save_pretrained(out)
            atomic_write(out / "train_log.json", lambda f: f.write(json.dumps(log, indent=1).encode()))
            pipe.unet.train()
            pipe.text_encoder.train()
    pipe.unet.eval()
    pipe.text_encoder.eval()
    return log
