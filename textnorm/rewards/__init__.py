"""Registry of reward models: named factories that import heavy libraries only when called.

    from textnorm.rewards import load_reward
    reward = load_reward("clip", device="cuda", dtype=torch.float16)       # hub id default
    reward = load_reward("pickscore", "/models/PickScore_v1", processor="/models/laion-vit-h")
    R = reward.score_matrix(images, prompts)                              # R[i, j] = r(x_i, y_j)

Names: clip (ViT-L/14; pass openai/clip-vit-base-patch32 for the paper's B/32), pickscore,
blip2 (ITM head), blip2_itc (ITC head), imagereward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from textnorm.rewards.base import CrossEncoderReward, DualEncoderReward, RewardModel


def __getattr__(name: str):
    # the base classes import torch: only when asked for, so that textnorm.rewards.calibration and
    # .contrastive (numpy and the standard library) stay light to import
    if name in ("RewardModel", "DualEncoderReward", "CrossEncoderReward"):
        from textnorm.rewards import base

        return getattr(base, name)
    raise AttributeError(f"module 'textnorm.rewards' has no attribute {name!r}")


def _clip(path=None, **kw):
    from textnorm.rewards import clip

    return clip.clip(path or clip.CLIP_L14, **kw)


def _pickscore(path=None, **kw):
    from textnorm.rewards import clip

    return clip.pickscore(path or clip.PICKSCORE, **kw)


def _blip2(path=None, **kw):
    from textnorm.rewards import blip2

    return blip2.blip2(path or blip2.BLIP2_ITM, head="itm", **kw)


def _blip2_itc(path=None, **kw):
    from textnorm.rewards import blip2

    return blip2.blip2(path or blip2.BLIP2_ITM, head="itc", **kw)


def _imagereward(path=None, **kw):
    from textnorm.rewards import imagereward

    return imagereward.imagereward(path or imagereward.IMAGEREWARD, **kw)


REWARDS: dict[str, Callable[..., RewardModel]] = {
    "clip": _clip,
    "pickscore": _pickscore,
    "blip2": _blip2,
    "blip2_itc": _blip2_itc,
    "imagereward": _imagereward,
}


def register(name: str, factory: Callable[..., RewardModel]) -> None:
    """Add a reward factory ``factory(path=None, **kwargs) -> RewardModel`` under ``name``."""
    REWARDS[name] = factory


def load_reward(name: str, path: str | None = None, **kwargs) -> RewardModel:
    """Build the reward ``name`` from a hub id or local folder ``path`` (default: the released
    model). kwargs: device, dtype, batch_size, and model-specific options."""
    if name not in REWARDS:
        raise KeyError(f"unknown reward {name!r}; registered rewards: {', '.join(sorted(REWARDS))}")
    return REWARDS[name](path, **kwargs)


__all__ = ["REWARDS", "RewardModel", "DualEncoderReward", "CrossEncoderReward", "load_reward", "register"]
