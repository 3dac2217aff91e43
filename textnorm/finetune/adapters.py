"""A small interface the fine-tuning loop needs from a text-to-image diffusion model.

    cond = adapter.encode(prompts)          text conditioning (any structure)
    out  = adapter.eps(unet, x_t, t, cond)  the given UNet's output (policy or reference; eps, v or x_0
                                            as the scheduler's prediction_type says; guided for Guided
                                            cond: an adapter implements _eps, the one unguided pass)
    imgs = adapter.decode(x_0)              uint8 images (n, H, W, 3)
    chain = adapter.chain(T)                the T-step DDIM chain of the pipeline's scheduler
    adapter.latent_shape                    shape of one x_T

StableDiffusionAdapter wraps any diffusers ``StableDiffusionPipeline`` (e.g.
stabilityai/stable-diffusion-2-1-base): latents of 4 x H/8 x W/8, VAE decoding, CLIP text states.
Other pipelines register their adapter (:mod:`textnorm.finetune.registry`; the synthetic world's is
:class:`textnorm.synth.adapter.SynthAdapter`). Every adapter samples with the pipeline's own
scheduler config (:mod:`textnorm.ddim`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from textnorm.ddim import Chain
from textnorm.images import to_uint8

Cond = Any  # text conditioning: a tensor (SD) or a tuple of tensors (synthetic), indexed by sample


@dataclass
class Guided:
    """Conditioning with classifier-free guidance (Ho and Salimans, 2022):

        out = f(x, t, uncond) + scale * (f(x, t, cond) - f(x, t, uncond))

    both passes in one batch (unconditional rows first), as diffusers' pipelines, ddpo-pytorch and
    TRL do, in sampling and in the training log-probabilities alike. ``uncond`` encodes the negative
    prompt ("" by default), one row per sample."""

    cond: Cond
    uncond: Cond
    scale: float


def index_cond(cond: Cond, idx: torch.Tensor) -> Cond:
    """The rows ``idx`` of a conditioning (a tensor, a tuple of tensors, or :class:`Guided`)."""
    if isinstance(cond, Guided):
        return Guided(index_cond(cond.cond, idx), index_cond(cond.uncond, idx), cond.scale)
    if isinstance(cond, tuple):
        return tuple(c[idx] for c in cond)
    return cond[idx]


def _cat(a: Cond, b: Cond) -> Cond:
    return tuple(torch.cat([x, y]) for x, y in zip(a, b, strict=True)) if isinstance(a, tuple) else torch.cat([a, b])


class Adapter:
    pipe: object
    unet: torch.nn.Module
    latent_shape: tuple[int, ...]
    device: torch.device

    @property
    def scheduler(self) -> Any:
        return self.pipe.scheduler

    def chain(self, steps: int) -> Chain:
        return Chain.from_scheduler(self.pipe.scheduler, steps)

    def encode(self, prompts: list[str]) -> Cond:
        raise NotImplementedError

    def eps(self, unet: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, cond: Cond) -> torch.Tensor:
        """The UNet's output for x_t in float32; with :class:`Guided` conditioning, the guided
        combination. Float32 whatever the autocast: accelerate converts the prepared (policy) model's
        output to float32 but not the reference's, and the chain's arithmetic in half precision would
        make the two differ (a KL of ~0.3 nats between identical models under bf16)."""
        if isinstance(cond, Guided):
            t2 = torch.cat([t, t]) if t.dim() else t
            both = self._eps(unet, torch.cat([x, x]), t2, _cat(cond.uncond, cond.cond)).float()
            uncond_out, cond_out = both.chunk(2)
            return uncond_out + cond.scale * (cond_out - uncond_out)
        return self._eps(unet, x, t, cond).float()

    def _eps(self, unet: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, cond: Cond) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, x0: torch.Tensor) -> np.ndarray:
        raise NotImplementedError

    def encode_images(self, images: np.ndarray) -> torch.Tensor:
        """uint8 images (n, H, W, 3) -> x_0 in the model's space (the inverse of decode)."""
        raise NotImplementedError

    @property
    def resolution(self) -> int:
        raise NotImplementedError


class StableDiffusionAdapter(Adapter):
    def __init__(self, pipe: Any, resolution: int | None = None) -> None:
        self.pipe = pipe
        self.unet = pipe.unet
        self.device = pipe.unet.device
        self.factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        self._resolution = resolution or pipe.unet.config.sample_size * self.factor
        if self._resolution % self.factor:
            raise ValueError(f"resolution {self._resolution} is not a multiple of the VAE factor {self.factor}")
        side = self._resolution // self.factor
        self.latent_shape = (pipe.unet.config.in_channels, side, side)

    @property
    def resolution(self) -> int:
        return self._resolution

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> Cond:
        tokenizer = self.pipe.tokenizer
        # a tokenizer saved without a length limit reports ~1e30; CLIP's text encoder has its own
        max_length = min(tokenizer.model_max_length, self.pipe.text_encoder.config.max_position_embeddings)
        tok = tokenizer(
            list(prompts), padding="max_length", max_length=max_length, truncation=True, return_tensors="pt"
        )
        return self.pipe.text_encoder(tok.input_ids.to(self.device))[0]

    def _eps(self, unet: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, cond: Cond) -> torch.Tensor:
        return unet(x, t, encoder_hidden_states=cond).sample

    @torch.no_grad()
    def decode(self, x0: torch.Tensor) -> np.ndarray:
        vae = self.pipe.vae
        img = vae.decode(x0.to(vae.dtype) / vae.config.scaling_factor).sample
        return to_uint8(img)

    @torch.no_grad()
    def encode_images(self, images: np.ndarray) -> torch.Tensor:
        vae = self.pipe.vae
        x = torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2).to(self.device, vae.dtype) / 127.5 - 1
        return vae.encode(x).latent_dist.mean.float() * vae.config.scaling_factor


def make_adapter(pipe: Any, resolution: int | None = None) -> Adapter:
    """The adapter registered for the pipeline's type (:mod:`textnorm.finetune.registry`), else Stable
    Diffusion's for any pipeline with a VAE and a text encoder."""
    from textnorm.finetune.registry import adapter_factory

    factory = adapter_factory(pipe)
    if factory is not None:
        return factory(pipe, resolution)
    if hasattr(pipe, "vae") and hasattr(pipe, "text_encoder"):
        return StableDiffusionAdapter(pipe, resolution)
    raise TypeError(
        f"unsupported pipeline {type(pipe).__name__}: use a StableDiffusionPipeline-family model or register an "
        "adapter (textnorm.finetune.registry.register_adapter)"
    )
