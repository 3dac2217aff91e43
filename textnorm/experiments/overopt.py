"""The over-optimisation grid: every (method, reward, seed) fine-tuning run and one best-of-n pool,
written as run logs that the overoptimization chapter reads (and replays in part).

A grid is plain JSON-able data (:func:`default_grid`, params/overopt_cpu.yaml, is the default; a GPU
user passes another, e.g. params/overopt_gpu.yaml's ``grid``):

    {"model": folder,
     "rewards": {name: {"spec": reward spec, "temperature": T, "lam": lambda}},
     "methods": {"ddpo": {FinetuneConfig fields but reward, seed, model; e.g. prompts: the training
                          prompts, [] = the task's}, "rwsft": {...}},
     "method_rewards": {"rwsft": [names]}   (a method without an entry trains every reward),
     "seeds": [...],
     "pairs": [[raw, TextNorm], ...] the reward pairs whose primary endpoint the chapter tests
              (named before the runs; optional),
     "judge": optional reward spec logged as gold in place of the task's judge (raw:PATH: a reward
              model as gold, as Gao et al.; e.g. on Stable Diffusion),
     "bon": {"prompts": "train" (the first method's training prompts) | a list of prompts | K (K
                        held-out captions of the synthetic world),
             "pool": N samples each, "sample_steps": S, "seed": s,
             "eta": the sampler's eta (default 0; the training policy's eta compares best-of-n with
                    DDPO on the same sampler), "sample_batch": samples per UNet call (0: all),
             "device": torch device (default cpu)}}

A method's settings are those of the first method when the pool needs them (guidance, negative
prompt, task, contrastive prompts).

Written to the output folder (each file atomically, as soon as it is ready):

    grid.json                          the grid itself
    runs/{method}__{name}__seed{s}.json  config, per-step rows (sampled images' reward, gold, image
                                       statistics and KL to the base model of the trained steps,
                                       in nats), the evaluations before and after (fixed noise),
                                       the CPU capability, CPU model and torch version that made it
    bon.npz                            the best-of-n pool: prompts (K,), gold (K, N), one (K, N)
                                       array per reward (``reward:NAME``) and image statistics
    wall.json                          the grid's wall time in seconds over every invocation (also
                                       in data/MANIFEST.json, in minutes)
    partial/{run}/                     while a run trains: its checkpoint, saved about once a minute;
                                       a killed grid's runs go on from there (removed once logged)

With ``overwrite`` the runs go to ``out.new``, which is swapped in once complete; the same call after a
kill at any point (a run, the swap, the manifest) goes on from what is on disk.

A folder that exists is refused unless ``resume`` (keep the runs already written for the same
grid) or ``overwrite`` (run into ``out.new``, swapped in when complete; a killed overwrite of the same
grid goes on from the ``out.new`` it left). Inside the repository's ``data/`` the folder's sha256 are recorded in
data/MANIFEST.json when the grid is complete.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import time
import types
import typing
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from textnorm.experiments.runner import run_jobs
from textnorm.files import atomic_write

# The default grid is the pre-registered CPU grid, one file (its comments say how its settings were
# chosen before any TextNorm run): `make overopt` runs it, the chapter reads its logs, and the GPU
# parameter file scales its sizes (tests/test_settings.py). The optimisers' controls keep their own.
GRID_FILE = "params/overopt_cpu.yaml"


def default_grid() -> dict[str, Any]:
    """The grid of :data:`GRID_FILE` (relative to the repository root), as plain data."""
    from textnorm.files import read_data
    from textnorm.paths import repo_root

    path = repo_root() / GRID_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no default grid at {path}: pass a grid (e.g. textnorm overopt --grid FILE)")
    return read_data(path)


def run_name(method: str, reward: str, seed: int) -> str:
    safe = "".join(ch if ch.isalnum() else "-" for ch in reward).strip("-")
    return f"{method}__{safe}__seed{seed}"


def jobs(grid: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    """(method, reward name, seed) of every run, in a fixed order."""
    out = []
    for method in grid["methods"]:
        names = grid.get("method_rewards", {}).get(method, list(grid["rewards"]))
        unknown = set(names) - set(grid["rewards"])
        if unknown:
            raise ValueError(f"method_rewards[{method!r}] names unknown rewards: {sorted(unknown)}")
        out += [(method, name, seed) for name in names for seed in grid["seeds"]]
    files = [run_name(*job) for job in out]
    if len(set(files)) != len(files):  # e.g. "TextNorm(x y)" and "TextNorm x y"
        raise ValueError("two runs of the grid would share a log file name: rename a reward")
    return out


def run_config(grid: Mapping[str, Any], method: str, reward: str, seed: int):
    from textnorm.finetune.config import FinetuneConfig, validate

    spec = grid["rewards"][reward]
    fields = {**grid["methods"][method], "reward": spec["spec"], "seed": seed, "model": grid["model"]}
    if grid.get("judge"):
        fields["judge"] = grid["judge"]
    for key in ("temperature", "lam"):
        if key in spec:
            fields[key] = spec[key]
    cfg = FinetuneConfig(**fields)
    validate(cfg)
    return cfg


GRID_KEYS = ("model", "rewards", "methods", "method_rewards", "seeds", "judge", "pairs", "bon")
REWARD_KEYS = ("spec", "temperature", "lam")
BON_KEYS = ("prompts", "pool", "sample_steps", "seed", "eta", "sample_batch", "device")
_SET_BY_GRID = ("reward", "seed", "model", "judge")  # the grid sets them per run: a method's entry must not


def check_known(keys: Any, known: Sequence[str], where: str) -> None:
    import difflib

    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
            raise ValueError(f"{where}: unknown setting {key!r}{hint}")


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_type(where: str, value: Any, hint: Any) -> None:
    """A setting's value against its FinetuneConfig type (int, float, str, list[str], optional)."""
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType)  # e.g. int | None
    if optional and value is None:
        return
    base = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    if base is float:
        ok = _int(value) or isinstance(value, float)
    elif base is int:
        ok = _int(value)
    elif base == list[str]:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        ok = isinstance(value, base)
    if not ok:
        kind = {float: "a number", int: "an integer", str: "a string"}.get(base, "a list of strings")
        hint_yaml = " (YAML reads 6e-5 as text: write 6.0e-5)" if base is float and isinstance(value, str) else ""
        raise ValueError(f"{where} must be {kind}, got {value!r}{hint_yaml}")


