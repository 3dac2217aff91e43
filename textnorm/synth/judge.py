"""The gold judge: reads pixels and says whether an image matches a caption.

1. Every pixel takes the nearest colour (Euclidean in RGB) among the palette and the background;
   a pixel none of whose 4 neighbours shares its colour takes the most common colour of its 8
   neighbours instead (removes isolated noise pixels and fills one-pixel holes).
2. For each colour, 4-connected components of at least ``min_area`` (5) pixels are objects.
3. Each object's shape is the template (circle, square or triangle, drawn by the renderer at the
   sizes it uses) with the highest intersection over union with the object's mask, over all
   integer offsets; an object whose best IoU is below ``min_iou`` (merged or malformed blobs) is
   ``"unknown"``. Template matching is robust to a stray pixel that would change a bounding box.
4. The image matches the caption when the multiset of (colour, shape) objects equals the
   caption's exactly: right counts, right attributes, nothing extra.

Two image measures for diagnostics: the foreground mask (saturated pixels) and the foreground
pixels per object found.
"""

from __future__ import annotations

from collections import Counter
from functools import cache

import numpy as np
from scipy import ndimage, signal

from textnorm.synth.scenes import BACKGROUND, COLORS, SHAPES, Caption, parse_caption, shape_mask

_PALETTE = np.array([BACKGROUND, *COLORS.values()], dtype=float)
_NAMES = ["background", *COLORS]


def classify_pixels(img: np.ndarray, clean: bool = True) -> np.ndarray:
    """Index into (background, *colours) of the nearest palette colour, per pixel."""
    d = ((img[..., None, :].astype(float) - _PALETTE) ** 2).sum(-1)
    labels = d.argmin(-1)
    return _drop_isolated(labels) if clean else labels


def _drop_isolated(labels: np.ndarray) -> np.ndarray:
    h, w = labels.shape
    pad = np.pad(labels, 1, mode="edge")  # borders: the image edge continues
    shifts4 = [pad[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))]
    isolated = ~np.any([s == labels for s in shifts4], axis=0)
    if not isolated.any():
        return labels
    shifts8 = np.stack(
        [pad[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    )
    votes = np.stack([(shifts8 == k).sum(0) for k in range(len(_PALETTE))])
    out = labels.copy()
    out[isolated] = votes.argmax(0)[isolated]
    return out


@cache
def _templates(sizes: tuple[int, ...] = (4, 5, 6)) -> list[tuple[str, np.ndarray]]:
    out = []
    for size in sizes:
        for shape in SHAPES:
            m = shape_mask(shape, size / 2, size / 2, size, size)
            out.append((shape, m[np.ix_(m.any(1), m.any(0))]))
    return out


def shape_of(mask: np.ndarray, min_iou: float = 0.5) -> str:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    m = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = m.shape
    area = m.sum()
    best, best_shape = 0.0, "unknown"
    for shape, t in _templates():
        # overlap at every integer offset at once
        inter = signal.correlate2d(m.astype(float), t.astype(float), mode="full")
        iou = (inter / (area + t.sum() - inter)).max()
        if iou > best:
            best, best_shape = iou, shape
    return best_shape if best >= min_iou else "unknown"


def objects(img: np.ndarray, min_area: int = 5) -> Counter:
    """Counter of (colour, shape) objects found in an image."""
    labels = classify_pixels(img)
    found: Counter = Counter()
    for ci, color in enumerate(_NAMES[1:], start=1):
        comp, n = ndimage.label(labels == ci)
        for k in range(1, n + 1):
            mask = comp == k
            if mask.sum() >= min_area:
                found[(color, shape_of(mask))] += 1
    return found


def caption_objects(caption: Caption | str) -> Counter:
    caption = parse_caption(caption) if isinstance(caption, str) else caption
    return Counter({(g.color, g.shape): g.count for g in caption})


def matches(img: np.ndarray, caption: Caption | str) -> bool:
    return objects(img) == caption_objects(caption)


def foreground(images: np.ndarray, threshold: int = 40) -> np.ndarray:
    """Foreground mask of uint8 images (..., H, W, 3): pixels whose channels differ by more than
    ``threshold`` (the palette's colours are saturated, the background grey)."""
    img = np.asarray(images)
    return (img.max(-1).astype(int) - img.min(-1).astype(int)) > threshold


def size_per_object(images: np.ndarray) -> np.ndarray:
    """Per image, foreground pixels per object the judge finds (all foreground when it finds none):
    an image-only property that, unlike total foreground, does not grow with the object count."""
    fg = foreground(images).sum(axis=(-2, -1)).astype(float)
    counts = np.array([max(1, sum(objects(im).values())) for im in np.asarray(images)], dtype=float)
    return fg / counts


def judge_batch(images: np.ndarray, captions: list[str]) -> np.ndarray:
    """Boolean verdicts for images[i] against captions[i]."""
    if len(images) != len(captions):
        raise ValueError(f"got {len(images)} images and {len(captions)} captions")
    return np.array([matches(im, c) for im, c in zip(images, captions)], dtype=bool)
