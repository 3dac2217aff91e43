"""The images of fine-tuned models for a human-evaluation study, drawn from the runs of an
over-optimisation grid.

A system is one run of the grid (method, reward, seed) after ``step`` rounds (0: the base model).
:func:`checkpoint_near` picks a run's evaluation whose path KL is closest to a stated budget, so
systems can be compared at the same KL. :func:`make_study` trains each chosen run again with this
code up to its last chosen step, without its evaluations (on the CPU that wrote the logs, bit for bit
the logged run: every logged training number is compared, and a difference there is an error) and at
each chosen step draws
``n_images`` images per study prompt with the run's own sampler (the steps that are not trained
run the base model, as in training) from one fixed noise, the same for every system: two systems
differ only by their weights. Each image carries its gold verdict and its path KL to the base model
(nats; summed over the trained steps, an upper bound on the images' KL).

The study is stored as ``study.npz`` (images uint8 [system, prompt, image, H, W, C], gold and kl
[system, prompt, image]) and ``study.json`` (the systems, prompts, settings and replay
differences), small enough for ``data/``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from textnorm.experiments.runner import run_jobs
from textnorm.files import atomic_write


def _logged_sqrt_kl(log: Mapping[str, Any]) -> dict[int, float]:
    """Step -> sqrt of the path KL the run logged at that evaluation."""
    return {e["step"]: math.sqrt(max(e["eval_kl"], 0.0)) for e in log.get("evals", []) if "eval_kl" in e}


def checkpoint_near(log: Mapping[str, Any], sqrt_kl: float) -> int:
    """The step of the run's logged evaluation whose sqrt(eval_kl) is closest to ``sqrt_kl`` (the
    earlier of two equally close). ValueError when no evaluation logged a KL."""
    if not (isinstance(sqrt_kl, (int, float)) and math.isfinite(sqrt_kl) and sqrt_kl >= 0):
        raise ValueError(f"sqrt_kl must be a finite number >= 0, got {sqrt_kl!r}")
    evals = list(_logged_sqrt_kl(log).items())
    if not evals:
        raise ValueError("the run logged no evaluation with a path KL (eval_kl): no checkpoint can be chosen by KL")
    return min(evals, key=lambda e: (abs(e[1] - sqrt_kl), e[0]))[0]


def study_systems(
    logs: Mapping[str, Any], pairs: Sequence[Sequence[str]] | None = None, method: str = "ddpo", seed: int | None = None
) -> list[dict[str, Any]]:
    """The systems the study compares, fixed before any image is drawn: the base model, and for
    each pair (a raw reward, then its TextNorm reward; default: the grid's pairs) both rewards' runs of
    ``seed`` (default: the grid's first) at the pair's KL budget, the checkpoint closest to the
    pair's D (the smallest largest sqrt KL any run of the pair reached, the primary endpoint's
    range), and at the end of training. A checkpoint at the budget that is the end of training is one
    system (``checkpoint`` "budget and end"), never two copies of one model. Each system carries its
    ``role`` (base, raw or textnorm), its pair and the sqrt KL its run logged at that step."""
    from textnorm.experiments.overopt import run_name
    from textnorm.stats.endpoint import reach

    grid = logs["grid"]
    pairs = [tuple(p) for p in (grid.get("pairs", []) if pairs is None else pairs)]
    if not pairs:
        raise ValueError("the study needs pairs of a raw and a TextNorm reward (the grid names none)")
    if logs.get("evaluations") is None:
        raise ValueError(f"the logs hold no per-prompt evaluations with a KL: {logs.get('evaluations_missing')}")
    specs = {name: r["spec"] for name, r in grid["rewards"].items()}
    for pair in pairs:
        kinds = [str(specs.get(n, "")).split(":")[0] for n in pair]
        if len(pair) != 2 or kinds[0] != "raw" or not kinds[1].startswith("textnorm"):
            raise ValueError(
                f"pair {list(pair)}: a raw reward ('raw:...') first, then its TextNorm reward "
                f"('textnorm...'); their specs are {[specs.get(n) for n in pair]}"
            )
    seed = grid["seeds"][0] if seed is None else seed
    first = run_name(method, pairs[0][0], seed)
    if first not in logs["logs"]:
        raise ValueError(f"no run {first!r} in the logs (method {method!r}, seed {seed})")
    systems = [
        {
            "name": "base",
            "run": first,
            "step": 0,
            "role": "base",
            "pair": None,
            "checkpoint": "base",
            "sqrt_kl_logged": 0.0,
        }
    ]
    for i, pair in enumerate(pairs):
        budget = min(reach(logs["evaluations"], name, method) for name in pair)
        for name, role in zip(pair, ("raw", "textnorm")):
            run = run_name(method, name, seed)
            if run not in logs["logs"]:
                raise ValueError(f"no run {run!r} in the logs")
            log = logs["logs"][run]
            kl = _logged_sqrt_kl(log)
            end, at = log["config"]["steps"], checkpoint_near(log, budget)
            common = {"run": run, "role": role, "pair": i, "budget": budget}
            if at != end:
                systems.append(
                    {
                        **common,
                        "name": _system_name(name, at, kl),
                        "step": at,
                        "checkpoint": "budget",
                        "sqrt_kl_logged": kl[at],
                    }
                )
            systems.append(
                {
                    **common,
                    "name": _system_name(name, end, kl),
                    "step": end,
                    "checkpoint": "budget and end" if at == end else "end",
                    "sqrt_kl_logged": kl.get(end),
                }
            )
    return systems


def _system_name(reward: str, step: int, kl: Mapping[int, float]) -> str:
    """Where a model stands, in its name: its reward, its round and its own logged sqrt KL."""
    own = kl.get(step)
    return f"{reward}, round {step}" + ("" if own is None else f", sqrt KL {own:.2f}")


def check_against_logs(
    study: Mapping[str, Any], logs: Mapping[str, Any], systems: Sequence[Mapping[str, Any]] | None = None
) -> None:
    """Raise unless every system of ``study`` (:func:`load_study`) is a run of ``logs``
    (:func:`textnorm.experiments.overopt.load`) with the config, and the sqrt KL at the system's step,
    that the run logs: a study drawn from other logs (an earlier grid) is an error, never a chapter
    about models the logs do not hold. ``systems`` (e.g. :func:`study_systems` of the logs): the study
    must hold exactly these, by name, run and step (a study of other pairs or another seed is refused)."""
    if systems is not None:
        want = [(s["name"], s["run"], s["step"]) for s in systems]
        have = [(s["name"], s["run"], s["step"]) for s in study["systems"]]
        if want != have:
            raise ValueError(
                f"the study holds other systems than expected: {[h for h in have if h not in want][:3]} "
                f"beyond, {[w for w in want if w not in have][:3]} missing (or another order); make it again "
                "from these logs (`make study`, textnorm study)"
            )
    for s in study["systems"]:
        log = logs["logs"].get(s["run"])
        if log is None:
            raise ValueError(
                f"system {s['name']!r}: its run {s['run']!r} is not in these logs; the study was drawn "
                "from other logs: make it again from these (`make study`, textnorm study)"
            )
        kl = _logged_sqrt_kl(log)
        same = (log["config"]["method"], log["config"]["seed"]) == (s["method"], s["seed"]) and (
            s.get("role") == "base" or log["config"]["reward"] == s["reward"]
        )
        logged = s.get("sqrt_kl_logged")
        if not same or (logged is not None and (s["step"] not in kl or kl[s["step"]] != logged)):
            raise ValueError(
                f"system {s['name']!r}: its run {s['run']!r} in these logs is another run (its config or "
                f"its logged KL at step {s['step']} differs); the study was drawn from other logs: make it "
                "again from these (`make study`, textnorm study)"
            )


def _draw(tuner, prompts: Sequence[str], n_images: int, noise_seed: int) -> dict[str, np.ndarray]:
    from textnorm.finetune import sampling
    from textnorm.finetune.seeding import SALT_STUDY, make_generator
    from textnorm.rewards.scoring import repeat_prompts

    flat = repeat_prompts(list(prompts), n_images)
    traj, _ = sampling.sample(
        tuner, flat, make_generator(noise_seed, 0, SALT_STUDY), record=False, with_kl=tuner.cfg.eta > 0
    )
    images = sampling.decode(tuner, traj.x0)
    shape = (len(prompts), n_images)
    if tuner.task.gold is None:
        raise ValueError("the study needs gold: a task with a judge, or the grid's judge")
    gold = np.asarray(tuner.task.gold(images, flat), float).reshape(shape)
    kl = traj.kl.double().cpu().numpy().reshape(shape) if tuner.cfg.eta > 0 else np.zeros(shape)
    return {"images": images.reshape(*shape, *images.shape[1:]), "gold": gold, "kl": kl}


def _study_job(job: tuple) -> tuple[str, dict]:
    from textnorm.finetune.config import FinetuneConfig
    from textnorm.finetune.loop import Finetuner

    run, log, steps, prompts, n_images, noise_seed = job
    # the run's evaluations are not repeated (about 40% of a run on CPU): they draw from their own seeded
    # generators and leave the training untouched, so the training rows still match the log bit for bit
    tuner = Finetuner(FinetuneConfig(**{**log["config"], "eval_every": 0}))
    trained = set(prompts) & set(tuner.task.train_prompts)
    if trained:  # the study measures the models on prompts they were not tuned on
        raise ValueError(f"study prompts the run {run!r} trained on: {sorted(trained)}")
    drawn = {}
    for k in sorted(set(steps)):
        while tuner.step < k:
            tuner.run_step()
        drawn[k] = _draw(tuner, prompts, n_images, noise_seed)
    from textnorm.experiments.overopt import row_differences

    diffs = row_differences(log["rows"], tuner.metrics)  # the training rows, against the logged ones
    return run, {"drawn": drawn, "diffs": diffs}


def make_study(
    logs: Mapping[str, Any],
    systems: Sequence[Mapping[str, Any]],
    prompts: Sequence[str],
    out: str | Path,
    n_images: int = 4,
    noise_seed: int = 0,
    workers: int = 2,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Draw the study's images (see the module docstring) into the folder ``out``.

    ``logs``: :func:`textnorm.experiments.overopt.load`'s result. ``systems``: dicts with ``name``
    (unique), ``run`` (a run name of the grid) and ``step`` (rounds trained, 0 to the run's steps).
    Returns ``out``."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty: pass overwrite=True to replace the study")
    prompts = list(prompts)
    if not prompts or len(set(prompts)) != len(prompts) or not all(isinstance(p, str) and p for p in prompts):
        raise ValueError("study prompts must be distinct non-empty strings")
    if not (isinstance(n_images, int) and n_images >= 1):
        raise ValueError(f"n_images must be an integer >= 1, got {n_images!r}")
    names = [s["name"] for s in systems]
    if not systems or len(set(names)) != len(names):
        raise ValueError(f"systems need distinct names, got {names}")
    models = [(s["run"], s["step"]) for s in systems]
    if len(set(models)) != len(models) or sum(s["step"] == 0 for s in systems) > 1:
        raise ValueError("two systems are one model (the same run and step, or two base models): list it once")
    by_run: dict[str, list[int]] = {}
    for s in systems:
        log = logs["logs"].get(s["run"])
        if log is None:
            raise ValueError(f"system {s['name']!r}: no run {s['run']!r} in the logs")
        steps = log["config"]["steps"]
        if not (isinstance(s["step"], int) and 0 <= s["step"] <= steps):
            raise ValueError(f"system {s['name']!r}: step must be an integer in [0, {steps}], got {s['step']!r}")
        by_run.setdefault(s["run"], []).append(s["step"])
    jobs = [(run, logs["logs"][run], steps, prompts, n_images, noise_seed) for run, steps in by_run.items()]
    results = dict(run_jobs(_study_job, jobs, workers, progress=progress, desc="study images"))
    import torch

    from textnorm.experiments.overopt import cpu_model

    here = (torch.backends.cpu.get_cpu_capability(), cpu_model())
    for run, r in results.items():
        log = logs["logs"][run]
        same_cpu = (
            log["config"].get("device", "cpu") == "cpu" and (log.get("cpu_capability"), log.get("cpu_model")) == here
        )
        differ = {k: v for k, v in r["diffs"].items() if v != 0}
        if differ and same_cpu:  # on the CPU that wrote the log a run is repeatable bit for bit
            raise ValueError(f"run {run!r} trained again differs from its log on the CPU that wrote it: {differ}")
    drawn = [results[s["run"]]["drawn"][s["step"]] for s in systems]
    arrays = {key: np.stack([d[key] for d in drawn]) for key in ("images", "gold", "kl")}
    meta = {
        "systems": [
            {
                **dict(s),
                "method": logs["logs"][s["run"]]["config"]["method"],
                "reward": None if s.get("role") == "base" else logs["logs"][s["run"]]["config"]["reward"],
                "seed": logs["logs"][s["run"]]["config"]["seed"],
            }
            for s in systems
        ],
        "prompts": prompts,
        "n_images": n_images,
        "noise_seed": noise_seed,
        "replay_max_diff": {run: r["diffs"] for run, r in results.items()},
        "replay_cpu": {"cpu_capability": here[0], "cpu_model": here[1]},
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "study.npz", lambda f: np.savez_compressed(f, **arrays))
    atomic_write(out / "study.json", lambda f: f.write((json.dumps(meta, indent=1) + "\n").encode()))
    return out


def load_study(folder: str | Path) -> dict[str, Any]:
    """``study.json``'s data with the arrays of ``study.npz`` (no pickles), shapes checked."""
    folder = Path(folder)
    meta = json.loads((folder / "study.json").read_text(encoding="utf-8"))
    with np.load(folder / "study.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    want = (len(meta["systems"]), len(meta["prompts"]), meta["n_images"])
    for key in ("images", "gold", "kl"):
        if key not in arrays or arrays[key].shape[:3] != want:
            raise ValueError(f"{folder}: {key} does not hold {want} (systems, prompts, images)")
    return {**meta, **arrays}
