"""BLIP-2 rewards (Salesforce/blip2-itm-vit-g) through transformers' ``Blip2ForImageTextRetrieval``.

- ITC head (dual encoder): the Q-Former turns the image into Q query embeddings q_1..q_Q; the
  text's [CLS] embedding t is projected; r(x, y) = max_k cos(q_k(x), t(y)).
- ITM head (cross encoder): the Q-Former reads the queries and the text jointly, attending to the
  image; the 2-way head's logits are averaged over queries, and r(x, y) = logit_match - logit_no_match
  (the log-odds of the softmax probability of "match" that transformers' example reports).

The text is tokenised without the image placeholder tokens, so the model's own forward pass is
followed on its ``image_token_index is None`` branch; images are encoded once per call.
"""

from __future__ import annotations

import torch

from textnorm.rewards.base import CrossEncoderReward, DualEncoderReward

BLIP2_ITM = "Salesforce/blip2-itm-vit-g"


def _load(path: str, device, dtype):
    from transformers import AutoProcessor, Blip2ForImageTextRetrieval

    model = Blip2ForImageTextRetrieval.from_pretrained(path, dtype=dtype).to(device).eval()
    processor = AutoProcessor.from_pretrained(path)
    return model, processor


class _Blip2Mixin:
    """Loading and the shared vision / tokenizer calls of both heads."""

    def __init__(self, path: str = BLIP2_ITM, *, device="cpu", dtype=torch.float32, batch_size: int = 32):
        super().__init__(device=device, dtype=dtype, batch_size=batch_size)
        self.model, self.processor = _load(path, self.device, dtype)

    def _vision(self, images):
        pix = self.processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
        pix = pix.to(self.device, self.model.vision_model.dtype)
        return self.model.vision_model(pixel_values=pix).last_hidden_state

    def _tokens(self, prompts):
        return self.processor.tokenizer(prompts, padding=True, truncation=True, max_length=64, return_tensors="pt").to(
            self.device
        )


class Blip2ITC(_Blip2Mixin, DualEncoderReward):
    name = "blip2_itc"

    def _encode_images(self, images):
        m = self.model
        image_embeds = self._vision(images)
        mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=self.device)
        queries = m.query_tokens.expand(image_embeds.shape[0], -1, -1)
        q = m.qformer(
            query_embeds=queries, encoder_hidden_states=image_embeds, encoder_attention_mask=mask
        ).last_hidden_state
        q = q.to(m.vision_projection.weight.dtype)
        return torch.nn.functional.normalize(m.vision_projection(q).float(), dim=-1)  # (b, Q, D)

    def _encode_texts(self, prompts):
        m = self.model
        tok = self._tokens(prompts)
        emb = m.embeddings(input_ids=tok["input_ids"])
        h = m.qformer(query_embeds=emb, query_length=0, attention_mask=tok["attention_mask"]).last_hidden_state
        h = h.to(m.text_projection.weight.dtype)
        return torch.nn.functional.normalize(m.text_projection(h[:, 0, :]).float(), dim=-1)

    def _similarity(self, img, txt):
        return torch.einsum("bqd,td->bqt", img, txt).amax(dim=1)


class Blip2ITM(_Blip2Mixin, CrossEncoderReward):
    name = "blip2"

    def _image_features(self, images):
        return self._vision(images)

    def _pair_scores(self, feats, prompts):
        m = self.model
        tok = self._tokens(prompts)
        queries = m.query_tokens.expand(feats.shape[0], -1, -1)
        n_query = queries.shape[1]
        attn = torch.cat(
            [torch.ones(queries.shape[:-1], dtype=torch.long, device=self.device), tok["attention_mask"]], dim=1
        )
        emb = m.embeddings(input_ids=tok["input_ids"], query_embeds=queries)
        h = m.qformer(
            query_embeds=emb,
            query_length=n_query,
            attention_mask=attn,
            encoder_hidden_states=feats,
            encoder_attention_mask=torch.ones(feats.shape[:-1], dtype=torch.long, device=self.device),
        ).last_hidden_state
        logits = m.itm_head(h[:, :n_query, :].to(m.itm_head.weight.dtype)).mean(dim=1)
        return logits[:, 1] - logits[:, 0]


def blip2(path: str = BLIP2_ITM, head: str = "itm", **kwargs):
    if head == "itm":
        return Blip2ITM(path, **kwargs)
    if head == "itc":
        return Blip2ITC(path, **kwargs)
    raise ValueError(f"BLIP-2 head must be 'itm' or 'itc', got {head!r}")
