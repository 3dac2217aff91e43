"""The synthetic generator as the trainer sees it (:class:`textnorm.finetune.adapters.Adapter`):
pixel-space x of 3 x 16 x 16 in [-1, 1], text conditioning as (token states, pooled state), the pooled
state added to the time embedding (``class_labels``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from textnorm.finetune.adapters import Adapter, Cond
from textnorm.images import to_model_space, to_uint8


class SynthAdapter(Adapter):
    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self.unet = pipe.unet
        self.device = pipe.unet.device
        s = pipe.unet.config.sample_size
        self.latent_shape = (3, s, s)

    @property
    def resolution(self) -> int:
        return self.pipe.unet.config.sample_size

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> Cond:
        return self.pipe.encode_prompt(list(prompts), self.device)

    def _eps(self, unet: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, cond: Cond) -> torch.Tensor:
        states, pooled = cond
        return unet(x, t, encoder_hidden_states=states, class_labels=pooled).sample

    def decode(self, x0: torch.Tensor) -> np.ndarray:
        return to_uint8(x0)

    def encode_images(self, images: np.ndarray) -> torch.Tensor:
        return to_model_space(images).to(self.device)


def make_synth_adapter(pipe: Any, resolution: int | None = None) -> SynthAdapter:
    if resolution is not None and resolution != pipe.unet.config.sample_size:
        raise ValueError(f"the synthetic generator draws {pipe.unet.config.sample_size} px images, not {resolution} px")
    return SynthAdapter(pipe)
