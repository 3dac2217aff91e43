"""Tiny random-initialised models in the real on-disk formats, for tests and benchmarks.

No machine of this project can download weights, so every loading path is exercised on models of
the same architectures at toy sizes, written with ``save_pretrained`` (or, for ImageReward, as a
``ImageReward.pt`` state dict with the original BLIP key names) and read back through the same
``from_pretrained`` calls users make with hub ids.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch

_CHARS = list(string.ascii_lowercase + string.digits + "-',.!?")


def clip_tokenizer():
    """A character-level CLIP BPE tokenizer (no merges), built offline."""
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {}
    for ch in _CHARS:
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    # model_max_length as CLIP's: left unset it is ~1e30 and padding to it overflows
    return CLIPTokenizer(vocab=vocab, merges=[], unk_token="<|endoftext|>", model_max_length=77)


def bert_vocab_file(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + _CHARS + ["##" + c for c in _CHARS]
    path = folder / "vocab.txt"
    path.write_text("\n".join(words) + "\n")
    return path


def clip_config(kind: str = "tiny", image_size: int = 32):
    """``tiny`` for tests; ``vit-l-14`` is openai/clip-vit-large-patch14's architecture."""
    from transformers import CLIPConfig

    tok = clip_tokenizer()
    if kind == "tiny":
        # the text pooler reads the state at the first eos_token_id: it must be the tokenizer's
        text = dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            vocab_size=len(tok.get_vocab()),
            max_position_embeddings=77,
            eos_token_id=tok.eos_token_id,
            bos_token_id=tok.bos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        vision = dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=image_size,
            patch_size=8,
        )
        return CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
    if kind == "vit-l-14":
        text = dict(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            vocab_size=49408,
            max_position_embeddings=77,
        )
        vision = dict(
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=24,
            num_attention_heads=16,
            image_size=224,
            patch_size=14,
        )
        return CLIPConfig(text_config=text, vision_config=vision, projection_dim=768)
    raise ValueError(f"unknown CLIP size {kind!r}")


def save_clip(folder: str | Path, kind: str = "tiny", seed: int = 0) -> Path:
    """A CLIPModel + CLIPProcessor in the hub folder layout."""
    from transformers import CLIPImageProcessor, CLIPModel, CLIPProcessor

    folder = Path(folder)
    torch.manual_seed(seed)
    config = clip_config(kind)
    CLIPModel(config).save_pretrained(folder)
    size = config.vision_config.image_size
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}),
        tokenizer=clip_tokenizer(),
    )
    processor.save_pretrained(folder)
    return folder


