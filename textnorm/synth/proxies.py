"""Imperfect proxy reward models of the synthetic world, with distinct flaws.

Both are small CLIP models (transformers ``CLIPModel``, 16 px images in 4 px patches, the world's
word-level tokenizer) saved with ``save_pretrained`` and a ``CLIPProcessor``, so
``textnorm.rewards.load_reward("clip", folder)`` loads them like any released CLIP;
r(x, y) = s cos(f(x), g(y)).

(a) ``contrastive``: trained with the symmetric InfoNCE loss on a *limited* fixed set of rendered
    (image, caption) pairs with in-batch negatives. Random negatives rarely differ from a caption
    only in a count, so the model learns colours and shapes better than numbers.
(b) ``preference``: trained with the Bradley-Terry loss on simulated pairwise choices of people
    who prefer aligned images but also like larger objects:
        P(x1 > x2 | y) = sigmoid(beta (v(x1, y) - v(x2, y)) + gamma (size(x1) - size(x2))),
    v the gold verdict and size the objects' diameter in pixels (4 or 5), beta = 3, gamma = 1.5;
    loss = -log sigmoid(+-(r(x1, y) - r(x2, y))) for the sampled choice. Like ImageReward and
    PickScore, it learns an image-only preference alongside alignment, which TextNorm's softmax
    over prompts cancels. Comparisons are fresh every step, or (``n_pairs``) a fixed finite set
    reused over epochs: a family of proxies of graded quality, as Gao et al. varied the reward
    model's data and size.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

from textnorm.schedules import proxy_lr_factor
from textnorm.synth import scenes
from textnorm.synth.config import ProxyConfig
from textnorm.synth.generator import MAX_TOKENS, build_tokenizer


def build_proxy(seed: int = 0) -> tuple[CLIPModel, CLIPProcessor]:
    tok = build_tokenizer()
    torch.manual_seed(seed)
    text = dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        vocab_size=len(tok.get_vocab()),
        max_position_embeddings=MAX_TOKENS,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    vision = dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4, image_size=16, patch_size=4
    )
    model = CLIPModel(
        CLIPConfig(
            text_config=text, vision_config=vision, projection_dim=32, logit_scale_init_value=float(np.log(10.0))
        )
    )
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}),
        tokenizer=tok,
    )
    return model, processor


def _pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 (n, 16, 16, 3) -> normalised pixel values, as the CLIP processor would give."""
    mean = torch.tensor(CLIPImageProcessor().image_mean).view(1, 3, 1, 1)
    std = torch.tensor(CLIPImageProcessor().image_std).view(1, 3, 1, 1)
    return (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - mean) / std


def _embed(model: CLIPModel, processor: CLIPProcessor, images: np.ndarray, captions: list[str]):
    tok = processor.tokenizer(captions, padding="max_length", max_length=MAX_TOKENS, return_tensors="pt")
    img = model.get_image_features(pixel_values=_pixels(images)).pooler_output
    txt = model.get_text_features(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).pooler_output
    return torch.nn.functional.normalize(img, dim=-1), torch.nn.functional.normalize(txt, dim=-1)


def simulate_comparisons(
    rng: np.random.Generator, captions: list[str], n: int, beta: float, gamma: float
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """n simulated comparisons: a caption, two renders (each aligned with probability 1/2, object size
    4 or 5 px) as (n, 2, H, W, 3) uint8, and whether the first was chosen (the module's model)."""
    caps = list(rng.choice(captions, n))
    pair_imgs, aligned, sizes = [], [], []
    for c in caps:
        for _ in range(2):
            ok = rng.random() < 0.5
            shown = c if ok else str(rng.choice(scenes.contrastive_captions(c)))
            size = int(rng.choice((4, 5)))
            pair_imgs.append(scenes.draw(shown, rng, sizes=(size,)))
            aligned.append(ok)
            sizes.append(size)
    a = np.array(aligned, float).reshape(-1, 2)
    sz = np.array(sizes, float).reshape(-1, 2)
    p_first = 1 / (1 + np.exp(-(beta * (a[:, 0] - a[:, 1]) + gamma * (sz[:, 0] - sz[:, 1]))))
    choice = rng.random(n) < p_first
    return caps, np.stack(pair_imgs).reshape(n, 2, *pair_imgs[0].shape), choice


def train_proxy(out: str | Path, cfg: ProxyConfig | None = None, progress: bool = True) -> dict:
    cfg = cfg or ProxyConfig()
    torch.set_num_threads(cfg.threads)
    model, processor = build_proxy(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    warm = max(1, cfg.steps // 20)  # linear warm-up, then cosine decay
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: proxy_lr_factor(s, warm, cfg.steps))
    rng = np.random.default_rng(cfg.seed)
    train = [c for s in ("counting", "composition") for c in scenes.split_captions(s, seed=0)[0]]
    if cfg.kind == "contrastive":
        fixed_caps = list(rng.choice(train, cfg.n_images))
        fixed_imgs = scenes.draw_batch(fixed_caps, seed=cfg.seed + 17)
    elif cfg.kind != "preference":
        raise ValueError(f"proxy kind must be 'contrastive' or 'preference', got {cfg.kind!r}")
    if cfg.n_pairs < 0:
        raise ValueError(f"n_pairs must be >= 0, got {cfg.n_pairs}")
    fixed = None
    if cfg.kind == "preference" and cfg.n_pairs:
        fixed = simulate_comparisons(np.random.default_rng([cfg.seed, 23]), train, cfg.n_pairs, cfg.beta, cfg.gamma)
    log = []
    model.train()
    for step in tqdm(range(cfg.steps), disable=not progress, desc=f"train {cfg.kind} proxy"):
        scale = model.logit_scale.exp().clamp(max=100)
        if cfg.kind == "contrastive":
            idx = rng.choice(len(fixed_caps), cfg.batch_size, replace=False)
            caps = [fixed_caps[i] for i in idx]
            img, txt = _embed(model, processor, fixed_imgs[idx], caps)
            logits = scale * img @ txt.T
            # captions can repeat inside a batch: every copy of the right caption is a positive
            same = torch.tensor([[a == b for b in caps] for a in caps], dtype=torch.float32)
            target = same / same.sum(1, keepdim=True)
            loss = 0.5 * (
                torch.nn.functional.cross_entropy(logits, target)
                + torch.nn.functional.cross_entropy(logits.T, target.T)
            )
        else:
            if fixed is not None:  # a finite dataset: a batch of its comparisons
                idx = rng.choice(cfg.n_pairs, cfg.batch_size, replace=cfg.n_pairs < cfg.batch_size)
                caps, pair_imgs, choice = [fixed[0][i] for i in idx], fixed[1][idx], fixed[2][idx]
            else:
                caps, pair_imgs, choice = simulate_comparisons(rng, train, cfg.batch_size, cfg.beta, cfg.gamma)
            choice = torch.tensor(choice, dtype=torch.float32)
            img, txt = _embed(
                model, processor, pair_imgs.reshape(-1, *pair_imgs.shape[2:]), [c for c in caps for _ in range(2)]
            )
            r = (scale * (img * txt).sum(-1)).view(-1, 2)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(r[:, 0] - r[:, 1], choice)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            log.append({"step": step, "loss": round(loss.item(), 4)})
    model.eval()
    out = Path(out)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return {"config": asdict(cfg), "loss": log}
