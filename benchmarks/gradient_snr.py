"""How much signal is in one DDPO gradient? Cosine between independent policy-gradient estimates.

DDPO's gradient for one batch is an estimate g = E[g] + noise. For two batches drawn independently,
E[g1 . g2] = |E[g]|^2, so the mean cosine between independent estimates measures the share of
signal: near 1 when each batch's gradient points the same way, near 0 when the noise swamps it.
For the base synthetic generator and the gold judge (a binary reward), this script draws
``--batches`` independent batches of the task's 8 training prompts x ``--samples`` samples
(DDIM, eta 1), forms DDPO's per-prompt normalised advantages, and prints per trained step the
gradient norm of the policy-gradient loss and the mean pairwise cosine between batches, and
the same for sums over the first k steps (from the noisiest), which is how the steps to train are
chosen (``min_train_sigma``): a step whose gradient carries no signal only adds noise.

    python benchmarks/gradient_snr.py                 # 4 batches of 8 x 16 samples (about 2 minutes, 1 core)
    python benchmarks/gradient_snr.py --samples 32
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    ap.add_argument("--samples", type=int, default=16, help="samples per prompt and batch")
    ap.add_argument("--batches", type=int, default=4, help="independent batches (pairs compared: b(b-1)/2)")
    ap.add_argument("--sample-steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from textnorm.finetune.config import FinetuneConfig
    from textnorm.finetune.loop import Finetuner, make_generator
    from textnorm.quiet import quiet_libraries
    from textnorm.rewards.scoring import repeat_prompts

    quiet_libraries()
    tuner = Finetuner(FinetuneConfig(reward="gold", sample_steps=args.sample_steps, min_train_sigma=0.0))
    ad, chain = tuner.adapter, tuner.chain
    steps = tuner.trained_steps
    prompts = tuner.task.train_prompts
    flat = repeat_prompts(prompts, args.samples)
    grads: dict[int, list[torch.Tensor]] = {i: [] for i in steps}
    success = []
    for b in range(args.batches):
        traj, cond = tuner.sample(flat, make_generator(1000 + b, 0))
        r = tuner.task.gold(ad.decode(traj.x0), flat).reshape(len(prompts), args.samples)
        success.append(r.mean())
        adv = torch.tensor(
            ((r - r.mean(1, keepdims=True)) / (r.std(1, keepdims=True) + 1e-6)).ravel(), dtype=torch.float32
        )
        for i in steps:
            tuner.opt.zero_grad(set_to_none=True)
            mean = chain.mean(i, ad.eps(tuner.unet, traj.latents[i], chain.timesteps[i], cond), traj.latents[i], 1.0)
            (-(adv * chain.log_prob(i, traj.latents[i + 1], mean, 1.0)).mean()).backward()
            grads[i].append(torch.cat([p.grad.flatten() for p in tuner.params]).clone())

    def mean_cos(vs: list[torch.Tensor]) -> float:
        return float(np.mean([float(u @ v / (u.norm() * v.norm())) for u, v in itertools.combinations(vs, 2)]))

    print(
        f"{args.batches} batches of {len(prompts)} prompts x {args.samples} samples, {args.sample_steps} DDIM "
        f"steps, eta 1; gold of the samples {np.mean(success):.3f}"
    )
    print(f"{'step':>4} {'t':>5} {'sigma':>6} {'grad norm':>10} {'cosine':>8}")
    for i in steps:
        print(
            f"{i:>4} {int(chain.timesteps[i]):>5} {float(chain.sigma(i, 1.0)):>6.3f} "
            f"{np.mean([float(g.norm()) for g in grads[i]]):>10.2f} {mean_cos(grads[i]):>8.3f}"
        )
    trained = [i for i in steps if float(chain.sigma(i, 1.0)) >= 0.05]
    print("sums over the first k trained steps (from the noisiest):")
    for k in range(1, len(trained) + 1):
        total = [sum(grads[i][b] for i in trained[:k]) for b in range(args.batches)]
        print(
            f"  steps {trained[:k]} (sigma >= {float(chain.sigma(trained[k - 1], 1.0)):.3f}): "
            f"cosine {mean_cos(total):.3f}"
        )


if __name__ == "__main__":
    main()
