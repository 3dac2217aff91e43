"""Every reward factory loads tiny random models from disk through the hub-style code path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from textnorm import testing
from textnorm.rewards import REWARDS, load_reward
from textnorm.rewards import imagereward as ir

torch.set_num_threads(1)
PROMPTS = ["a cat", "two dogs", "a red apple and a fork"]


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)) for _ in range(5)]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {
        "clip": testing.save_clip(root / "clip"),
        "blip2": testing.save_blip2(root / "blip2"),
        "imagereward": testing.save_imagereward(root / "imagereward"),
    }


@pytest.mark.parametrize(
    "name, folder",
    [
        ("clip", "clip"),
        ("pickscore", "clip"),
        ("blip2", "blip2"),
        ("blip2_itc", "blip2"),
        ("imagereward", "imagereward"),
    ],
)
def test_factory_scores(name, folder, folders, images):
    kwargs = {"processor": str(folders["clip"])} if name == "pickscore" else {}
    reward = load_reward(name, str(folders[folder]), batch_size=2, **kwargs)
    R = reward.score_matrix(images, PROMPTS)
    assert R.shape == (5, 3) and np.isfinite(R).all()
    assert np.std(R, axis=1).max() > 0  # prompts are told apart
    assert np.allclose(reward.score(images[:3], PROMPTS), np.diag(R[:3]), atol=1e-5)
    big = load_reward(name, str(folders[folder]), batch_size=64, **kwargs)
    assert np.allclose(big.score_matrix(images, PROMPTS), R, atol=1e-5)  # batching does not matter


def test_clip_matches_model_forward(folders, images):
    reward = load_reward("clip", str(folders["clip"]))
    inputs = reward.processor(text=PROMPTS, images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        ref = reward.model(**inputs).logits_per_image.numpy()
    assert np.allclose(reward.score_matrix(images, PROMPTS), ref, atol=1e-4)


def test_text_embeddings_are_cached(folders, images, monkeypatch):
    reward = load_reward("clip", str(folders["clip"]))
    calls = []
    original = reward._encode_texts
    monkeypatch.setattr(reward, "_encode_texts", lambda p: calls.append(list(p)) or original(p))
    reward.score_matrix(images, PROMPTS)
    reward.score_matrix(images[:2], PROMPTS[:2] + ["a new prompt"])
    assert calls == [PROMPTS, ["a new prompt"]]


@pytest.mark.parametrize("itm", [False, True])
def test_blip2_matches_model_forward(folders, images, itm):
    reward = load_reward("blip2" if itm else "blip2_itc", str(folders["blip2"]))
    pix = reward.processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
    R = reward.score_matrix(images, PROMPTS)
    with torch.no_grad():
        if itm:
            for j, prompt in enumerate(PROMPTS):
                tok = reward.processor.tokenizer([prompt] * len(images), return_tensors="pt")
                out = reward.model(
                    pixel_values=pix,
                    input_ids=tok["input_ids"],
                    attention_mask=tok["attention_mask"],
                    use_image_text_matching_head=True,
                ).logits_per_image
                assert np.allclose(R[:, j], (out[:, 1] - out[:, 0]).numpy(), atol=1e-4)
        else:
            tok = reward.processor.tokenizer(PROMPTS, return_tensors="pt", padding=True)
            out = reward.model(
                pixel_values=pix,
                input_ids=tok["input_ids"],
                attention_mask=tok["attention_mask"],
                use_image_text_matching_head=False,
            ).logits_per_image
            assert np.allclose(R, out.numpy(), atol=1e-4)


def test_imagereward_conversion_places_original_weights(folders):
    original = torch.load(folders["imagereward"] / "ImageReward.pt", weights_only=True)
    reward = load_reward("imagereward", str(folders["imagereward"]))
    m = reward.model
    pairs = [
        ("blip.visual_encoder.blocks.1.attn.qkv.weight", m.visual_encoder.encoder.layers[1].self_attn.qkv.weight),
        ("blip.visual_encoder.blocks.0.attn.proj.bias", m.visual_encoder.encoder.layers[0].self_attn.projection.bias),
        ("blip.visual_encoder.cls_token", m.visual_encoder.embeddings.class_embedding),
        ("blip.visual_encoder.pos_embed", m.visual_encoder.embeddings.position_embedding),
        ("blip.visual_encoder.norm.weight", m.visual_encoder.post_layernorm.weight),
        (
            "blip.text_encoder.encoder.layer.1.crossattention.self.key.weight",
            m.text_encoder.encoder.layer[1].crossattention.self.key.weight,
        ),
        ("mlp.layers.7.bias", m.mlp[7].bias),
    ]
    for key, param in pairs:
        assert torch.equal(original[key], param.detach()), key
    assert m.visual_encoder.config.image_size == 32 and m.visual_encoder.config.num_hidden_layers == 2


def test_imagereward_normalisation(folders, images):
    reward = load_reward("imagereward", str(folders["imagereward"]))
    with torch.no_grad():  # a constant head: the reward is (b - mean) / std
        reward.model.mlp[7].weight.zero_()
        reward.model.mlp[7].bias.fill_(2.0)
    assert np.allclose(reward.score_matrix(images, PROMPTS), (2.0 - ir.MEAN) / ir.STD, atol=1e-6)


def test_imagereward_unknown_key_is_an_error():
    sd = testing.imagereward_original_state_dict()
    sd["blip.visual_encoder.blocks.0.attn.mystery"] = torch.zeros(1)
    with pytest.raises(KeyError, match="mystery"):
        ir.convert_state_dict(sd)
    sd = testing.imagereward_original_state_dict()
    sd["something.else"] = torch.zeros(1)
    with pytest.raises(KeyError, match="something.else"):
        ir.convert_state_dict(sd)


def test_imagereward_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="ImageReward.pt"):
        load_reward("imagereward", str(tmp_path))


def test_unknown_reward_lists_names():
    with pytest.raises(KeyError, match="registered rewards: blip2"):
        load_reward("dalle-judge")
    assert set(REWARDS) >= {"clip", "pickscore", "blip2", "blip2_itc", "imagereward"}
