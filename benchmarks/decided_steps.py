"""At which DDIM step is a sample's gold verdict decided? The credit DDPO can assign per step.

For each training prompt of the synthetic task, ``--groups`` trajectories are sampled by the base
generator (eta 1) up to step j; there each branches into ``--branches`` copies that continue with
independent noise. With V_j the mean within-group variance of the gold verdict and V the total
variance, V_j / V is the share of the outcome still undecided before step j (Var = E[Var | state]
+ Var[E | state]; the same draws for every j up to the branch point). Steps between two branch
points decide the difference: a step that decides nothing only adds noise to DDPO's
policy gradient. A branch before step 0 measures how much the initial noise x_T decides
(1 - V_0 / V).

    python benchmarks/decided_steps.py                 # 8 prompts x 16 groups x 4 branches (about 1 minute, 1 core)
    python benchmarks/decided_steps.py --groups 32
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def undecided_share(
    adapter,
    chain,
    prompts: list[str],
    gold,
    branch_at: int,
    groups: int,
    branches: int,
    eta: float = 1.0,
    seed: int = 0,
) -> float:
    """Mean over prompts of within-group variance / total variance of the gold verdict, for
    trajectories that share their path up to step ``branch_at`` (0: only the prompt)."""
    within, total = [], []
    for prompt in prompts:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn((groups, *adapter.latent_shape), generator=g)
        for i in range(len(chain)):
            if i == branch_at:
                x = x.repeat_interleave(branches, 0)
            with torch.no_grad():
                out = adapter.eps(adapter.unet, x, chain.timesteps[i], adapter.encode([prompt] * len(x)))
            stochastic = float(chain.sigma(i, eta)) > 0
            x, _ = chain.step(i, out, x, eta, torch.randn(x.shape, generator=g) if stochastic else None)
        if branch_at >= len(chain):
            x = x.repeat_interleave(branches, 0)
        r = np.asarray(gold(adapter.decode(x), [prompt] * len(x)), dtype=float).reshape(groups, branches)
        within.append(r.var(axis=1, ddof=1).mean())
        total.append(r.reshape(-1).var(ddof=1))
    return float(np.mean(within) / np.mean(total))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    ap.add_argument("--groups", type=int, default=16, help="shared paths per prompt")
    ap.add_argument("--branches", type=int, default=4, help="continuations of each shared path")
    ap.add_argument("--sample-steps", type=int, default=10)
    ap.add_argument("--model", default="data/synth/generator")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.groups < 2 or args.branches < 2:
        ap.error("--groups and --branches must be at least 2 (variances)")

    from textnorm.finetune.adapters import make_adapter
    from textnorm.finetune.loop import load_pipeline
    from textnorm.finetune.task import make_task
    from textnorm.paths import repo_root
    from textnorm.quiet import quiet_libraries

    quiet_libraries()
    torch.set_num_threads(1)
    adapter = make_adapter(load_pipeline(str(repo_root() / args.model)))
    task = make_task("synth", res=adapter.resolution)
    chain = adapter.chain(args.sample_steps)
    print(
        f"gold verdicts of the base generator, {len(task.train_prompts)} training prompts x {args.groups} shared "
        f"paths x {args.branches} branches, {args.sample_steps} DDIM steps, eta 1"
    )
    print(f"{'branch before step':>18} {'t':>5} {'sigma':>6} {'undecided share':>16} {'decided by this step':>21}")
    shares = []
    for j in range(len(chain) + 1):
        shares.append(
            undecided_share(
                adapter, chain, task.train_prompts, task.gold, j, args.groups, args.branches, seed=args.seed
            )
        )
    for j in range(len(chain)):
        decided = shares[j] - shares[j + 1]
        print(
            f"{j:>18} {int(chain.timesteps[j]):>5} {float(chain.sigma(j, 1.0)):>6.3f} {shares[j]:>16.2f} "
            f"{decided:>21.2f}"
        )
    print(f"{'after the last':>18} {'':>5} {'':>6} {shares[-1]:>16.2f}")


if __name__ == "__main__":
    main()
