"""A run's checkpoint: what it holds, how it is written so that a crash never loses the last one,
and what a resume checks before it continues.

``checkpoint.pt`` holds the trainable weights, the optimiser, the RWSFT pool and the run's state
(step, config, metrics, the sha256 of the model's weights and the reward's files the run started
from) as a JSON string, loadable with ``weights_only=True``; ``state.json`` and ``metrics.json`` are
readable copies. Every file is written through :func:`textnorm.files.atomic_write`; temporary files
left by a write killed midway are removed by :func:`clean_stale_temps`.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from textnorm.files import atomic_write
from textnorm.finetune.config import complete
from textnorm.finetune.distributed import gather
from textnorm.finetune.inputs import resolve_path, source_digest, weights_digest
from textnorm.finetune.rewards import spec_sources

if TYPE_CHECKING:
    from textnorm.finetune.loop import Finetuner


def model_digest(pipe: Any) -> str:
    """The sha256 of the pipeline's weights as loaded (names, dtypes and bytes): call it before any
    cast or adapter. With :func:`reward_digests` (after the reward has loaded, so that a hub reward's
    files are in the local cache), what a run starts from and a resume must find unchanged."""
    # a diffusers pipeline lists its parts in `components`; another pipeline: its module attributes
    parts = getattr(pipe, "components", None) or vars(pipe)
    return weights_digest([(k, v) for k, v in sorted(parts.items()) if isinstance(v, torch.nn.Module)])


def reward_digests(reward: str) -> dict[str, str | None]:
    """sha256 of the files of each model a reward spec loads (None: in no local folder or hub cache)."""
    return {src: source_digest(resolve_path(src, "reward model folder")) for src in spec_sources(reward)}


def check_replicas(tuner: Finetuner) -> list[str]:
    """The sha256 of every process's trainable weights (their bytes, in parameter order); they
    must be equal, since DDP keeps the replicas identical. Returns one digest per process."""
    import hashlib

    digest = hashlib.sha256()
    with torch.no_grad():
        for p in tuner.params:
            digest.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    sums = gather(tuner.accelerator, np.array([digest.hexdigest()])).tolist()
    if len(set(sums)) > 1:
        raise RuntimeError(
            f"the processes' weights differ after step {tuner.step} (sha256 {sums}): the replicas diverged"
        )
    tuner.replica_checksums = sums
    return sums


def save(tuner: Finetuner, out: str | Path) -> Path:
    """checkpoint.pt: trainable weights, optimiser, RWSFT pool and the run's state (step,
    config, metrics as a JSON string), loadable with ``weights_only=True``; state.json and
    metrics.json are readable copies of the state. Each file is written to a temporary file,
    fsynced and renamed into place, and checkpoint.pt alone is what a resume reads, so a crash
    at any moment leaves the last complete checkpoint to resume from. Under several processes
    the main process writes (the replicas are identical) while the others wait."""
    out = Path(out)
    check_replicas(tuner)  # every process, before the main one writes what they all hold
    failure = _write(tuner, out) if tuner.accelerator.is_main_process else None
    # every process learns whether the main one could write (a collective, so none waits forever at a
    # barrier the failed one never reaches) and stops with the same message
    failed = gather(tuner.accelerator, np.array([failure is not None]))
    if failure is not None:
        raise failure
    if failed.any():
        raise CheckpointWriteError.elsewhere(out, tuner.step)
    return out / "checkpoint.pt"


def _write(tuner: Finetuner, out: Path) -> CheckpointWriteError | None:
    """The main process's writes of :func:`save`; the error, not raised, when one fails."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return CheckpointWriteError(out, "checkpoint.pt", tuner.step, exc, False)
    trainable = {
        k: v.detach().cpu() for k, v in tuner.accelerator.unwrap_model(tuner.unet).named_parameters() if v.requires_grad
    }
    tensors = {"trainable": trainable, "optimizer": tuner.opt.state_dict()}
    if tuner.pool is not None:
        tensors["pool_x0"], tensors["pool_weight"] = tuner.pool["x0"], tuner.pool["weight"]
    if tuner.accelerator.scaler is not None:  # fp16: the loss scale decides skipped steps
        tensors["scaler"] = tuner.accelerator.scaler.state_dict()
    state = {
        "step": tuner.step,
        "updates": tuner.updates,
        "config": asdict(tuner.cfg),
        "metrics": tuner.metrics,
        "final_eval": tuner.final_eval,
        "pool_prompt": tuner.pool["prompt"] if tuner.pool else None,
        "processes": tuner.processes,
        "replica_checksums": getattr(tuner, "replica_checksums", None),
        "inputs": tuner.inputs,
        "stat_buffers": tuner.stats.state() if tuner.stats is not None else None,
    }
    tensors["state_json"] = json.dumps(state)  # one file, one rename: weights and state agree
    had = (out / "checkpoint.pt").is_file()
    writes = [
        ("checkpoint.pt", lambda f: torch.save(tensors, f)),
        ("state.json", lambda f: f.write(json.dumps(state).encode())),
        ("metrics.json", lambda f: f.write(json.dumps(tuner.metrics, indent=1).encode())),
    ]
    for name, write in writes:
        try:
            atomic_write(out / name, write)
        except (OSError, RuntimeError) as exc:  # torch.save reports a failed write as RuntimeError
            return CheckpointWriteError(out, name, tuner.step, exc, had)
    return None


