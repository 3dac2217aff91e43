"""A set of fine-tuning runs from one parameter file (e.g. the paper's Stable Diffusion runs,
``params/paper_ddpo.yaml``): shared settings, prompt sets and rewards, one run per combination.

The file (YAML or JSON):

    settings:    FinetuneConfig fields every run shares (textnorm finetune --help lists them)
    prompt_sets: {name: fields of that set, e.g. prompts and contrastive}   (optional: one set, "all")
    rewards:     {name: {reward: spec, temperature: T, lam: lambda}}
    seeds:       [0, ...]                                                    (optional: [0])

Run ``{set}__{reward}__seed{s}`` trains into ``OUT/{run}/`` (checkpoints every ``checkpoint_every``
steps, metrics.jsonl) and exports the trained model to ``OUT/{run}/model`` (the LoRA for diffusers'
``load_lora_weights``), then ``OUT/{run}/finished.json`` (its settings). Runs go one after another;
a finished run is skipped (refused if the file now gives it other settings), an interrupted one
continues from its checkpoint with ``resume``. Set and reward names become folder names: letters,
digits and ``-_.()`` only."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from textnorm.files import read_data

FILE_KEYS = ("settings", "prompt_sets", "rewards", "seeds")
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_.()")
_PER_RUN = ("reward", "temperature", "lam", "seed")  # set by the reward and seed, not by settings or sets


def read(path: str | Path) -> dict[str, Any]:
    """The file as data (:func:`textnorm.files.read_data`: JSON or YAML)."""
    return read_data(path)


def run_name(prompt_set: str, reward: str, seed: int) -> str:
    safe = "".join(ch if ch.isalnum() else "-" for ch in reward).strip("-")
    return f"{prompt_set}__{safe}__seed{seed}"


def configs(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Run name -> its validated FinetuneConfig, in file order (sets, then rewards, then seeds)."""
    import dataclasses
    import typing

    from textnorm.experiments.overopt import check_known, check_type  # one checker of grid-like files
    from textnorm.finetune.config import FinetuneConfig, validate
    from textnorm.finetune.rewards import check_spec

    if not isinstance(spec, Mapping):
        raise ValueError(f"a run file is a mapping of {', '.join(FILE_KEYS)}")
    check_known(spec, FILE_KEYS, "run file")
    if not isinstance(spec.get("rewards"), Mapping) or not spec["rewards"]:
        raise ValueError("run file: rewards must be a non-empty mapping of name -> {reward: spec, ...}")
    fields = [f.name for f in dataclasses.fields(FinetuneConfig)]
    hints = typing.get_type_hints(FinetuneConfig)

    def check(where: str, values: Any, allowed: list[str]) -> dict:
        if not isinstance(values, Mapping):
            raise ValueError(f"run file: {where} must be a mapping of settings")
        check_known(values, allowed, f"run file: {where}")
        for key, value in values.items():
            check_type(f"run file: {where}.{key}", value, hints[key])
        return dict(values)

    shared = check("settings", spec.get("settings", {}), [f for f in fields if f not in _PER_RUN])
    sets = spec.get("prompt_sets") or {"all": {}}
    sets = {
        name: check(f"prompt_sets[{name!r}]", v, [f for f in fields if f not in _PER_RUN]) for name, v in sets.items()
    }
    rewards = {
        name: check(f"rewards[{name!r}]", v, ["reward", "temperature", "lam"]) for name, v in spec["rewards"].items()
    }
    for name in [*sets, *rewards]:
        if not isinstance(name, str) or not name or name.startswith(".") or not set(name) <= _NAME_CHARS:
            raise ValueError(f"run file: {name!r} cannot name a run's folder (letters, digits, spaces and -_.() only)")
    seeds = spec.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or any(type(s) is not int or s < 0 for s in seeds):
        raise ValueError(f"run file: seeds must be a non-empty list of integers >= 0, got {seeds!r}")
    out = {}
    for set_name, set_fields in sets.items():
        for reward_name, r in rewards.items():
            if "reward" not in r:
                raise ValueError(f"run file: rewards[{reward_name!r}] needs a reward spec (reward: raw:PATH, ...)")
            try:
                check_spec(r["reward"])
            except ValueError as exc:
                raise ValueError(f"run file: rewards[{reward_name!r}]: {exc}") from None
            for seed in seeds:
                name = run_name(set_name, reward_name, seed)
                if name in out:
                    raise ValueError(f"run file: two runs would be named {name!r}: rename a set or a reward")
                cfg = FinetuneConfig(**{**shared, **set_fields, **r, "seed": seed})
                try:
                    validate(cfg)
                except ValueError as exc:
                    raise ValueError(f"run file: run {name}: {exc}") from None
                out[name] = cfg
    return out


def finished(folder: Path) -> bool:
    """A run whose model was exported: ``finished.json`` is written (atomically) after the export."""
    return (folder / "finished.json").is_file()


def run_all(
    path: str | Path,
    out: str | Path,
    resume: bool = False,
    only: list[str] | None = None,
    progress: bool = True,
) -> list[str]:
    """Run the file's runs (or those named in ``only``) into ``out``; returns the runs trained now."""
    from textnorm.finetune.loop import finetune

    cfgs = configs(read(path))
    if only:
        unknown = [n for n in only if n not in cfgs]
        if unknown:
            raise ValueError(f"no run named {', '.join(unknown)} in {path}; its runs: {', '.join(cfgs)}")
        cfgs = {n: cfgs[n] for n in only}
    out = Path(out)
    started = [n for n in cfgs if (out / n).is_dir() and any((out / n).iterdir()) and not finished(out / n)]
    if started and not resume:
        raise FileExistsError(
            f"{out} holds unfinished runs ({', '.join(started)}): continue them with --resume (a finished run, "
            "whose model is exported, is skipped either way)"
        )
    import dataclasses

    from textnorm.files import atomic_write

    changed = [
        n
        for n in cfgs
        if finished(out / n)
        and json.loads((out / n / "finished.json").read_text()) != json.loads(json.dumps(dataclasses.asdict(cfgs[n])))
    ]
    if changed:
        raise ValueError(
            f"{out}: finished runs were made with other settings than {path} now gives them ({', '.join(changed)}): "
            "write the new runs to another --out"
        )
    trained = []
    for name, cfg in cfgs.items():
        folder = out / name
        if finished(folder):
            continue
        has_checkpoint = (folder / "checkpoint.pt").is_file()
        # an export interrupted by a kill is redone: the model folder is not the mark of a finished run
        finetune(
            cfg, out=folder, resume=has_checkpoint, progress=progress, export=folder / "model", overwrite=has_checkpoint
        )
        text = json.dumps(dataclasses.asdict(cfg), indent=1) + "\n"
        atomic_write(folder / "finished.json", lambda f, t=text: f.write(t.encode()))
        trained.append(name)
    return trained