def validate_grid(grid: Any) -> None:
    """Every check that needs no run: the grid's layout and spelling (a misspelt setting is named),
    the seeds, every run's settings, devices, the model and reward folders, that DDPO has steps to
    train, and the best-of-n pool's settings. ``run`` calls it before computing anything."""
    from textnorm.finetune import inputs
    from textnorm.finetune.config import FinetuneConfig
    from textnorm.finetune.registry import task_factory
    from textnorm.finetune.rewards import check_spec, spec_sources

    if not isinstance(grid, Mapping):
        raise ValueError(f"a grid is a mapping of {', '.join(GRID_KEYS)}, got {type(grid).__name__}")
    check_known(grid, GRID_KEYS, "grid")
    missing = [k for k in ("model", "rewards", "methods", "seeds") if k not in grid]
    if missing:
        raise ValueError(f"grid: missing {', '.join(missing)}")
    seeds = grid["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(_int(s) and s >= 0 for s in seeds):
        raise ValueError(f"grid: seeds must be a non-empty list of integers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"grid: seeds repeat ({seeds}); each seed is one run")
    rewards, methods = grid["rewards"], grid["methods"]
    if not isinstance(rewards, Mapping) or not rewards:
        raise ValueError("grid: rewards must be a non-empty mapping of name -> {spec, temperature, lam}")
    for name, r in rewards.items():
        if not isinstance(r, Mapping) or not isinstance(r.get("spec"), str):
            raise ValueError(f"grid: reward {name!r} needs a 'spec' string, e.g. {{spec: 'raw:PATH'}}")
        check_known(r, REWARD_KEYS, f"grid: reward {name!r}")
        for key in ("temperature", "lam"):
            if key in r:
                check_type(f"grid: reward {name!r}.{key}", r[key], float)
        try:
            check_spec(r["spec"])
        except ValueError as exc:
            raise ValueError(f"grid: reward {name!r}: {exc}") from None
    if "pairs" in grid:
        pairs = grid["pairs"]
        if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(n, str) for n in p) for p in pairs
        ):
            raise ValueError(f"grid: pairs must be a list of [raw reward, TextNorm reward] name pairs, got {pairs!r}")
        for raw, cal in pairs:
            missing = [n for n in (raw, cal) if n not in rewards]
            if missing or raw == cal:
                raise ValueError(f"grid: pair [{raw!r}, {cal!r}] must name two different rewards of the grid")
            for method in grid.get("methods", {}):  # the pair is compared under every method that trains it
                trained = grid.get("method_rewards", {}).get(method, list(rewards))
                if (raw in trained) != (cal in trained):
                    raise ValueError(f"grid: method {method!r} trains only one reward of the pair [{raw!r}, {cal!r}]")
    if "judge" in grid:
        if not isinstance(grid["judge"], str):
            raise ValueError(f"grid: judge must be a reward spec string such as 'raw:PATH', got {grid['judge']!r}")
        check_spec(grid["judge"]) if grid["judge"] else None
    if not isinstance(methods, Mapping) or not methods:
        raise ValueError("grid: methods must be a non-empty mapping of method -> settings")
    fields = [f.name for f in dataclasses.fields(FinetuneConfig)]
    hints = typing.get_type_hints(FinetuneConfig)
    for method, settings in methods.items():
        if not isinstance(settings, Mapping):
            raise ValueError(f"grid: methods[{method!r}] must be a mapping of settings")
        check_known(settings, [f for f in fields if f not in _SET_BY_GRID], f"grid: methods[{method!r}]")
        for key, value in settings.items():
            check_type(f"grid: methods[{method!r}].{key}", value, hints[key])
        if settings.get("method", "ddpo") != method:
            raise ValueError(f"grid: methods[{method!r}] sets method={settings.get('method', 'ddpo')!r}")
    per_method = grid.get("method_rewards", {})
    if not isinstance(per_method, Mapping) or any(not isinstance(v, list) for v in per_method.values()):
        raise ValueError("grid: method_rewards must map a method to a list of reward names")
    check_known(per_method, list(methods), "grid: method_rewards")
    for method, name, seed in jobs(grid):
        try:
            cfg = run_config(grid, method, name, seed)
        except TypeError as exc:  # a value of the wrong type that the dataclass cannot take
            raise ValueError(f"grid: run ({method}, {name}, seed {seed}): {exc}") from None
        inputs.check_device(cfg.device)
        if cfg.task != "auto":
            task_factory(cfg.task)  # a registered task
    model = inputs.resolve_path(grid["model"], "grid: model folder", marker="model_index.json")
    for name, r in rewards.items():
        for src in spec_sources(r["spec"]):
            inputs.resolve_path(src, f"grid: reward {name!r}: model folder")
    for src in spec_sources(grid.get("judge") or "gold"):
        inputs.resolve_path(src, "grid: judge: model folder")
    _check_trained_steps(grid, model)
    if "bon" in grid:
        b = grid["bon"]
        if not isinstance(b, Mapping):
            raise ValueError("grid: bon must be a mapping of prompts, pool, sample_steps, seed (and device)")
        check_known(b, BON_KEYS, "grid: bon")
        for key in ("pool", "sample_steps"):
            if not _int(b.get(key)) or b[key] < 1:
                raise ValueError(f"grid: bon {key} must be an integer >= 1, got {b.get(key)!r}")
        for key in ("seed", "sample_batch"):
            if not _int(b.get(key, 0)) or b.get(key, 0) < 0:
                raise ValueError(f"grid: bon {key} must be an integer >= 0, got {b.get(key)!r}")
        eta = b.get("eta", 0.0)
        if not (_int(eta) or isinstance(eta, float)) or not 0 <= eta < float("inf"):
            raise ValueError(f"grid: bon eta must be a number >= 0, got {eta!r}")
        inputs.check_device(b.get("device", "cpu"))
        pool_prompts(grid)