def save_blip2(folder: str | Path, seed: int = 0) -> Path:
    """A tiny Blip2ForImageTextRetrieval + processor (BERT tokenizer) in the hub layout."""
    from transformers import BertTokenizer, Blip2Config, Blip2ForImageTextRetrieval, Blip2Processor, BlipImageProcessor

    folder = Path(folder)
    vocab = bert_vocab_file(folder / "_vocab")
    tokenizer = BertTokenizer(str(vocab))
    torch.manual_seed(seed)
    config = Blip2Config(
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        ),
        qformer_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            vocab_size=len(tokenizer),
            encoder_hidden_size=32,
            use_qformer_text_input=True,
            max_position_embeddings=64,
        ),
        num_query_tokens=4,
        image_text_hidden_size=16,
    )
    Blip2ForImageTextRetrieval(config).save_pretrained(folder)
    image_processor = BlipImageProcessor(size={"height": 32, "width": 32})
    Blip2Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def imagereward_original_state_dict(
    width: int = 64,
    depth: int = 2,
    patch: int = 8,
    image_size: int = 32,
    text_hidden: int = 32,
    text_layers: int = 2,
    vocab_size: int = 100,
    max_positions: int = 40,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Random weights under the key names of the released ImageReward.pt (BLIP's own naming)."""
    g = torch.Generator().manual_seed(seed)

    def t(*shape):
        return torch.randn(*shape, generator=g) * 0.05

    sd: dict[str, torch.Tensor] = {}
    v = "blip.visual_encoder."
    n_pos = (image_size // patch) ** 2 + 1
    sd[v + "cls_token"] = t(1, 1, width)
    sd[v + "pos_embed"] = t(1, n_pos, width)
    sd[v + "patch_embed.proj.weight"] = t(width, 3, patch, patch)
    sd[v + "patch_embed.proj.bias"] = t(width)
    for i in range(depth):
        b = f"{v}blocks.{i}."
        for norm in ("norm1", "norm2"):
            sd[b + norm + ".weight"], sd[b + norm + ".bias"] = 1 + t(width), t(width)
        sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"] = t(3 * width, width), t(3 * width)
        sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"] = t(width, width), t(width)
        sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"] = t(4 * width, width), t(4 * width)
        sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"] = t(width, 4 * width), t(width)
    sd[v + "norm.weight"], sd[v + "norm.bias"] = 1 + t(width), t(width)
    e = "blip.text_encoder."
    h = text_hidden
    sd[e + "embeddings.word_embeddings.weight"] = t(vocab_size, h)
    sd[e + "embeddings.position_embeddings.weight"] = t(max_positions, h)
    sd[e + "embeddings.LayerNorm.weight"], sd[e + "embeddings.LayerNorm.bias"] = 1 + t(h), t(h)
    sd[e + "embeddings.position_ids"] = torch.arange(max_positions)[None]  # buffer saved by old torch
    for i in range(text_layers):
        b = f"{e}encoder.layer.{i}."
        for att, kv_in in (("attention", h), ("crossattention", width)):
            sd[b + f"{att}.self.query.weight"], sd[b + f"{att}.self.query.bias"] = t(h, h), t(h)
            for name in ("key", "value"):
                sd[b + f"{att}.self.{name}.weight"], sd[b + f"{att}.self.{name}.bias"] = t(h, kv_in), t(h)
            sd[b + f"{att}.output.dense.weight"], sd[b + f"{att}.output.dense.bias"] = t(h, h), t(h)
            sd[b + f"{att}.output.LayerNorm.weight"], sd[b + f"{att}.output.LayerNorm.bias"] = 1 + t(h), t(h)
        sd[b + "intermediate.dense.weight"], sd[b + "intermediate.dense.bias"] = t(4 * h, h), t(4 * h)
        sd[b + "output.dense.weight"], sd[b + "output.dense.bias"] = t(h, 4 * h), t(h)
        sd[b + "output.LayerNorm.weight"], sd[b + "output.LayerNorm.bias"] = 1 + t(h), t(h)
    sd["blip.vision_proj.weight"], sd["blip.text_proj.weight"] = t(16, width), t(16, h)  # unused heads
    for idx, (i, o) in zip((0, 2, 4, 6, 7), ((h, 1024), (1024, 128), (128, 64), (64, 16), (16, 1))):
        sd[f"mlp.layers.{idx}.weight"], sd[f"mlp.layers.{idx}.bias"] = t(o, i), t(o)
    return sd


def save_imagereward(folder: str | Path, seed: int = 0) -> Path:
    """ImageReward.pt (original key names) + med_config.json + vocab.txt, as in THUDM/ImageReward."""
    folder = Path(folder)
    vocab = bert_vocab_file(folder)
    n_vocab = len(vocab.read_text().split()) + 2  # + [DEC], [ENC] added by BLIP's tokenizer init
    sd = imagereward_original_state_dict(vocab_size=n_vocab, seed=seed)
    torch.save(sd, folder / "ImageReward.pt")
    med = {
        "architectures": ["BertModel"],
        "vocab_size": n_vocab,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 128,
        "max_position_embeddings": 40,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "encoder_width": 64,
        "add_cross_attention": True,
        "type_vocab_size": 2,
        "pad_token_id": 0,
    }
    (folder / "med_config.json").write_text(json.dumps(med, indent=2))
    return folder


def save_causal_lm(folder: str | Path, seed: int = 0) -> Path:
    """A tiny GPT-2 style causal LM with a byte-level BPE tokenizer trained offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder = Path(folder)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = [
        "a realistic photo of two cats and a dog",
        "three red apples on a table",
        "write short image captions one per line",
        "caption: a blue car next to a tree",
    ] * 4
    bpe.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    tok.save_pretrained(folder)
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=512,
        n_embd=32,
        n_layer=2,
        n_head=4,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def save_stable_diffusion(folder: str | Path, seed: int = 0, sample_size: int = 8) -> Path:
    """A tiny StableDiffusionPipeline (UNet 32/64, VAE with one downsampling, CLIP text) in the
    hub layout, loadable with ``StableDiffusionPipeline.from_pretrained``."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    torch.manual_seed(seed)
    tok = clip_tokenizer()
    tok.model_max_length = 16
    unet = UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        norm_num_groups=8,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            vocab_size=len(tok.get_vocab()),
            max_position_embeddings=16,
            eos_token_id=tok.eos_token_id,
            bos_token_id=tok.bos_token_id,
            pad_token_id=tok.pad_token_id,
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
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text,
        tokenizer=tok,
        scheduler=sched,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return folder


def tiny_synth_grid(
    rewards: dict, prompts: list[str], pairs: list | None = None, lr: float = 1e-3, steps: int = 3
) -> dict:
    """A DDPO over-optimisation grid on the synthetic world small enough for a test (one seed, 2
    prompts x 2 samples a round, 4 DDIM steps, the untrained steps on the base model, every round
    evaluated): a smoke run whose numbers mean nothing."""
    ddpo = dict(
        method="ddpo",
        steps=steps,
        prompts=list(prompts),
        n_prompts=2,
        samples_per_prompt=2,
        batch_size=4,
        lr=lr,
        lora_rank=2,
        sample_steps=4,
        min_train_sigma=0.05,
        untrained_steps="base",
        eval_every=1,
        eval_samples=2,
        heldout_samples=1,
    )
    grid = {"model": "data/synth/generator", "rewards": dict(rewards), "methods": {"ddpo": ddpo}, "seeds": [0]}
    if pairs is not None:
        grid["pairs"] = [list(p) for p in pairs]
    return grid
