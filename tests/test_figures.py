"""The book's figure PNGs carry their smallest font, tick labels included (they get their text only
when the figure is drawn), and a font set smaller anywhere is what is stored."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from textnorm import plots  # noqa: E402


def test_stored_font_counts_tick_labels_and_the_smallest_text():
    plots.style()
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1])
    ax.set_title("a title", fontsize=12)  # ticks are 9 pt (plots.style): 12.5 px at 100 dpi
    assert plots.png_min_font_px(plots.figure_png(fig)) == 12.5
    ax.text(0.5, 0.5, "a note", fontsize=7)
    assert plots.png_min_font_px(plots.figure_png(fig)) == round(7 * plots.DPI / 72, 2)
    plt.close(fig)


def test_a_png_without_the_key_reads_none():
    import io

    fig, ax = plt.subplots()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert plots.png_min_font_px(buf.getvalue()) is None
    plt.close(fig)