def _check_trained_steps(grid: Mapping[str, Any], model: str) -> None:
    """DDPO trains the steps with sigma >= min_train_sigma: a chain too short has none (read from the
    model's scheduler config when it is a local folder; a hub model is checked when it loads)."""
    config = Path(model) / "scheduler" / "scheduler_config.json"
    if not config.is_file():
        return
    from diffusers import DDIMScheduler

    from textnorm.ddim import Chain

    scheduler = DDIMScheduler.from_config(json.loads(config.read_text()))
    for method in grid["methods"]:
        cfg = run_config(grid, method, next(iter(grid["rewards"])), grid["seeds"][0])
        if cfg.method != "ddpo":
            continue
        chain = Chain.from_scheduler(scheduler, cfg.sample_steps)
        if not chain.trained_steps(cfg.eta, cfg.min_train_sigma):
            raise ValueError(
                f"grid: methods[{method!r}]: with sample_steps={cfg.sample_steps} no DDIM step has sigma >= "
                f"min_train_sigma={cfg.min_train_sigma}: DDPO would train nothing (more steps or a lower threshold)"
            )


def cpu_model() -> str:
    """The processor's model name (Linux: /proc/cpuinfo; elsewhere platform's): with the CPU kernels'
    name and the torch version, what decides whether a replay must agree bit for bit."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _plain(row: Mapping[str, Any]) -> dict:
    return {k: v for k, v in row.items() if not isinstance(v, list)}


def _evaluation(row: Mapping[str, Any]) -> dict:
    """An evaluation's record: the step before which it was made, its means and per-prompt lists."""
    return {"step": row["step"], **{k: v for k, v in row.items() if k.startswith(("eval_", "heldout_"))}}


# how often a grid's run saves its checkpoint to its ``partial/`` folder (after the step that passes it):
# a kill loses this plus one step at most (about 2 minutes on the CPU grid), for a save of well under 1%
# of a round
CHECKPOINT_SECONDS = 60.0


