"""Tables for reading: names, intervals, transposition without losing integer formatting."""

from __future__ import annotations

import pandas as pd

from textnorm import plots, tables


def test_interval_and_with_intervals():
    assert tables.interval(0.8071, 0.78149, 0.8321) == "0.807 [0.781, 0.832]"
    assert tables.interval(0.012, -0.01, 0.034, signed=True) == "+0.012 [-0.010, +0.034]"
    # an estimate that rounds to zero has no sign (it was printed "-0.000" for -0.00007)
    assert tables.interval(-6.8e-05, -0.0253, 0.0252, signed=True) == "0.000 [-0.025, +0.025]"
    assert tables.number(-0.0004, signed=True) == "0.000" and tables.number(0.0006, signed=True) == "+0.001"
    assert tables.number(float("nan")) == "nan"
    df = pd.DataFrame({"mean": [0.5], "ci_low": [0.4], "ci_high": [0.6], "n": [3]})
    out = tables.with_intervals(df, {"AUROC [95% CI]": ("mean", "ci_low", "ci_high")})
    assert list(out.columns) == ["n", "AUROC [95% CI]"] and out.iloc[0, 1] == "0.500 [0.400, 0.600]"


def test_readable_names_and_transpose():
    df = pd.DataFrame(
        {"subset": ["counting", "composition"], "n_images": [3000, 6500], "kappa_category": [0.41234, 0.5]}
    ).set_index("subset")
    out = tables.readable(df)
    assert list(out.columns) == ["images", "kappa (unsure a category)"] and out.index.name == "subset"
    assert out.iloc[0, 1] == 0.412
    t = tables.readable(df, transpose=True)
    assert list(t.columns) == ["counting", "composition"]
    assert t.loc["images", "counting"] == "3000" and t.loc["kappa (unsure a category)", "counting"] == "0.412"


def test_one_colour_per_reward_everywhere():
    assert plots.color_of("contrastive") == plots.BASE_COLORS["contrastive"]
    assert plots.base_reward("TextNorm(contrastive) [CV]") == "contrastive"
    assert plots.base_reward("TextNorm-minmax(preference) [CV]") == "preference"
    assert plots.base_reward("mean ensemble [CV]") == "mean ensemble"
    assert (
        plots.base_reward("TextNorm(mean)") == "mean ensemble" and plots.base_reward("CLIP (ViT-L)") == "CLIP (ViT-L)"
    )
    # a calibrated reward is a shade of its base reward, different from it and from the other proxy's
    tn = plots.color_of("TextNorm(contrastive)")
    assert tn not in (plots.color_of("contrastive"), plots.color_of("TextNorm(preference)"))
    assert plots.color_of("TextNorm(contrastive) [CV]") == tn
    assert plots.color_of("something new") == plots.color_of("something new")  # stable
    # the rewards of one chapter never share a colour
    chapter = [
        "gold",
        "contrastive",
        "preference",
        "TextNorm(contrastive) [CV]",
        "TextNorm(preference) [CV]",
        "TextNorm-minmax(contrastive) [CV]",
        "TextNorm-minmax(preference) [CV]",
        "mean ensemble [CV]",
        "UR ensemble [CV]",
        "raw ensemble",
        "TextNorm(mean)",
        "TextNorm(UR)",
        "base",
    ]
    colours = [plots.color_of(n) for n in chapter]
    assert len(set(colours)) == len(colours), dict(zip(chapter, colours))
    assert list(plots.palette(["gold", "gold", "preference"])) == ["gold", "preference"]
