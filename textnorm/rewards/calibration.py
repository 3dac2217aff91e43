"""TextNorm: confidence calibration of a reward against semantically contrastive prompts.

For an image x, a prompt y and its contrastive prompts C(y) = {c_1, ..., c_K}, a reward model
gives raw scores r(x, y) and r(x, c_k). TextNorm replaces r(x, y) by the probability of y
among {y} and C(y):

    p(y | x) = exp(r(x, y) / T) / ( exp(r(x, y) / T) + sum_k exp(r(x, c_k) / T) ),

with a temperature T > 0. Because the softmax is shift-invariant, any image-only term of the raw
reward (r(x, y) = a(x) + b(x, y)) cancels: p(y | x) depends only on how much better y fits x than
its contrasts do. With all rewards equal, p = 1 / (1 + K).

The authors' variant rescales first: per image, the rewards over {y} and C(y) are min-max
normalised to [0, 1] and multiplied by a scale c before the softmax,

    r~(x, .) = c (r(x, .) - min) / (max - min)        (r~ = 0 when max = min),
    p_c(y | x) = softmax(r~(x, y), r~(x, c_1), ..., r~(x, c_K))_0,

which is invariant to shifting *and* positively rescaling an image's rewards.

Ensembles of M reward models m = 1..M with calibrated rewards p_m(y | x):

    mean ensemble:                     p_mean(y | x) = (1/M) sum_m p_m(y | x)
    uncertainty-regularized ensemble:  p_ur(y | x)   = p_mean(y | x) - lambda Var_m p_m(y | x),

where Var is the population variance across models (a reward the models disagree on is
penalised as uncertain).

All functions take plain arrays; the last axis of ``contrast`` indexes C(y).
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp


def _stack(reward: np.ndarray, contrast: np.ndarray) -> np.ndarray:
    r = np.asarray(reward, dtype=float)
    c = np.asarray(contrast, dtype=float)
    if c.ndim == 0 or c.shape[:-1] != r.shape:
        raise ValueError(f"contrast must have shape reward.shape + (K,), got {c.shape} for reward {r.shape}")
    if c.shape[-1] == 0:
        raise ValueError("TextNorm needs at least one contrastive prompt")
    return np.concatenate([r[..., None], c], axis=-1)


def textnorm(reward, contrast, temperature: float = 1.0) -> np.ndarray:
    """Softmax probability of the prompt among itself and its contrastive prompts."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = _stack(reward, contrast) / temperature
    return np.exp(z[..., 0] - logsumexp(z, axis=-1))


def contrast_term(contrast, temperature: float = 1.0) -> np.ndarray:
    """The part of TextNorm's log-odds that depends on the contrastive prompts alone:
    log p / (1 - p) = r(x, y) / T - log sum_k exp(r(x, c_k) / T), and this returns the second
    term. As a score of its own it shows what normalising by the contrastive prompts adds (AUROC
    above 0.5) or removes (below 0.5)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    c = np.asarray(contrast, dtype=float)
    if c.ndim == 0 or c.shape[-1] == 0:
        raise ValueError("the contrast term needs at least one contrastive prompt (last axis)")
    return -logsumexp(c / temperature, axis=-1)


def textnorm_minmax(reward, contrast, scale: float = 1.0) -> np.ndarray:
    """The authors' variant: per-image min-max rescaling times ``scale``, then softmax."""
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    z = _stack(reward, contrast)
    lo = z.min(axis=-1, keepdims=True)
    span = z.max(axis=-1, keepdims=True) - lo
    z = np.divide(z - lo, span, out=np.zeros_like(z), where=span > 0) * scale
    return np.exp(z[..., 0] - logsumexp(z, axis=-1))


def mean_ensemble(probs) -> np.ndarray:
    """Mean over the first axis (models) of calibrated rewards."""
    p = np.asarray(probs, dtype=float)
    if p.ndim == 0 or p.shape[0] == 0:
        raise ValueError("an ensemble needs at least one model (first axis)")
    return p.mean(axis=0)


def ur_ensemble(probs, lam: float = 1.0) -> np.ndarray:
    """Uncertainty-regularized ensemble: mean minus ``lam`` times the variance across models."""
    if lam < 0:
        raise ValueError(f"lambda must be >= 0, got {lam}")
    p = np.asarray(probs, dtype=float)
    return mean_ensemble(p) - lam * p.var(axis=0)