def train_run(cfg, steps: int | None = None, keep_weights: bool = False, partial: str | Path | None = None) -> dict:
    """One run (or its first ``steps`` steps): the log entry described in the module docstring;
    with ``keep_weights`` also the trained UNet's weights (``weights``, not part of the log).

    With ``partial`` (a folder), the run saves its checkpoint there (:mod:`textnorm.finetune.checkpoint`)
    after the first step that ends :data:`CHECKPOINT_SECONDS` or more after the last save (and after
    the last step) and, when the folder holds one, goes on from it: a resumed run logs the same
    numbers as an uninterrupted one (the randomness of a step depends on the seed and the step only;
    tests/test_finetune.py), and ``minutes`` adds up its invocations up to each one's last save."""
    import torch

    from textnorm.finetune import checkpoint
    from textnorm.finetune.loop import Finetuner

    t0 = time.time()
    tuner = Finetuner(cfg)
    earlier = 0.0  # minutes spent by earlier, killed invocations of this run
    if partial is not None:
        partial = Path(partial)
        checkpoint.clean_stale_temps(partial)
        for tmp in partial.glob(".minutes.json.*"):  # a write a kill interrupted: never read
            tmp.unlink()
        if (partial / "checkpoint.pt").is_file():
            try:
                tuner.load_checkpoint(partial)
            except ValueError as exc:
                raise ValueError(
                    f"{exc}\n(a grid's run cannot go on from it: remove {partial} to start this run afresh)"
                ) from None
            if (partial / "minutes.json").is_file():
                earlier = float(_read_json(partial / "minutes.json"))
    n = cfg.steps if steps is None else min(steps, cfg.steps)
    saved = time.time()
    while tuner.step < n:
        tuner.run_step()  # with eval_every > 0 step 0 evaluates the base model first
        if partial is not None and (time.time() - saved >= CHECKPOINT_SECONDS or tuner.step == n):
            tuner.save_checkpoint(partial)
            # after the checkpoint: a kill between the two writes drops one interval from ``minutes``, never
            # counts time whose work the checkpoint does not hold
            _write_json(partial / "minutes.json", round(earlier + (time.time() - t0) / 60, 2))
            saved = time.time()
    after = tuner.evaluate() if cfg.eval_every and steps is None else {}
    first = tuner.metrics[0] if tuner.metrics else {}
    evals = [_evaluation(r) for r in tuner.metrics if "eval_gold" in r or "eval_reward" in r]
    if after:
        evals.append(_evaluation({"step": tuner.step, **after}))
    out = {
        "config": dict(cfg.__dict__),
        "rows": [_plain(r) for r in tuner.metrics],
        "evals": evals,
        "before": {k: v for k, v in first.items() if k.startswith(("eval_", "heldout_"))},
        "after": {"step": tuner.step, **after} if after else {},
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_model": cpu_model(),
        "torch": torch.__version__,
        "minutes": round(earlier + (time.time() - t0) / 60, 2),
    }
    if keep_weights:
        out["weights"] = {k: v.detach().cpu().clone() for k, v in tuner.policy.state_dict().items()}
    return out


def _run_job(job: tuple) -> tuple[str, dict]:
    kind, name, payload = job
    if kind == "bon":
        return name, best_of_n_pool(payload)
    cfg, partial = payload
    return name, train_run(cfg, partial=partial)


def bon_prompts(k: int, seed: int = 0) -> list[str]:
    """k held-out captions of the synthetic world (composition and counting), sorted."""
    from textnorm.synth import scenes

    held = scenes.split_captions("composition", seed=0)[1] + scenes.split_captions("counting", seed=0)[1]
    if k > len(held):
        raise ValueError(f"bon prompts: asked for {k}, the synthetic world holds out {len(held)}")
    return sorted(np.random.default_rng(seed).choice(held, k, replace=False).tolist())


def _pool_config(grid: Mapping[str, Any]):
    method = next(iter(grid["methods"]))
    return run_config(grid, method, next(iter(grid["rewards"])), grid["seeds"][0])


