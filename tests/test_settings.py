"""One settings source per experiment: the over-optimisation grid (params/overopt_cpu.yaml,
``overopt.default_grid()``) and the optimisers' controls (benchmarks/controls.py). The GPU parameter
file and the controls' GPU settings may change sizes (prompts, samples, steps,
evaluations, devices), never what a method or a reward is (learning rates, clip ranges, warm-up,
temperatures, reward specs)."""

from __future__ import annotations

import importlib.util

import torch
import yaml

from textnorm.experiments import overopt
from textnorm.paths import repo_root

ROOT = repo_root()
# what a GPU run may scale; every other setting is the method's and must equal the CPU grid's
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
    "heldout_samples",
    "device",
}


def _gpu_grid() -> dict:
    return yaml.safe_load((ROOT / "params" / "overopt_gpu.yaml").read_text())["grid"]


def test_the_gpu_parameter_file_changes_sizes_only():
    gpu, cpu = _gpu_grid(), overopt.default_grid()
    assert gpu["rewards"] == cpu["rewards"] and gpu["pairs"] == cpu["pairs"]
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
    for method, settings in controls.CPU.items():  # valid runs of the grid's model (validate checks them)
        config = overopt.run_config({**overopt.default_grid(), "methods": {method: settings}}, method, "gold", 0)
        assert config.method == method and config.lr == settings["lr"]


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
