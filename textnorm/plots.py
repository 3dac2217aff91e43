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
DPI = 100  # pixels per inch of the book's PNG figures
# PNG text chunk holding a figure's smallest font in pixels at its own size: book/check_pages.py scales it
# by the rendered width to measure the smallest text a reader sees
MIN_FONT_KEY = "textnorm-min-font-px"
COLUMN_INCHES = 7.5  # the book's text column at a 1280 px window is about 750 px: DPI x 7.5 fits it


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
            "figure.dpi": DPI,
            "savefig.bbox": "tight",
        }
    )


def legend_outside(ax, title: str | None = None) -> None:
    """The legend to the right of the axes, never over the data."""
    ax.legend(title=title, bbox_to_anchor=(1.02, 1), loc="upper left", borderaxespad=0)


def legend_above(ax, ncol: int = 2, title: str | None = None) -> None:
    """The legend above the axes in ``ncol`` columns: keeps a figure within the text column where a
    legend to the right would widen it."""
    ax.legend(title=title, loc="lower left", bbox_to_anchor=(0, 1.02), ncol=ncol, borderaxespad=0, frameon=False)


def min_font_px(fig, dpi: float = DPI) -> float:
    """The smallest font of the figure's visible, non-empty texts, in pixels at ``dpi`` (points x dpi / 72).
    Tick labels hold their text only once the figure is drawn: draw it first (:func:`figure_png` does)."""
    from matplotlib.text import Text

    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return min(sizes) * dpi / 72 if sizes else float("inf")


def figure_png(fig, dpi: float = DPI) -> bytes:
    """The figure as PNG bytes at ``dpi`` (tight bounding box), carrying its smallest font in pixels
    under :data:`MIN_FONT_KEY` so that the page check can measure the text a reader sees."""
    import io

    buf = io.BytesIO()
    fig.canvas.draw()  # tick labels get their text only when drawn: measure after
    meta = {MIN_FONT_KEY: f"{min_font_px(fig, dpi):.2f}"}
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata=meta)
    return buf.getvalue()


def show(fig=None, dpi: float = DPI) -> None:
    """Display a figure (default: the current one) in a notebook as :func:`figure_png`'s PNG and close
    it. The cell's ``mystnb`` metadata gives the book's caption and alt text."""
    import matplotlib.pyplot as plt
    from IPython.display import Image, display

    fig = plt.gcf() if fig is None else fig
    display(Image(data=figure_png(fig, dpi), format="png"))
    plt.close(fig)


def png_min_font_px(data: bytes) -> float | None:
    """The :data:`MIN_FONT_KEY` value stored in PNG bytes by :func:`figure_png`, or None."""
    import io

    from PIL import Image

    value = Image.open(io.BytesIO(data)).text.get(MIN_FONT_KEY)
    return float(value) if value is not None else None


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
