"""Clipped policy-gradient loss (GRPO / DAPO / Dr. GRPO), per-token log-probs, entropy.

Per token t of completion b (all tensors ``[B, T]``, B = sequences, e.g. questions x
samples flattened):

    ratio    = exp(logp - old_logp)
    obj      = min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A)   (DAPO clip-higher)
    kl (k3)  = exp(ref - logp) - (ref - logp) - 1                          (>= 0)
    loss_t   = -obj + beta * kl

``beta = 0`` means no reference model: ``ref_logp_BT=None`` is accepted (if a reference is
given with beta = 0, its KL is reported but not added). ``A`` is ``[B]`` (per sequence) or
``[B, T]`` (per token, e.g. from :func:`obe.rl.bonuses.token_advantages`).

Aggregations over the completion mask m (1 = real completion token, 0 = padding):

* ``token_mean`` (DAPO):             sum_bt m*loss / sum_bt m
* ``seq_mean_token_mean`` (GRPO):    mean_b [ sum_t m*loss / sum_t m ]   (empty rows count as 0)
* ``dr_grpo`` (Dr. GRPO):            sum_bt m*loss / (B * max_completion_length)

For gradient accumulation, pass the whole batch's ``total_tokens`` (token_mean) or
``num_sequences`` (the other two) so that summing the micro-batch losses gives the
full-batch loss. Padding positions never reach the arithmetic (they are replaced by 0
first), so NaN/inf there cannot leak into the loss or its gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

AGGREGATIONS: tuple[str, ...] = ("token_mean", "seq_mean_token_mean", "dr_grpo")


@dataclass(frozen=True)
class LossConfig:
    """Options of :func:`policy_loss` (``policy_loss(..., **vars(cfg))``).

    The defaults are the trainers' (obe.training.config.TrainConfig takes them from here):
    eps_high = 0.28 is DAPO's clip-higher (eps_high = eps_low = 0.2 gives PPO's symmetric clip);
    max_completion_length is the generation limit, used only by ``dr_grpo`` (defaults to the
    batch's padded T when None).
    """

    eps_low: float = 0.2
    eps_high: float = 0.28
    beta: float = 0.0
    agg: str = "token_mean"
    max_completion_length: Optional[int] = None

    def __post_init__(self) -> None:
        _check(self.agg, self.eps_low, self.eps_high, self.beta)


def _check(agg: str, eps_low: float, eps_high: float, beta: float) -> None:
    if agg not in AGGREGATIONS:
        raise ValueError(f"agg must be one of {AGGREGATIONS}, got {agg!r}")
    if not (0.0 <= eps_low < 1.0) or not eps_high >= 0.0:
        raise ValueError(f"need 0 <= eps_low < 1 and eps_high >= 0, got {eps_low}, {eps_high}")
    if not beta >= 0.0:
        raise ValueError(f"beta must be >= 0, got {beta}")


def masked_mean(x_BT: torch.Tensor, mask_BT: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over the positions where ``mask`` is nonzero (0 if there are none)."""
    m = mask_BT.to(torch.bool)
    x = torch.where(m, x_BT, torch.zeros((), dtype=x_BT.dtype, device=x_BT.device))
    return x.sum() / m.sum().clamp(min=1)


def aggregate(
    loss_BT: torch.Tensor,
    mask_BT: torch.Tensor,
    agg: str = "token_mean",
    *,
    max_completion_length: Optional[int] = None,
    total_tokens: Optional[float] = None,
    num_sequences: Optional[float] = None,
) -> torch.Tensor:
    """Reduce a per-token ``[B, T]`` loss to a scalar (see the module docstring)."""
    if agg not in AGGREGATIONS:
        raise ValueError(f"agg must be one of {AGGREGATIONS}, got {agg!r}")
    m_BT = mask_BT.to(torch.bool)
    x_BT = torch.where(m_BT, loss_BT, torch.zeros((), dtype=loss_BT.dtype, device=loss_BT.device))
    n_seq = loss_BT.shape[0] if num_sequences is None else num_sequences
    if agg == "token_mean":
        denom = m_BT.sum().clamp(min=1) if total_tokens is None else total_tokens
        return x_BT.sum() / denom
    if agg == "seq_mean_token_mean":
        per_seq_B = x_BT.sum(dim=-1) / m_BT.sum(dim=-1).clamp(min=1)
        return per_seq_B.sum() / n_seq
    length = loss_BT.shape[-1] if max_completion_length is None else max_completion_length
    return x_BT.sum() / (n_seq * length)


def k3_kl(logp_BT: torch.Tensor, ref_logp_BT: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(pi || pi_ref): ``exp(d) - d - 1`` with ``d = ref - logp``."""
    d = ref_logp_BT - logp_BT
    return torch.exp(d) - d - 1


def policy_loss(
    logp_BT: torch.Tensor,
    old_logp_BT: Optional[torch.Tensor],
    adv: torch.Tensor,
    mask_BT: torch.Tensor,
    *,
    ref_logp_BT: Optional[torch.Tensor] = None,
    eps_low: float = LossConfig.eps_low,
    eps_high: float = LossConfig.eps_high,
    beta: float = LossConfig.beta,
    agg: str = LossConfig.agg,
    max_completion_length: Optional[int] = None,
    total_tokens: Optional[float] = None,
    num_sequences: Optional[float] = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The clipped-surrogate loss (to minimise) and a dict of float stats.

    ``logp_BT``: current policy log-probs of the completion tokens (with grad);
    ``old_logp_BT``: the behaviour policy's (None = ``logp.detach()``, one update per batch);
    ``adv``: ``[B]`` or ``[B, T]``; ``mask_BT``: completion mask (1 real, 0 padding).
    Advantages, old and reference log-probs are treated as constants (detached).

    Stats (token means over the mask): ``clip_frac_low`` (ratio < 1 - eps_low and A < 0),
    ``clip_frac_high`` (ratio > 1 + eps_high and A > 0), ``clip_frac`` (either: tokens
    whose gradient is cut by the clip), ``kl_mean`` (if a reference is given),
    ``ratio_mean``, ``ratio_min``, ``ratio_max``, ``adv_mean``, ``surrogate_mean``,
    ``num_tokens``, ``loss``.
    """
    _check(agg, eps_low, eps_high, beta)
    if beta > 0 and ref_logp_BT is None:
        raise ValueError("beta > 0 needs ref_logp_BT (reference-policy log-probs)")
    if logp_BT.dim() != 2 or mask_BT.shape != logp_BT.shape:
        raise ValueError(f"logp_BT {tuple(logp_BT.shape)} and mask_BT {tuple(mask_BT.shape)} must be the same [B, T]")
    m_BT = mask_BT.to(torch.bool)
    zero = torch.zeros((), dtype=logp_BT.dtype, device=logp_BT.device)

    def clean(x: torch.Tensor) -> torch.Tensor:  # padding -> 0 before any arithmetic
        return torch.where(m_BT, x.to(logp_BT.dtype), zero)

    logp = clean(logp_BT)
    old = logp.detach() if old_logp_BT is None else clean(old_logp_BT.detach())
    if adv.dim() == 1:
        adv = adv[:, None]
    adv_BT = clean(adv.detach().expand_as(logp_BT))

    ratio_BT = torch.exp(logp - old)
    surr_BT = ratio_BT * adv_BT
    surr_clip_BT = torch.clamp(ratio_BT, 1.0 - eps_low, 1.0 + eps_high) * adv_BT
    obj_BT = torch.minimum(surr_BT, surr_clip_BT)
    per_token_BT = -obj_BT
    kl_BT = None
    if ref_logp_BT is not None:
        kl_BT = k3_kl(logp, clean(ref_logp_BT.detach()))
        if beta > 0:
            per_token_BT = per_token_BT + beta * kl_BT
    loss = aggregate(
        per_token_BT, m_BT, agg,
        max_completion_length=max_completion_length, total_tokens=total_tokens, num_sequences=num_sequences,
    )

    with torch.no_grad():
        r = ratio_BT.detach()
        low = (r < 1.0 - eps_low) & (adv_BT < 0) & m_BT
        high = (r > 1.0 + eps_high) & (adv_BT > 0) & m_BT
        any_tok = bool(m_BT.any())
        big = torch.tensor(float("inf"), dtype=r.dtype, device=r.device)
        names = ["clip_frac_low", "clip_frac_high", "clip_frac", "ratio_mean", "ratio_min", "ratio_max",
                 "adv_mean", "surrogate_mean", "num_tokens", "loss"]
        vals = [
            masked_mean(low.to(r.dtype), m_BT),
            masked_mean(high.to(r.dtype), m_BT),
            masked_mean((low | high).to(r.dtype), m_BT),
            masked_mean(r, m_BT),
            torch.where(m_BT, r, big).min() if any_tok else zero,
            torch.where(m_BT, r, -big).max() if any_tok else zero,
            masked_mean(adv_BT, m_BT),
            masked_mean(obj_BT.detach(), m_BT),
            m_BT.sum().to(r.dtype),
            loss.detach().to(r.dtype),
        ]
        if kl_BT is not None:
            names.append("kl_mean")
            vals.append(masked_mean(kl_BT.detach(), m_BT))
        stats = dict(zip(names, torch.stack([v.to(r.dtype) for v in vals]).tolist()))
    return loss, stats


def _rows(logits_BTV: torch.Tensor, chunk_rows: int):
    flat = logits_BTV.reshape(-1, logits_BTV.shape[-1])
    dtype = torch.promote_types(flat.dtype, torch.float32)
    for start in range(0, flat.shape[0], chunk_rows):
        yield start, flat[start : start + chunk_rows].to(dtype)


def token_logprobs(
    logits_BTV: torch.Tensor,
    ids_BT: torch.Tensor,
    temperature: float = 1.0,
    chunk_rows: int = 1024,
) -> torch.Tensor:
    """``log softmax(logits / temperature)[ids]`` per position, ``[B, T]``, in >= float32.

    ``logits_BTV[b, t]`` must already be the distribution over ``ids_BT[b, t]`` (shift the
    model's logits by one outside). Computed as ``z[id] - logsumexp(z)`` over chunks of
    ``chunk_rows`` positions, so only one chunk is ever upcast (no full ``[B, T, V]``
    float32 log-softmax copy). Use the sampling temperature so ratios match the sampler.
    """
    if logits_BTV.shape[:-1] != ids_BT.shape:
        raise ValueError(f"logits {tuple(logits_BTV.shape)} vs ids {tuple(ids_BT.shape)}")
    ids = ids_BT.reshape(-1)
    out = []
    for start, z in _rows(logits_BTV, chunk_rows):
        if temperature != 1.0:
            z = z / temperature
        sel = z.gather(-1, ids[start : start + z.shape[0], None]).squeeze(-1)
        out.append(sel - torch.logsumexp(z, dim=-1))
    if not out:  # no positions at all
        return logits_BTV.new_zeros(ids_BT.shape, dtype=torch.promote_types(logits_BTV.dtype, torch.float32))
    return torch.cat(out).reshape(ids_BT.shape)


def token_entropy(logits_BTV: torch.Tensor, temperature: float = 1.0, chunk_rows: int = 1024) -> torch.Tensor:
    """Entropy ``-sum_v p log p`` of ``softmax(logits / temperature)`` per position, ``[B, T]``.

    Chunked like :func:`token_logprobs`; ``-inf`` logits (p = 0) contribute 0. Meant for
    statistics: call it under ``torch.no_grad()`` (with ``-inf`` logits its gradient is NaN).
    """
    out = []
    for _, z in _rows(logits_BTV, chunk_rows):
        if temperature != 1.0:
            z = z / temperature
        logp = torch.log_softmax(z, dim=-1)
        p = logp.exp()
        plogp = torch.where(p > 0, p * logp, torch.zeros((), dtype=p.dtype, device=p.device))
        out.append(-plogp.sum(dim=-1))
    if not out:  # no positions at all
        return logits_BTV.new_zeros(logits_BTV.shape[:-1], dtype=torch.promote_types(logits_BTV.dtype, torch.float32))
    return torch.cat(out).reshape(logits_BTV.shape[:-1])
