"""The overoptimization chapter runs a grid it is given: the GPU parameter file's grid, every size
shrunk and on CPU (a smoke run: its claims are not checked, the numbers are too small to mean anything)."""

from __future__ import annotations

import json

import papermill
import yaml

from textnorm.paths import repo_root


def test_chapter_runs_the_gpu_grid_shrunk_on_cpu(tmp_path):
    params = yaml.safe_load((repo_root() / "params" / "overopt_gpu.yaml").read_text())
    grid = params["grid"]
    grid["methods"]["ddpo"].update(
        steps=3, samples_per_prompt=2, batch_size=8, eval_every=3, eval_samples=1, sample_steps=4, device="cpu"
    )
    grid["methods"]["rwsft"].update(
        steps=2, pool_size=4, batch_size=4, eval_every=2, eval_samples=1, sample_steps=4, device="cpu"
    )
    grid["seeds"] = [0, 1]
    grid["bon"].update(prompts=3, pool=8, sample_steps=4, device="cpu")
    out = tmp_path / "03.ipynb"
    papermill.execute_notebook(
        str(repo_root() / "notebooks" / "03_overoptimization.ipynb"),
        str(out),
        kernel_name="python3",
        parameters={
            "logs": str(tmp_path / "logs"),
            "grid": grid,
            "workers": 2,
            "bon_ns": [1, 2, 4, 8],
            "n_boot": 50,
            "check_claims": False,
        },
        progress_bar=False,
    )
    text = out.read_text()
    assert "24 fine-tuning runs: ddpo x 7 rewards, rwsft x 5 rewards x seeds [0, 1]" in text
    assert "every logged number identical" in text  # the replay, on the kernels that wrote the logs
    assert "numbers glued" in text
    logs = sorted(p.name for p in (tmp_path / "logs" / "runs").iterdir())
    assert len(logs) == 24 and (tmp_path / "logs" / "bon.npz").exists()
    assert json.loads((tmp_path / "logs" / "grid.json").read_text()) == grid
