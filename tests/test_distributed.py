"""Fine-tuning under ``accelerate launch`` with two CPU processes (gloo): the README's command,
with ``--device cpu`` for ``--device cuda``, a free port, and small sizes appended (later options
win), with several minibatches per round and two inner epochs.

Against one process with the same settings: per-step rewards and gold equal (relative tolerance
1e-4: the same samples, scored on images that differ by float rounding at most) and the final
weights equal to within a share of the run's weight change, in L2 norm over all trainable weights.
The two runs sum each minibatch's gradients in a different order, and that rounding grows:

- RWSFT, within 0.1% (measured 5e-5 on an AVX512 CPU, 2e-5 on an AVX2 one): Adam amplifies the
  rounding where gradients nearly cancel.
- DDPO, within 1% (measured 3e-5 on the AVX512 CPU, 3.4e-3 on the AVX2 one, the same with
  ATEN_CPU_CAPABILITY=default): its clipped surrogate's gradient also switches off where a ratio
  crosses 1 +- c (clipfrac ~0.5-0.7 at these sizes), and rounding decides the ratios near the edge.

The logged quantities computed from the trained weights get the same tolerance: the loss as a
share of itself (abs 1e-6, since it is ~0 on a round's first minibatch, ratio 1 and advantages of
mean 0) and the path KL, quadratic in the weights' change, twice that share."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from textnorm.paths import repo_root

SMALL = [
    "--reward",
    "raw:data/synth/proxy_contrastive",
    "--n-prompts",
    "2",
    "--samples-per-prompt",
    "4",
    "--batch-size",
    "4",
    "--inner-epochs",
    "2",
    "--sample-steps",
    "4",
    "--steps",
    "3",
    "--eval-every",
    "1",
    "--eval-samples",
    "2",
    "--warmup",
    "0",
    "--lr",
    "1e-4",
    "--sample-batch",
    "3",  # micro-batches that cut across each process's shard
    "--quiet",
]
RWSFT = ["--method", "rwsft", "--pool-size", "4", "--top-fraction", "0.5", "--batch-size", "4"]
# DDPO with the rewards and statistics that depend on the whole batch: raw-mean's z-scores and per-prompt buffers
DDPO = [
    "--reward",
    "raw-mean:data/synth/proxy_contrastive,data/synth/proxy_preference",
    "--stat-buffer",
    "8",
    "--stat-min-count",
    "2",
]


def readme_command() -> list[str]:
    text = (repo_root() / "README.md").read_text()
    match = re.search(r"^accelerate launch .*?(?<!\\)$", text, flags=re.M | re.S)
    assert match, "the README shows no accelerate launch command"
    args = shlex.split(match.group(0).replace("\\\n", " "))
    assert args[args.index("--device") + 1] == "cuda"
    args[args.index("--device") + 1] = "cpu"
    out = args.index("--out")
    del args[out : out + 2]
    with socket.socket() as sock:  # a free port, not accelerate's fixed default
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return args[:2] + ["--main_process_port", str(port)] + args[2:]


def run(args: list[str], out: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        args + ["--out", str(out)], cwd=repo_root(), env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "checkpoint.pt", weights_only=True)["trainable"]


@pytest.mark.parametrize("method", ["ddpo", "rwsft"])
def test_two_processes_follow_one(method, tmp_path):
    launch = readme_command()
    launcher = Path(sys.executable).parent / "accelerate"
    assert launch[0] == "accelerate" and launcher.exists()
    extra = SMALL + (RWSFT if method == "rwsft" else DDPO)
    run([str(launcher), *launch[1:], *extra], tmp_path / "two")
    one = [sys.executable, *launch[launch.index("-m") :], *extra]  # the same options, one process
    run(one, tmp_path / "one")
    if method == "ddpo":  # several minibatches per round: resuming on another process count is refused
        proc = subprocess.run(
            one + ["--steps", "4", "--resume", "--out", str(tmp_path / "two")],
            cwd=repo_root(),
            env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 1 and "ran on 2 process(es)" in proc.stderr

    # one set of files, written by the main process
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [
        "checkpoint.pt",
        "metrics.json",
        "metrics.jsonl",
        "state.json",
    ]
    state = json.loads((tmp_path / "two" / "state.json").read_text())
    assert state["processes"] == 2
    a, b = state["replica_checksums"]
    assert a == b and len(a) == 64  # both processes ended with the same weights (sha256)
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    single = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert json.loads((tmp_path / "one" / "state.json").read_text())["processes"] == 1
    assert [r["step"] for r in two] == [0, 1, 2]
    if method == "ddpo":
        for row in two:
            assert row["samples"] == 8  # gathered: the whole global batch
            assert len(set(row["shard_checksums"])) == 2  # the processes drew different samples
            assert len(row["grad_norms"]) == len(single[row["step"]]["grad_norms"])
    else:
        assert two[0]["pool_samples"] == 8 * 4  # the whole pool (8 prompts x 4)
    share = 1e-2 if method == "ddpo" else 1e-3  # of the weights' change (docstring)
    compared = 0
    for r1, r2 in zip(single, two):
        assert set(r1) - {"shard_checksums"} == set(r2) - {"shard_checksums"}
        for k in r1:
            if k.endswith("_prompt_names"):
                assert r2[k] == r1[k]
            elif k.endswith("_prompt_kl"):  # the path KL of each prompt, quadratic in the weights' change
                assert r2[k] == pytest.approx(r1[k], rel=2 * share, abs=1e-6), (r1["step"], k)
            elif "_prompt_" in k:  # per-prompt means of an evaluation: fewer terms, so a looser rel
                assert r2[k] == pytest.approx(r1[k], rel=1e-3, abs=1e-6), (r1["step"], k)
            elif k == "loss":
                assert r2[k] == pytest.approx(r1[k], rel=share, abs=1e-6), (r1["step"], k)
                compared += 1
            elif k.endswith(("reward", "gold")):
                assert r2[k] == pytest.approx(r1[k], rel=1e-4, abs=1e-6), (r1["step"], k)
                compared += 1
    assert compared >= 3 * 5
    w1, w2 = weights(tmp_path / "one"), weights(tmp_path / "two")
    from textnorm.finetune.loop import load_pipeline

    base = dict(load_pipeline(str(repo_root() / "data/synth/generator")).unet.named_parameters())
    change = sum(float(((w1[k] - base[k].detach()) ** 2).sum()) for k in w1) ** 0.5
    diff = sum(float(((w1[k] - w2[k]) ** 2).sum()) for k in w1) ** 0.5
    assert change > 0 and diff <= share * change, (diff, change)


def test_sizes_that_do_not_split_are_refused(tmp_path):
    launcher = Path(sys.executable).parent / "accelerate"
    launch = readme_command()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [
            str(launcher),
            *launch[1:],
            *SMALL,
            "--batch-size",
            "3",
            "--samples-per-prompt",
            "3",
            "--n-prompts",
            "1",
            "--out",
            str(tmp_path / "x"),
        ],
        cwd=repo_root(),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode != 0
    assert "must be a multiple of 2" in proc.stderr
    assert not (tmp_path / "x" / "checkpoint.pt").exists()


def test_shards_cover_the_batch_in_order():
    from textnorm.finetune.distributed import shard

    for n, p in [(8, 2), (7, 2), (5, 3), (4, 4)]:
        parts = [list(range(n))[shard(n, p, k)] for k in range(p)]
        assert sum(parts, []) == list(range(n)) and max(map(len, parts)) - min(map(len, parts)) <= 1
    with pytest.raises(ValueError, match="cannot be split"):
        shard(1, 2, 0)


def test_sharded_sampling_draws_the_whole_batch_noise():
    """A shard of a batch sampled alone gets the same noise, hence the same trajectory rows."""
    from textnorm import ddim
    from textnorm.finetune.adapters import make_adapter
    from textnorm.finetune.loop import make_generator
    from textnorm.synth.generator import SynthPipeline

    pipe = SynthPipeline.build()
    ad = make_adapter(pipe)
    prompts = ["a red circle", "two blue squares", "three green triangles", "one red square"]
    chain = ad.chain(3)

    def run(rows):
        total, sl = rows
        cond = ad.encode(prompts[sl])
        g = make_generator(0, 0)
        x = torch.randn((total, *ad.latent_shape), generator=g)[sl]
        with torch.no_grad():
            return ddim.sample(lambda x_, t: ad.eps(ad.unet, x_, t, cond), chain, x, 1.0, g, rows=rows).x0

    whole = run((4, slice(None)))
    torch.testing.assert_close(torch.cat([run((4, slice(0, 2))), run((4, slice(2, 4)))]), whole)


def test_device_must_be_the_one_accelerate_assigns():
    from types import SimpleNamespace

    from textnorm.finetune.distributed import resolve_device

    two = SimpleNamespace(num_processes=2, process_index=1, device=torch.device("cuda", 1))
    assert resolve_device(two, "cuda") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="pass --device cuda"):
        resolve_device(two, "cuda:0")
    with pytest.raises(ValueError, match="pass --device cuda"):
        resolve_device(two, "cpu")
    assert resolve_device(SimpleNamespace(num_processes=1), "cuda:3") == torch.device("cuda", 3)


def test_minibatches_are_the_same_for_any_number_of_processes():
    from textnorm.finetune.distributed import minibatches, shard
    from textnorm.finetune.loop import make_generator

    n, b = 24, 8
    mbs = minibatches(n, b, make_generator(0, 0))
    assert len(mbs) == 3 and sorted(np.concatenate(mbs).tolist()) == list(range(n))
    for p in (1, 2, 4, 8):  # every process holds b / p rows of every minibatch
        for k in range(p):
            sl = shard(n, p, k)
            assert all(((mb >= sl.start) & (mb < sl.stop)).sum() == b // p for mb in mbs)
    again = minibatches(n, b, make_generator(0, 0))
    assert all((x == y).all() for x, y in zip(mbs, again))
    with pytest.raises(ValueError, match="does not split"):
        minibatches(10, 4, make_generator(0, 0))
