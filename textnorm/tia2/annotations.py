"""Tidy tables of the TIA2 benchmark (Text-Image Alignment Assessment).

Label rule. Each image has three human labels in {1, 0, -1} (aligned, not aligned, unsure).
An image is *aligned* when at least two of its three labels are 1:

    aligned(x) = [ #{a : label_a(x) = 1} >= 2 ]

so an unsure label counts against alignment. A prompt's ``human`` score is the fraction of its
50 images that are aligned.

Exclusion rule. Ranking metrics (AUROC, ...) need both classes, so prompts whose images all share
one verdict cannot be scored and are left out of every per-prompt table (as in the published
alignment scores: 146 of 150 counting, 295 of 300 composition, 84 of 100 comprehensive prompts).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

import numpy as np
import pandas as pd

from textnorm.tia2.data import SUBSETS, tia2_path

METRICS: tuple[str, ...] = ("auroc", "auprc", "ap5", "ap10", "ap25", "spearman", "kendall")
MODELS: tuple[str, ...] = ("clip", "blip2", "imagereward", "pickscore", "textnorm")
_IMAGE_RE = re.compile(r"image_(\d+)_(\d+)_(\d+)\.jpg$")


def _read_json(relpath: str, **source) -> dict:
    with open(tia2_path(relpath, **source), encoding="utf-8") as f:
        return json.load(f)


def is_aligned(labels: np.ndarray) -> np.ndarray:
    """Binary verdict per row of an (n, 3) label array: at least two labels equal 1."""
    labels = np.asarray(labels)
    return (labels == 1).sum(axis=-1) >= 2


def load_images(subsets: Iterable[str] = SUBSETS, **source) -> pd.DataFrame:
    """One row per annotated image.

    Columns: subset, prompt_id (the first index of the image name), prompt, image,
    label_1..label_3, aligned (bool). ``source`` is passed to :func:`textnorm.tia2.data.tia2_path`
    (``mirror=``, ``cache_dir=``, ...).
    """
    frames = []
    for subset in subsets:
        raw = _read_json(f"human_annotations/human_labels_{subset}.json", **source)
        rows = []
        for name, rec in raw.items():
            m = _IMAGE_RE.match(name)
            if m is None or len(rec["human_labels"]) != 3:
                raise ValueError(f"unexpected TIA2 record {name!r} in subset {subset}: {rec}")
            rows.append((subset, int(m.group(1)), rec["caption"], name, *rec["human_labels"]))
        frames.append(
            pd.DataFrame(rows, columns=["subset", "prompt_id", "prompt", "image", "label_1", "label_2", "label_3"])
        )
    df = pd.concat(frames, ignore_index=True)
    df["aligned"] = is_aligned(df[["label_1", "label_2", "label_3"]].to_numpy())
    return df


def prompt_summary(images: pd.DataFrame) -> pd.DataFrame:
    """One row per prompt: number of images, the ``human`` aligned fraction, and ``scorable``
    (both verdicts present, so ranking metrics are defined)."""
    g = images.groupby(["subset", "prompt"], sort=False)["aligned"]
    out = g.agg(n_images="size", human="mean").reset_index()
    out["scorable"] = (out["human"] > 0) & (out["human"] < 1)
    return out


def label_rule_check(images: pd.DataFrame, published: pd.DataFrame) -> dict[str, float]:
    """How well the aligned rule (:func:`is_aligned`) reproduces the published per-prompt ``human``
    fractions: the scorable prompts (of ``images``), the published prompts, how many of the
    published ones our fraction equals (to 1e-9) and the largest absolute difference. A published
    prompt we do not have, or a scorable prompt the authors did not publish, is counted apart."""
    ours = prompt_summary(images).query("scorable").set_index(["subset", "prompt"])["human"]
    pub = published.drop_duplicates(["subset", "prompt"]).set_index(["subset", "prompt"])["human"]
    pub.index = pub.index.set_levels(pub.index.levels[0].astype(str), level=0)
    common = ours.index.intersection(pub.index)
    diff = np.abs(ours.loc[common].to_numpy(dtype=float) - pub.loc[common].to_numpy(dtype=float))
    return {
        "scorable_prompts": int(len(ours)),
        "published_prompts": int(len(pub)),
        "matched": int((diff <= 1e-9).sum()),
        "max_abs_diff": float(diff.max()) if len(diff) else float("nan"),
        "only_ours": int(len(ours.index.difference(pub.index))),
        "only_published": int(len(pub.index.difference(ours.index))),
    }


def scorable_images(images: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``images`` whose prompt is scorable (mixed verdicts)."""
    summary = prompt_summary(images)
    keep = summary.loc[summary["scorable"], ["subset", "prompt"]]
    return images.merge(keep, on=["subset", "prompt"], how="inner")


def load_contrastive_prompts(subset: str, **source) -> dict[str, list[str]]:
    """Prompt -> its published contrastive prompts C(y) used by TextNorm."""
    return _read_json(f"prompts/prompt_set_{subset}.json", **source)


def clean_contrastive(sets: dict[str, list[str]]) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Contrastive sets without repeated prompts and without the prompt itself.

    A repeated contrastive prompt would enter TextNorm's softmax denominator twice, and the prompt
    itself among its contrasts caps its probability at 1/2. (The published composition sets hold
    repeats in 32 sets; one comprehensive set lists its own prompt.) Returns the cleaned sets and
    the counts dropped: ``{"duplicates": d, "self": s, "sets": k}`` (k sets changed)."""
    cleaned, dup, self_, changed = {}, 0, 0, 0
    for prompt, contrasts in sets.items():
        seen, out = set(), []
        for c in contrasts:
            if c == prompt:
                self_ += 1
            elif c in seen:
                dup += 1
            else:
                seen.add(c)
                out.append(c)
        changed += len(out) != len(contrasts)
        cleaned[prompt] = out
    return cleaned, {"duplicates": dup, "self": self_, "sets": changed}


def load_published_scores(subsets: Iterable[str] = SUBSETS, **source) -> pd.DataFrame:
    """One row per (prompt, model) of the published per-prompt alignment scores.

    Columns: subset, prompt, human, model, the :data:`METRICS`, and for TextNorm the variant the
    authors report for that subset (``ur``: uncertainty-regularized ensemble, ``mean``: mean
    ensemble) with its per-prompt ``scale`` and ``lambda`` (NaN where not applicable).
    """
    rows = []
    for subset in subsets:
        raw = _read_json(f"alignment_scores/alignment_scores_{subset}.json", **source)
        for prompt, rec in raw.items():
            for key, vals in rec.items():
                if key == "human":
                    continue
                model, _, variant = key.partition("_")
                row = {
                    "subset": subset,
                    "prompt": prompt,
                    "human": rec["human"],
                    "model": model,
                    "variant": variant or None,
                }
                row.update({m: vals[m] for m in METRICS})
                row["scale"] = vals.get("scale", np.nan)
                row["lambda"] = vals.get("lambda", np.nan)
                rows.append(row)
    df = pd.DataFrame(rows)
    df["subset"] = pd.Categorical(df["subset"], categories=list(SUBSETS))
    df["model"] = pd.Categorical(df["model"], categories=list(MODELS))
    return df