def load(tuner: Finetuner, out: str | Path, allow_changed_inputs: bool = False) -> None:
    """Restore a run saved by :func:`save`, after checking that it is whole and
    matches this run (settings other than ``steps``, ``report_to`` and ``checkpoint_every``, parameter names and shapes, and the inputs'
    sha256 unless ``allow_changed_inputs``, which turns that refusal into a warning); anything
    else is a ValueError that says what is wrong."""
    path = Path(out) / "checkpoint.pt"

    def bad(why: str) -> ValueError:
        return ValueError(f"cannot resume from {path}: {why}")

    try:
        # weights_only: a checkpoint is data, never code (a crafted pickle must not run)
        tensors = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise bad(
            f"not a complete checkpoint of this program (torch.load with weights_only=True failed: "
            f"{type(exc).__name__})"
        ) from exc
    if not isinstance(tensors, dict) or not isinstance(tensors.get("state_json"), str):
        raise bad("it holds no run state")
    try:
        state = json.loads(tensors["state_json"])
    except json.JSONDecodeError as exc:
        raise bad(f"its run state is not valid JSON ({exc})") from exc
    kinds = {"step": int, "updates": int, "config": dict, "metrics": list}
    if not isinstance(state, dict) or any(
        not isinstance(state.get(k), t) or isinstance(state.get(k), bool) for k, t in kinds.items()
    ):
        raise bad(f"its run state lacks or mistypes one of {list(kinds)}")
    if state["step"] < 0 or state["updates"] < 0:
        raise bad("its step counts are negative")
    saved_p = state.get("processes", 1)
    rounds_split = (
        tuner.cfg.method == "ddpo" and tuner.cfg.batch_size < tuner.cfg.n_prompts * tuner.cfg.samples_per_prompt
    )
    if saved_p != tuner.processes and rounds_split:
        # the minibatches are the same for any number of processes, but not the order in which
        # each update sums its samples: allowed for one minibatch per round, refused otherwise so
        # that a resumed run stays the run it continues
        raise bad(
            f"it ran on {saved_p} process(es), this run has {tuner.processes}; with several minibatches "
            "per round resume with the same number of processes"
        )
    free = ("steps", "report_to", "checkpoint_every")  # how long, and what watches or saves it: not the run
    saved = {k: v for k, v in complete(state["config"]).items() if k not in free}  # later fields: defaults
    now = {k: v for k, v in asdict(tuner.cfg).items() if k not in free}
    diff = sorted(k for k in now if saved.get(k) != now[k])
    if diff:
        raise ValueError(
            "cannot resume: the run in "
            + str(out)
            + " was made with other settings ("
            + ", ".join(f"{k}: {saved.get(k)!r} there, {now[k]!r} now" for k in diff)
            + ")"
        )
    changed = changed_inputs(state.get("inputs"), tuner.inputs)
    if changed and not allow_changed_inputs:
        raise ValueError(
            f"cannot resume the run in {out}: " + "; ".join(changed) + " since it started (to continue on the new "
            "inputs all the same: --allow-changed-inputs)"
        )
    if changed:
        import warnings

        warnings.warn(f"resuming {out} on changed inputs, as asked: " + "; ".join(changed), stacklevel=2)
    for key in ("trainable", "optimizer"):
        if not isinstance(tensors.get(key), dict):
            raise bad(f"it has no {key!r} entry")
    named = {k: p for k, p in tuner.accelerator.unwrap_model(tuner.unet).named_parameters() if p.requires_grad}
    saved_w = tensors["trainable"]
    if set(saved_w) != set(named):
        missing, extra = sorted(set(named) - set(saved_w)), sorted(set(saved_w) - set(named))
        raise bad(f"its weights do not match this model (missing {missing[:3]}, unexpected {extra[:3]})")
    wrong = [k for k, v in saved_w.items() if not isinstance(v, torch.Tensor) or v.shape != named[k].shape]
    if wrong:
        k = wrong[0]
        raise bad(
            f"weight {k} has shape {tuple(getattr(saved_w[k], 'shape', ()))}, the model's is "
            f"{tuple(named[k].shape)} ({len(wrong)} such weights)"
        )
    pool = None
    if state.get("pool_prompt"):
        x0, w, prompts = tensors.get("pool_x0"), tensors.get("pool_weight"), state["pool_prompt"]
        if not (
            isinstance(x0, torch.Tensor)
            and isinstance(w, torch.Tensor)
            and isinstance(prompts, list)
            and len(x0) == len(w) == len(prompts)
        ):
            raise bad("its reward-weighted SFT pool is incomplete")
        pool = {"x0": x0, "weight": w, "prompt": prompts}
    try:
        tuner.opt.load_state_dict(tensors["optimizer"])
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise bad(f"its optimiser state does not fit this model ({type(exc).__name__}: {exc})") from exc
    with torch.no_grad():
        for k, v in saved_w.items():
            named[k].copy_(v)
    if tuner.accelerator.scaler is not None and "scaler" in tensors:
        tuner.accelerator.scaler.load_state_dict(tensors["scaler"])
    if tuner.stats is not None:
        if not isinstance(state.get("stat_buffers"), dict):
            raise bad("it holds no per-prompt statistics buffers (stat_buffer is set)")
        tuner.stats.load(state["stat_buffers"])
    tuner.step, tuner.updates = state["step"], state["updates"]
    tuner.metrics = state["metrics"]
    tuner.pool = pool


