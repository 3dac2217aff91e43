"""Scoring TIA2-style image sets with a reward, raw and TextNorm-calibrated, at scale.

For images x_1..x_n of one prompt y with contrastive prompts C(y), one call of
``reward.score_matrix(images, [y, *C(y)])`` gives R[i, 0] = r(x_i, y) and R[i, k] = r(x_i, c_k);
the TextNorm reward is then ``textnorm(R[:, 0], R[:, 1:])`` (see :mod:`textnorm.calibration`).
Dual encoders encode each image once and each unique prompt once (cached), so the calibrated
score costs little more than the raw one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from textnorm import calibration
from textnorm.rewards.base import RewardModel


def check_images(folder: str | Path, names: Sequence[str]) -> list[Path]:
    """Paths of ``names`` in ``folder``; one error listing every missing file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    paths = [folder / n for n in names]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise FileNotFoundError(
            f"{len(missing)} of {len(paths)} images are missing from {folder} (e.g. {shown}); "
            "file names must match the TIA2 annotations (image_<prompt>_<i>_<j>.jpg).")
    return paths


def open_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from exc


def score_prompt_groups(
    reward: RewardModel,
    groups: Mapping[str, Sequence],
    contrastive: Mapping[str, Sequence[str]] | None = None,
    load: Callable[[object], Image.Image] = lambda x: x,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """For every prompt y with images ``groups[y]``: the reward matrix R of shape
    (n_images, 1 + |C(y)|), column 0 the prompt itself (only that column without ``contrastive``)."""
    if contrastive is not None:
        lacking = [p for p in groups if not contrastive.get(p)]
        if lacking:
            raise KeyError(f"{len(lacking)} prompts have no contrastive prompt set, e.g. {lacking[0]!r}; "
                           "generate them (textnorm.prompts) or score without TextNorm.")
    out = {}
    for prompt, items in tqdm(groups.items(), disable=not progress, desc=f"scoring with {reward.name}"):
        texts = [prompt, *(contrastive[prompt] if contrastive is not None else [])]
        out[prompt] = reward.score_matrix([load(x) for x in items], texts)
    return out


def score_table(
    reward: RewardModel,
    images: pd.DataFrame,
    folder: str | Path,
    contrastive: Mapping[str, Sequence[str]] | None = None,
    temperature: float = 1.0,
    progress: bool = True,
) -> pd.DataFrame:
    """Score the rows of a TIA2 image table (columns subset, prompt, image) from image files in
    ``folder``. Returns subset, prompt, image, ``<name>`` (raw) and, with ``contrastive``,
    ``<name>_textnorm`` (softmax at ``temperature``)."""
    paths = dict(zip(images["image"], check_images(folder, list(images["image"]))))
    groups = {p: list(g["image"]) for p, g in images.groupby("prompt", sort=False)}
    mats = score_prompt_groups(reward, groups, contrastive, load=lambda n: open_image(paths[n]),
                               progress=progress)
    rows = []
    for prompt, names in groups.items():
        R = mats[prompt]
        tn = calibration.textnorm(R[:, 0], R[:, 1:], temperature) if contrastive is not None else None
        for i, name in enumerate(names):
            row = {"image": name, reward.name: R[i, 0]}
            if tn is not None:
                row[f"{reward.name}_textnorm"] = tn[i]
            rows.append(row)
    scored = pd.DataFrame(rows)
    return images[["subset", "prompt", "image"]].merge(scored, on="image", how="left")