def pool_prompts(grid: Mapping[str, Any]) -> list[str]:
    """The best-of-n pool's prompts: ``"train"`` (the first method's training prompts, or its task's
    when it names none), a list, or K held-out captions of the synthetic world."""
    spec = grid["bon"]["prompts"]
    if spec == "train":
        cfg = _pool_config(grid)
        if cfg.prompts:
            return list(dict.fromkeys(cfg.prompts))
        from textnorm.finetune.task import make_task

        task = cfg.task
        if task == "auto":  # the task registered for the model's pipeline class, read without loading it
            from textnorm.finetune.inputs import resolve_path
            from textnorm.finetune.registry import DEFAULT_TASKS, load_plugins

            index = Path(resolve_path(grid["model"], "grid: model folder")) / "model_index.json"
            name = json.loads(index.read_text()).get("_class_name") if index.is_file() else None
            load_plugins()
            task = next((n for t, n in DEFAULT_TASKS if t.__name__ == name), "prompts")
        if task == "prompts":
            raise ValueError("grid: bon prompts 'train' needs training prompts: give the first method its prompts")
        return make_task(task).train_prompts
    if isinstance(spec, list):
        if not spec or not all(isinstance(p, str) and p for p in spec) or len(set(spec)) != len(spec):
            raise ValueError(f"grid: bon prompts must be distinct non-empty strings, got {spec!r}")
        return list(spec)
    if _int(spec) and spec >= 1:
        return bon_prompts(spec, grid["bon"].get("seed", 0))
    raise ValueError(f"grid: bon prompts must be 'train', a list of prompts or an integer >= 1, got {spec!r}")


