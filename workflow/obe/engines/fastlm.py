"""A lean functional forward pass for Llama/Qwen2-style models: fast sampling and log-probs on CPU.

Why: for the small models of the embedded default and the benchmarks, a step of
``model.generate`` costs ~10 ms of Python and dispatch overhead per token (module calls,
cache objects, mask building, logits processors) for well under 1 ms of arithmetic. This
module computes the same transformer with plain tensor ops on the model's own parameters
(read at call time, never copied between calls, so optimizer updates are seen):

* :meth:`LeanLM.generate`: KV-cache sampling (temperature, top-p, EOS, padding) with a
  cache preallocated once per call and fused q/k/v and gate/up projections.
* :meth:`LeanLM.completion_logits`: the trainer's log-prob forward, differentiable. The n
  samples of a question share their prompt, so the prompt is run once per distinct prompt
  and its keys/values are shared by the n completions (B x P + B x n x T tokens instead of
  B x n x (P + T)).

The maths is HF's (RMSNorm, rotary embedding from the model's own ``inv_freq`` and
``attention_scaling``, grouped-query attention, SiLU-gated MLP, tied or untied head); tests
compare logits and gradients with the HF forward and greedy tokens with ``generate``.
:func:`unsupported_reason` lists what is not covered (sliding windows, dynamic rope types,
attention dropout in training, other architectures); callers then use HF's own forward.
Sampling consumes random numbers differently from ``generate``, so seeded samples differ
from HF's (same distribution).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
import torch.nn.functional as F

from obe.core.vocabulary import ENGINES


class NonFiniteLogits(RuntimeError):
    """A forward pass gave NaN or +inf logits while sampling: the weights have diverged."""


def check_finite_logits(scores: torch.Tensor) -> None:
    """Raise :class:`NonFiniteLogits` when ``scores`` hold NaN or +inf (-inf is a masked token)."""
    if bool(torch.isnan(scores).any() or torch.isposinf(scores).any()):
        raise NonFiniteLogits(f"non-finite logits while sampling ({int(torch.isnan(scores).sum())} NaN)")

SUPPORTED_MODEL_TYPES = ("llama", "qwen2")
# Rope types whose cos/sin are ``cos(pos * inv_freq) * attention_scaling`` with a fixed
# inv_freq buffer (the dynamic ones recompute inv_freq from the sequence length).
STATIC_ROPE_TYPES = ("default", "linear", "llama3", "yarn")


def unsupported_reason(model) -> Optional[str]:
    """Why :class:`LeanLM` cannot run ``model`` exactly (None when it can)."""
    cfg = getattr(model, "config", None)
    mtype = getattr(cfg, "model_type", None)
    if mtype not in SUPPORTED_MODEL_TYPES:
        return f"model type {mtype!r} (supported: {', '.join(SUPPORTED_MODEL_TYPES)})"
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(model, "lm_head"):
        return "not a *ForCausalLM with .model.layers and .lm_head"
    if getattr(cfg, "hidden_act", "silu") != "silu":
        return f"hidden_act {cfg.hidden_act!r}"
    if getattr(cfg, "pretraining_tp", 1) != 1:
        return "pretraining_tp != 1"
    if getattr(cfg, "use_sliding_window", False) or any(
            t != "full_attention" for t in (getattr(cfg, "layer_types", None) or [])):
        return "sliding-window attention"
    rope = getattr(inner, "rotary_emb", None)
    if rope is None or getattr(rope, "rope_type", "default") not in STATIC_ROPE_TYPES:
        return f"rope type {getattr(rope, 'rope_type', None)!r}"
    if float(getattr(cfg, "attention_dropout", 0.0) or 0.0) != 0.0:
        return "attention dropout"
    if getattr(cfg, "_attn_implementation", "sdpa") not in ("sdpa", "eager", None):
        return f"attention implementation {cfg._attn_implementation!r}"
    return None




def resolve_engine(engine: str, model, device) -> Optional["LeanLM"]:
    """The :class:`LeanLM` to use for ``model`` under the ``engine`` option, or None for HF's
    own ``generate``/forward: ``lean`` (an error if the model is not supported), ``hf``, or
    ``auto`` = lean on CPU when the model is supported. On GPUs ``auto`` keeps HF's kernels:
    the lean path is measured faster on CPU only (bench/grpo_step.py)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    why = unsupported_reason(model)
    if engine == "lean" and why is not None:
        raise SystemExit(f"engine lean: {why}; use engine hf or auto")
    if engine == "hf" or why is not None or (engine == "auto" and torch.device(device).type != "cpu"):
        return None
    return LeanLM(model)


