"""Rollouts for the RL trainer: B prompts x n samples in batched calls (``model.generate`` or :mod:`obe.engines.fastlm`).

:func:`generate_rollouts` returns token tensors ready for the update (left-padded prompts,
right-padded completions, a completion mask that stops after the first EOS, EOS included),
the decoded texts for grading, and per-sample lengths / truncation flags. Generation runs
under ``torch.inference_mode`` inside a forked RNG seeded with the caller's seed (the
trainer passes ``derive_seed(seed, "rollout", step)``), so a resumed run regenerates the
same rollouts and the caller's global RNG is untouched. ``max_sequences`` bounds the sequences
per call (whole questions per call; the KV cache of one call is what a GPU must hold): call c > 0
is seeded with ``derive_seed(seed, "chunk", c)``, so a single call gives exactly the unchunked
rollouts.

:func:`answer_token_mask` marks, per completion, the tokens of the final ``\\boxed{...}``
(the span :func:`obe.grading.extract` reads), for masking the exploration term off the
answer tokens (:func:`obe.rl.bonuses.token_advantages`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from obe.grading.latex import last_boxed_span
from obe.engines.models import render_template
from obe.core.seeds import derive_seed
from obe.engines.fastlm import check_finite_logits
from obe.engines.generation import eos_token_ids
from obe.training.config import RolloutConfig



@dataclass
class Rollouts:
    """One step's samples, question-major: row ``b * n + i`` is sample i of question b.

    prompt_ids/prompt_mask ``[S, P]`` (left-padded), completion_ids/completion_mask ``[S, T]``
    (mask 1 up to and including the first EOS), texts (decoded, no special tokens),
    num_tokens ``[S]`` (mask sums), truncated ``[S]`` (no EOS within max_new_tokens).
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    texts: list[str]
    num_tokens: torch.Tensor
    truncated: torch.Tensor


def encode_prompts(tokenizer, problems: Sequence[str], template: str) -> list[list[int]]:
    """Token ids of each rendered prompt (tokenizer's special tokens, e.g. BOS, added)."""
    texts = [render_template(template, p) for p in problems]
    return [list(x) for x in tokenizer(texts, add_special_tokens=True)["input_ids"]]


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s):] = 1
    return ids, mask


def completion_mask(completion_ids: torch.Tensor, eos: Sequence[int]) -> torch.Tensor:
    """``[S, T]`` long: 1 up to and including the first EOS of each row (all 1 without EOS)."""
    is_eos = torch.isin(completion_ids, torch.tensor(list(eos), dtype=completion_ids.dtype))
    # number of EOS strictly before position t == 0  <=>  t <= first EOS
    before = torch.cumsum(is_eos.long(), dim=1) - is_eos.long()
    return (before == 0).long()