def best_of_n_pool(grid: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The base model's pool for the pool's prompts (:func:`pool_prompts`), sampled with the bon
    settings' eta and the first method's guidance, scored by gold (the grid's judge, else the task's)
    and by every reward of the grid."""
    import dataclasses as dc

    from textnorm.finetune.loop import best_of_n, image_stat_arrays, load_pipeline
    from textnorm.finetune.registry import default_task
    from textnorm.finetune.rewards import make_reward
    from textnorm.finetune.task import contrastive_from, make_task
    from textnorm.rewards.scoring import repeat_prompts

    b = grid["bon"]
    cfg = _pool_config(grid)
    prompts = pool_prompts(grid)
    device = b.get("device", "cpu")
    pipe = load_pipeline(grid["model"], device)
    task = make_task(default_task(pipe) if cfg.task == "auto" else cfg.task, prompts)
    if cfg.contrastive:
        task = dc.replace(task, contrastive=contrastive_from(cfg.contrastive)[0])
    gold = make_reward(grid["judge"], device=device) if grid.get("judge") else task.gold
    if gold is None:
        raise ValueError("grid: the best-of-n pool needs gold: a task with a judge, or the grid's judge")
    pool = best_of_n(
        pipe,
        lambda im, _: np.zeros(len(im)),
        prompts,
        b["pool"],
        seed=b["seed"],
        sample_steps=b["sample_steps"],
        keep_pool=True,
        eta=float(b.get("eta", 0.0)),
        guidance_scale=cfg.guidance_scale,
        negative_prompt=cfg.negative_prompt,
        sample_batch=b.get("sample_batch", 0),
    )
    shape = (len(prompts), b["pool"])
    images = pool["pool_images"].reshape(-1, *pool["pool_images"].shape[2:])
    flat = repeat_prompts(prompts, b["pool"])
    out = {"prompts": np.array(prompts), "gold": np.asarray(gold(images, flat), float).reshape(shape)}
    specs = {name: dict(r) for name, r in grid["rewards"].items() if r["spec"] not in ("gold", "random")}
    for name, r in specs.items():
        fn = make_reward(
            r["spec"],
            contrastive=task.contrastive,
            temperature=r.get("temperature", 1.0),
            lam=r.get("lam", 1.0),
            device=device,
            gold=gold,
        )
        out[f"reward:{name}"] = np.asarray(fn(images, flat), float).reshape(shape)
    for key, v in image_stat_arrays(images).items():
        out[f"stat:{key}"] = v.reshape(shape)
    return out


def _write_json(path: Path, data: Any, sort_keys: bool = True) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(data, indent=1, sort_keys=sort_keys) + "\n").encode()))


def run(
    out: str | Path,
    grid: Mapping[str, Any] | None = None,
    workers: int = 2,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Run the grid's missing runs and pool in ``workers`` processes of one torch thread each
    (:mod:`textnorm.experiments.runner`; results do not depend on their number) and write them to ``out``."""
    out = Path(out)
    grid = json.loads(json.dumps(default_grid() if grid is None else grid))  # plain data, as written
    validate_grid(grid)  # everything that can be checked, before anything runs
    todo = jobs(grid)
    if resume and overwrite:
        raise ValueError("resume or overwrite, not both")
    final = out
    new, old = final.with_name(final.name + ".new"), final.with_name(final.name + ".old")
    if overwrite:
        # run into a fresh folder and swap it in at the end: an interrupted run keeps the old logs. The
        # folder a killed overwrite of the same grid left goes on where it stopped (its logs are this
        # grid's); another grid's is removed. The swap moves the replaced folder to .old: that name must
        # be free (never removed here: it may be someone's copy). Without the final folder, a swap was cut
        # short: the complete .new is swapped in below.
        if final.exists() and old.exists():
            raise FileExistsError(
                f"{old} exists: the swap at the end moves {final} there before removing it. It is left by an "
                "interrupted swap (its logs were being replaced) or it is yours: remove or rename it first"
            )
        out = new
        if out.exists() and not _holds_grid(out, grid):
            shutil.rmtree(out)
        resume = out.exists()
    if out.exists():
        if not (out / "grid.json").exists():
            raise FileExistsError(f"{out} exists and holds no grid.json: choose another folder")
        if not resume:
            raise FileExistsError(f"{out} exists: pass resume=True (--resume) to add missing runs or overwrite=True")
        elif _read_json(out / "grid.json") != grid:
            raise ValueError(f"{out} holds another grid: it cannot be resumed with this one")
    (out / "runs").mkdir(parents=True, exist_ok=True)
    for folder in (out, out / "runs"):  # temporary files of writes a kill interrupted: never read, removed
        for tmp in folder.glob(".*.*"):
            if tmp.is_file():
                tmp.unlink()
    _write_json(out / "grid.json", grid, sort_keys=False)  # the rewards' order is the chapter's
    # a run's checkpoint while it trains (train_run): a killed grid's runs go on from there
    partial = out / "partial"
    logged = {p.stem for p in (out / "runs").glob("*.json")}
    for folder in partial.glob("*") if partial.is_dir() else []:
        if folder.name in logged:  # killed after its log was written, before this folder was removed
            shutil.rmtree(folder)
    pending = [
        ("run", run_name(m, n, s), (run_config(grid, m, n, s), str(partial / run_name(m, n, s))))
        for m, n, s in todo
        if run_name(m, n, s) not in logged
    ]
    if "bon" in grid and not (out / "bon.npz").exists():
        pending.insert(0, ("bon", "bon", grid))  # first: it is the longest single job
    # nothing to run (e.g. a kill between the last run and the swap below): the wall time stays as it was
    clock = _WallClock(out / "wall.json", workers) if pending or not (out / "wall.json").exists() else None
    with clock or contextlib.nullcontext():
        for name, result in run_jobs(_run_job, pending, workers, progress=progress, desc="over-optimisation grid"):
            if name == "bon":
                atomic_write(out / "bon.npz", lambda f, arrays=result: np.savez(f, **arrays))
            else:
                _write_json(out / "runs" / f"{name}.json", result)
                shutil.rmtree(partial / name, ignore_errors=True)
            if clock is not None:
                clock.note()
    if partial.is_dir():
        shutil.rmtree(partial)  # every run is logged: nothing left to resume
    from textnorm import manifest

    # the manifest first, under the final name: a kill before the swap below leaves a manifest that the old
    # logs fail (overopt.load refuses them) and a complete .new that the same command swaps in
    wall = _read_json(out / "wall.json")
    extra = {"wall_minutes": round(wall["seconds"] / 60, 1)}
    manifest.record(out, "textnorm overopt", grid, extra=extra, recorded_as=final)
    if out != final:
        replaced = final.exists()
        if replaced:
            final.rename(old)
        out.rename(final)
        if replaced:
            shutil.rmtree(old)
    return final


# how often the grid's wall time is written while jobs run
WALL_SECONDS = 60.0


class _WallClock:
    """The grid's wall time over every invocation (a resumed grid adds to it) in ``wall.json``, written
    as each job ends and every :data:`WALL_SECONDS` in between: the runs of a killed grid go on from
    their checkpoints, so the time a kill interrupted counts, up to the last write. A failed write in
    between is reported once and retried at the next tick; the last write's failure is raised unless
    the jobs' own error is on its way."""

    def __init__(self, path: Path, workers: int) -> None:
        import threading

        self.path, self.workers = path, workers
        self.earlier = _read_json(path).get("seconds", 0.0) if path.exists() else 0.0
        self.start = time.time()
        self.lock, self.done = threading.Lock(), threading.Event()
        self.thread = threading.Thread(target=self._tick, daemon=True, name="grid-wall-clock")

    def note(self) -> None:
        with self.lock:
            seconds = round(self.earlier + time.time() - self.start, 1)
            _write_json(self.path, {"seconds": seconds, "workers": self.workers})

    def _tick(self) -> None:
        import warnings

        warned = False
        while not self.done.wait(WALL_SECONDS):
            try:
                self.note()
            except OSError as exc:  # e.g. a full disk: the jobs go on, the next tick tries again
                if not warned:
                    warnings.warn(
                        f"could not write {self.path} ({exc}); retrying every {WALL_SECONDS:g} s", stacklevel=1
                    )
                    warned = True

    def __enter__(self) -> _WallClock:
        self.note()
        self.thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        self.done.set()
        self.thread.join()
        try:
            self.note()
        except OSError:
            if kind is None:  # otherwise the jobs' own error is the one to see
                raise


def _holds_grid(folder: Path, grid: Any) -> bool:
    try:
        return _read_json(folder / "grid.json") == grid
    except (OSError, ValueError):
        return False


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); restore it or re-run the grid with --resume") from None


