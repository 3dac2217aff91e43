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
    gpu = load("gpu_ddpo_sd21")
    pipe = gpu.build_sd21_base(tiny=True)
    # the tokenizer the real script uses: padding to its length must not overflow (it was ~1e30)
    assert pipe.tokenizer.model_max_length == 77
    args = argparse.Namespace(rounds=2, prompts=2, samples_per_prompt=2, batch_size=2, sample_steps=4,
                              resolution=512, tiny=True)
    out = gpu.run(args)
    assert len(out["round_seconds"]) == 2 and len(out["bare_seconds"]) == 2
    assert math.isfinite(out["overhead"]) and out["overhead"] > 0
    assert [m["step"] for m in out["metrics"]] == [0, 1] and out["metrics"][1]["kl"] > 0
