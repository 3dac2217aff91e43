"""The reward interface shared by every model.

A reward model maps an (image, prompt) pair to a real number r(x, y). Two calls cover all uses:

- :meth:`RewardModel.score_matrix` ``(images, prompts) -> R`` with R[i, j] = r(x_i, y_j): one
  image against many prompts (TextNorm), or many images against one prompt;
- :meth:`RewardModel.score` ``(images, prompts) -> r`` with r[i] = r(x_i, y_i): a batch of pairs.

Dual encoders (CLIP, PickScore, BLIP-2 ITC, HPSv2) embed images and texts separately,
r(x, y) = s * <f(x), g(y)> / (|f(x)| |g(y)|); each image is encoded once per call and each unique
prompt once per model (text embeddings are cached), so scoring an image against 1 + K prompts
costs one image pass plus K cached text look-ups. Cross encoders (BLIP-2 ITM, ImageReward) must
run their text tower once per pair, but still encode each image once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from textnorm.rewards import scoring


def as_rgb(image: Image.Image | np.ndarray) -> Image.Image:
    """Accept PIL images or HxWx3 uint8 arrays."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    return image.convert("RGB")


def autocast_context(device: torch.device, dtype: torch.dtype):
    """Mixed precision on accelerators; a no-op on CPU or with float32."""
    if device.type != "cpu" and dtype in (torch.float16, torch.bfloat16):
        return torch.autocast(device_type=device.type, dtype=dtype)
    return torch.autocast(device_type=device.type, enabled=False)


class RewardModel(ABC):
    """Base class: batching, progress bars and the pairwise call."""

    name: str = "reward"

    def __init__(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, batch_size: int = 32):
        self.device = torch.device(device)
        self.dtype = dtype
        self.batch_size = batch_size

    @abstractmethod
    def score_matrix(self, images: Sequence, prompts: Sequence[str], progress: bool = False) -> np.ndarray:
        """R[i, j] = r(images[i], prompts[j]) as a float64 array of shape (n_images, n_prompts)."""

    def score(self, images: Sequence, prompts: Sequence[str], progress: bool = False) -> np.ndarray:
        """r[i] = r(images[i], prompts[i]). Images sharing a prompt are scored together."""
        return scoring.raw(scoring.prompt_matrices(self, images, prompts, progress=progress))

    def _batches(self, n: int, progress: bool, desc: str):
        starts = range(0, n, self.batch_size)
        return tqdm(starts, disable=not progress, desc=desc, total=len(starts))


class DualEncoderReward(RewardModel):
    """r(x, y) = scale * cos(f(x), g(y)), with cached text embeddings."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._text_cache: dict[str, torch.Tensor] = {}

    @abstractmethod
    def _encode_images(self, images: list[Image.Image]) -> torch.Tensor:
        """Unit-normalised image embeddings, (b, D) (or (b, Q, D) for multi-query models)."""

    @abstractmethod
    def _encode_texts(self, prompts: list[str]) -> torch.Tensor:
        """Unit-normalised text embeddings, (t, D)."""

    @property
    def logit_scale(self) -> float:
        return 1.0

    def _similarity(self, img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
        return img @ txt.T

    def text_embeddings(self, prompts: Sequence[str]) -> torch.Tensor:
        missing = [p for p in dict.fromkeys(prompts) if p not in self._text_cache]
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            with torch.inference_mode(), autocast_context(self.device, self.dtype):
                emb = self._encode_texts(chunk).float()
            self._text_cache.update(zip(chunk, emb))
        return torch.stack([self._text_cache[p] for p in prompts])

    def clear_cache(self) -> None:
        self._text_cache.clear()

    def score_matrix(self, images, prompts, progress=False):
        if len(prompts) == 0:
            raise ValueError("score_matrix needs at least one prompt")
        txt = self.text_embeddings(list(prompts))
        out = []
        for start in self._batches(len(images), progress, f"{self.name} images"):
            batch = [as_rgb(im) for im in images[start : start + self.batch_size]]
            with torch.inference_mode(), autocast_context(self.device, self.dtype):
                img = self._encode_images(batch).float()
            out.append(self.logit_scale * self._similarity(img, txt))
        return torch.cat(out).double().cpu().numpy() if out else np.zeros((0, len(prompts)))


class CrossEncoderReward(RewardModel):
    """r(x, y) from a text tower that attends to cached image features, one pass per pair."""

    @abstractmethod
    def _image_features(self, images: list[Image.Image]) -> torch.Tensor:
        """Per-image features the text tower attends to, (b, L, D)."""

    @abstractmethod
    def _pair_scores(self, feats: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """Scores of pairs (feats[i], prompts[i]), shape (b,)."""

    def score_matrix(self, images, prompts, progress=False):
        prompts = list(prompts)
        if not prompts:
            raise ValueError("score_matrix needs at least one prompt")
        out = np.empty((len(images), len(prompts)))
        per_batch = max(1, self.batch_size // len(prompts))  # pairs per forward ~ batch_size
        starts = range(0, len(images), per_batch)
        for start in tqdm(starts, disable=not progress, desc=f"{self.name} images"):
            batch = [as_rgb(im) for im in images[start : start + per_batch]]
            with torch.inference_mode(), autocast_context(self.device, self.dtype):
                feats = self._image_features(batch)
                b = feats.shape[0]
                pair_feats = feats.repeat_interleave(len(prompts), dim=0)
                pair_prompts = prompts * b
                scores = self._pair_scores(pair_feats, pair_prompts).float()
            out[start : start + b] = scores.view(b, len(prompts)).double().cpu().numpy()
        return out
