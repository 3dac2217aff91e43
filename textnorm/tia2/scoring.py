"""Scoring a folder of TIA2 images with a reward, raw and TextNorm-calibrated: the files are
checked and read here; the scores come from :mod:`textnorm.rewards.scoring` (R[i, 0] = r(x_i, y),
R[i, k] = r(x_i, c_k), TextNorm = softmax of each row at a temperature)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError

from textnorm.rewards import scoring as rewards_scoring
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
            "file names must match the TIA2 annotations (image_<prompt>_<i>_<j>.jpg)."
        )
    return paths


def open_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from exc


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
    names = list(images["image"])
    mats = rewards_scoring.prompt_matrices(
        reward, names, list(images["prompt"]), contrastive, load=lambda n: open_image(paths[n]), progress=progress
    )
    scored = pd.DataFrame({"image": names, reward.name: rewards_scoring.raw(mats)})
    if contrastive is not None:
        scored[f"{reward.name}_textnorm"] = rewards_scoring.textnorm(mats, temperature)
    return images[["subset", "prompt", "image"]].merge(scored, on="image", how="left")
