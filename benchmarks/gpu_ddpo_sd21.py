"""GPU check (device tool): a few DDPO steps with LoRA on the Stable Diffusion 2.1-base
architecture at random initialisation (no download), 512 px, bf16 autocast.

Prints samples per second and peak GPU memory. The UNet, VAE and text encoder configs are those
of stabilityai/stable-diffusion-2-1-base; the tokenizer is a small offline one (token ids only
feed the random text encoder, so its cost is the real model's).

    python benchmarks/gpu_ddpo_sd21.py --steps 3 --prompts 2 --samples-per-prompt 4
"""

from __future__ import annotations

import argparse
import time

import torch


def build_sd21_base():
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from textnorm.testing import clip_tokenizer

    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
        use_linear_projection=True,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"))
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        layers_per_block=2, sample_size=512)
    tok = clip_tokenizer()
    text = CLIPTextModel(CLIPTextConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                                        num_attention_heads=16, hidden_act="gelu", projection_dim=512,
                                        vocab_size=49408, max_position_embeddings=77))
    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                          beta_end=0.012, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text, tokenizer=tok, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def main() -> None:
    from textnorm.finetune.loop import FinetuneConfig, Finetuner

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--samples-per-prompt", type=int, default=4)
    ap.add_argument("--sample-steps", type=int, default=20)
    ap.add_argument("--resolution", type=int, default=512)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this check is for the lent GPU")
    device = "cuda"
    pipe = build_sd21_base().to(device, torch.bfloat16)
    pipe.unet.to(torch.float32)  # LoRA weights train in fp32 under bf16 autocast

    def reward(images, prompts):
        return images.astype(float).mean(axis=(1, 2, 3)) / 255

    cfg = FinetuneConfig(method="ddpo", steps=args.steps, n_prompts=args.prompts,
                         samples_per_prompt=args.samples_per_prompt, sample_steps=args.sample_steps,
                         lora_rank=4, resolution=args.resolution, mixed_precision="bf16", gold=False,
                         device=device, prompts=["a photo of a cat", "two dogs on a sofa", "a red car"])
    tuner = Finetuner(cfg, pipe=pipe, reward_fn=reward)
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        tuner.run_step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    n = args.prompts * args.samples_per_prompt
    steady = times[1:] or times
    print(f"device: {torch.cuda.get_device_name()}  resolution {args.resolution}  LoRA rank 4  bf16 autocast")
    print(f"step seconds: {[round(t, 2) for t in times]}")
    print(f"samples per second (sampling + training, steady): {n / (sum(steady) / len(steady)):.2f}")
    print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
