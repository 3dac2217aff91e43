"""GPU check (device tool): DDPO rounds with LoRA on the Stable Diffusion 2.1-base architecture
at random initialisation (no download), 512 px, bf16 autocast, and the bare UNet passes of the
same rounds, timed in the same run (overhead = loop / bare).

The UNet, VAE and text encoder configs are those of stabilityai/stable-diffusion-2-1-base; the
tokenizer is a small offline one (token ids only feed the random text encoder, so its cost is the
real model's). ``--tiny`` builds the same pipeline from tiny configs and runs on the CPU: the
test suite uses it to cover this script's whole path.

    python benchmarks/gpu_sd_scale.py --rounds 3 --prompts 2 --samples-per-prompt 4
    python benchmarks/gpu_sd_scale.py --rounds 2 --prompts 2 --samples-per-prompt 128 --batch-size 8 \
        --sample-steps 50 --sample-batch 16        # a round of the paper's size (256 samples, guidance 5)
    python benchmarks/gpu_sd_scale.py --tiny --rounds 1       # CPU check of the same code
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ddpo_overhead import bare_round  # noqa: E402


def build_sd21_base(tiny: bool = False):
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from textnorm.testing import clip_tokenizer

    tok = clip_tokenizer()
    if tiny:
        unet = UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            layers_per_block=1,
            block_out_channels=(32, 64),
            cross_attention_dim=32,
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            norm_num_groups=8,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            block_out_channels=(8, 16),
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            layers_per_block=1,
            norm_num_groups=8,
            sample_size=16,
        )
        text = CLIPTextModel(
            CLIPTextConfig(
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                projection_dim=32,
                vocab_size=len(tok),
                max_position_embeddings=77,
            )
        )
    else:
        unet = UNet2DConditionModel(
            sample_size=64,
            in_channels=4,
            out_channels=4,
            layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280),
            cross_attention_dim=1024,
            attention_head_dim=(5, 10, 20, 20),
            use_linear_projection=True,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=2,
            sample_size=512,
        )
        text = CLIPTextModel(
            CLIPTextConfig(
                hidden_size=1024,
                intermediate_size=4096,
                num_hidden_layers=23,
                num_attention_heads=16,
                hidden_act="gelu",
                projection_dim=512,
                vocab_size=49408,
                max_position_embeddings=77,
            )
        )
    sched = DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text,
        tokenizer=tok,
        scheduler=sched,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def run(args) -> dict:
    from textnorm.finetune.config import FinetuneConfig
    from textnorm.finetune.loop import Finetuner
    from textnorm.finetune.task import plain_task

    device = "cpu" if args.tiny else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this check is for the lent GPU (use --tiny for the CPU check)")
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    pipe = build_sd21_base(tiny=args.tiny).to(device)

    def reward(images, prompts):
        return images.astype(float).mean(axis=(1, 2, 3)) / 255

    prompts = ["a photo of a cat", "two dogs on a sofa", "a red car", "a bowl of fruit"][: max(args.prompts, 1)]
    n = args.prompts * args.samples_per_prompt
    cfg = FinetuneConfig(
        method="ddpo",
        steps=args.rounds,
        n_prompts=args.prompts,
        samples_per_prompt=args.samples_per_prompt,
        sample_steps=args.sample_steps,
        batch_size=min(n, args.batch_size),
        inner_epochs=1,
        lora_rank=4,
        resolution=None if args.tiny else args.resolution,
        mixed_precision="no" if args.tiny else "bf16",
        device=device,
        task="prompts",
        min_train_sigma=0.05,
        lr=3e-4,
        guidance_scale=getattr(args, "guidance_scale", 1.0),
        sample_batch=getattr(args, "sample_batch", 0),
    )
    tuner = Finetuner(cfg, pipe=pipe, reward_fn=reward, task=plain_task(prompts))
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, bare = [], []
    for _ in range(args.rounds):
        sync()
        t0 = time.perf_counter()
        tuner.run_step()
        sync()
        times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        bare_round(tuner)
        sync()
        bare.append(time.perf_counter() - t0)
    steady = slice(1, None) if len(times) > 1 else slice(None)
    loop_t = sum(times[steady]) / len(times[steady])
    bare_t = sum(bare[steady]) / len(bare[steady])
    out = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "round_seconds": times,
        "bare_seconds": bare,
        "samples_per_second": n / loop_t,
        "overhead": loop_t / bare_t,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan"),
        "metrics": tuner.metrics,
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--samples-per-prompt", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--sample-steps", type=int, default=20)
    ap.add_argument("--resolution", type=int, default=512)
    ap.add_argument("--guidance-scale", type=float, default=5.0, help="classifier-free guidance (the paper's: 5)")
    ap.add_argument("--sample-batch", type=int, default=16, help="samples per UNet/VAE call (0: the whole round)")
    ap.add_argument("--tiny", action="store_true", help="tiny configs on the CPU (the test of this script)")
    args = ap.parse_args()
    out = run(args)
    print(
        f"device: {out['device']}  LoRA rank 4  {'fp32 (tiny, CPU)' if args.tiny else 'bf16 autocast'}  "
        f"guidance {args.guidance_scale}  sample batch {args.sample_batch or 'whole round'}"
    )
    print(f"round seconds: {[round(t, 2) for t in out['round_seconds']]}")
    print(f"bare UNet seconds: {[round(t, 2) for t in out['bare_seconds']]}")
    print(f"samples per second (sampling + training, steady): {out['samples_per_second']:.2f}")
    print(f"overhead ratio loop / bare: {out['overhead']:.2f}")
    print(f"peak GPU memory: {out['peak_gib']:.1f} GiB")


if __name__ == "__main__":
    main()
