"""The synthetic world's text-to-image diffusion model, in Stable Diffusion's parts.

- tokenizer: a word-level tokenizer over the world's words (built offline with ``tokenizers``),
  with CLIP's start and end tokens;
- text encoder: a small transformers ``CLIPTextModel``; its token states feed the UNet's
  cross-attention and its pooled (end-of-text) state is added to the time embedding through the
  UNet's ``class_embed_type="projection"`` (cross-attention alone learned captions too slowly);
- UNet: diffusers ``UNet2DConditionModel`` in pixel space (3 x 16 x 16, channels 32/64/64, one
  layer per block), trained to predict the noise eps of x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps
  (DDPM, cosine schedule, 1000 steps); sampling with the DDIM chain of :mod:`textnorm.ddim`
  (the one fine-tuning uses), configured by the pipeline's ``DDIMScheduler``;
- no VAE: images are the model's space, scaled to [-1, 1].

:class:`SynthPipeline` is a ``diffusers.DiffusionPipeline``: ``save_pretrained`` /
``from_pretrained`` write and read the usual folder layout (unet/, text_encoder/, tokenizer/,
scheduler/, model_index.json), so fine-tuning code treats it like Stable Diffusion.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, DiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast

from textnorm import ddim
from textnorm.ddim import Chain
from textnorm.images import to_uint8
from textnorm.synth.scenes import COLORS, NUMBER_WORDS, SHAPES

TEXT_DIM = 64
MAX_TOKENS = 12


def world_words() -> list[str]:
    return sorted({*NUMBER_WORDS[1:], "and", *COLORS, *SHAPES, *(s + "s" for s in SHAPES)})


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer over the world's words, with CLIP's start / end tokens around each
    caption (the text encoder pools the state of the end token)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    words = ["<|pad|>", "<|unk|>", "<|startoftext|>", "<|endoftext|>", *world_words()]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<|unk|>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", special_tokens=[("<|startoftext|>", 2), ("<|endoftext|>", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|pad|>",
        unk_token="<|unk|>",
        model_max_length=MAX_TOKENS,
    )


def build_text_encoder(tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> CLIPTextModel:
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer.get_vocab()),
        hidden_size=TEXT_DIM,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=TEXT_DIM,
    )
    return CLIPTextModel(config)


def build_unet(resolution: int = 16, channels=(32, 64, 64), seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=resolution,
        in_channels=3,
        out_channels=3,
        block_out_channels=tuple(channels),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=8,
        norm_num_groups=8,
        class_embed_type="projection",
        projection_class_embeddings_input_dim=TEXT_DIM,
    )


def build_scheduler() -> DDIMScheduler:
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        clip_sample=True,
        set_alpha_to_one=True,
        prediction_type="epsilon",
    )


class SynthPipeline(DiffusionPipeline):
    """Text-to-image in pixel space. ``pipe(prompts, seed=0)`` -> uint8 images (n, S, S, 3)."""

    def __init__(
        self,
        unet: UNet2DConditionModel,
        text_encoder: CLIPTextModel,
        tokenizer: PreTrainedTokenizerFast,
        scheduler: DDIMScheduler,
    ):
        super().__init__()
        self.register_modules(unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)

    @classmethod
    def build(cls, resolution: int = 16, seed: int = 0) -> SynthPipeline:
        tok = build_tokenizer()
        return cls(build_unet(resolution, seed=seed), build_text_encoder(tok, seed), tok, build_scheduler())

    @property
    def resolution(self) -> int:
        return self.unet.config.sample_size

    def encode_prompt(self, prompts: list[str], device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(token states (n, L, D), pooled state (n, D))."""
        device = device or self.unet.device
        tok = self.tokenizer(
            list(prompts), padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt"
        ).to(device)
        out = self.text_encoder(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])
        return out.last_hidden_state, out.pooler_output

    def predict_noise(self, x: torch.Tensor, t, states: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t, encoder_hidden_states=states, class_labels=pooled).sample

    @torch.no_grad()
    def __call__(
        self,
        prompts: list[str],
        num_inference_steps: int = 20,
        seed: int = 0,
        eta: float = 0.0,
        batch_size: int = 256,
        output: str = "uint8",
    ):
        device = self.unet.device
        outs = []
        gen = torch.Generator("cpu").manual_seed(seed)
        chain = Chain.from_scheduler(self.scheduler, num_inference_steps)
        for start in range(0, len(prompts), batch_size):
            chunk = list(prompts[start : start + batch_size])
            states, pooled = self.encode_prompt(chunk, device)
            x = torch.randn((len(chunk), 3, self.resolution, self.resolution), generator=gen).to(device)
            traj = ddim.sample(
                lambda x_, t, s=states, p=pooled: self.predict_noise(x_, t, s, p), chain, x, eta, gen, record=False
            )
            outs.append(traj.x0.float().cpu())
        x = torch.cat(outs)
        if output == "tensor":
            return x
        return to_uint8(x)