def changed_inputs(saved: dict | None, now: dict) -> list[str]:
    """What differs between the inputs a checkpoint recorded and this run's (:func:`model_digest`, :func:`reward_digests`),
    in words. A checkpoint without the record (older textnorm) or a reward given as a function
    cannot be checked: a warning says so."""
    import warnings

    if not isinstance(saved, dict):
        warnings.warn(
            "the checkpoint records no sha256 of the model and reward it was trained from (written by an older "
            "textnorm): they cannot be checked on resume",
            stacklevel=3,
        )
        return []
    out = []
    if saved.get("model") != now.get("model"):
        out.append(
            f"the base model's weights or their dtypes changed (sha256 {str(saved.get('model'))[:12]}... then, "
            f"{str(now.get('model'))[:12]}... now; a pipeline object passed again in Python was trained or cast by "
            "the first run: load it anew)"
        )
    if saved.get("contrastive") != now.get("contrastive"):
        out.append("the contrastive prompts file changed (or was given in one run only)")
    was, nowr = saved.get("reward"), now.get("reward")
    if was is None or nowr is None:
        if was != nowr:
            warnings.warn(
                "the reward was given as a function in one of the two runs: its files cannot be checked", stacklevel=3
            )
        return out
    for src in sorted(set(was) | set(nowr)):
        a, b = was.get(src), nowr.get(src)
        if a is None or b is None:
            warnings.warn(
                f"the reward model {src} was in no local folder or hub cache: its files cannot be checked", stacklevel=3
            )
        elif a != b:
            out.append(f"the reward model files in {src} changed (sha256 {a[:12]}... then, {b[:12]}... now)")
    return out


class CheckpointWriteError(OSError):
    """A checkpoint file could not be written (a full disk, most often); says what is left."""

    def __init__(self, out: Path, name: str, step: int, exc: BaseException, had: bool) -> None:
        import errno
        import shutil

        try:
            full = shutil.disk_usage(out).free < (64 << 20)
        except OSError:
            full = False
        code = getattr(exc, "errno", None)
        # the free-space guess only where the error carries no errno (torch's RuntimeError)
        if code == errno.ENOSPC or (code is None and full):
            why = "the disk is full"
        else:
            why = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        if name == "checkpoint.pt":
            left = (
                "the last complete checkpoint.pt is intact (resume from it with --resume once there is space)"
                if had
                else "no checkpoint was written before"
            )
        else:  # checkpoint.pt itself was written: it is whole and a resume reads it alone
            left = f"checkpoint.pt of step {step} is complete; only the readable copy {name} is out of date"
        super().__init__(f"could not write {out / name} after step {step}: {why}; {left}")

    @classmethod
    def elsewhere(cls, out: Path, step: int) -> OSError:
        """What the other processes raise when the main one could not write."""
        return OSError(
            f"the main process could not write the checkpoint to {out} after step {step} (its message says why)"
        )


RUN_FILES = ("checkpoint.pt", "state.json", "metrics.json", "metrics.jsonl")


def clean_stale_temps(out: str | Path) -> list[Path]:
    """Delete the temporary files that a write killed midway left (``.checkpoint.pt.*`` etc., see
    :func:`textnorm.files.atomic_write`): they are never read, and a folder holding only them holds
    no run. Returns what was removed."""
    folder = Path(out)
    if not folder.is_dir():
        return []
    stale = [p for name in RUN_FILES for p in folder.glob(f".{name}.*") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
