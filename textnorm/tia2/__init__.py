"""The TIA2 benchmark (Text-Image Alignment Assessment): its files, tables, scoring and evaluation.

- :mod:`textnorm.tia2.data`: download or mirror the files at the pinned commit, verify their sha256
- :mod:`textnorm.tia2.annotations`: tidy tables of images, labels, contrastive prompts and the
  published scores, with the label rule (an image is aligned when at least two of three labels are 1)
- :mod:`textnorm.tia2.scoring`: reward scores (raw and TextNorm) of a folder of TIA2 images
- :mod:`textnorm.tia2.evaluation`: scores -> per-prompt metrics, with coverage checks

The annotation tables' functions are also importable from this package (``tia2.load_images``).
"""

from textnorm.tia2.annotations import (
    METRICS,
    MODELS,
    clean_contrastive,
    is_aligned,
    label_rule_check,
    load_contrastive_prompts,
    load_images,
    load_published_scores,
    prompt_summary,
    scorable_images,
)
from textnorm.tia2.data import SUBSETS

__all__ = [
    "METRICS",
    "MODELS",
    "SUBSETS",
    "clean_contrastive",
    "is_aligned",
    "label_rule_check",
    "load_contrastive_prompts",
    "load_images",
    "load_published_scores",
    "prompt_summary",
    "scorable_images",
]
