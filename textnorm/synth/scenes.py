"""Scenes of coloured shapes and their captions.

A caption is a list of groups (count, colour, shape) with distinct (colour, shape) pairs, 1-4
objects in all. Two caption styles mirror TIA2's subsets:

- counting:    one group, count 1-4            "three yellow triangles"
- composition: two groups, counts 1-2 each     "a blue square and two red circles"

An image of S x S pixels (16 by default) is drawn on a dark background: every object is a filled
circle, square or upward triangle of diameter ``size`` px (4-5 by default) at a random position,
objects at least one pixel apart. Shapes are rasterised by 4x supersampling (a pixel is set when
at least half of its sub-pixels are inside), so renders are crisp and exact.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 80, 230),
    "yellow": (230, 210, 40),
}
BACKGROUND = (20, 20, 20)
NUMBER_WORDS = ("zero", "a", "two", "three", "four")


@dataclass(frozen=True)
class Group:
    count: int
    color: str
    shape: str


Caption = tuple[Group, ...]


def caption_text(caption: Caption) -> str:
    parts = []
    for g in caption:
        noun = g.shape + ("s" if g.count > 1 else "")
        parts.append(f"{NUMBER_WORDS[g.count]} {g.color} {noun}")
    return " and ".join(parts)


def parse_caption(text: str) -> Caption:
    groups = []
    for part in text.split(" and "):
        words = part.split()
        if len(words) != 3 or words[0] not in NUMBER_WORDS[1:] or words[1] not in COLORS:
            raise ValueError(f"not a caption of this world: {text!r}")
        shape = words[2][:-1] if words[2].endswith("s") else words[2]
        if shape not in SHAPES:
            raise ValueError(f"unknown shape in {text!r}")
        groups.append(Group(NUMBER_WORDS.index(words[0]), words[1], shape))
    return tuple(groups)


def all_captions(subset: str) -> list[Caption]:
    """Every caption of a subset, in a fixed order."""
    kinds = [(c, s) for c in COLORS for s in SHAPES]
    if subset == "counting":
        return [(Group(n, c, s),) for n in range(1, 5) for c, s in kinds]
    if subset == "composition":
        return [
            (Group(n1, *a), Group(n2, *b))
            for a, b in itertools.permutations(kinds, 2)
            for n1 in (1, 2)
            for n2 in (1, 2)
        ]
    raise ValueError(f"subset must be 'counting' or 'composition', got {subset!r}")


def split_captions(subset: str, held_out: float = 0.2, seed: int = 0) -> tuple[list[str], list[str]]:
    """(train, held-out) caption texts, a seeded random split."""
    texts = [caption_text(c) for c in all_captions(subset)]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))
    n_held = int(round(held_out * len(texts)))
    held = sorted(texts[i] for i in order[:n_held])
    train = sorted(texts[i] for i in order[n_held:])
    return train, held


def shape_mask(shape: str, cx: float, cy: float, size: int, res: int, ss: int = 4) -> np.ndarray:
    """Boolean mask of one shape on a res x res grid, by ss x ss supersampling."""
    grid = (np.arange(res * ss) + 0.5) / ss
    x, y = np.meshgrid(grid, grid)
    r = size / 2
    if shape == "circle":
        inside = (x - cx) ** 2 + (y - cy) ** 2 <= r**2
    elif shape == "square":
        inside = (np.abs(x - cx) <= r) & (np.abs(y - cy) <= r)
    elif shape == "triangle":  # apex up, base at the bottom
        t = (y - (cy - r)) / (2 * r)  # 0 at the apex, 1 at the base
        inside = (t >= 0) & (t <= 1) & (np.abs(x - cx) <= r * t)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return inside.reshape(res, ss, res, ss).mean(axis=(1, 3)) >= 0.5


def render(objects: list[tuple[str, str, float, float, int]], res: int = 16) -> np.ndarray:
    """Draw (shape, colour, cx, cy, size) objects; returns uint8 (res, res, 3)."""
    img = np.empty((res, res, 3), np.uint8)
    img[:] = BACKGROUND
    for shape, color, cx, cy, size in objects:
        img[shape_mask(shape, cx, cy, size, res)] = COLORS[color]
    return img


def sample_layout(
    caption: Caption, rng: np.random.Generator, res: int = 16, sizes: tuple[int, ...] = (4, 5), tries: int = 200
) -> list[tuple[str, str, float, float, int]]:
    """Random non-touching positions for the objects of a caption (integer-aligned boxes)."""
    objs = [(g.shape, g.color) for g in caption for _ in range(g.count)]
    for _ in range(tries):
        placed, occupied = [], np.zeros((res, res), bool)
        for shape, color in objs:
            size = int(rng.choice(sizes))
            for _ in range(50):
                x0, y0 = rng.integers(0, res - size + 1, size=2)
                box = occupied[max(0, y0 - 1) : y0 + size + 1, max(0, x0 - 1) : x0 + size + 1]
                if not box.any():
                    occupied[y0 : y0 + size, x0 : x0 + size] = True
                    placed.append((shape, color, x0 + size / 2, y0 + size / 2, size))
                    break
            else:
                break
        if len(placed) == len(objs):
            return placed
    raise RuntimeError(f"could not place {len(objs)} objects on {res}x{res} pixels")


def draw(caption: Caption | str, rng: np.random.Generator, res: int = 16, sizes=(4, 5)) -> np.ndarray:
    """A random clean image that matches the caption."""
    caption = parse_caption(caption) if isinstance(caption, str) else caption
    return render(sample_layout(caption, rng, res, sizes), res)


def draw_batch(captions: list[str], seed: int, res: int = 16, noise: float = 0.0, sizes=(4, 5)) -> np.ndarray:
    """uint8 images (n, res, res, 3) for the captions, optionally with Gaussian noise of std
    ``noise`` (in units of the [0, 1] intensity range)."""
    rng = np.random.default_rng(seed)
    imgs = np.stack([draw(c, rng, res, sizes) for c in captions])
    if noise > 0:
        imgs = np.clip(imgs / 255.0 + rng.normal(0, noise, imgs.shape), 0, 1)
        imgs = np.round(imgs * 255).astype(np.uint8)
    return imgs


def contrastive_captions(caption: Caption | str) -> list[str]:
    """Contrastive captions C(y) in the spirit of TIA2's rule-based sets.

    counting ("three red circles"): the same object with every other count 1-4.
    composition ("a red circle and two blue squares"): each group alone, the other count
    combinations (1-2 each), the two groups' colours swapped and their shapes swapped.
    """
    caption = parse_caption(caption) if isinstance(caption, str) else caption
    me = caption_text(caption)
    out: list[str] = []
    if len(caption) == 1:
        g = caption[0]
        out = [caption_text((Group(n, g.color, g.shape),)) for n in range(1, 5) if n != g.count]
    else:
        a, b = caption
        out = [caption_text((a,)), caption_text((b,))]
        out += [
            caption_text((Group(na, a.color, a.shape), Group(nb, b.color, b.shape)))
            for na in (1, 2)
            for nb in (1, 2)
            if (na, nb) != (a.count, b.count)
        ]
        for a2, b2 in (
            (Group(a.count, b.color, a.shape), Group(b.count, a.color, b.shape)),
            (Group(a.count, a.color, b.shape), Group(b.count, b.color, a.shape)),
        ):
            if (a2.color, a2.shape) != (b2.color, b2.shape):
                out.append(caption_text((a2, b2)))
    return [c for c in dict.fromkeys(out) if c != me]