def distinct_rows(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Runs of identical consecutive rows (the n samples of one prompt): the index of each
    run's first row, and for every row the number of its run."""
    same = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    if ids.shape[0] > 1:
        same[1:] = (ids[1:] == ids[:-1]).all(1) & (mask[1:] == mask[:-1]).all(1)
    return torch.nonzero(~same).squeeze(1), (~same).long().cumsum(0) - 1


def _linear_bias(mod) -> Optional[torch.Tensor]:
    return mod.bias if getattr(mod, "bias", None) is not None else None


class LeanLM:
    """Functional view of a Llama/Qwen2 ``*ForCausalLM`` (check :func:`unsupported_reason` first)."""

    def __init__(self, model):
        why = unsupported_reason(model)
        if why is not None:
            raise ValueError(f"LeanLM does not support this model: {why}")
        self.model = model
        cfg = model.config
        self.num_heads = cfg.num_attention_heads
        self.num_kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.eps = float(cfg.rms_norm_eps)
        self.scaling = self.head_dim ** -0.5

    # -- weights ------------------------------------------------------------------------

    def _packed_layers(self) -> list[tuple]:
        """Per layer: (ln1, W_qkv, b_qkv, W_o, b_o, ln2, W_gate_up, b_gate_up, W_down, b_down).

        Concatenating q/k/v and gate/up saves kernel launches; ``torch.cat`` is differentiable,
        so the packed weights also carry gradients back to the model's parameters."""
        packed = []
        for layer in self.model.model.layers:
            at, mlp = layer.self_attn, layer.mlp
            bq = [_linear_bias(m) for m in (at.q_proj, at.k_proj, at.v_proj)]
            b_qkv = None if all(b is None for b in bq) else torch.cat(
                [b if b is not None else torch.zeros_like(m.weight[:, 0])
                 for b, m in zip(bq, (at.q_proj, at.k_proj, at.v_proj))])
            bg = [_linear_bias(m) for m in (mlp.gate_proj, mlp.up_proj)]
            b_gu = None if all(b is None for b in bg) else torch.cat(
                [b if b is not None else torch.zeros_like(m.weight[:, 0]) for b, m in zip(bg, (mlp.gate_proj, mlp.up_proj))])
            packed.append((
                layer.input_layernorm.weight,
                torch.cat([at.q_proj.weight, at.k_proj.weight, at.v_proj.weight]), b_qkv,
                at.o_proj.weight, _linear_bias(at.o_proj),
                layer.post_attention_layernorm.weight,
                torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]), b_gu,
                mlp.down_proj.weight, _linear_bias(mlp.down_proj),
            ))
        return packed

    def _rope_tables(self, length: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and signed sin ``[length, head_dim]`` for positions 0..length-1 (HF's formula in
        float32, then cast). HF rotates with ``x * cos + cat(-x2, x1) * sin``; here the sign
        sits in the table, ``sin' = cat(-sin1, sin2)``, so that ``cat(-x2, x1) * sin ==
        roll(x, d/2) * sin'`` exactly and the rotation is one roll and one fused multiply-add."""
        rope = self.model.model.rotary_emb
        inv = rope.inv_freq.to(device=device, dtype=torch.float32)
        freqs = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv[None, :]
        emb = torch.cat([freqs, freqs], dim=-1)
        scale = float(getattr(rope, "attention_scaling", 1.0))
        cos, sin = (emb.cos() * scale).to(dtype), (emb.sin() * scale).to(dtype)
        half = self.head_dim // 2
        return cos, torch.cat([-sin[:, :half], sin[:, half:]], dim=-1)

    # -- building blocks -------------------------------------------------------------------

    def _norm(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        # HF: weight * (x32 * rsqrt(mean(x32^2) + eps)).to(dtype)
        x32 = x.float()
        y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return w * y.to(x.dtype)

    def _qkv(self, h: torch.Tensor, w_qkv, b_qkv, cos, sin):
        """h ``[N, L, H]`` -> q ``[N, L, h, d]``, k and v ``[N, L, kv, d]`` (q, k rotated;
        cos/sin ``[N, L, 1, d]``). q and k are rotated together, in one pass."""
        N, L, _ = h.shape
        d, nh, nkv = self.head_dim, self.num_heads, self.num_kv_heads
        qkv = F.linear(h, w_qkv, b_qkv).view(N, L, nh + 2 * nkv, d)
        qk = qkv[:, :, : nh + nkv]
        qk = torch.addcmul(qk * cos, qk.roll(d // 2, dims=-1), sin)
        return qk[:, :, :nh], qk[:, :, nh:], qkv[:, :, nh + nkv:]

    def _attend(self, q, k, v, mask) -> torch.Tensor:
        """SDPA of q ``[N, L, h, d]`` over k, v ``[N, Lk, kv, d]`` with a boolean mask
        ``[N, 1, L, Lk]`` (True = attend); output ``[N, L, h*d]``."""
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                             attn_mask=mask, scale=self.scaling,
                                             enable_gqa=self.num_kv_heads != self.num_heads)
        N, _, L, _ = out.shape
        return out.transpose(1, 2).reshape(N, L, -1)

    def _mlp(self, h, w_gu, b_gu, w_down, b_down) -> torch.Tensor:
        g, u = F.linear(h, w_gu, b_gu).chunk(2, dim=-1)
        return F.linear(F.silu(g) * u, w_down, b_down)

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        head = self.model.lm_head
        return F.linear(self._norm(h, self.model.model.norm.weight), head.weight, _linear_bias(head))

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.model.model.embed_tokens.weight)

    # -- full forward (prefill / prompts) ---------------------------------------------------

    def _prefix(self, ids: torch.Tensor, mask: torch.Tensor, layers, cos_t, sin_t):
        """Causal forward over left-padded ``ids [N, P]``; returns (last hidden ``[N, P, H]``,
        per-layer post-rope (k, v)). Padding query rows attend to themselves so that nothing
        becomes NaN (their outputs are never used; padding keys are masked for real rows)."""
        N, P = ids.shape
        dev = ids.device
        keep = mask.bool()
        pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
        cos, sin = cos_t[pos].unsqueeze(2), sin_t[pos].unsqueeze(2)
        causal = torch.ones(P, P, dtype=torch.bool, device=dev).tril()
        attn_mask = (causal[None] & keep[:, None, :]) | torch.eye(P, dtype=torch.bool, device=dev)[None]
        attn_mask = attn_mask[:, None]  # [N, 1, P, P]
        x = self._embed(ids)
        kvs = []
        for ln1, w_qkv, b_qkv, w_o, b_o, ln2, w_gu, b_gu, w_down, b_down in layers:
            q, k, v = self._qkv(self._norm(x, ln1), w_qkv, b_qkv, cos, sin)
            kvs.append((k, v))
            x = x + F.linear(self._attend(q, k, v, attn_mask), w_o, b_o)
            x = x + self._mlp(self._norm(x, ln2), w_gu, b_gu, w_down, b_down)
        return x, kvs

    def logits(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[N, L, V]`` logits of padded ``ids``, position ids ``cumsum(mask) - 1`` (HF's with
        left padding and ``position_ids`` from the mask, as ``generate`` does; with right
        padding they equal HF's default ``arange`` on every real token)."""
        cos_t, sin_t = self._rope_tables(ids.shape[1], ids.device, self.model.lm_head.weight.dtype)
        x, _ = self._prefix(ids, mask, self._packed_layers(), cos_t, sin_t)
        return self._head(x)

    # -- trainer log-prob forward -------------------------------------------------------------

    def completion_logits(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                          comp_ids: torch.Tensor, comp_mask: torch.Tensor) -> torch.Tensor:
        """``[S, T, V]`` logits predicting each completion token (differentiable).

        Same result as one forward over ``cat(prompt, completion)`` keeping the last T + 1
        positions but one: consecutive rows with identical prompts share one prompt pass.
        Prompts are left-padded (``prompt_mask``), completions right-padded (``comp_mask``;
        padded completion tokens are masked as keys, as in the plain forward)."""
        S, P = prompt_ids.shape
        T = comp_ids.shape[1]
        dev = prompt_ids.device
        firsts, group = distinct_rows(prompt_ids, prompt_mask)
        p_ids, p_mask = prompt_ids[firsts], prompt_mask[firsts]
        dtype = self.model.lm_head.weight.dtype
        cos_t, sin_t = self._rope_tables(P + T, dev, dtype)
        layers = self._packed_layers()
        xp, kvs = self._prefix(p_ids, p_mask, layers, cos_t, sin_t)

        # completion tokens: position = prompt length + t; keys = [its prompt ; completion so far]
        plen = prompt_mask.long().sum(1)
        pos = plen[:, None] + torch.arange(T, device=dev)[None, :]
        cos, sin = cos_t[pos].unsqueeze(2), sin_t[pos].unsqueeze(2)
        causal = torch.ones(T, T, dtype=torch.bool, device=dev).tril()
        c_keep = causal[None] & comp_mask.bool()[:, None, :]
        c_keep = c_keep | torch.eye(T, dtype=torch.bool, device=dev)[None]  # a padded query sees itself
        p_keep = prompt_mask.bool()[:, None, :].expand(S, T, P)
        attn_mask = torch.cat([p_keep, c_keep], dim=-1)[:, None]  # [S, 1, T, P + T]
        x = self._embed(comp_ids[:, : max(T - 1, 0)]) if T > 1 else None
        if x is not None:
            cos, sin = cos[:, : T - 1], sin[:, : T - 1]
            attn_mask = attn_mask[:, :, : T - 1, : P + T - 1]
            for (ln1, w_qkv, b_qkv, w_o, b_o, ln2, w_gu, b_gu, w_down, b_down), (kp, vp) in zip(layers, kvs):
                q, k, v = self._qkv(self._norm(x, ln1), w_qkv, b_qkv, cos, sin)
                k = torch.cat([kp.index_select(0, group), k], dim=1)
                v = torch.cat([vp.index_select(0, group), v], dim=1)
                x = x + F.linear(self._attend(q, k, v, attn_mask), w_o, b_o)
                x = x + self._mlp(self._norm(x, ln2), w_gu, b_gu, w_down, b_down)
        first = xp[:, -1:].index_select(0, group)  # last prompt position predicts completion token 0
        h = first if x is None else torch.cat([first, x], dim=1)
        return self._head(h)

    # -- sampling -------------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, max_new_tokens: int,
                 eos_token_ids: Sequence[int], pad_token_id: int, temperature: float = 1.0,
                 top_p: float = 1.0, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Sample up to ``max_new_tokens`` after left-padded prompts; returns ``[S, T]`` new tokens.

        temperature 0 = greedy. A row stops at its first EOS (kept) and is padded with
        ``pad_token_id`` after it; T is the number of steps until every row stopped (as
        ``generate`` returns). Random numbers come from ``generator`` (default: torch's global RNG).
        """
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        S, P = input_ids.shape
        dev = input_ids.device
        dtype = self.model.lm_head.weight.dtype
        layers = self._packed_layers()
        L = P + max_new_tokens
        cos_t, sin_t = self._rope_tables(L, dev, dtype)
        firsts, group = distinct_rows(input_ids, attention_mask)  # the n samples of a prompt: one prefill
        x, kvs = self._prefix(input_ids[firsts], attention_mask[firsts], layers, cos_t, sin_t)
        kv, g, d = self.num_kv_heads, self.num_heads // self.num_kv_heads, self.head_dim
        caches = []
        for k, v in kvs:  # preallocated [S, kv, L, d]; the prompt fills the first P slots
            kc = k.new_zeros(S, kv, L, d)
            vc = torch.zeros_like(kc)
            kc[:, :, :P] = k.transpose(1, 2).index_select(0, group)
            vc[:, :, :P] = v.transpose(1, 2).index_select(0, group)
            caches.append((kc, vc))
        # additive key mask, one row per (sequence, kv head): 0 = attend, -inf = padding/unused
        bias = torch.full((S, kv, 1, L), float("-inf"), dtype=dtype, device=dev)
        bias[..., :P] = torch.zeros((), dtype=dtype, device=dev).masked_fill(
            ~attention_mask.bool()[:, None, None, :], float("-inf"))
        pos = attention_mask.long().sum(1)  # position of the next token
        eos = torch.tensor(list(eos_token_ids), device=dev)
        done = torch.zeros(S, dtype=torch.bool, device=dev)
        out = torch.full((S, max_new_tokens), pad_token_id, dtype=torch.long, device=dev)
        logits = self._head(x[:, -1]).index_select(0, group)
        steps = 0
        for t in range(max_new_tokens):
            tok = self._pick(logits, temperature, top_p, generator)
            tok = torch.where(done, torch.full_like(tok, pad_token_id), tok)
            out[:, t] = tok
            steps = t + 1
            done = done | torch.isin(tok, eos)
            if t + 1 == max_new_tokens or bool(done.all()):
                break
            # one decode step for the new token at slot P + t: plain batched matmuls over
            # (sequence, kv head) with the query heads of a group as rows (no copy of the
            # cache); for one query this is cheaper than the fused SDPA kernel on CPU
            slot = P + t
            bias[..., slot] = 0.0
            n_keys = slot + 1
            step_bias = bias[..., :n_keys].reshape(S * kv, 1, n_keys)
            cos, sin = cos_t[pos][:, None, None], sin_t[pos][:, None, None]  # [S, 1, 1, d]
            h = self._embed(tok[:, None])
            for (ln1, w_qkv, b_qkv, w_o, b_o, ln2, w_gu, b_gu, w_down, b_down), (kc, vc) in zip(layers, caches):
                q, k, v = self._qkv(self._norm(h, ln1), w_qkv, b_qkv, cos, sin)
                kc[:, :, slot] = k[:, 0]
                vc[:, :, slot] = v[:, 0]
                scores = torch.baddbmm(step_bias, q.reshape(S * kv, g, d),
                                       kc[:, :, :n_keys].reshape(S * kv, n_keys, d).transpose(1, 2), alpha=self.scaling)
                probs = scores.float().softmax(-1).to(dtype)
                att = torch.bmm(probs, vc[:, :, :n_keys].reshape(S * kv, n_keys, d)).reshape(S, 1, kv * g * d)
                h = h + F.linear(att, w_o, b_o)
                h = h + self._mlp(self._norm(h, ln2), w_gu, b_gu, w_down, b_down)
            logits = self._head(h[:, 0])
            pos = pos + 1
        return out[:, :steps].contiguous()

    @staticmethod
    def _pick(logits: torch.Tensor, temperature: float, top_p: float, generator) -> torch.Tensor:
        """Next token per row: greedy, or sampling at ``temperature`` from the top-p nucleus
        (the smallest set of most likely tokens whose probability reaches top_p; the most
        likely token is always kept)."""
        check_finite_logits(logits)
        if temperature == 0:
            return logits.argmax(-1)
        scores = logits.float() / temperature
        if top_p < 1.0:
            sorted_scores, order = scores.sort(dim=-1, descending=False)
            cum = sorted_scores.softmax(-1).cumsum(-1)
            drop = cum <= (1.0 - top_p)
            drop[:, -1] = False
            scores = scores.masked_fill(drop.scatter(1, order, drop), float("-inf"))
        # inverse-CDF sampling: one uniform number per row (torch.multinomial draws one per
        # vocabulary entry, which costs more than the model step for small models)
        probs = scores.softmax(-1)
        cdf = probs.cumsum(-1)
        u = torch.rand(cdf.shape[0], 1, generator=generator, device=cdf.device, dtype=cdf.dtype) * cdf[:, -1:]
        idx = (cdf <= u).sum(-1)  # first index whose cdf exceeds u: zero-probability tokens never win
        last = probs.shape[-1] - 1 - (probs.flip(-1) > 0).to(torch.int8).argmax(-1)  # rounding guard
        return torch.minimum(idx, last)
