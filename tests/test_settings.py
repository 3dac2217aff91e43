"""One settings source: the over-optimisation grid (``CPU_GRID``). The GPU parameter file, the
controls' GPU settings and the GPU shell script may change sizes (prompts, samples, steps,
evaluations, devices), never what a method or a reward is (learning rates, clip ranges, warm-up,
temperatures, reward specs)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import torch
import yaml

from textnorm.experiments import overopt
from textnorm.paths import repo_root

ROOT = repo_root()
# what a GPU run may scale; every other setting is the method's and must equal CPU_GRID's
SIZES = {
    "steps",
    "prompts",
    "n_prompts",
    "samples_per_prompt",
    "batch_size",
    "sample_steps",
    "eval_every",
    "eval_samples",
    "pool_size",
    "device",
}


def _gpu_grid() -> dict:
    return yaml.safe_load((ROOT / "params" / "overopt_gpu.yaml").read_text())["grid"]


def test_the_gpu_parameter_file_changes_sizes_only():
    gpu, cpu = _gpu_grid(), overopt.CPU_GRID
    assert gpu["rewards"] == cpu["rewards"]
    assert gpu["method_rewards"] == cpu["method_rewards"] and gpu["model"] == cpu["model"]
    assert set(gpu["methods"]) == set(cpu["methods"])
    for method, settings in cpu["methods"].items():
        keys = (set(settings) | set(gpu["methods"][method])) - SIZES
        diff = {
            k: (settings.get(k), gpu["methods"][method].get(k))
            for k in keys
            if settings.get(k) != gpu["methods"][method].get(k)
        }
        assert not diff, f"params/overopt_gpu.yaml changes {method}'s settings (CPU, GPU): {diff}"


def test_the_gpu_parameter_file_is_a_valid_grid(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # its runs name cuda
    overopt.validate_grid(_gpu_grid())


def test_the_controls_gpu_settings_change_sizes_only():
    spec = importlib.util.spec_from_file_location("controls", ROOT / "benchmarks" / "controls.py")
    controls = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(controls)
    for method, settings in controls.GPU.items():
        assert set(settings) <= SIZES, f"controls.py --gpu changes {method}'s {set(settings) - SIZES}"
    assert {m: {k: v for k, v in s.items()} for m, s in controls.CPU.items()} == {
        m: {k: v for k, v in s.items() if k not in ("eval_every", "eval_samples")}
        for m, s in overopt.CPU_GRID["methods"].items()
    }


def test_the_gpu_script_reads_each_rewards_settings_from_the_grid():
    script = (ROOT / "benchmarks" / "gpu_overopt.sh").read_text()
    assert not re.search(r"temperature=[0-9]", script), "a temperature typed into the script"
    snippet = re.search(r"grid_rewards='(.*?)'\n", script, re.S).group(1)
    out = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    pairs = [line.split() for line in out.splitlines()]
    grid = {r["spec"]: str(r.get("temperature", 1.0)) for r in overopt.CPU_GRID["rewards"].values()}
    assert len(pairs) == 4 and all(grid[spec] == temp for spec, temp in pairs)


def test_every_command_option_comes_from_its_config():
    import dataclasses

    from textnorm.cli import build_parser
    from textnorm.finetune.config import FinetuneConfig
    from textnorm.synth.config import ProxyConfig, TrainConfig

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for command, cls in (("finetune", FinetuneConfig), ("train-generator", TrainConfig), ("train-proxy", ProxyConfig)):
        actions = {a.dest: a for a in sub.choices[command]._actions}
        for f in dataclasses.fields(cls):
            assert f.name in actions, f"textnorm {command} has no option for {cls.__name__}.{f.name}"
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            assert actions[f.name].required or actions[f.name].default == default, (command, f.name)


def test_the_cpu_over_optimisation_grid_file_is_a_valid_pre_registered_grid():
    grid = yaml.safe_load((repo_root() / "params" / "overopt_cpu.yaml").read_text())
    overopt.validate_grid(grid)
    assert len(grid["seeds"]) >= 5 and len(grid["pairs"]) >= 3
    ddpo, rwsft = grid["methods"]["ddpo"], grid["methods"]["rwsft"]
    # one problem: the same prompts and sampler for every optimiser, and one KL (untrained steps on the base)
    assert ddpo["prompts"] == rwsft["prompts"] and grid["bon"]["prompts"] == "train"
    assert ddpo["eta"] == rwsft["eta"] == rwsft["pool_eta"] == grid["bon"]["eta"]
    assert ddpo["untrained_steps"] == rwsft["untrained_steps"] == "base"
    assert grid["bon"]["pool"] >= 4 * 32  # pools at least 4x the largest n the chapter draws
    assert {"gold", "random"} <= {r["spec"] for r in grid["rewards"].values()}  # both controls
