"""Over-optimisation experiments: every (reward, method, seed) fine-tuning run of a grid, and
best-of-n over n, collected into plain tables.

For best-of-n the KL divergence of the selected-sample distribution from the base model has the
closed form KL_bon(n) = log n - (n - 1) / n (Stiennon et al., 2020; Gao et al., 2023), the x-axis
against which over-optimisation is usually drawn (as sqrt(KL)).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from textnorm.finetune.loop import FinetuneConfig, Finetuner, best_of_n, load_pipeline
from textnorm.finetune.rewards import make_reward
from textnorm.finetune.task import Task, make_task
from textnorm.rewards.scoring import repeat_prompts


def bon_kl(n: int) -> float:
    return float(np.log(n) - (n - 1) / n)


def _run_one(job: tuple) -> tuple[pd.DataFrame, dict | None]:
    """One fine-tuning run (in a worker process): its metrics and, if asked, its trained weights."""
    import torch

    from textnorm.quiet import quiet_libraries

    name, spec, cfg, keep = job
    torch.set_num_threads(1)
    quiet_libraries()
    tuner = Finetuner(cfg)
    tuner.train(progress=False)
    rows = tuner.metrics + ([tuner.final_eval] if tuner.final_eval else [])
    frame = pd.DataFrame([{k: v for k, v in r.items() if not isinstance(v, list)} for r in rows])
    frame = frame.assign(reward_name=name, method=cfg.method, seed=cfg.seed)
    state = {k: v.detach().cpu() for k, v in tuner.pipe.unet.state_dict().items()} if keep else None
    return frame, state


def run_grid(
    model: str,
    rewards: Mapping[str, str],
    methods: Mapping[str, FinetuneConfig],
    seeds: Sequence[int],
    keep: Sequence[tuple[str, str, int]] = (),
    workers: int = 1,
    progress: bool = True,
):
    """Per-step metrics of every (reward, method, seed) run (columns reward_name, method, seed,
    step, ...; the row after the last step holds the final evaluation) and the trained UNet
    weights of the runs named in ``keep``. ``methods`` maps a method name to its base settings.
    Runs go to ``workers`` processes of one torch thread each; results do not depend on it."""
    import multiprocessing as mp

    jobs = []
    for name, spec in rewards.items():
        for method, base in methods.items():
            for seed in seeds:
                cfg = FinetuneConfig(**{**base.__dict__, "reward": spec, "seed": seed, "model": model})
                jobs.append((name, spec, cfg, (name, method, seed) in keep))
    if workers > 1:
        with mp.get_context("spawn").Pool(workers) as pool:
            results = list(
                tqdm(pool.imap(_run_one, jobs), total=len(jobs), disable=not progress, desc="fine-tuning runs")
            )
    else:
        results = [_run_one(j) for j in tqdm(jobs, disable=not progress, desc="fine-tuning runs")]
    kept = {(j[0], j[2].method, j[2].seed): state for j, (_, state) in zip(jobs, results) if state is not None}
    return pd.concat([f for f, _ in results], ignore_index=True), kept


def best_of_n_curve(
    model: str,
    rewards: Mapping[str, str],
    prompts: list[str],
    ns: Sequence[int],
    seeds: Sequence[int],
    temperature: float = 1.0,
    lam: float = 1.0,
    sample_steps: int = 20,
    progress: bool = True,
    task: Task | None = None,
) -> pd.DataFrame:
    """Gold alignment and proxy reward of best-of-n for every reward, n and seed; one candidate
    pool of max(ns) samples per prompt and seed is shared by all rewards and all n."""
    task = task or make_task("synth")
    if task.gold is None:
        raise ValueError("best_of_n_curve measures gold alignment: the task needs a gold judge")
    pipe = load_pipeline(model)
    fns = {
        name: make_reward(spec, contrastive=task.contrastive, temperature=temperature, lam=lam, gold=task.gold)
        for name, spec in rewards.items()
    }
    n_max = max(ns)
    rows = []
    for seed in tqdm(seeds, disable=not progress, desc="best-of-n"):
        flat = repeat_prompts(prompts, n_max)
        pool = best_of_n(
            pipe,
            lambda images, _: np.zeros(len(images)),
            prompts,
            n_max,
            seed=seed,
            sample_steps=sample_steps,
            keep_pool=True,
        )
        images = pool["pool_images"].reshape(len(flat), *pool["pool_images"].shape[2:])
        gold = np.asarray(task.gold(images, flat), float).reshape(len(prompts), n_max)
        for name, fn in fns.items():
            r = np.asarray(fn(images, flat), float).reshape(len(prompts), n_max)
            for n in ns:
                pick = r[:, :n].argmax(1)
                rows.append(
                    {
                        "reward_name": name,
                        "seed": seed,
                        "n": n,
                        "kl": bon_kl(n),
                        "gold": float(gold[np.arange(len(prompts)), pick].mean()),
                        "reward": float(r[np.arange(len(prompts)), pick].mean()),
                    }
                )
    return pd.DataFrame(rows)
