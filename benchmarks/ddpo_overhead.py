"""Overhead of the fine-tuning loop: one DDPO round over the bare UNet passes it must do.

A DDPO round with n samples, T DDIM steps of which K are trained, minibatches of b and E inner
epochs must run, at the least:

    sampling    T forward passes (no grad) on n samples
    reference   K forward passes (no grad) on n samples (the logged KL and the KL penalty)
    training    E * n / b minibatches x ceil(f K) forward + backward passes on b samples
                (f: timestep_fraction, the share of the trained steps each minibatch trains)

``bare`` times exactly these UNet calls; ``loop`` times ``Finetuner.run_step()``, which also
encodes prompts, decodes, scores, computes log-probabilities, ratios and gradient norms, and
steps the optimiser. Printed side by side in one run:

    overhead = loop / bare          (target <= 1.2)

for each timestep fraction given, with the round time of the first (all trained steps) as the
reference for the speed-up:

    python benchmarks/ddpo_overhead.py --threads 1 --timestep-fraction 1 0.5 0.25
"""

from __future__ import annotations

import argparse
import math
import time

import torch


def bare_round(tuner) -> None:
    """The UNet passes one DDPO round of ``tuner`` must do, on random inputs of the same shapes."""
    from textnorm.finetune.adapters import index_cond
    from textnorm.finetune.sampling import chunks, encode

    cfg, ad = tuner.cfg, tuner.adapter
    n = cfg.n_prompts * cfg.samples_per_prompt
    prompts = ["a red circle"] * n
    cond = encode(tuner, prompts)  # guided (two passes in one batch) when the run is
    x = torch.randn((n, *ad.latent_shape), device=ad.device)
    t = tuner.chain.timesteps[0].to(ad.device)
    K = len(tuner.trained_steps)
    with torch.no_grad(), tuner.accelerator.autocast():
        for part in chunks(n, cfg.sample_batch):  # the run's micro-batches
            c = index_cond(cond, torch.arange(part.start, part.stop, device=ad.device))
            for _ in range(cfg.sample_steps):
                ad.eps(tuner.unet, x[part], t, c)
            for _ in range(K):
                ad.eps(tuner.ref_unet, x[part], t, c)
    sub = encode(tuner, prompts[: cfg.batch_size])
    xb = x[: cfg.batch_size]
    trained = max(1, math.ceil(cfg.timestep_fraction * K))  # steps each minibatch trains
    for _ in range(cfg.inner_epochs * n // cfg.batch_size):
        for _ in range(trained):
            with tuner.accelerator.autocast():
                out = ad.eps(tuner.unet, xb, t, sub)
            tuner.accelerator.backward(out.float().pow(2).mean())
        tuner.opt.zero_grad(set_to_none=True)


def main() -> None:
    from textnorm.finetune.config import FinetuneConfig
    from textnorm.finetune.loop import Finetuner
    from textnorm.finetune.task import plain_task
    from textnorm.synth.generator import SynthPipeline

    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--samples-per-prompt", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--inner-epochs", type=int, default=1)
    ap.add_argument("--sample-steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timestep-fraction", type=float, nargs="+", default=[1.0, 0.5])
    ap.add_argument("--sample-batch", type=int, default=0, help="samples per UNet call in sampling (0: all)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    def brightness(images, prompts):
        return images.astype(float).mean(axis=(1, 2, 3)) / 255

    prompts = [f"{w} red circles" for w in ("two", "three", "four")] + ["a red circle"]
    prompts = (prompts * (args.prompts // 4 + 1))[: args.prompts]
    n = args.prompts * args.samples_per_prompt
    rows = []
    for fraction in args.timestep_fraction:
        cfg = FinetuneConfig(
            method="ddpo",
            steps=args.repeats + 1,
            n_prompts=args.prompts,
            samples_per_prompt=args.samples_per_prompt,
            batch_size=args.batch_size,
            inner_epochs=args.inner_epochs,
            sample_steps=args.sample_steps,
            min_train_sigma=0.05,
            task="prompts",
            timestep_fraction=fraction,
            sample_batch=args.sample_batch,
        )
        tuner = Finetuner(
            cfg, pipe=SynthPipeline.build(), reward_fn=brightness, task=plain_task(list(dict.fromkeys(prompts)))
        )
        tuner.run_step()  # warm-up
        bare_round(tuner)
        loop_t = min(_timed(tuner.run_step) for _ in range(args.repeats))
        bare_t = min(_timed(lambda t=tuner: bare_round(t)) for _ in range(args.repeats))
        rows.append((fraction, len(tuner.trained_steps), bare_t, loop_t))
    print(
        f"DDPO round: {n} samples x {args.sample_steps} DDIM steps, minibatch {args.batch_size}, "
        f"{args.inner_epochs} inner epoch(s), sample batch {args.sample_batch or n}, {args.threads} thread(s), "
        f"best of {args.repeats}"
    )
    print(f"{'timestep fraction':>18}{'trained':>9}{'bare UNet s':>13}{'loop s':>9}{'loop/bare':>11}{'speed-up':>10}")
    for fraction, k, bare_t, loop_t in rows:
        trained = max(1, math.ceil(fraction * k))
        print(
            f"{fraction:>18.2f}{f'{trained}/{k}':>9}{bare_t:>13.3f}{loop_t:>9.3f}{loop_t / bare_t:>11.2f}"
            f"{rows[0][3] / loop_t:>10.2f}"
        )


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
