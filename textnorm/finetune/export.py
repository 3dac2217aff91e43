"""A fine-tuned model that loads without textnorm."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from textnorm.finetune.loop import Finetuner


def export(tuner: Finetuner, out: str | Path) -> Path:
    """A model that loads without textnorm: with LoRA, ``out/lora`` (diffusers'
    ``pipe.load_lora_weights(out/'lora')`` reads it); else ``out/pipeline``
    (``from_pretrained``; the synthetic generator also needs ``textnorm.synth``). Under mixed
    precision the frozen text encoder and VAE were cast to half precision and are saved so."""
    out = Path(out)
    if tuner.cfg.untrained_steps == "base":
        import warnings

        warnings.warn(
            "this run sampled with the base model at the untrained DDIM steps (untrained_steps='base'); the exported "
            "model is used at every step by diffusers, so its images differ from the run's evaluations",
            stacklevel=2,
        )
    unet = tuner.accelerator.unwrap_model(tuner.unet)
    if tuner.cfg.lora_rank > 0:
        from diffusers import StableDiffusionPipeline
        from peft.utils import get_peft_model_state_dict

        layers = {k: v.detach().float().cpu() for k, v in get_peft_model_state_dict(unet).items()}
        StableDiffusionPipeline.save_lora_weights(out / "lora", unet_lora_layers=layers)
        return out / "lora"
    tuner.pipe.unet = unet
    tuner.pipe.save_pretrained(out / "pipeline")
    return out / "pipeline"
