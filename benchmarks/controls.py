"""Controls of the optimisers: optimising the gold judge must raise gold alignment.

For DDPO and reward-weighted SFT, and for each seed, fine-tunes the synthetic generator with the
gold judge itself as the reward (it cannot be over-optimised) and measures gold alignment before
and after, on the task's training prompts (primary) and held-out prompts, with the same
evaluation noise before and after (paired), under the training sampler (eta 1). Prints one table
and the verdict of the acceptance criteria:

    DDPO  raises training-prompt gold by >= 0.10 in at least 2 of 3 seeds
    RWSFT raises training-prompt gold by >= 0.05 in at least 2 of 3 seeds

Runs are spread over worker processes of one torch thread each (two on a 2-core machine).

    python benchmarks/controls.py                      # CPU defaults (about 15 minutes on 2 cores)
    python benchmarks/controls.py --gpu --device cuda --workers 6 --minutes 7 --out runs/controls
                                                       # larger batches and more steps, at most 7
                                                       # minutes of training per run

--minutes stops a run's training at that wall time (the table says how many steps it made);
--out writes each run's row, with its evaluations along the way, as JSON as soon as it ends.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from textnorm.experiments.runner import run_jobs

# The controls' CPU settings: two training prompts (the synthetic task's first counting and first
# composition prompt) x 64 samples per DDPO round. A 15-minute CPU budget affords about 128 samples per
# round; spread over the task's 8 training prompts (16 each) or 4 (32 each) the per-prompt advantages
# are noisier: on seed 2, 24 rounds gained +0.031 with 8 prompts, +0.016 with 4 and +0.250 with these 2
# (same compute). The over-optimisation grid (params/overopt_cpu.yaml) trains all 8 prompts with other
# settings and carries its own gold and random-reward controls, shown in the overoptimization chapter;
# these are the optimisers' checks, measured in ../shared/FACTS.md.
PROMPTS = ["four green circles", "a blue circle and a red square"]
CPU = {
    "ddpo": dict(
        method="ddpo",
        steps=16,
        prompts=PROMPTS,
        n_prompts=2,
        samples_per_prompt=64,
        batch_size=32,
        lr=6e-5,
        warmup=10,
        clip_range=1e-3,
        min_train_sigma=0.05,
        sample_steps=10,
    ),
    "rwsft": dict(
        method="rwsft",
        steps=200,
        prompts=PROMPTS,
        pool_size=128,
        top_fraction=0.1,
        batch_size=32,
        lr=1e-4,
        warmup=20,
        pretrain_weight=1.0,
        sample_steps=10,
    ),
}
GPU = {
    "ddpo": dict(
        prompts=[], n_prompts=8, samples_per_prompt=64, batch_size=128, steps=100, sample_steps=20, eval_every=25
    ),
    "rwsft": dict(prompts=[], pool_size=256, steps=1000, batch_size=64, sample_steps=20, eval_every=250),
}
THRESHOLD = {"ddpo": 0.10, "rwsft": 0.05}


def run_one(job: tuple[str, int, dict, str, int, float | None]) -> dict:
    from textnorm.finetune.config import FinetuneConfig
    from textnorm.finetune.loop import Finetuner

    method, seed, settings, device, eval_samples, minutes = job
    t0 = time.time()
    cfg = FinetuneConfig(**{"reward": "gold", **settings}, seed=seed, device=device, eval_samples=eval_samples)
    tuner = Finetuner(cfg)
    before = tuner.evaluate()
    t_train = time.time()
    while tuner.step < cfg.steps:
        tuner.run_step()
        if minutes is not None and time.time() - t_train > 60 * minutes:
            break
    after = tuner.evaluate()
    # evaluations along the way (eval_every > 0), on the same noise as before and after
    curve = [
        {"step": m["step"], "train": m["eval_gold"], "heldout": m.get("heldout_gold"), "reward": m["eval_reward"]}
        for m in tuner.metrics
        if "eval_gold" in m
    ]
    curve.append(
        {
            "step": tuner.step,
            "train": after["eval_gold"],
            "heldout": after.get("heldout_gold"),
            "reward": after["eval_reward"],
        }
    )
    return {
        "method": method,
        "seed": seed,
        "reward": cfg.reward,
        "steps": tuner.step,
        "lr": cfg.lr,
        "reward_base": before["eval_reward"],
        "reward_final": after["eval_reward"],
        "train_base": before["eval_gold"],
        "train_final": after["eval_gold"],
        "heldout_base": before["heldout_gold"],
        "heldout_final": after["heldout_gold"],
        "kl": float(tuner.metrics[-1].get("kl", float("nan"))),
        "curve": curve,
        "minutes": (time.time() - t0) / 60,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=["ddpo", "rwsft"], choices=["ddpo", "rwsft"])
    ap.add_argument("--workers", type=int, default=2, help="worker processes (one torch thread each)")
    ap.add_argument("--eval-samples", type=int, default=32, help="images per evaluation prompt (8 + 8 prompts)")
    ap.add_argument("--gpu", action="store_true", help="the larger GPU settings")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--minutes", type=float, default=None, help="stop each run's training after this wall time")
    ap.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting of every run (a FinetuneConfig field, e.g. lr=2e-5)",
    )
    ap.add_argument("--out", type=Path, default=None, help="folder for one JSON file per run (must not exist)")
    args = ap.parse_args()
    override = {}
    for item in args.set:
        key, _, value = item.partition("=")
        override[key] = json.loads(value)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=False)  # never overwrite earlier results
    jobs = [
        (m, s, {**CPU[m], **(GPU[m] if args.gpu else {}), **override}, args.device, args.eval_samples, args.minutes)
        for m in args.methods
        for s in args.seeds
    ]
    t0 = time.time()
    rows = []
    for row in run_jobs(run_one, jobs, args.workers):
        rows.append(row)
        if args.out is not None:
            path = args.out / f"{row['method']}_seed{row['seed']}.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(row, indent=1))
            os.replace(tmp, path)
        print(
            f"done: {row['method']} seed {row['seed']}: {row['steps']} steps, training gold "
            f"{row['train_base']:.3f} -> {row['train_final']:.3f} ({row['minutes']:.1f} min)",
            flush=True,
        )
    if args.out is not None:
        (args.out / "summary.json").write_text(json.dumps(rows, indent=1))
    df = pd.DataFrame(rows).sort_values(["method", "seed"])
    df["train_change"] = df.train_final - df.train_base
    df["heldout_change"] = df.heldout_final - df.heldout_base
    if set(df.reward) != {"gold"}:  # another reward: its change beside gold's, no verdict
        df["reward_change"] = df.reward_final - df.reward_base
        print(
            df[
                [
                    "method",
                    "reward",
                    "seed",
                    "steps",
                    "reward_base",
                    "reward_final",
                    "reward_change",
                    "train_base",
                    "train_final",
                    "train_change",
                    "heldout_change",
                    "kl",
                ]
            ]
            .round(3)
            .to_string(index=False)
        )
        return
    cols = [
        "method",
        "seed",
        "steps",
        "train_base",
        "train_final",
        "train_change",
        "heldout_base",
        "heldout_final",
        "heldout_change",
        "minutes",
    ]
    print(
        f"gold control on the synthetic world ({'GPU' if args.gpu else 'CPU'} settings, device {args.device}, "
        f"{args.eval_samples} evaluation images per prompt, training sampler)"
    )
    print(df[cols].round(3).to_string(index=False))
    ok = True
    for m in args.methods:
        changes = df[df.method == m].train_change.to_numpy()
        need = min(2, len(changes))
        passed = int(np.sum(changes >= THRESHOLD[m]))
        verdict = "PASS" if passed >= need else "FAIL"
        ok &= passed >= need
        print(
            f"{m}: training-prompt gold rose by >= {THRESHOLD[m]:.2f} in {passed} of {len(changes)} seeds "
            f"(need {need}): {verdict}; mean change {changes.mean():+.3f}, held-out "
            f"{df[df.method == m].heldout_change.mean():+.3f}"
        )
    print(f"wall time {(time.time() - t0) / 60:.1f} min with {args.workers} worker(s)")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
