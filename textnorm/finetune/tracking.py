"""Experiment trackers for a run (accelerate's: TensorBoard, Weights & Biases, or any
``accelerate.tracking.GeneralTracker``): every step's scalar metrics, and at each evaluation a few
of its images with their prompts. Off unless asked for (``report_to``); the run's own metrics.jsonl
is written either way."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

import numpy as np

PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}
IMAGES_PER_EVALUATION = 8  # the first images of an evaluation of the training prompts (one per prompt first)


def check_available(report_to: str) -> None:
    """Refuse a tracker whose package is not installed, before anything loads or trains."""
    package = PACKAGES.get(report_to)
    if package and importlib.util.find_spec(package) is None:
        raise ValueError(f"--report-to {report_to} needs the {package} package: pip install {package}")


def scalars(row: dict) -> dict[str, float]:
    """The row's numbers (lists such as per-prompt values and gradient norms are left to the logs)."""
    return {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def scalars_and_text(cfg: Any) -> dict[str, Any]:
    """A config as a tracker's hyperparameters: numbers and strings as they are, lists as text."""
    import dataclasses

    return {
        k: v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
        for k, v in dataclasses.asdict(cfg).items()
    }


def pick_images(images: np.ndarray, prompts: Sequence[str], per_prompt: int) -> tuple[np.ndarray, list[str]]:
    """Up to IMAGES_PER_EVALUATION images, the first of every prompt before the second of any."""
    order = [j * per_prompt + i for i in range(per_prompt) for j in range(len(images) // per_prompt)]
    order = order[:IMAGES_PER_EVALUATION]
    return images[order], [prompts[i] for i in order]


def log_images(trackers: Sequence[Any], images: np.ndarray, prompts: Sequence[str], step: int) -> None:
    """The images (n, H, W, 3) uint8 to every tracker, in the form each takes."""
    for tracker in trackers:
        if tracker.name == "tensorboard":
            tracker.log_images({"evaluation samples": images}, step=step, dataformats="NHWC")
        elif tracker.name == "wandb":  # accelerate wraps each array in a wandb.Image
            tracker.log_images({"evaluation samples": list(images)}, step=step)
        elif hasattr(tracker, "log_images"):
            tracker.log_images({"evaluation samples": (images, list(prompts))}, step=step)
