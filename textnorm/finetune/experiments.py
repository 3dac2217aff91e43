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

from textnorm.finetune import sampling
from textnorm.finetune.adapters import make_adapter
from textnorm.finetune.loop import FinetuneConfig, Finetuner, _generator, load_pipeline
from textnorm.finetune.rewards import make_reward
from textnorm.synth import judge


def bon_kl(n: int) -> float:
    return float(np.log(n) - (n - 1) / n)


def run_grid(model: str, rewards: Mapping[str, str], methods: Sequence[str], seeds: Sequence[int],
             base: FinetuneConfig, keep: Sequence[tuple[str, str, int]] = (), progress: bool = True):
    """Per-step metrics of every run (columns reward, method, seed, step, ...) and the final
    pipelines of the runs named in ``keep`` as (reward, method, seed)."""
    reward_fns = {name: make_reward(spec, temperature=base.temperature, lam=base.lam) for name, spec in rewards.items()}
    frames, kept = [], {}
    runs = [(r, m, s) for r in rewards for m in methods for s in seeds]
    for name, method, seed in tqdm(runs, disable=not progress, desc="fine-tuning runs"):
        cfg = FinetuneConfig(**{**base.__dict__, "method": method, "reward": rewards[name], "seed": seed,
                                "model": model})
        tuner = Finetuner(cfg, pipe=load_pipeline(model), reward_fn=reward_fns[name])
        tuner.train(progress=False)
        rows = tuner.metrics + ([tuner.final_eval] if tuner.final_eval else [])
        frames.append(pd.DataFrame(rows).assign(reward_name=name, method=method, seed=seed))
        if (name, method, seed) in keep:
            kept[(name, method, seed)] = tuner.pipe
    return pd.concat(frames, ignore_index=True), kept


def best_of_n_curve(model: str, rewards: Mapping[str, str], prompts: list[str], ns: Sequence[int],
                    seeds: Sequence[int], temperature: float = 1.0, lam: float = 1.0, sample_steps: int = 20,
                    progress: bool = True) -> pd.DataFrame:
    """Gold alignment and proxy reward of best-of-n for every reward, n and seed; one candidate
    pool of max(ns) samples per prompt and seed is shared by all rewards and all n."""
    pipe = load_pipeline(model)
    fns = {name: make_reward(spec, temperature=temperature, lam=lam) for name, spec in rewards.items()}
    n_max = max(ns)
    rows = []
    ad = make_adapter(pipe)
    for seed in tqdm(seeds, disable=not progress, desc="best-of-n"):
        flat = [p for p in prompts for _ in range(n_max)]
        traj = sampling.sample(ad, ad.unet, ad.encode(flat), len(flat), sample_steps, 0.0, _generator(seed, 0))
        images = ad.decode(traj.x0)
        gold = judge.judge_batch(images, flat).reshape(len(prompts), n_max)
        for name, fn in fns.items():
            r = np.asarray(fn(images, flat), float).reshape(len(prompts), n_max)
            for n in ns:
                pick = r[:, :n].argmax(1)
                rows.append({"reward_name": name, "seed": seed, "n": n, "kl": bon_kl(n),
                             "gold": float(gold[np.arange(len(prompts)), pick].mean()),
                             "reward": float(r[np.arange(len(prompts)), pick].mean())})
    return pd.DataFrame(rows)
