"""CLIP-family dual-encoder rewards: CLIP and PickScore.

r(x, y) = s * cos(f(x), g(y)) with f, g the projected image and text embeddings of a
transformers ``CLIPModel`` and s = exp(logit_scale) (100 for the released models).
PickScore (Kirstain et al., 2023) is a CLIP ViT-H/14 fine-tuned on human preferences and scored
the same way, with the processor of the LAION ViT-H/14 model it was trained from.
"""

from __future__ import annotations

import torch

from textnorm.rewards.base import DualEncoderReward

CLIP_L14 = "openai/clip-vit-large-patch14"
CLIP_B32 = "openai/clip-vit-base-patch32"  # the variant used in the paper's experiments
PICKSCORE = "yuvalkirstain/PickScore_v1"
PICKSCORE_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"


def _embedding(out) -> torch.Tensor:
    # transformers 5 returns an output object with the projected embedding in pooler_output;
    # older versions returned the tensor itself.
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class CLIPReward(DualEncoderReward):
    name = "clip"

    def __init__(
        self,
        model: str = CLIP_L14,
        processor: str | None = None,
        *,
        device="cpu",
        dtype=torch.float32,
        batch_size: int = 32,
        name: str | None = None,
    ):
        super().__init__(device=device, dtype=dtype, batch_size=batch_size)
        from transformers import CLIPModel, CLIPProcessor

        self.model = CLIPModel.from_pretrained(model, dtype=dtype).to(self.device).eval()
        self.processor = CLIPProcessor.from_pretrained(processor or model)
        self.name = name or self.name
        self._scale = float(self.model.logit_scale.detach().exp())

    @property
    def logit_scale(self) -> float:
        return self._scale

    def _encode_images(self, images):
        pix = self.processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
        emb = _embedding(self.model.get_image_features(pixel_values=pix.to(self.device, self.dtype)))
        return torch.nn.functional.normalize(emb.float(), dim=-1)

    def _encode_texts(self, prompts):
        tok = self.processor.tokenizer(
            prompts,
            padding=True,
            truncation=True,
            max_length=self.model.config.text_config.max_position_embeddings,
            return_tensors="pt",
        ).to(self.device)
        emb = _embedding(self.model.get_text_features(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]))
        return torch.nn.functional.normalize(emb.float(), dim=-1)


def clip(path: str = CLIP_L14, **kwargs) -> CLIPReward:
    return CLIPReward(path, **kwargs)


def pickscore(path: str = PICKSCORE, processor: str | None = PICKSCORE_PROCESSOR, **kwargs) -> CLIPReward:
    return CLIPReward(path, processor=processor, name="pickscore", **kwargs)
