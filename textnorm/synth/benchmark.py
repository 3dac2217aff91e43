"""TIA2-synth: the TIA2 protocol replayed in the synthetic world.

For each prompt (all counting captions and a seeded sample of held-out composition captions), the
base generator draws ``n_images`` images; three simulated annotators label each one
(:mod:`textnorm.synth.annotators`) and the gold judge gives the true verdict. The table has the
columns of :func:`textnorm.tia2.load_images` (subset, prompt_id, prompt, image, label_1..3,
aligned = at least two labels are 1) plus ``gold`` (the judge's verdict) and ``split`` (whether
the caption was a training caption of the generator), so the TIA2 analysis code runs unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from textnorm.synth import annotators, judge, scenes
from textnorm.tia2 import is_aligned


def choose_prompts(n_composition: int = 64, seed: int = 0) -> dict[str, list[str]]:
    counting = [scenes.caption_text(c) for c in scenes.all_captions("counting")]
    held = scenes.split_captions("composition", seed=0)[1]
    rng = np.random.default_rng(seed)
    composition = sorted(rng.choice(held, min(n_composition, len(held)), replace=False).tolist())
    return {"counting": counting, "composition": composition}


def build(
    pipe, prompts: dict[str, list[str]], n_images: int = 50, seed: int = 0, steps: int = 20, progress: bool = True
) -> tuple[np.ndarray, pd.DataFrame]:
    from tqdm import tqdm

    train = {s: set(scenes.split_captions(s, seed=0)[0]) for s in prompts}
    all_images, rows = [], []
    pid = 0
    for subset, caps in prompts.items():
        for cap in tqdm(caps, disable=not progress, desc=f"sampling {subset}"):
            imgs = pipe([cap] * n_images, num_inference_steps=steps, seed=seed + pid)
            for j in range(n_images):
                rows.append(
                    {
                        "subset": subset,
                        "prompt_id": pid,
                        "prompt": cap,
                        "image": f"image_{pid}_{j}.png",
                        "split": "train" if cap in train[subset] else "held-out",
                    }
                )
            all_images.append(imgs)
            pid += 1
    images = np.concatenate(all_images)
    table = pd.DataFrame(rows)
    table["gold"] = judge.judge_batch(images, list(table.prompt))
    labels = annotators.simulate_labels(images, list(table.prompt), table["gold"].to_numpy(), seed=seed)
    for a in range(labels.shape[1]):
        table[f"label_{a + 1}"] = labels[:, a]
    table["aligned"] = is_aligned(labels)
    return images, table


def save(path: str | Path, images: np.ndarray, table: pd.DataFrame) -> None:
    # strings as fixed-width unicode, so the file loads without pickle
    cols = {
        f"col_{c}": (
            table[c].to_numpy()
            if pd.api.types.is_numeric_dtype(table[c]) or table[c].dtype == bool
            else np.asarray(table[c], dtype=str)
        )
        for c in table.columns
    }
    np.savez_compressed(path, images=images, columns=np.array(list(table.columns)), **cols)


def load(path: str | Path) -> tuple[np.ndarray, pd.DataFrame]:
    with np.load(path, allow_pickle=False) as z:
        table = pd.DataFrame({str(c): z[f"col_{c}"] for c in z["columns"]})
        return z["images"], table
