"""Fine-tuning and the over-optimisation grid refuse bad inputs in words, before any work, and leave
no litter: a resume from changed model or reward files, temporary files of killed writes, a full
disk, a CUDA device without a GPU, local paths that do not exist (or hold the wrong kind of
folder), a bad grid file, a run log that is not JSON, and grid workers whose parent was killed."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from textnorm.cli import main
from textnorm.experiments import overopt
from textnorm.finetune import inputs, loop
from textnorm.finetune.config import FinetuneConfig
from textnorm.paths import repo_root
from textnorm.synth.generator import SynthPipeline

torch.set_num_threads(1)
ROOT = repo_root()
PROXY_P, PROXY_C = ROOT / "data/synth/proxy_preference", ROOT / "data/synth/proxy_contrastive"


def brightness(images, prompts):
    return images.astype(float).mean(axis=(1, 2, 3)) / 255


def small(**kw) -> FinetuneConfig:
    base = dict(
        method="ddpo",
        steps=1,
        n_prompts=2,
        samples_per_prompt=2,
        sample_steps=4,
        batch_size=4,
        task="prompts",
        prompts=["a red circle", "two blue squares"],
    )
    return FinetuneConfig(**{**base, **kw})


def rwsft_args(gen: Path, reward: str, out: Path) -> list[str]:
    return [
        "finetune",
        "--model",
        str(gen),
        "--reward",
        reward,
        "--method",
        "rwsft",
        "--pool-size",
        "4",
        "--batch-size",
        "2",
        "--sample-steps",
        "3",
        "--out",
        str(out),
        "--quiet",
    ]


# ---------------------------------------------------------------- resume: the same inputs or a refusal
def test_resume_is_refused_when_the_reward_files_changed(tmp_path, capsys):
    SynthPipeline.build().save_pretrained(tmp_path / "gen")
    shutil.copytree(PROXY_P, tmp_path / "reward")
    args = rwsft_args(tmp_path / "gen", f"raw:{tmp_path / 'reward'}", tmp_path / "run")
    assert main(args + ["--steps", "1"]) == 0
    saved = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    # the preference proxy replaced by the contrastive one under the same path
    shutil.rmtree(tmp_path / "reward")
    shutil.copytree(PROXY_C, tmp_path / "reward")
    capsys.readouterr()
    assert main(args + ["--steps", "2", "--resume"]) == 1
    err = capsys.readouterr().err
    assert f"the reward model files in {tmp_path / 'reward'} changed" in err and "cannot resume" in err
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == saved  # nothing trained, nothing written
    assert "--allow-changed-inputs" in err
    # asked for explicitly, the resume goes on, with a warning naming the change
    with pytest.warns(UserWarning, match="resuming .* on changed inputs, as asked: the reward model files"):
        assert main(args + ["--steps", "2", "--resume", "--allow-changed-inputs"]) == 0
    # the checkpoint now records the inputs it was last trained on: unchanged since, a resume goes on unasked
    assert main(args + ["--steps", "3", "--resume"]) == 0


def test_resume_is_refused_when_the_model_weights_changed(tmp_path):
    out = tmp_path / "run"
    loop.finetune(small(), out=out, pipe=SynthPipeline.build(), reward_fn=brightness, progress=False)
    other = SynthPipeline.build(seed=1)  # another base model under the same settings
    with pytest.raises(ValueError, match="the base model's weights or their dtypes changed"):
        loop.finetune(small(steps=2), out=out, resume=True, pipe=other, reward_fn=brightness, progress=False)
    rows = loop.finetune(
        small(steps=2), out=out, resume=True, pipe=SynthPipeline.build(), reward_fn=brightness, progress=False
    )
    assert [r["step"] for r in rows] == [0, 1]


def test_digests_see_every_byte():
    a, b = SynthPipeline.build(), SynthPipeline.build()
    mods = lambda p: [(k, v) for k, v in sorted(p.components.items()) if isinstance(v, torch.nn.Module)]  # noqa: E731
    assert inputs.weights_digest(mods(a)) == inputs.weights_digest(mods(b))
    with torch.no_grad():
        next(b.unet.parameters()).view(-1)[0] += 1e-6
    assert inputs.weights_digest(mods(a)) != inputs.weights_digest(mods(b))


# ---------------------------------------------------------------- litter of killed writes
def test_stale_temporary_files_are_removed_and_do_not_count_as_a_run(tmp_path, capsys):
    SynthPipeline.build().save_pretrained(tmp_path / "gen")
    run = tmp_path / "run"
    run.mkdir()
    (run / ".checkpoint.pt.k2x9a1").write_bytes(b"\0" * 1000)  # kill -9 during the first write
    (run / ".state.json.q8w").write_text("{")
    args = rwsft_args(tmp_path / "gen", f"raw:{PROXY_P}", run)
    assert main(args + ["--steps", "1", "--resume"]) == 1
    assert "nothing to resume: no checkpoint.pt" in capsys.readouterr().err
    assert main(args + ["--steps", "1"]) == 0  # a folder holding only temporary files is empty
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "metrics.json", "metrics.jsonl", "state.json"]


# ---------------------------------------------------------------- a full disk
def test_a_full_disk_keeps_the_last_checkpoint_and_says_so(tmp_path, monkeypatch):
    out = tmp_path / "run"
    tuner = loop.Finetuner(small(), pipe=SynthPipeline.build(), reward_fn=brightness)
    tuner.train(out, progress=False)
    saved = (out / "checkpoint.pt").read_bytes()

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("textnorm.files.os.fsync", no_space)
    with pytest.raises(OSError, match="the disk is full; the last complete checkpoint.pt is intact"):
        tuner.save_checkpoint(out)
    assert (out / "checkpoint.pt").read_bytes() == saved
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.pt",
        "metrics.json",
        "metrics.jsonl",
        "state.json",
    ]  # no temp


def test_torch_write_failures_become_one_line(tmp_path, monkeypatch, capsys):
    # torch.save reports a full disk as a RuntimeError; the CLI prints one line, no traceback
    SynthPipeline.build().save_pretrained(tmp_path / "gen")

    def failed(*a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing file")

    monkeypatch.setattr("textnorm.finetune.loop.torch.save", failed)
    monkeypatch.setattr(
        "shutil.disk_usage", lambda p: shutil._ntuple_diskusage(10 << 30, 10 << 30, 0)
    )  # a disk with no space left
    assert main(rwsft_args(tmp_path / "gen", f"raw:{PROXY_P}", tmp_path / "run") + ["--steps", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("textnorm finetune: could not write") and "the disk is full" in err[-1]
    assert "no checkpoint was written before" in err[-1] and "Traceback" not in "\n".join(err)


# ---------------------------------------------------------------- devices and paths
def test_cuda_without_a_gpu_is_a_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = rwsft_args(ROOT / "data/synth/generator", f"raw:{PROXY_P}", tmp_path / "run")
    assert main(args + ["--device", "cuda"]) == 1
    assert "device cuda: no CUDA GPU is available here" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert main(args + ["--device", "cuda:3"]) == 1
    assert "device cuda:3: this machine has 1 CUDA GPU(s)" in capsys.readouterr().err


def test_pipelines_of_other_classes_are_refused_in_words(tmp_path):
    (tmp_path / "xl").mkdir()
    (tmp_path / "xl" / "model_index.json").write_text('{"_class_name": "StableDiffusionXLPipeline"}')
    with pytest.raises(ValueError, match="pipeline class 'StableDiffusionXLPipeline' is not supported"):
        loop.load_pipeline(str(tmp_path / "xl"))


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--model", "/nope", "model folder /nope does not exist"),
        ("--model", "data/synth/nope", "model folder data/synth/nope does not exist"),
        ("--model", str(PROXY_C), "is not the right kind of folder: it holds no model_index.json"),
        ("--reward", "raw:data/synth/nope", "reward model folder data/synth/nope does not exist"),
        ("--reward", "raw:./nope", "reward model folder ./nope does not exist"),
    ],
)
def test_local_paths_that_do_not_exist_are_named(tmp_path, capsys, flag, value, message):
    args = rwsft_args(ROOT / "data/synth/generator", f"raw:{PROXY_P}", tmp_path / "run")
    args[args.index(flag) + 1] = value
    assert main(args) == 1
    err = capsys.readouterr().err
    assert message in err and "repo id" not in err.lower() and "Traceback" not in err


def test_shipped_defaults_resolve_outside_the_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Path(inputs.resolve_path("data/synth/generator", "model folder")) == ROOT / "data/synth/generator"
    pipe = loop.load_pipeline("data/synth/generator")
    assert isinstance(pipe, SynthPipeline)
    assert (
        inputs.resolve_path("stabilityai/stable-diffusion-2-1-base", "model") == "stabilityai/stable-diffusion-2-1-base"
    )


# ---------------------------------------------------------------- the grid: checked before any computation
@pytest.fixture()
def grid():
    g = overopt.default_grid()
    g["seeds"] = [0]
    return g


def _bad(grid: dict, tmp_path: Path, message: str) -> None:
    out = tmp_path / "logs"
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        overopt.run(out, grid, workers=1, progress=False)
    assert not out.exists()  # nothing computed, nothing written


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda g: g.update(seeds=["a", "b"]), r"seeds must be a non-empty list of integers"),
        (lambda g: g.update(seeds=[]), r"seeds must be a non-empty list of integers"),
        (lambda g: g.update(seeds=[0, 0]), r"seeds repeat"),
        (lambda g: g.update(model="data/synth/nope"), r"model folder data/synth/nope does not exist"),
        (lambda g: g["rewards"]["preference"].update(spec="raw:data/synth/nope"), r"reward 'preference'.*not exist"),
        (lambda g: g["methods"]["ddpo"].update(sample_steps=2), r"sample_steps=2 no DDIM step has sigma"),
        (lambda g: g["methods"]["ddpo"].update(learning_rate=1e-4), r"unknown setting 'learning_rate'"),
        (lambda g: g["methods"]["ddpo"].update(sample_step=4), r"did you mean 'sample_steps'"),
        (lambda g: g["methods"]["ddpo"].update(seed=3), r"unknown setting 'seed'"),
        (lambda g: g["methods"]["ddpo"].update(steps="16"), r"methods\['ddpo'\].steps must be an integer, got '16'"),
        (lambda g: g["methods"]["ddpo"].update(lr="6e-05"), r"must be a number, got '6e-05' \(YAML reads"),
        (lambda g: g["methods"]["rwsft"].pop("method"), r"methods\['rwsft'\] sets method='ddpo'"),
        (lambda g: g.update(method_reward={}), r"unknown setting 'method_reward'.*method_rewards"),
        (lambda g: g["method_rewards"].update(sft=["gold"]), r"method_rewards: unknown setting 'sft'"),
        (lambda g: g["rewards"]["gold"].update(temp=1.0), r"reward 'gold': unknown setting 'temp'"),
        (lambda g: g["bon"].update(pool=0), r"bon pool must be an integer >= 1"),
        (lambda g: g["rewards"]["preference"].update(spec="textnrom:x"), r"unknown reward kind 'textnrom'"),
        (lambda g: g["rewards"]["preference"].update(spec=f"raw:{PROXY_P},{PROXY_C}"), r"raw: takes one model"),
        (lambda g: g["rewards"]["preference"].update(spec="raw:nope=x"), r"unknown reward 'nope'"),
        (lambda g: g["methods"]["ddpo"].update(mixed_precision="fp32"), r"mixed_precision must be one of"),
        (lambda g: g["methods"]["ddpo"].update(task="synht"), r"unknown task 'synht'"),
        (lambda g: g["bon"].update(prompts=10_000), r"holds out"),
    ],
)
def test_bad_grids_are_refused_before_the_pool(grid, tmp_path, change, message):
    change(grid)
    _bad(grid, tmp_path, message)


def test_the_help_example_on_a_machine_without_a_gpu(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "gpu"
    assert main(["overopt", "--grid", str(ROOT / "params/overopt_gpu.yaml"), "--out", str(out), "--quiet"]) == 1
    assert "device cuda: no CUDA GPU is available here" in capsys.readouterr().err
    assert not out.exists()


def test_a_run_log_that_is_not_json_is_named(grid, tmp_path):
    folder = tmp_path / "logs"
    (folder / "runs").mkdir(parents=True)
    (folder / "grid.json").write_text(json.dumps(grid))
    first = overopt.run_name(*overopt.jobs(grid)[0])
    (folder / "runs" / f"{first}.json").write_text('{"config": {')  # cut short
    with pytest.raises(ValueError, match=rf"{first}\.json is not valid JSON"):
        overopt.load(folder)
    (folder / "grid.json").write_text("[1, 2")
    with pytest.raises(ValueError, match=r"grid\.json is not valid JSON"):
        overopt.load(folder)


# ---------------------------------------------------------------- workers die with their parent
def _children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(p.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_grid_workers_die_when_the_parent_is_killed(grid, tmp_path):
    grid["rewards"] = {k: grid["rewards"][k] for k in ("gold", "preference")}
    grid.pop("pairs", None)
    grid["methods"] = {"ddpo": {**grid["methods"]["ddpo"], "steps": 10_000, "eval_every": 0}}
    grid["method_rewards"] = {}
    grid.pop("bon")
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "textnorm.cli", "overopt", "--grid", str(tmp_path / "grid.json")]
    parent = subprocess.Popen([*cmd, "--out", str(tmp_path / "logs"), "--quiet", "--workers", "2"], env=env, cwd=ROOT)
    workers: list[int] = []
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(workers) < 2:
            # the pool's workers (the resource tracker is a child too): wait until they train
            workers = [c for c in _children(parent.pid) if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()]
            time.sleep(0.5)
        assert len(workers) >= 2, "the grid's workers did not start"
        time.sleep(3)  # inside their runs
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.time() + 15
        while time.time() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.2)
        assert not any(_alive(w) for w in workers), "workers outlived their parent"
    finally:  # whatever happened: no worker left training on CI's cores
        parent.kill()
        for w in {*workers, *_children(parent.pid)}:
            try:
                os.kill(w, signal.SIGKILL)
            except ProcessLookupError:
                pass
