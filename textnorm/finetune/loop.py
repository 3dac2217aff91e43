"""One fine-tuning loop for diffusers text-to-image pipelines and the synthetic generator.

Each step draws ``n_prompts`` prompts and ``samples_per_prompt`` images per prompt from the
current model (DDIM, eta > 0, log-probabilities recorded), scores them with the reward, and
updates the UNet (all weights, or LoRA adapters through peft) by one of:

- ``rwsft`` (reward-weighted SFT, the recipe the TextNorm authors used): keep the top
  ``top_fraction`` of each prompt's samples by reward, min-max normalise their rewards to weights
  w in [0, 1] and minimise
      mean_i w_i || eps_theta(x_t, t, y) - eps ||^2 + beta || eps_theta(x_t, t, y) - eps_ref(x_t, t, y) ||^2
  at random t on the kept samples (beta = ``pretrain_weight``);
- ``ddpo`` (policy gradient on the denoising chain): advantages A = (r - mean_y) / (std_y + 1e-6)
  per prompt; for every recorded step, ratio = exp(log p_theta - log p_old) and the PPO loss
  mean(max(-A ratio, -A clip(ratio, 1 - eps, 1 + eps))), plus ``kl_weight`` times the KL to the
  reference model along the trajectory (DPOK);
- ``best_of_n`` is not a training method: :func:`best_of_n` picks, per prompt, the best of n
  samples of the base model.

Every step logs the proxy reward, the gold alignment (when a gold judge is available), the KL
of the sampling trajectory to the reference model, and image statistics that reveal reward
hacking (brightness, saturation, share of background pixels). All randomness is drawn from
generators seeded by (seed, step), and checkpoints hold model, optimiser and metrics, so a resumed
run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from textnorm.finetune import sampling
from textnorm.finetune.adapters import make_adapter
from textnorm.finetune.rewards import make_reward

METHODS = ("rwsft", "ddpo")


@dataclass
class FinetuneConfig:
    method: str = "ddpo"
    reward: str = "gold"
    model: str = "data/synth/generator"
    prompts: list[str] = field(default_factory=list)   # empty: the synthetic world's training captions
    steps: int = 10
    n_prompts: int = 4
    samples_per_prompt: int = 8
    sample_steps: int = 20
    eta: float = 1.0
    lr: float = 3e-4
    lora_rank: int = 0            # 0: full fine-tuning
    kl_weight: float = 0.0
    clip_range: float = 1e-2
    top_fraction: float = 0.5
    pretrain_weight: float = 1.0
    temperature: float = 1.0      # TextNorm
    lam: float = 1.0              # UR ensemble
    resolution: int | None = None
    mixed_precision: str = "no"   # "fp16" / "bf16" on GPUs
    grad_accum: int = 1
    seed: int = 0
    device: str = "cpu"
    gold: bool = True             # log gold alignment (synthetic world only)
    checkpoint_every: int = 0
    eval_every: int = 0           # evaluate on fixed prompts every k steps (0: never)
    eval_prompts: list[str] = field(default_factory=list)  # empty: 8 held-out synthetic captions
    eval_samples: int = 4         # images per evaluation prompt (same noise at every evaluation)


def validate(cfg: FinetuneConfig) -> None:
    if cfg.method not in METHODS:
        raise ValueError(f"unknown method {cfg.method!r}; choose from {METHODS} (best-of-n: textnorm.finetune.loop.best_of_n)")
    if cfg.n_prompts < 1 or cfg.samples_per_prompt < 1:
        raise ValueError(f"need at least one prompt and one sample per prompt (got n_prompts={cfg.n_prompts}, "
                         f"samples_per_prompt={cfg.samples_per_prompt})")
    if cfg.method == "ddpo" and cfg.samples_per_prompt < 2:
        raise ValueError("DDPO normalises advantages per prompt: samples_per_prompt must be >= 2")
    if cfg.steps < 0 or cfg.sample_steps < 1:
        raise ValueError("steps must be >= 0 and sample_steps >= 1")
    if not 0 < cfg.top_fraction <= 1:
        raise ValueError(f"top_fraction must be in (0, 1], got {cfg.top_fraction}")


def load_pipeline(path: str, device: str = "cpu"):
    """The synthetic generator or any diffusers StableDiffusionPipeline-family model."""
    from textnorm.synth.generator import SynthPipeline

    local = Path(path)
    if (local / "model_index.json").is_file() and "SynthPipeline" in (local / "model_index.json").read_text():
        return SynthPipeline.from_pretrained(path).to(device)
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(path, safety_checker=None).to(device)


def image_stats(images: np.ndarray) -> dict[str, float]:
    x = images.astype(float) / 255
    sat = x.max(-1) - x.min(-1)
    return {"brightness": float(x.mean()), "saturation": float(sat.mean()),
            "background_share": float((sat < 0.15).mean())}


def _generator(seed: int, step: int, salt: int = 0) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed * 1_000_003 + step * 7919 + salt)


class Finetuner:
    def __init__(self, cfg: FinetuneConfig, pipe=None, reward_fn=None):
        validate(cfg)
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.pipe = pipe if pipe is not None else load_pipeline(cfg.model, cfg.device)
        self.adapter = make_adapter(self.pipe, cfg.resolution)
        self.reward_fn = reward_fn or make_reward(cfg.reward, temperature=cfg.temperature, lam=cfg.lam,
                                                  device=cfg.device)
        self.prompts = list(cfg.prompts) or self._default_prompts()
        unet = self.adapter.unet
        unet.requires_grad_(False)
        for module in (getattr(self.pipe, "text_encoder", None), getattr(self.pipe, "vae", None)):
            if module is not None:
                module.requires_grad_(False)
        if cfg.lora_rank > 0:
            from peft import LoraConfig

            unet.add_adapter(LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_rank, init_lora_weights="gaussian",
                                        target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
            self.ref_unet = _AdaptersOff(unet)
        else:
            self.ref_unet = copy.deepcopy(unet).eval()
            unet.requires_grad_(True)
        self.params = [p for p in unet.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("no trainable parameters (LoRA found no attention projections?)")
        from accelerate import Accelerator

        self.accelerator = Accelerator(mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum,
                                       cpu=cfg.device == "cpu")
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=0.0)
        self.unet, self.opt = self.accelerator.prepare(unet, self.opt)
        self.step = 0
        self.metrics: list[dict] = []

    def _default_prompts(self) -> list[str]:
        from textnorm.synth.scenes import split_captions

        return [c for s in ("counting", "composition") for c in split_captions(s, seed=0)[0]]

    # ------------------------------------------------------------------ one step
    def _draw_prompts(self, step: int) -> list[str]:
        rng = np.random.default_rng(self.cfg.seed * 1_000_003 + step)
        return list(rng.choice(self.prompts, self.cfg.n_prompts, replace=len(self.prompts) < self.cfg.n_prompts))

    @torch.no_grad()
    def evaluate(self) -> dict:
        """Reward (and gold) of samples for the fixed evaluation prompts, drawn with the same
        noise at every evaluation (eta = 0), so successive evaluations are paired."""
        cfg, ad = self.cfg, self.adapter
        prompts = list(cfg.eval_prompts) or self._default_eval_prompts()
        flat = [p for p in prompts for _ in range(cfg.eval_samples)]
        self.unet.eval()
        traj = sampling.sample(ad, self.unet, ad.encode(flat), len(flat), cfg.sample_steps, 0.0,
                               _generator(cfg.seed, 0, salt=2))
        images = ad.decode(traj.x0)
        out = {"eval_reward": float(np.mean(self.reward_fn(images, flat)))}
        if cfg.gold:
            from textnorm.synth import judge

            out["eval_gold"] = float(judge.judge_batch(images, flat).mean())
        return out

    def _default_eval_prompts(self) -> list[str]:
        from textnorm.synth.scenes import split_captions

        held = split_captions("counting", seed=0)[1][:4] + split_captions("composition", seed=0)[1][:4]
        return held

    def run_step(self) -> dict:
        cfg, ad = self.cfg, self.adapter
        t0 = time.time()
        evaluation = self.evaluate() if cfg.eval_every and self.step % cfg.eval_every == 0 else {}
        prompts = self._draw_prompts(self.step)
        flat = [p for p in prompts for _ in range(cfg.samples_per_prompt)]
        cond = ad.encode(flat)
        self.unet.eval()
        traj = sampling.sample(ad, self.unet, cond, len(flat), cfg.sample_steps, cfg.eta, _generator(cfg.seed, self.step))
        images = ad.decode(traj.x0)
        rewards = np.asarray(self.reward_fn(images, flat), dtype=float)
        row = {"step": self.step, "reward": float(rewards.mean()), **evaluation}
        if cfg.gold:
            from textnorm.synth import judge

            row["gold"] = float(judge.judge_batch(images, flat).mean())
        row["kl"] = float(sampling.trajectory_kl(ad, self.ref_unet, cond, traj).mean())
        row.update(image_stats(images))
        self.unet.train()
        # under gradient accumulation the prepared optimiser only steps (and zeroes) every grad_accum calls
        with self.accelerator.accumulate(self.unet):
            loss = self._ddpo(traj, cond, rewards, flat) if cfg.method == "ddpo" else self._rwsft(traj, cond, rewards, flat)
        row["loss"] = loss
        row["seconds"] = round(time.time() - t0, 3)
        self.metrics.append(row)
        self.step += 1
        return row

    def _ddpo(self, traj, cond, rewards, flat) -> float:
        cfg = self.cfg
        adv = np.zeros_like(rewards)
        for p in set(flat):
            idx = [i for i, q in enumerate(flat) if q == p]
            r = rewards[idx]
            adv[idx] = (r - r.mean()) / (r.std() + 1e-6)
        adv_t = torch.tensor(adv, dtype=torch.float32, device=self.adapter.device)
        old = traj.log_probs
        total = 0.0
        n_steps = len(traj.timesteps)
        self.opt.zero_grad(set_to_none=True)
        for i in range(n_steps):
            with self.accelerator.autocast():
                lp, kl = sampling.step_log_prob_and_kl(self.adapter, self.unet, self.ref_unet if cfg.kl_weight else None,
                                                       cond, traj, i, cfg.eta)
                ratio = torch.exp(lp - old[i])
                unclipped = -adv_t * ratio
                clipped = -adv_t * ratio.clamp(1 - cfg.clip_range, 1 + cfg.clip_range)
                loss = (torch.maximum(unclipped, clipped).mean() + cfg.kl_weight * kl.mean()) / n_steps
            self.accelerator.backward(loss)
            total += float(loss.detach())
        self._optimizer_step()
        return total

    def _rwsft(self, traj, cond, rewards, flat) -> float:
        cfg, ad = self.cfg, self.adapter
        keep, weights = [], []
        for p in dict.fromkeys(flat):
            idx = np.array([i for i, q in enumerate(flat) if q == p])
            k = max(1, int(round(cfg.top_fraction * len(idx))))
            top = idx[np.argsort(-rewards[idx], kind="stable")[:k]]
            r = rewards[top]
            w = (r - r.min()) / (r.max() - r.min()) if r.max() > r.min() else np.ones_like(r)
            keep += top.tolist()
            weights += w.tolist()
        keep_t = torch.tensor(keep)
        x0 = traj.x0[keep_t]
        sub_cond = _index_cond(cond, keep_t)
        g = _generator(cfg.seed, self.step, salt=1)
        t = torch.randint(0, ad.alphas_cumprod.shape[0], (len(keep),), generator=g)
        eps = torch.randn(x0.shape, generator=g).to(ad.device)
        a = ad.alphas_cumprod[t].view(-1, *[1] * (x0.dim() - 1)).to(ad.device)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        w = torch.tensor(weights, dtype=torch.float32, device=ad.device)
        self.opt.zero_grad(set_to_none=True)
        with self.accelerator.autocast():
            pred = ad.eps(self.unet, xt, t.to(ad.device), sub_cond)
            with torch.no_grad():
                ref = ad.eps(self.ref_unet, xt, t.to(ad.device), sub_cond)
            per = ((pred - eps) ** 2).flatten(1).mean(1)
            pen = ((pred - ref) ** 2).flatten(1).mean(1)
            loss = (w * per).mean() + cfg.pretrain_weight * pen.mean()
        self.accelerator.backward(loss)
        self._optimizer_step()
        return float(loss.detach())

    def _optimizer_step(self) -> None:
        self.accelerator.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    # ------------------------------------------------------------------ run, checkpoints
    def train(self, out: str | Path | None = None, progress: bool = True) -> list[dict]:
        bar = tqdm(range(self.step, self.cfg.steps), disable=not progress, desc=f"{self.cfg.method} ({self.cfg.reward})")
        for _ in bar:
            row = self.run_step()
            bar.set_postfix(reward=f"{row['reward']:.3f}", gold=f"{row.get('gold', float('nan')):.3f}")
            if out and self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0:
                self.save_checkpoint(out)
        if out:
            self.save_checkpoint(out)
        # the model after the last update (kept apart from the per-step metrics)
        self.final_eval = {"step": self.step, **self.evaluate()} if self.cfg.eval_every else {}
        return self.metrics

    def save_checkpoint(self, out: str | Path) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        trainable = {k: v.detach().cpu() for k, v in self.accelerator.unwrap_model(self.unet).named_parameters()
                     if v.requires_grad}
        torch.save({"step": self.step, "trainable": trainable, "optimizer": self.opt.state_dict(),
                    "metrics": self.metrics, "config": asdict(self.cfg)}, out / "checkpoint.pt")
        (out / "metrics.json").write_text(json.dumps(self.metrics, indent=1))
        return out / "checkpoint.pt"

    def load_checkpoint(self, out: str | Path) -> None:
        state = torch.load(Path(out) / "checkpoint.pt", map_location="cpu", weights_only=False)
        named = dict(self.accelerator.unwrap_model(self.unet).named_parameters())
        with torch.no_grad():
            for k, v in state["trainable"].items():
                named[k].copy_(v)
        self.opt.load_state_dict(state["optimizer"])
        self.step = state["step"]
        self.metrics = state["metrics"]


class _AdaptersOff(torch.nn.Module):
    """The base model under LoRA: the same UNet with its adapters disabled."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, *args, **kwargs):
        self.unet.disable_adapters()
        try:
            return self.unet(*args, **kwargs)
        finally:
            self.unet.enable_adapters()


