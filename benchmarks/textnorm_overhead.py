"""Cost of TextNorm scoring relative to plain scoring, for a dual encoder of CLIP ViT-L/14 size.

TIA2 scores 50 images per prompt; TextNorm scores each image against the prompt and its K
contrastive prompts (K = 32 on composition). Printed side by side, in one run:

- plain:    score_matrix(images, [y])             image tower x n, text tower x 1
- textnorm: score_matrix(images, [y, *C(y)])      image tower x n, text tower x (1 + K), cached
- naive:    one full model forward per (image, prompt) pair, re-encoding the image each time,
            measured on ``--naive-images`` images and scaled per image.

Ratios: overhead = textnorm / plain (target <= 1.15), naive speedup = naive / textnorm.
The model is openai/clip-vit-large-patch14's architecture at random initialisation (same compute
as the released weights), saved and loaded through the same ``load_reward("clip", path)`` call.

    python benchmarks/textnorm_overhead.py --images 50 --contrast 32 --threads 2
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
from PIL import Image

from textnorm import testing
from textnorm.rewards import contrastive, load_reward


def contrast_set(k: int) -> tuple[str, list[str]]:
    y = "a realistic photo of an airplane and an apple"
    pool = contrastive.composition_contrastive(y)
    for other in (
        "a realistic photo of a cat and a dog",
        "a realistic photo of a bird and a cake",
        "a realistic photo of a truck and a vase",
    ):
        pool += contrastive.composition_contrastive(other)
    return y, [p for p in dict.fromkeys(pool) if p != y][:k]


def timed(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=50, help="images per prompt (TIA2: 50)")
    ap.add_argument("--contrast", type=int, default=32, help="contrastive prompts K")
    ap.add_argument("--naive-images", type=int, default=2, help="images for the naive measurement")
    ap.add_argument("--size", default="vit-l-14", choices=["vit-l-14", "tiny"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=25)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)) for _ in range(args.images)]
    y, contrast = contrast_set(args.contrast)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = testing.save_clip(tmp, kind=args.size)
        reward = load_reward("clip", str(path), batch_size=args.batch_size)
        setup = time.perf_counter() - t0
    n_params = sum(p.numel() for p in reward.model.parameters()) / 1e6

    def plain():
        reward.clear_cache()
        reward.score_matrix(images, [y])

    def calibrated():
        reward.clear_cache()
        reward.score_matrix(images, [y, *contrast])

    def naive():
        texts = [y, *contrast]
        for im in images[: args.naive_images]:
            for t in texts:
                inputs = reward.processor(text=[t], images=[im], return_tensors="pt", padding=True)
                with torch.inference_mode():
                    reward.model(**inputs)

    t_plain = timed(plain, args.repeats)
    t_tn = timed(calibrated, args.repeats)
    t_naive = timed(naive, args.repeats) / args.naive_images * args.images

    print(f"model: CLIP {args.size}, {n_params:.0f}M parameters (random init, built+saved+loaded in {setup:.1f} s)")
    print(
        f"setup: {args.images} images x (1 + {len(contrast)}) prompts, {args.threads} threads, best of {args.repeats}"
    )
    print(f"{'':22}{'seconds':>10}{'per image':>12}")
    for label, t in (("plain", t_plain), ("textnorm (cached)", t_tn), ("naive (extrapolated)", t_naive)):
        print(f"{label:22}{t:10.2f}{t / args.images:12.3f}")
    print(f"overhead ratio textnorm / plain: {t_tn / t_plain:.3f}   (target <= 1.15)")
    print(f"speedup over naive:              {t_naive / t_tn:.1f}x")


if __name__ == "__main__":
    main()
