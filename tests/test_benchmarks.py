"""The GPU check script's whole path on the CPU (tiny SD configs, the same tokenizer and encode path)."""

from __future__ import annotations

import argparse
import importlib.util
import math

import torch

from textnorm.paths import repo_root

torch.set_num_threads(1)


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, repo_root() / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_script_runs_on_a_tiny_pipeline():
    gpu = load("gpu_sd_scale")
    pipe = gpu.build_sd21_base(tiny=True)
    # the tokenizer the real script uses: padding to its length must not overflow (it was ~1e30)
    assert pipe.tokenizer.model_max_length == 77
    args = argparse.Namespace(
        rounds=2,
        prompts=2,
        samples_per_prompt=2,
        batch_size=2,
        sample_steps=4,
        resolution=512,
        tiny=True,
        guidance_scale=5.0,  # the paper's setting, with micro-batches smaller than the round
        sample_batch=3,
    )
    out = gpu.run(args)
    assert len(out["round_seconds"]) == 2 and len(out["bare_seconds"]) == 2
    assert math.isfinite(out["overhead"]) and out["overhead"] > 0
    assert [m["step"] for m in out["metrics"]] == [0, 1] and out["metrics"][1]["kl"] > 0


def test_decided_steps_measures_what_is_left_to_decide():
    """A verdict that is a function of the final image is fully decided after the last step (share
    0); a verdict that ignores the image is never decided by any step (share near 1)."""
    import numpy as np

    from textnorm.finetune.adapters import make_adapter
    from textnorm.finetune.loop import load_pipeline
    from textnorm.finetune.task import make_task

    bench = load("decided_steps")
    adapter = make_adapter(load_pipeline(str(repo_root() / "data" / "synth" / "generator")))
    chain = adapter.chain(4)
    prompts = make_task("synth", res=adapter.resolution).train_prompts[:2]

    def bright(images, _):  # a deterministic verdict of the image
        m = np.asarray(images, dtype=float).mean(axis=(1, 2, 3))
        return m > np.median(m)

    rng = np.random.default_rng(0)

    def coin(images, _):  # ignores the image
        return rng.random(len(images)) < 0.5

    assert bench.undecided_share(adapter, chain, prompts, bright, len(chain), groups=8, branches=4) == 0.0
    assert 0.0 < bench.undecided_share(adapter, chain, prompts, bright, 0, groups=8, branches=4) <= 1.3
    assert bench.undecided_share(adapter, chain, prompts, bright, 1, groups=8, branches=4) > 0.0  # noise still decides
    assert bench.undecided_share(adapter, chain, prompts, coin, 2, groups=16, branches=4) > 0.7


def test_controls_script_writes_rows_and_refuses_to_overwrite(tmp_path):
    """benchmarks/controls.py end to end on tiny settings (one worker, one DDPO round): the table,
    one JSON row per run with the evaluation curve, and no second run into the same folder."""
    import json
    import subprocess
    import sys

    out = tmp_path / "controls"
    cmd = [
        sys.executable,
        str(repo_root() / "benchmarks" / "controls.py"),
        "--workers",
        "1",
        "--seeds",
        "0",
        "--methods",
        "ddpo",
        "--eval-samples",
        "1",
        "--set",
        "steps=1",
        "samples_per_prompt=4",
        "batch_size=8",
        "sample_steps=3",
        "eval_every=1",
        "--out",
        str(out),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=repo_root(), timeout=300)
    assert done.returncode in (0, 1), done.stderr[-2000:]  # 1: the verdict FAIL, expected for one round
    assert "training-prompt gold rose by >= 0.10 in" in done.stdout
    row = json.loads((out / "ddpo_seed0.json").read_text())
    assert row["steps"] == 1 and row["reward"] == "gold" and [c["step"] for c in row["curve"]] == [0, 1]
    assert row["curve"][0]["train"] == row["train_base"] and row["curve"][-1]["train"] == row["train_final"]
    assert json.loads((out / "summary.json").read_text())[0]["seed"] == 0
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=repo_root(), timeout=300)
    assert again.returncode != 0 and "FileExistsError" in again.stderr
