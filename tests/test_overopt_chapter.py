"""The overoptimization chapter runs any grid it is given: the GPU parameter file's (the pre-registered
grid scaled up) on the synthetic world with its gold judge, and Stable Diffusion with a reward model as
the judge (tiny random models), every size shrunk (smoke runs: numbers too small to mean anything)."""

from __future__ import annotations

import json
import re

import papermill
import pytest
import yaml

from textnorm import testing
from textnorm.experiments import overopt
from textnorm.paths import repo_root

CHAPTER = repo_root() / "notebooks" / "03_overoptimization.ipynb"
_C, _P = "data/synth/proxy_contrastive", "data/synth/proxy_preference"


def _methods(prompts, **extra):
    ddpo = dict(
        method="ddpo",
        steps=3,
        prompts=prompts,
        n_prompts=2,
        samples_per_prompt=2,
        batch_size=4,
        lr=3e-4,
        lora_rank=2,
        sample_steps=4,
        min_train_sigma=0.05,
        untrained_steps="base",
        eval_every=1,
        eval_schedule="log",
        eval_samples=2,
        heldout_samples=1,
        **extra,
    )
    rwsft = dict(
        method="rwsft",
        steps=2,
        prompts=prompts,
        pool_size=4,
        batch_size=4,
        sample_steps=4,
        eval_every=1,
        eval_samples=2,
        heldout_samples=1,
        untrained_steps="base",
        min_train_sigma=0.05,
        lr=1e-4,
        lora_rank=2,
        **extra,
    )
    return {"ddpo": ddpo, "rwsft": rwsft}


def _run(grid, tmp_path, **extra) -> str:
    out = tmp_path / "03.ipynb"
    papermill.execute_notebook(
        str(CHAPTER),
        str(out),
        kernel_name="python3",
        parameters={
            "logs": str(tmp_path / "logs"),
            "grid": grid,
            "run_grid": True,
            "workers": 2,
            "bon_ns": [1, 2],
            "n_boot": 50,
            "sweep": "",
            "sweep_after": "",
            "longer_gold": {},
            "confirm_gold": {},
            **extra,
        },
        progress_bar=False,
    )
    text = "\n".join(_shown(out))
    assert "Primary endpoint" in text and "Does TextNorm delay over-optimisation here?" in text
    assert "every logged number identical" in text and "nan" not in text.lower()
    return text


def _shown(path) -> list[str]:
    """What a reader sees of the executed chapter: text outputs and tables (not images, not code)."""
    out = []
    for cell in json.loads(path.read_text())["cells"]:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                out.append("".join(o["text"]))
            for kind in ("text/markdown", "text/html", "text/plain"):
                if kind in o.get("data", {}):
                    out.append("".join(o["data"][kind]))
    return out


def test_the_chapter_runs_the_gpu_parameter_file_shrunk_on_cpu(tmp_path):
    grid = yaml.safe_load((repo_root() / "params" / "overopt_gpu.yaml").read_text())["grid"]
    shrink = dict(n_prompts=2, eval_samples=2, heldout_samples=1, sample_steps=4, device="cpu")
    grid["methods"]["ddpo"].update(steps=3, samples_per_prompt=2, batch_size=4, **shrink)
    grid["methods"]["rwsft"].update(steps=2, pool_size=8, batch_size=4, eval_every=1, **shrink)
    grid["methods"]["rwsft"].pop("n_prompts")
    grid["methods"]["rwsft"]["prompts"] = ["four green circles", "three green circles"]
    grid["methods"]["ddpo"]["prompts"] = grid["methods"]["rwsft"]["prompts"]
    grid["seeds"] = [0, 1]
    grid["bon"].update(pool=8, sample_steps=4, device="cpu")
    text = _run(grid, tmp_path)
    assert "2 training prompts: four green circles; three green circles" in text
    assert "share of a prompt's images the judge finds aligned" in text
    n_runs = len(grid["seeds"]) * (len(grid["rewards"]) + len(grid["method_rewards"]["rwsft"]))  # DDPO: every reward
    assert f"{n_runs} fine-tuning runs" in text and n_runs == 24  # 8 DDPO and 4 RWSFT rewards, 2 seeds each
    assert json.loads((tmp_path / "logs" / "grid.json").read_text()) == grid


def test_the_chapter_runs_on_stable_diffusion_with_a_reward_model_as_gold(tmp_path):
    sd = testing.save_stable_diffusion(tmp_path / "sd")
    proxy, judge = testing.save_clip(tmp_path / "proxy", seed=1), testing.save_clip(tmp_path / "judge", seed=2)
    prompts = ["a realistic photo of two cats", "a realistic photo of a dog and a cat"]
    grid = {
        "model": str(sd),
        "judge": f"raw:{judge}",
        "rewards": {
            "gold": {"spec": "gold"},
            "random": {"spec": "random"},
            "proxy": {"spec": f"raw:{proxy}"},
            "TextNorm(proxy)": {"spec": f"textnorm:{proxy}", "temperature": 3.0},
        },
        "methods": _methods(prompts, guidance_scale=2.0, contrastive="rules"),
        "pairs": [["proxy", "TextNorm(proxy)"]],
        "seeds": [0, 1],
        "bon": {"prompts": "train", "pool": 8, "sample_steps": 4, "seed": 0, "eta": 1.0},
    }
    text = _run(grid, tmp_path)
    assert f"the judge's mean score (raw:{judge})" in text
    assert "Spearman" in text  # a judge with continuous scores: agreement as a rank correlation


