"""Contrastive prompt sets C(y) for TextNorm.

TextNorm compares a prompt y with prompts that differ from it in meaning but not in style, so a
reward's preference for y over C(y) measures alignment and not image quality. This module holds:

- rule-based generators that reproduce the published TIA2 sets:
  * counting: for "a realistic photo of <n> <objects>", the same object with every count
    m in [n - 2, n + 2], m >= 1, m != n, in increasing order;
  * composition (the 12 rule-based prompts): each object alone; the 8 count variants
    (n_a, n_b) in (2,1), (1,2), (2,2), (3,1), (1,3), (3,2), (2,3), (3,3); and the two
    "A-like B" prompts. As in the published sets, "and" is left out of a count variant when
    n_a >= n_b >= 2 ("two airplanes two apples");
- an LLM generator that asks any local transformers causal language model for contrastive
  prompts (:func:`llm_contrastive_prompts`);
- loading of the published (partly LLM-written) sets: :func:`textnorm.tia2.load_contrastive_prompts`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
PREFIX = "a realistic photo of "
# Irregular plurals of the TIA2 object vocabulary (the rest follow English suffix rules).
IRREGULAR = {
    "person": "people",
    "mouse": "mice",
    "sheep": "sheep",
    "deer": "deer",
    "fish": "fishes",
    "knife": "knives",
    "wolf": "wolves",
    "leaf": "leaves",
    "child": "children",
    "scissors": "scissors",
    "skis": "skis",
    "glasses": "glasses",
}


def pluralize(noun: str) -> str:
    """English plural of a (possibly multi-word) noun: the last word is inflected."""
    head, _, last = noun.rpartition(" ")
    if last in IRREGULAR:
        plural = IRREGULAR[last]
    elif re.search(r"[^aeiou]y$", last):
        plural = last[:-1] + "ies"
    elif re.search(r"(s|sh|ch|x|z)$", last):
        plural = last + "es"
    else:
        plural = last + "s"
    return f"{head} {plural}" if head else plural


def article(noun: str) -> str:
    """'a' or 'an' by the first letter (the TIA2 vocabulary has no exceptions to this rule)."""
    return "an" if noun[0].lower() in "aeiou" else "a"


def phrase(noun: str, count: int) -> str:
    """'an apple', 'two apples', ..."""
    if count == 1:
        return f"{article(noun)} {noun}"
    if not 2 <= count < len(NUMBER_WORDS):
        raise ValueError(f"count must be between 1 and {len(NUMBER_WORDS) - 1}, got {count}")
    return f"{NUMBER_WORDS[count]} {pluralize(noun)}"


@dataclass(frozen=True)
class CountPhrase:
    noun: str  # singular
    count: int


def parse_phrase(text: str, vocabulary: set[str] | None = None) -> CountPhrase:
    """Inverse of :func:`phrase`: 'three wolves' -> CountPhrase('wolf', 3)."""
    first, _, rest = text.partition(" ")
    if first in ("a", "an"):
        return CountPhrase(rest, 1)
    if first in NUMBER_WORDS:
        count = NUMBER_WORDS.index(first)
        singulars = vocabulary or set()
        for noun in singulars:
            if pluralize(noun) == rest:
                return CountPhrase(noun, count)
        return CountPhrase(_singularize(rest), count)
    raise ValueError(f"cannot parse a counted noun phrase from {text!r}")


def _singularize(plural: str) -> str:
    head, _, last = plural.rpartition(" ")
    inverse = {v: k for k, v in IRREGULAR.items()}
    if last in inverse:
        single = inverse[last]
    elif last.endswith("ies"):
        single = last[:-3] + "y"
    elif re.search(r"(sses|shes|ches|xes|zes)$", last):  # "horses" -> "horse", not "hors"
        single = last[:-2]
    else:
        single = last[:-1]
    return f"{head} {single}" if head else single


def _strip_prefix(prompt: str, prefix: str) -> str:
    if not prompt.startswith(prefix):
        raise ValueError(f"prompt {prompt!r} does not start with {prefix!r}")
    return prompt[len(prefix) :]


def counting_contrastive(prompt: str, prefix: str = PREFIX, spread: int = 2) -> list[str]:
    """Contrastive prompts of a counting prompt: the same object with counts within +-spread."""
    p = parse_phrase(_strip_prefix(prompt, prefix))
    counts = [m for m in range(p.count - spread, p.count + spread + 1) if m >= 1 and m != p.count]
    return [prefix + phrase(p.noun, m) for m in counts]


COUNT_VARIANTS: tuple[tuple[int, int], ...] = ((2, 1), (1, 2), (2, 2), (3, 1), (1, 3), (3, 2), (2, 3), (3, 3))


def composition_contrastive(prompt: str, prefix: str = PREFIX) -> list[str]:
    """The 12 rule-based contrastive prompts of "a realistic photo of <a A> and <a B>"."""
    body = _strip_prefix(prompt, prefix)
    left, sep, right = body.partition(" and ")
    if not sep:
        raise ValueError(f"composition prompt {prompt!r} has no ' and '")
    a, b = parse_phrase(left).noun, parse_phrase(right).noun
    out = [prefix + phrase(a, 1), prefix + phrase(b, 1)]
    for na, nb in COUNT_VARIANTS:
        joiner = " " if na >= nb >= 2 else " and "
        out.append(prefix + phrase(a, na) + joiner + phrase(b, nb))
    out.append(f"{prefix}{article(a)} {a}-like {b}")
    out.append(f"{prefix}{article(b)} {b}-like {a}")
    return out


# --------------------------------------------------------------------------------------------
# LLM-written contrastive prompts
# --------------------------------------------------------------------------------------------

LLM_INSTRUCTION = (
    "Write {n} short image captions that are similar in style to the caption below but describe a "
    "different scene: change the objects, their number, their attributes or their relations. "
    "Write one caption per line and nothing else.\nCaption: {prompt}\n"
)


def parse_llm_lines(text: str, prompt: str, n: int) -> list[str]:
    """Captions from generated text: one per line, list markers stripped, duplicates, empty lines
    and the prompt itself dropped, at most ``n``."""
    out: list[str] = []
    for line in text.splitlines():
        line = re.sub(r"^\s*(?:[-*\u2022]|\d+[.)])\s*", "", line).strip().strip('"').strip()
        if line and line.lower() != prompt.lower() and line not in out:
            out.append(line)
        if len(out) == n:
            break
    return out


def llm_contrastive_prompts(
    prompts: list[str],
    model: str,
    n: int = 20,
    *,
    device: str = "cpu",
    dtype=None,
    max_new_tokens: int = 256,
    temperature: float = 0.8,
    seed: int = 0,
    instruction: str = LLM_INSTRUCTION,
) -> dict[str, list[str]]:
    """Ask a local transformers causal LM (hub id or folder) for ``n`` contrastive captions per
    prompt. Sampling is seeded per prompt, so the same arguments give the same sets. The chat
    template is used when the tokenizer has one."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=dtype or torch.float32).to(device).eval()
    results: dict[str, list[str]] = {}
    for i, prompt in enumerate(prompts):
        text = instruction.format(n=n, prompt=prompt)
        if getattr(tok, "chat_template", None):
            ids = tok.apply_chat_template(
                [{"role": "user", "content": text}], add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
        else:
            ids = tok(text, return_tensors="pt")
        ids = {k: v.to(device) for k, v in ids.items()}
        torch.manual_seed(seed + i)
        with torch.inference_mode():
            gen = lm.generate(
                **ids,
                do_sample=True,
                temperature=temperature,
                max_new_tokens=max_new_tokens,
                pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
            )
        completion = tok.decode(gen[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        results[prompt] = parse_llm_lines(completion, prompt, n)
    return results