def _index_cond(cond, idx):
    if isinstance(cond, tuple):
        return tuple(c[idx] for c in cond)
    return cond[idx]


def finetune(cfg: FinetuneConfig, out: str | Path | None = None, resume: bool = False, progress: bool = True,
             pipe=None, reward_fn=None) -> list[dict]:
    """Notebook-friendly entry point with the CLI's parameters."""
    tuner = Finetuner(cfg, pipe=pipe, reward_fn=reward_fn)
    if resume:
        if out is None or not (Path(out) / "checkpoint.pt").is_file():
            raise FileNotFoundError(f"nothing to resume: no checkpoint.pt in {out}")
        tuner.load_checkpoint(out)
    return tuner.train(out, progress=progress)


def best_of_n(pipe, reward_fn, prompts: list[str], n: int, seed: int = 0, sample_steps: int = 20,
              gold: bool = True) -> dict[str, np.ndarray]:
    """Per prompt, the sample with the highest reward among n from the base model.
    Returns arrays over prompts: reward, gold (if asked) and the chosen images."""
    if n < 1:
        raise ValueError("best-of-n needs n >= 1")
    ad = make_adapter(pipe)
    flat = [p for p in prompts for _ in range(n)]
    traj = sampling.sample(ad, ad.unet, ad.encode(flat), len(flat), sample_steps, 0.0, _generator(seed, 0))
    images = ad.decode(traj.x0)
    r = np.asarray(reward_fn(images, flat), dtype=float).reshape(len(prompts), n)
    pick = r.argmax(1)
    chosen = images.reshape(len(prompts), n, *images.shape[1:])[np.arange(len(prompts)), pick]
    out = {"reward": r[np.arange(len(prompts)), pick], "images": chosen}
    if gold:
        from textnorm.synth import judge

        out["gold"] = judge.judge_batch(chosen, list(prompts)).astype(float)
    return out