def load(folder: str | Path) -> dict[str, Any]:
    """The logs of a complete grid: ``grid``, ``steps`` (one row per run and step), ``evals``
    (before/after evaluations, one row per run), ``evaluations`` (every evaluation per training
    prompt, :func:`textnorm.stats.endpoint.eval_table`; None for logs without them), ``logs`` (run
    name -> log) and ``bon`` (the pool's arrays). Checks every file against data/MANIFEST.json when the folder is recorded there, and
    that no run is missing."""
    from textnorm import manifest
    from textnorm.finetune.config import complete
    from textnorm.paths import repo_root

    folder = Path(folder)
    if not (folder / "grid.json").exists():
        raise FileNotFoundError(f"{folder} holds no grid.json: run `textnorm overopt --out {folder}` first")
    root = repo_root()
    mpath = root / "data" / "MANIFEST.json"
    rel = folder.resolve().relative_to(root).as_posix() if folder.resolve().is_relative_to(root) else None
    if rel is not None and mpath.exists() and rel in json.loads(mpath.read_text()):
        bad = [p for p in manifest.verify(mpath) if p.startswith(rel + "/")]
        if bad:
            raise ValueError(f"{folder}: files differ from data/MANIFEST.json: {bad}")
    grid = _read_json(folder / "grid.json")
    logs, steps, evals = {}, [], []
    for method, name, seed in jobs(grid):
        path = folder / "runs" / f"{run_name(method, name, seed)}.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: the grid is incomplete (run it again with --resume)")
        log = _read_json(path)
        if not isinstance(log, dict) or not {"config", "rows", "before", "after"} <= set(log):
            raise ValueError(f"{path} is not a run log of textnorm overopt (no config, rows, before and after)")
        want = json.loads(json.dumps(run_config(grid, method, name, seed).__dict__))
        if complete(log["config"]) != want:  # fields added since the log was written hold their defaults
            raise ValueError(f"{path} was made with other settings than grid.json gives it")
        if len(log["rows"]) != want["steps"] or (want["eval_every"] and not log["after"]):
            raise ValueError(f"{path} is truncated: {len(log['rows'])} of {want['steps']} steps")
        logs[run_name(method, name, seed)] = log
        keys = {"method": method, "reward_name": name, "seed": seed}
        steps += [{**keys, **row} for row in log["rows"]]
        evals.append(
            {
                **keys,
                **{f"{k}_before": v for k, v in log["before"].items()},
                **{f"{k}_after": v for k, v in log["after"].items()},
            }
        )
    # per-prompt evaluations with the path KL (logs written since textnorm logged them; None for older logs)
    from textnorm.stats.endpoint import eval_table

    pairs = [({"method": m, "reward_name": n, "seed": s}, logs[run_name(m, n, s)]) for m, n, s in jobs(grid)]
    has_evals = all(log.get("evals") and "eval_prompt_gold" in log["evals"][0] for _, log in pairs)
    evaluations, why = None, "the logs were written before runs logged per-prompt evaluations with the path KL"
    if has_evals:
        try:
            evaluations = eval_table(pairs)
        except ValueError as exc:  # e.g. a KL that bounds nothing: the chapter says why
            why = str(exc)
    bon = None
    if "bon" in grid and not (folder / "bon.npz").exists():
        raise FileNotFoundError(f"{folder / 'bon.npz'} is missing: the grid is incomplete (run it again with --resume)")
    if (folder / "bon.npz").exists():
        with np.load(folder / "bon.npz", allow_pickle=False) as z:
            bon = {k: z[k] for k in z.files}
    return {
        "grid": grid,
        "steps": pd.DataFrame(steps),
        "evals": pd.DataFrame(evals),
        "evaluations": evaluations,
        "evaluations_missing": None if evaluations is not None else why,
        "logs": logs,
        "bon": bon,
    }


def differing_keys(a: Mapping[str, Any], b: Mapping[str, Any], ignore: Collection[str] = ()) -> list[str]:
    """The top-level keys in which two mappings (grids, run configs) differ, those in ``ignore`` aside, sorted; a
    key one of them lacks differs from any value, None included."""
    return sorted(k for k in (set(a) | set(b)) - set(ignore) if a.get(k, _ABSENT) != b.get(k, _ABSENT))


