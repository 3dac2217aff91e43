"""Settings of the synthetic world's training commands: one dataclass each, whose fields (with their
help texts) are also the options of ``textnorm train-generator`` and ``textnorm train-proxy``.
Imports nothing heavy, so the CLI's ``--help`` is quick."""

from __future__ import annotations

from dataclasses import dataclass, field


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    """The pixel-space generator, trained from scratch on freshly rendered scenes."""

    steps: int = _f(3000, "optimiser steps")
    batch_size: int = _f(64, "scenes per step (half counting, half composition captions)")
    lr: float = _f(1e-3, "AdamW peak learning rate (linear warm-up, then cosine to 10%)")
    warmup: int = _f(100, "steps of linear learning-rate warm-up")
    seed: int = _f(0, "seed of the caption split, the scenes and the initial weights")
    resolution: int = _f(16, "image side in pixels")
    eval_every: int = _f(500, "steps between held-out evaluations and saves")
    eval_captions: int = _f(96, "held-out captions per evaluation")
    sample_steps: int = _f(20, "DDIM steps of an evaluation's samples")
    threads: int = _f(2, "torch threads (use 1 if anything else runs)")


@dataclass
class ProxyConfig:
    """A proxy reward model of the synthetic world (a small CLIP)."""

    kind: str = _f(
        "contrastive",
        "contrastive (weak at counting) or preference (likes large objects)",
        choices=("contrastive", "preference"),
        required=True,
    )
    steps: int = _f(1500, "optimiser steps")
    batch_size: int = _f(128, "training pairs per step")
    lr: float = _f(2e-3, "AdamW peak learning rate (linear warm-up, then cosine decay)")
    n_images: int = _f(2000, "contrastive: size of the fixed training set")
    beta: float = _f(3.0, "preference: weight of alignment in the simulated preference")
    gamma: float = _f(1.5, "preference: weight of object size (px) in the simulated preference")
    n_pairs: int = _f(
        0,
        "preference: a fixed set of this many simulated comparisons, drawn once and reused (a finite dataset, as a "
        "reward model's training set; fewer comparisons, a worse proxy); 0: fresh comparisons every step",
    )
    seed: int = _f(0, "seed of the data and the initial weights")
    threads: int = _f(2, "torch threads (use 1 if anything else runs)")
