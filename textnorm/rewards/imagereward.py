"""ImageReward (Xu et al., 2023) rebuilt on transformers components.

The released scorer (``THUDM/ImageReward``: ``ImageReward.pt`` + ``med_config.json``) is BLIP:
a ViT-L/16 image encoder, a BERT text encoder whose layers cross-attend to the image tokens, and
an MLP head on the text [CLS] state:

    h = BERT_xattn(tokens(y), ViT(x))[:, 0]                   (text [CLS] after cross-attention)
    r(x, y) = (MLP(h) - mu) / sigma,   mu = 0.16717362830052426, sigma = 1.0333394966054072
    MLP = Linear(H,1024) Drop Linear(1024,128) Drop Linear(128,64) Drop Linear(64,16) Linear(16,1)

(no non-linearities, as released). The ``image-reward`` package needs torchvision and breaks with
transformers 5, so we load the same checkpoint into ``BlipVisionModel`` + ``BlipTextModel``.

Weight-name conversion (original -> transformers), ``{i}`` a layer index:

    blip.visual_encoder.cls_token                -> visual_encoder.embeddings.class_embedding
    blip.visual_encoder.pos_embed                -> visual_encoder.embeddings.position_embedding
    blip.visual_encoder.patch_embed.proj.*       -> visual_encoder.embeddings.patch_embedding.*
    blip.visual_encoder.blocks.{i}.norm1.*       -> visual_encoder.encoder.layers.{i}.layer_norm1.*
    blip.visual_encoder.blocks.{i}.attn.qkv.*    -> visual_encoder.encoder.layers.{i}.self_attn.qkv.*
    blip.visual_encoder.blocks.{i}.attn.proj.*   -> visual_encoder.encoder.layers.{i}.self_attn.projection.*
    blip.visual_encoder.blocks.{i}.norm2.*       -> visual_encoder.encoder.layers.{i}.layer_norm2.*
    blip.visual_encoder.blocks.{i}.mlp.fc{1,2}.* -> visual_encoder.encoder.layers.{i}.mlp.fc{1,2}.*
    blip.visual_encoder.norm.*                   -> visual_encoder.post_layernorm.*
    blip.text_encoder.<rest>                     -> text_encoder.<rest>   (BERT names are identical)
    mlp.layers.{0,2,4,6,7}.*                     -> mlp.{0,2,4,6,7}.*

Keys of BLIP parts the scorer does not use (projection heads, position-id buffers, poolers) are
dropped; any other unknown key is an error, and every parameter of the rebuilt model must be
filled. The vision architecture is read off the checkpoint's tensor shapes (heads = width / 64,
the ViT convention); the text architecture from ``med_config.json``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from textnorm.rewards.base import CrossEncoderReward

IMAGEREWARD = "THUDM/ImageReward"
CHECKPOINT = "ImageReward.pt"
MED_CONFIG = "med_config.json"
MEAN, STD = 0.16717362830052426, 1.0333394966054072
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TEXT_MAX_LENGTH = 35
_UNUSED = re.compile(
    r"^blip\.(vision_proj|text_proj|itm_head|temp|text_encoder\.pooler|"
    r"text_encoder\.embeddings\.position_ids)"
)
_VISION_RULES = [
    (r"cls_token$", "embeddings.class_embedding"),
    (r"pos_embed$", "embeddings.position_embedding"),
    (r"patch_embed\.proj\.(weight|bias)$", r"embeddings.patch_embedding.\1"),
    (r"blocks\.(\d+)\.norm1\.", r"encoder.layers.\1.layer_norm1."),
    (r"blocks\.(\d+)\.norm2\.", r"encoder.layers.\1.layer_norm2."),
    (r"blocks\.(\d+)\.attn\.qkv\.", r"encoder.layers.\1.self_attn.qkv."),
    (r"blocks\.(\d+)\.attn\.proj\.", r"encoder.layers.\1.self_attn.projection."),
    (r"blocks\.(\d+)\.mlp\.", r"encoder.layers.\1.mlp."),
    (r"^norm\.", "post_layernorm."),
]


def convert_state_dict(original: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map ImageReward.pt key names onto :class:`ImageRewardModel` (see the module docstring)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in original.items():
        if _UNUSED.match(key):
            continue
        if key.startswith("blip.visual_encoder."):
            rest = key[len("blip.visual_encoder.") :]
            for pattern, repl in _VISION_RULES:
                new, n = re.subn(pattern, repl, rest)
                if n:
                    out["visual_encoder." + new] = value
                    break
            else:
                raise KeyError(f"unknown ImageReward vision weight {key!r}")
        elif key.startswith("blip.text_encoder."):
            out["text_encoder." + key[len("blip.text_encoder.") :]] = value
        elif key.startswith("mlp.layers."):
            out["mlp." + key[len("mlp.layers.") :]] = value
        else:
            raise KeyError(f"unknown ImageReward weight {key!r}")
    return out


def vision_config_from_checkpoint(original: dict[str, torch.Tensor]):
    """BLIP ViT architecture from tensor shapes: width, depth, patch size, image size, MLP size."""
    from transformers import BlipVisionConfig

    p = "blip.visual_encoder."
    width = original[p + "cls_token"].shape[-1]
    depth = 1 + max(int(m.group(1)) for k in original if (m := re.match(re.escape(p) + r"blocks\.(\d+)\.", k)))
    patch = original[p + "patch_embed.proj.weight"].shape[-1]
    grid = math.isqrt(original[p + "pos_embed"].shape[1] - 1)
    return BlipVisionConfig(
        hidden_size=width,
        num_hidden_layers=depth,
        num_attention_heads=max(1, width // 64),
        intermediate_size=original[p + "blocks.0.mlp.fc1.weight"].shape[0],
        patch_size=patch,
        image_size=grid * patch,
        layer_norm_eps=1e-6,
        hidden_act="gelu",
    )


def text_config_from_med(med: dict):
    from transformers import BlipTextConfig

    return BlipTextConfig(
        vocab_size=med["vocab_size"],
        hidden_size=med["hidden_size"],
        encoder_hidden_size=med["encoder_width"],
        intermediate_size=med["intermediate_size"],
        num_hidden_layers=med["num_hidden_layers"],
        num_attention_heads=med["num_attention_heads"],
        max_position_embeddings=med["max_position_embeddings"],
        layer_norm_eps=med.get("layer_norm_eps", 1e-12),
        hidden_act=med.get("hidden_act", "gelu"),
        pad_token_id=med.get("pad_token_id", 0),
        bos_token_id=None,
        sep_token_id=None,
        eos_token_id=None,
    )


class ImageRewardModel(nn.Module):
    def __init__(self, vision_config, text_config):
        super().__init__()
        from transformers import BlipTextModel, BlipVisionModel

        self.visual_encoder = BlipVisionModel(vision_config)
        self.text_encoder = BlipTextModel(text_config, add_pooling_layer=False)
        h = text_config.hidden_size
        self.mlp = nn.Sequential(
            nn.Linear(h, 1024),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.visual_encoder(pixel_values=pixel_values).last_hidden_state

    def reward(self, image_embeds, input_ids, attention_mask) -> torch.Tensor:
        enc_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        h = self.text_encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=enc_mask,
        ).last_hidden_state[:, 0, :]
        return (self.mlp(h.float()).squeeze(-1) - MEAN) / STD


def _resolve(path: str, filename: str) -> Path:
    local = Path(path)
    if local.is_dir():
        if not (local / filename).is_file():
            raise FileNotFoundError(f"{filename} not found in {local}")
        return local / filename
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(path, filename))


def load_tokenizer(path: str, fallback: str = "bert-base-uncased"):
    """BERT tokenizer with BLIP's extra tokens ([DEC] as bos, [ENC]); from ``path`` when it holds
    a vocab.txt, else ``fallback`` (what the original code loads)."""
    from transformers import BertTokenizer

    source = path if (Path(path) / "vocab.txt").is_file() else fallback
    tok = BertTokenizer.from_pretrained(source)
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tok


def preprocess(images, size: int) -> torch.Tensor:
    """Resize the short side to ``size`` (bicubic), centre-crop, normalise with CLIP statistics."""
    arrays = []
    for im in images:
        w, h = im.size
        s = size / min(w, h)
        im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
        left, top = (im.size[0] - size) // 2, (im.size[1] - size) // 2
        arrays.append(np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0)
    x = (np.stack(arrays) - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()


class ImageReward(CrossEncoderReward):
    name = "imagereward"

    def __init__(
        self,
        path: str = IMAGEREWARD,
        *,
        tokenizer: str | None = None,
        device="cpu",
        dtype=torch.float32,
        batch_size: int = 32,
    ):
        super().__init__(device=device, dtype=dtype, batch_size=batch_size)
        original = torch.load(_resolve(path, CHECKPOINT), map_location="cpu", weights_only=True)
        original = original.get("state_dict", original)
        med = json.loads(_resolve(path, MED_CONFIG).read_text())
        self.model = ImageRewardModel(vision_config_from_checkpoint(original), text_config_from_med(med))
        self.model.load_state_dict(convert_state_dict(original), strict=True)
        self.model.to(self.device, dtype).eval()
        self.tokenizer = load_tokenizer(tokenizer or path)
        self.image_size = self.model.visual_encoder.config.image_size

    def _image_features(self, images):
        return self.model.encode_image(preprocess(images, self.image_size).to(self.device, self.dtype))

    def _pair_scores(self, feats, prompts):
        tok = self.tokenizer(
            prompts, padding="max_length", truncation=True, max_length=TEXT_MAX_LENGTH, return_tensors="pt"
        ).to(self.device)
        return self.model.reward(feats, tok["input_ids"], tok["attention_mask"])


def imagereward(path: str = IMAGEREWARD, **kwargs) -> ImageReward:
    return ImageReward(path, **kwargs)