def differ_but_seeds(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """The keys in which two grids differ, ``seeds`` aside (empty: the same runs' settings, so their folders may
    be read together as one grid with more seeds)."""
    return differing_keys(a, b, ignore=("seeds",))


_ABSENT = object()


def load_together(folders: Sequence[str | Path]) -> dict[str, Any]:
    """Folders of one grid, each holding other seeds, read as one grid: :func:`load` on each, then the runs
    side by side (e.g. a pilot's seeds and the seeds a registration added with the same settings).

    The grids must be equal in everything but ``seeds`` (model, rewards, methods, every setting), and no
    seed may be in two folders: runs with other settings never mix and no run counts twice. Grids with a
    best-of-n pool are refused (a pool belongs to one grid, not to its seeds). The result has
    :func:`load`'s keys, ``grid`` with the seeds of all folders (sorted), ``bon`` None, and ``seeds_of``
    (each folder, in the order given, as ``str(Path(folder))`` -> its seeds)."""
    folders = [Path(f) for f in folders]
    if not folders:
        raise ValueError("load_together needs at least one folder")
    same = [f for k, f in enumerate(folders) if f.resolve() in {g.resolve() for g in folders[:k]}]
    if same:
        raise ValueError(f"{same[0]} is given twice (as a path or another path to it): its runs would count twice")
    parts = [load(f) for f in folders]
    for folder, part in zip(folders, parts):
        if "bon" in part["grid"]:
            raise ValueError(f"{folder} holds a grid with a best-of-n pool: read it with load(), not load_together()")
    for folder, part in zip(folders[1:], parts[1:]):
        keys = differ_but_seeds(parts[0]["grid"], part["grid"])
        if keys:
            raise ValueError(
                f"{folder} holds another grid than {folders[0]} (they differ in {keys}), not only other seeds"
            )
    where: dict[int, Path] = {}
    for folder, part in zip(folders, parts):
        for seed in part["grid"]["seeds"]:
            if seed in where:
                raise ValueError(f"seed {seed} is in both {where[seed]} and {folder}: its runs would count twice")
            where[seed] = folder
    missing = [f"{f}: {p['evaluations_missing']}" for f, p in zip(folders, parts) if p["evaluations"] is None]
    return {
        "grid": {**parts[0]["grid"], "seeds": sorted(where)},
        "steps": pd.concat([p["steps"] for p in parts], ignore_index=True),
        "evals": pd.concat([p["evals"] for p in parts], ignore_index=True),
        "evaluations": None if missing else pd.concat([p["evaluations"] for p in parts], ignore_index=True),
        "evaluations_missing": missing[0] if missing else None,
        "logs": {name: log for p in parts for name, log in p["logs"].items()},
        "bon": None,
        "seeds_of": {str(f): list(p["grid"]["seeds"]) for f, p in zip(folders, parts)},
    }


def row_differences(old_rows: Sequence[Mapping[str, Any]], new_rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Per logged column (wall time aside), the largest absolute difference between logged rows and
    rows trained again, row by row (0.0: bit for bit; NaN in both counts as equal, in one as inf).
    Columns the new rows lack (e.g. evaluations not repeated) are not compared."""
    if len(new_rows) > len(old_rows):
        raise ValueError(f"{len(new_rows)} rows trained again, the log holds {len(old_rows)}")
    diffs: dict[str, float] = {}
    for old, new in zip(old_rows, new_rows):
        for key, value in old.items():
            if key in new and key != "seconds" and isinstance(value, (int, float)):
                a, b = float(new[key]), float(value)
                gap = 0.0 if a == b or (np.isnan(a) and np.isnan(b)) else abs(a - b)
                diffs[key] = max(diffs.get(key, 0.0), gap if np.isfinite(gap) else float("inf"))
    return diffs


def _replay_job(job: tuple) -> tuple[dict[str, float], dict]:
    from textnorm.finetune.config import FinetuneConfig

    log, steps = job
    fresh = train_run(FinetuneConfig(**log["config"]), steps=steps, keep_weights=True)
    diffs = row_differences(log["rows"][:steps], fresh["rows"])
    return diffs, fresh["weights"]


def replay(logs: Sequence[Mapping[str, Any]], steps: Sequence[int], workers: int = 1) -> list[tuple[dict, dict]]:
    """Re-run the first ``steps[i]`` steps of each logged run with this code (in ``workers``
    processes) and compare every logged number (the first step's row holds the base model's
    evaluation). Per run: the largest absolute difference per column (0.0 everywhere: bit for bit)
    and the UNet weights after those steps."""
    if len(logs) != len(steps) or any(k < 1 for k in steps):
        raise ValueError("replay: one number of steps (>= 1) per log")
    for log, k in zip(logs, steps):
        if k > len(log["rows"]):
            raise ValueError(f"replay: the log holds {len(log['rows'])} steps, asked for {k}")
    return list(run_jobs(_replay_job, list(zip(logs, steps)), workers, ordered=True))
