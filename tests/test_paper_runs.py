"""The paper's runs as parameter files: both files hold the settings recovered from the authors' code
and the published contrastive sets of every training prompt; ``textnorm runs`` trains a file's runs
one after another, skips finished ones, continues an interrupted one with --resume, and exports each
model as a LoRA that diffusers loads (tiny random models)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from textnorm import testing
from textnorm.experiments import runs
from textnorm.finetune.config import FinetuneConfig
from textnorm.finetune.loop import finetune
from textnorm.paths import repo_root

torch.set_num_threads(1)


def _paper_prompts() -> dict[str, list[str]]:
    return json.loads((repo_root().parent / "shared" / "paper-setup" / "training_prompts.json").read_text())


@pytest.mark.parametrize("name", ["paper_ddpo", "paper_sft"])
def test_the_paper_files_hold_the_recovered_settings(name, mirror, monkeypatch):
    monkeypatch.setenv("TEXTNORM_TIA2_MIRROR", str(mirror))
    from textnorm.finetune.task import check_contrastive, contrastive_from, plain_task

    cfgs = runs.configs(runs.read(repo_root() / "params" / f"{name}.yaml"))
    assert len(cfgs) == 3 * 7  # three prompt sets x raw and TextNorm of ImageReward, PickScore and ensembles
    paper = _paper_prompts()
    for set_name in ("count_10", "compose_10", "open100_10"):
        mine = [c for n, c in cfgs.items() if n.startswith(set_name + "__")]
        assert all(c.prompts == paper[set_name] for c in mine)
        # every training prompt has its published contrastive set
        fn, _ = contrastive_from(mine[0].contrastive)
        check_contrastive(plain_task(mine[0].prompts, contrastive=fn))
    c = next(iter(cfgs.values()))
    assert c.lora_rank > 0 and c.resolution == 512 and c.sample_steps == 50 and c.device == "cuda"
    if name == "paper_ddpo":
        assert (c.model, c.guidance_scale, c.eta, c.clip_range, c.lr, c.stat_buffer, c.kl_weight) == (
            "stabilityai/stable-diffusion-2-1-base",
            5.0,
            1.0,
            1e-4,
            3e-4,
            32,
            0.0,
        )
        assert c.n_prompts * c.samples_per_prompt == 256 and c.batch_size * c.grad_accum == 64
        assert c.min_train_sigma == 0 and c.mixed_precision == "bf16"
    else:
        assert (c.model, c.method, c.top_fraction, c.lr, c.batch_size * c.grad_accum) == (
            "stabilityai/stable-diffusion-2-1",
            "rwsft",
            0.1,
            1e-5,
            32,
        )
        assert c.pool_size * len(c.prompts) <= 10_000 and c.mixed_precision == "fp16"


def test_a_run_file_trains_skips_finished_runs_and_resumes_an_interrupted_one(tmp_path, capsys):
    from diffusers import StableDiffusionPipeline

    from textnorm.cli import main

    sd = testing.save_stable_diffusion(tmp_path / "sd")
    clip = testing.save_clip(tmp_path / "clip")
    prompts = ["a realistic photo of two cats", "a realistic photo of a dog and a cat"]
    spec = {
        "settings": dict(
            model=str(sd),
            task="prompts",
            method="ddpo",
            steps=2,
            n_prompts=2,
            samples_per_prompt=2,
            batch_size=4,
            sample_steps=3,
            min_train_sigma=0.0,
            lora_rank=2,
            guidance_scale=3.0,
            checkpoint_every=1,
            contrastive="rules",
        ),
        "prompt_sets": {"pair": {"prompts": prompts}},
        "rewards": {"raw": {"reward": f"raw:clip={clip}"}, "TextNorm": {"reward": f"textnorm:clip={clip}"}},
    }
    path = tmp_path / "runs.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    assert main(["runs", str(path), "--out", str(out), "--only", "pair__raw__seed0", "--quiet"]) == 0
    # TextNorm's run is interrupted after its first step (a checkpoint, no export)
    cfgs = runs.configs(runs.read(path))
    cut = FinetuneConfig(**{**cfgs["pair__TextNorm__seed0"].__dict__, "steps": 1})
    finetune(cut, out=out / "pair__TextNorm__seed0", progress=False)
    assert main(["runs", str(path), "--out", str(out), "--quiet"]) == 1
    assert "--resume" in capsys.readouterr().err
    assert main(["runs", str(path), "--out", str(out), "--list"]) == 0
    listing = capsys.readouterr().out
    assert "pair__raw__seed0: ddpo" in listing and "(finished)" in listing and "(started)" in listing
    assert main(["runs", str(path), "--out", str(out), "--resume", "--quiet"]) == 0
    assert "trained 1 run(s)" in capsys.readouterr().out and "pair__TextNorm__seed0" in listing
    rows = [json.loads(x) for x in (out / "pair__TextNorm__seed0" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1]  # continued from its checkpoint, not restarted
    spec["settings"]["steps"] = 3  # a finished run is not silently kept under other settings
    path.write_text(yaml.safe_dump(spec))
    assert main(["runs", str(path), "--out", str(out), "--resume", "--quiet"]) == 1
    assert "other settings" in capsys.readouterr().err
    for name in ("pair__raw__seed0", "pair__TextNorm__seed0"):
        assert (out / name / "finished.json").is_file()
        pipe = StableDiffusionPipeline.from_pretrained(sd, safety_checker=None)
        pipe.load_lora_weights(out / name / "model" / "lora")
        assert any("lora" in n for n, _ in pipe.unet.named_parameters())


def test_a_bad_run_file_is_refused_in_words(tmp_path):
    bad = {"settings": {"lr": "3e-4"}, "rewards": {"r": {"reward": "raw:x"}}}
    with pytest.raises(ValueError, match="must be a number"):
        runs.configs(bad)
    with pytest.raises(ValueError, match="did you mean 'prompt_sets'"):
        runs.configs({"promt_sets": {}, "rewards": {"r": {"reward": "gold"}}})
    with pytest.raises(ValueError, match="set by the reward|unknown setting 'reward'"):
        runs.configs({"settings": {"reward": "gold"}, "rewards": {"r": {"reward": "gold"}}})
    with pytest.raises(ValueError, match="unknown reward kind"):
        runs.configs({"rewards": {"r": {"reward": "rw:x"}}})
    with pytest.raises(ValueError, match="cannot name a run's folder"):
        runs.configs({"prompt_sets": {"../../elsewhere": {}}, "rewards": {"r": {"reward": "gold"}}})
    with pytest.raises(ValueError, match="seeds must be"):
        runs.configs({"rewards": {"r": {"reward": "gold"}}, "seeds": [True]})