def test_the_chapter_reads_a_longer_gold_control_and_refuses_one_of_other_settings(tmp_path):
    prompts = ["four green circles", "three green circles"]
    ddpo = _methods(prompts)["ddpo"]
    grid = {
        "model": "data/synth/generator",
        "rewards": {
            "gold": {"spec": "gold"},
            "random": {"spec": "random"},
            "preference": {"spec": f"raw:{_P}"},
            "TextNorm(preference)": {"spec": f"textnorm:{_P}", "temperature": 3.0},
        },
        "methods": {"ddpo": ddpo},
        "pairs": [["preference", "TextNorm(preference)"]],
        "seeds": [0, 1],
    }
    longer = {"model": grid["model"], "rewards": {"gold": {"spec": "gold"}}, "methods": {"ddpo": {**ddpo, "steps": 5}}}
    folders = {}
    for seed, label in ((0, "the first part"), (1, "the second part")):
        out = overopt.run(tmp_path / f"long{seed}", {**longer, "seeds": [seed]}, workers=1, progress=False)
        folders[str(out)] = label
    fresh = {str(overopt.run(tmp_path / "fresh", {**longer, "seeds": [3]}, workers=1, progress=False)): "fresh"}
    text = _run(grid, tmp_path, longer_gold=folders, confirm_gold=fresh)
    assert "Confirmatory runs on fresh seeds 3 (fresh), 5 rounds, 2 training prompts, registered with their own" in text
    # the verdict follows the interval: only an interval above 0 is a rise
    conf = re.search(
        r"Registered confirmatory test on fresh seeds 3 \(the change after 5 rounds, seeds and prompts "
        r"random\): [+-]?\d\.\d{3} \[([+-]?\d\.\d{3}), [+-]?\d\.\d{3}\] \(mean sqrt KL \d+\.\d\d\), (.*?); with \d+\.\d degrees of freedom, that test finds",
        text,
    )
    assert conf, "the confirmatory sentence is missing from What was found"
    rises = float(conf.group(1)) > 0
    assert conf.group(2).endswith("criterion for a rise is met" if rises else "criterion for a rise is not met")
    assert "that test finds a change of at least" in text
    assert "DDPO on the gold judge for 5 rounds (this grid: 3), 2 training prompts:" in text
    assert (
        "the longer runs are the grid's runs of their seeds, continued" in text
        or "not the grid's runs continued" in text
    )
    assert (
        "Trained for 5 rounds instead of 3 (2 seeds x 2 prompts), DDPO on the gold judge, by the shape test over all"
        in text
    )
    assert "The shape over all 2 of this grid's seeds: " in text
    assert "seeds 0 (the first part) alone:" in text and "seeds 1 (the second part) alone:" in text
    one = dict([list(folders.items())[1]])  # one folder holding one of the grid's two seeds
    text = _run(grid, tmp_path, longer_gold=one)
    assert (
        "Trained for 5 rounds instead of 3 (1 seed x 2 prompts, not all of this grid's seeds; the second part)" in text
    )
    assert "These folders hold 1 of this grid's 2 seeds." in text
    seen = {next(iter(folders)): "seen before"}  # seed 0, already among longer_gold's runs
    with pytest.raises(papermill.PapermillExecutionError, match=r"seeds \[0\] were run before"):
        _run(grid, tmp_path, longer_gold={k: v for k, v in folders.items() if k not in seen}, confirm_gold=seen)
    # the same grid as the first of two earlier registrations, with its longer and confirmatory runs; the second
    # has another lr and this chapter's grid another batch size: each earlier grid is compared with the next one
    middle = {**grid, "methods": {"ddpo": {**ddpo, "lr": 1e-3}}}
    overopt.run(tmp_path / "middle", middle, workers=2, progress=False)
    later = {**grid, "methods": {"ddpo": {**ddpo, "lr": 1e-3, "batch_size": ddpo["batch_size"] // 2}}}
    earlier = {
        str(tmp_path / "logs"): {"name": "the tiny registration", "longer_gold": folders, "confirm_gold": fresh},
        str(tmp_path / "middle"): {"name": "the middle registration"},
    }
    text = _run(later, tmp_path, logs=str(tmp_path / "later"), earlier_grids=earlier)
    assert "grid: not one of the registered grids" in text
    assert "In the tiny registration (2 seeds): DDPO on the gold judge changed gold by" in text
    assert (
        "Its gold control trained for 5 rounds instead of 3 (2 seeds x 2 prompts, all of that grid's seeds): the shape"
        in text
    )
    assert text.count("Registered confirmatory test on fresh seeds 3 (the change after 5 rounds") == 1
    tiny = text.index("What changed from the tiny registration's grid to the middle registration's grid:")
    mid = text.index("What changed from the middle registration's grid to this chapter's grid:")
    assert "ddpo: lr" in text[tiny:mid] and "ddpo: batch_size" not in text[tiny:mid]
    assert "ddpo: batch_size" in text[mid:] and "ddpo: lr" not in text[mid:]
    other = {**longer, "methods": {"ddpo": {**ddpo, "steps": 5, "lr": 1e-3}}, "seeds": [2]}
    bad = {str(overopt.run(tmp_path / "other", other, workers=1, progress=False)): "other settings"}
    with pytest.raises(papermill.PapermillExecutionError, match="not only in rounds"):
        _run(grid, tmp_path, longer_gold=bad)
    with pytest.raises(
        papermill.PapermillExecutionError, match=r"another grid than longer_gold's \(they differ in \['methods'\]"
    ):
        _run(grid, tmp_path, longer_gold=folders, confirm_gold=bad)
