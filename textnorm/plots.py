"""Figures of the book: one colour per reward across every chapter, readable defaults, and the
image grid whose frames show the gold judge's verdict.

A reward keeps its colour wherever it appears: the raw reward models and proxies take fixed
colours, and a calibrated variant (``TextNorm(contrastive)``, ``TextNorm-minmax(preference) [CV]``,
...) takes a darker shade of its base reward's colour, so a raw proxy and its TextNorm version
read as a pair. Names the table does not know get a colour from a hash of the name (stable
across runs and chapters).
"""

from __future__ import annotations

import colorsys
import hashlib
import re
import textwrap
from collections.abc import Iterable, Sequence

import matplotlib as mpl
import numpy as np

# one palette (Okabe-Ito, readable by colour-blind readers) for the base rewards
BASE_COLORS: dict[str, str] = {
    "gold": "#000000",
    "contrastive": "#0072B2",
    "preference": "#D55E00",
    "TextNorm": "#009E73",
    "CLIP": "#56B4E9",
    "BLIP-2": "#E69F00",
    "ImageReward": "#CC79A7",
    "PickScore": "#F0E442",
    "mean ensemble": "#009E73",  # TIA2's published TextNorm is the paper's ensemble: the same colour
    "UR ensemble": "#8C564B",
    "raw ensemble": "#999933",
    "base": "#7F7F7F",
}
VERDICT_COLORS = {True: "#009E73", False: "#D55E00"}  # the judge's frame: aligned / not aligned
FONT_SIZE = 10


def base_reward(name: str) -> str:
    """The reward a name is built on: ``TextNorm(contrastive) [CV]`` -> ``contrastive``,
    ``TextNorm(mean)`` -> ``mean ensemble``; other names lose only a trailing ``[...]`` label."""
    inner = re.match(r"^TextNorm(?:-minmax)?\(([^()]+)\)", name)
    if inner:
        base = inner.group(1).split(",")[0].strip()
        return {"mean": "mean ensemble", "UR": "UR ensemble"}.get(base, base)
    return re.sub(r"\s*\[.*\]$", "", name).strip()


def _shade(hex_color: str, factor: float) -> str:
    r, g, b = mpl.colors.to_rgb(hex_color)
    h, light, s = colorsys.rgb_to_hls(r, g, b)
    return mpl.colors.to_hex(colorsys.hls_to_rgb(h, max(0.0, min(1.0, light * factor)), s))


def color_of(name: str) -> str:
    """The colour of a reward (or system) name, the same in every chapter: a TextNorm variant is a
    darker shade of its base reward (the authors' min-max variant a lighter one), a bracketed label
    such as ``[CV]`` keeps its reward's colour. Unknown names get one of tab20's colours from a hash
    of the name (stable, but two unknown names can share one)."""
    if name in BASE_COLORS:
        return BASE_COLORS[name]
    base = base_reward(name)
    if base in BASE_COLORS:
        if name.startswith("TextNorm-minmax"):
            return _shade(BASE_COLORS[base], 1.35)
        if name.startswith("TextNorm"):
            return _shade(BASE_COLORS[base], 0.6)
        return BASE_COLORS[base]
    digest = int(hashlib.sha256(name.encode()).hexdigest(), 16)
    return mpl.colors.to_hex(mpl.colormaps["tab20"](digest % 20))


def palette(names: Iterable[str]) -> dict[str, str]:
    """{name: colour} for seaborn's ``palette=``."""
    return {n: color_of(n) for n in dict.fromkeys(names)}


def style() -> None:
    """Matplotlib defaults for the book: fonts of at least 9 pt, light grid, no top/right spines."""
    mpl.rcParams.update(
        {
            "font.size": FONT_SIZE,
            "axes.titlesize": FONT_SIZE + 1,
            "axes.labelsize": FONT_SIZE,
            "xtick.labelsize": 9,
            "ytick.labelsize": 9,
            "legend.fontsize": 9,
            "legend.title_fontsize": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "figure.dpi": 100,
            "savefig.bbox": "tight",
        }
    )


def legend_outside(ax, title: str | None = None) -> None:
    """The legend to the right of the axes, never over the data."""
    ax.legend(title=title, bbox_to_anchor=(1.02, 1), loc="upper left", borderaxespad=0)


def image_grid(
    images: np.ndarray,
    verdicts: Sequence[bool],
    cols: int,
    row_labels: Sequence[str] = (),
    col_labels: Sequence[str] = (),
    cell: float = 1.1,
):
    """Images in rows of ``cols``, each framed by the judge's verdict (green: matches its caption,
    orange: does not); optional labels left of each row and above each column. Returns the figure."""
    import matplotlib.pyplot as plt

    images = np.asarray(images)
    if len(images) != len(verdicts):
        raise ValueError(f"{len(images)} images but {len(verdicts)} verdicts")
    if len(images) % cols:
        raise ValueError(f"{len(images)} images do not fill rows of {cols}")
    rows = len(images) // cols
    fig, axes = plt.subplots(
        rows, cols, figsize=(cols * cell + (1.8 if row_labels else 0), rows * cell + 0.4), squeeze=False
    )
    for k, ax in enumerate(axes.flat):
        ax.imshow(images[k], interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        ax.grid(False)
        for spine in ax.spines.values():
            spine.set_visible(True)
            spine.set_color(VERDICT_COLORS[bool(verdicts[k])])
            spine.set_linewidth(2.5)
        r, c = divmod(k, cols)
        if row_labels and c == 0:
            ax.set_ylabel(row_labels[r], rotation=0, ha="right", va="center", fontsize=9)
        if col_labels and r == 0:
            # wrapped to the cell's width (about 12 characters per inch at 9 pt), so titles never overlap
            width = max(8, int(cell * 12))
            ax.set_title("\n".join(textwrap.fill(part, width) for part in col_labels[c].split("\n")), fontsize=9)
    fig.tight_layout()
    return fig
