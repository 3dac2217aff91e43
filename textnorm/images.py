"""Images between the models' space and arrays: a generator's output x in [-1, 1], shape
(n, 3, S, S), and uint8 pixels u in {0..255}, shape (n, S, S, 3), with

    u = round((clamp(x, -1, 1) + 1) * 127.5),    x = u / 127.5 - 1.
"""

from __future__ import annotations

import numpy as np
import torch


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(n, 3, S, S) in [-1, 1], any float dtype -> uint8 (n, S, S, 3)."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def to_model_space(images: np.ndarray) -> torch.Tensor:
    """uint8 (n, S, S, 3) -> float (n, 3, S, S) in [-1, 1], on the CPU."""
    return torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