def generate_rollouts(model, tokenizer, prompt_ids: Sequence[Sequence[int]], cfg: RolloutConfig, seed: int,
                      lean=None, max_sequences: int = 0) -> Rollouts:
    """``cfg.n`` samples for each prompt, at most ``max_sequences`` per ``generate`` call (0: one
    call for all), seeded by ``seed``.

    ``lean``: an :class:`obe.engines.fastlm.LeanLM` of ``model`` to sample with instead of
    ``model.generate`` (same distribution, different random stream)."""
    per_call = len(prompt_ids) if max_sequences <= 0 else max(1, max_sequences // cfg.n)
    starts = range(0, len(prompt_ids), per_call)
    if len(starts) <= 1:
        return _generate_once(model, tokenizer, prompt_ids, cfg, seed, lean)
    parts = [_generate_once(model, tokenizer, prompt_ids[i:i + per_call], cfg,
                            seed if c == 0 else derive_seed(seed, "chunk", c), lean)
             for c, i in enumerate(starts)]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_token_ids(model, tokenizer)[0]
    return concat_rollouts(parts, pad)


def concat_rollouts(parts: Sequence[Rollouts], pad_id: int) -> Rollouts:
    """One :class:`Rollouts` from several, prompts re-padded on the left, completions on the right."""
    P = max(r.prompt_ids.shape[1] for r in parts)
    T = max(r.completion_ids.shape[1] for r in parts)

    def widen(t: torch.Tensor, width: int, value: int, left: bool) -> torch.Tensor:
        extra = torch.full((t.shape[0], width - t.shape[1]), value, dtype=t.dtype)
        return torch.cat([extra, t] if left else [t, extra], dim=1)

    return Rollouts(
        prompt_ids=torch.cat([widen(r.prompt_ids, P, pad_id, True) for r in parts]),
        prompt_mask=torch.cat([widen(r.prompt_mask, P, 0, True) for r in parts]),
        completion_ids=torch.cat([widen(r.completion_ids, T, pad_id, False) for r in parts]),
        completion_mask=torch.cat([widen(r.completion_mask, T, 0, False) for r in parts]),
        texts=[t for r in parts for t in r.texts],
        num_tokens=torch.cat([r.num_tokens for r in parts]),
        truncated=torch.cat([r.truncated for r in parts]),
    )


def _generate_once(model, tokenizer, prompt_ids: Sequence[Sequence[int]], cfg: RolloutConfig, seed: int,
                   lean=None) -> Rollouts:
    from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

    class RaiseOnNonFinite(LogitsProcessor):  # NaN logits would fail in multinomial with a message only
        def __call__(self, input_ids, scores):
            check_finite_logits(scores)
            return scores

    eos = eos_token_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    rows = [p for p in prompt_ids for _ in range(cfg.n)]
    ids, mask = left_pad(rows, pad)
    gen_cfg = GenerationConfig(
        do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p, top_k=0,
        max_new_tokens=cfg.max_new_tokens, eos_token_id=eos, pad_token_id=pad, num_beams=1, use_cache=True,
    )
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    saved = model.generation_config
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=pad)  # ignore checkpoint defaults
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.inference_mode():
            torch.manual_seed(seed)
            if lean is not None:
                comp = lean.generate(ids.to(device), mask.to(device), max_new_tokens=cfg.max_new_tokens,
                                     eos_token_ids=eos, pad_token_id=pad, temperature=cfg.temperature, top_p=cfg.top_p)
            else:
                comp = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=gen_cfg,
                                      logits_processor=LogitsProcessorList([RaiseOnNonFinite()]))[:, ids.shape[1]:]
    finally:
        model.generation_config = saved
        model.train(was_training)
    comp = comp.cpu().clone()  # clone outside inference mode: a normal tensor
    if comp.shape[1] == 0:  # cannot happen with max_new_tokens >= 1, but keep shapes sane
        comp = torch.full((len(rows), 1), pad, dtype=torch.long)
    cmask = completion_mask(comp, eos)
    comp = comp.masked_fill(cmask == 0, pad)
    n_tok = cmask.sum(dim=1)
    has_eos = torch.isin(comp, torch.tensor(eos)).logical_and(cmask.bool()).any(dim=1)
    texts = tokenizer.batch_decode(comp.masked_fill(cmask == 0, pad).tolist(), skip_special_tokens=True)
    return Rollouts(ids, mask, comp, cmask, texts, n_tok, ~has_eos)


# -- final-answer token span ---------------------------------------------------------


def _pieces(tokenizer, ids: Sequence[int]) -> list[str]:
    """Per-token decoded strings, cached on the tokenizer (one decode per vocabulary id)."""
    cache = tokenizer.__dict__.setdefault("_obe_pieces", {})
    missing = sorted({i for i in ids if i not in cache})
    if missing:
        for i, p in zip(missing, tokenizer.batch_decode([[i] for i in missing], skip_special_tokens=True)):
            cache[i] = p
    return [cache[i] for i in ids]


def token_char_offsets(tokenizer, ids: Sequence[int], text: str) -> list[tuple[int, int]]:
    """Character range ``[start, end)`` of each token of a completion inside its decoded ``text``.

    Fast path: the per-token decodes concatenate to ``text`` (character-level and byte-level
    BPE vocabularies). Otherwise (SentencePiece leading spaces, byte pieces, decoder
    clean-ups): the end of token t is ``len(decode(ids[:t+1]))``, clamped to be monotone.
    Special tokens decode to "" (zero width).
    """
    ids = list(ids)
    pieces = _pieces(tokenizer, ids)
    ends: list[int] = []
    if "".join(pieces) == text:
        pos = 0
        for p in pieces:
            pos += len(p)
            ends.append(pos)
    else:
        prev = 0
        for t in range(len(ids)):
            prev = max(prev, min(len(tokenizer.decode(ids[: t + 1], skip_special_tokens=True)), len(text)))
            ends.append(prev)
    return list(zip([0] + ends[:-1], ends))


def answer_token_mask(tokenizer, completion_ids: torch.Tensor, cmask: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
    """``[S, T]`` float: 1 on the tokens that overlap the last complete ``\\boxed{...}``
    (the whole box: ``\\boxed{``, the answer and the closing brace).

    Rows without a complete box are all zeros; padding is always 0.
    """
    out = torch.zeros(completion_ids.shape, dtype=torch.float32)
    for s, text in enumerate(texts):
        span = last_boxed_span(text)
        if span is None:
            continue
        L = int(cmask[s].sum())
        off = torch.tensor(token_char_offsets(tokenizer, completion_ids[s, :L].tolist(), text), dtype=torch.long)
        if len(off):
            out[s, :L] = ((off[:, 0] < span[1]) & (off[:, 1] > span[0])).float()
    return out
