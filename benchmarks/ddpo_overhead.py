"""Overhead of the fine-tuning loop: one DDPO step over the bare UNet passes it must do.

A DDPO step with n samples and T denoising steps must run the UNet T times to sample (no grad)
and T times forward + backward to train. The loop also decodes, scores, computes per-step
log-probabilities and the KL to the reference model (T more forward passes of each UNet, for the
logged KL). Printed side by side, in one run, on the synthetic generator (or a tiny SD pipeline):

    bare      = T forward (no grad) + T forward/backward, the same batch
    loop step = Finetuner.run_step()
    overhead  = loop / bare

    python benchmarks/ddpo_overhead.py --samples 16 --sample-steps 20 --threads 2
"""

from __future__ import annotations

import argparse
import time

import torch

from textnorm.finetune.adapters import make_adapter
from textnorm.finetune.loop import FinetuneConfig, Finetuner
from textnorm.synth.generator import SynthPipeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=16, help="images per step (4 prompts x samples/4)")
    ap.add_argument("--sample-steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    def reward(images, prompts):
        return images.astype(float).mean(axis=(1, 2, 3)) / 255

    cfg = FinetuneConfig(method="ddpo", steps=args.repeats + 1, n_prompts=4, samples_per_prompt=args.samples // 4,
                         sample_steps=args.sample_steps, gold=False)
    tuner = Finetuner(cfg, pipe=SynthPipeline.build(), reward_fn=reward)
    ad = make_adapter(tuner.pipe)
    n, T = cfg.n_prompts * cfg.samples_per_prompt, cfg.sample_steps
    cond = ad.encode(["a red circle"] * n)
    x = torch.randn((n, *ad.latent_shape))
    t = torch.tensor(500)

    def bare():
        with torch.no_grad():
            for _ in range(T):
                ad.eps(tuner.unet, x, t, cond)
        for _ in range(T):
            ad.eps(tuner.unet, x, t, cond).pow(2).mean().backward()

    tuner.run_step()  # warm-up
    bare()
    loop_t = min(_timed(tuner.run_step) for _ in range(args.repeats))
    bare_t = min(_timed(bare) for _ in range(args.repeats))
    print(f"DDPO step, {n} samples x {T} steps, {args.threads} threads, best of {args.repeats}")
    print(f"{'bare UNet passes':24}{bare_t:8.3f} s")
    print(f"{'loop step':24}{loop_t:8.3f} s")
    print(f"overhead ratio loop / bare: {loop_t / bare_t:.2f}")


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
