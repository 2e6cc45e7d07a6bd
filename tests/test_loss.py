"""Clipped surrogate loss, aggregations, KL, masking, gradients, log-probs and entropy."""

from __future__ import annotations

import math

import pytest
import torch

from obe.rl.loss import AGGREGATIONS, LossConfig, aggregate, k3_kl, masked_mean, policy_loss, token_entropy, token_logprobs

torch.set_num_threads(1)
LN2 = math.log(2)


def close(a, b, tol=1e-6):
    torch.testing.assert_close(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64),
                               rtol=0, atol=tol)


def clip_case():
    """B = 2, T = 3, eps_low = .2, eps_high = .28 (clip range [.8, 1.28]).

    row 0, A = +1, ratios [1, 1.5, .5], mask [1, 1, 1]
      t0: min(1*1, 1*1)         = 1
      t1: min(1.5, 1.28)        = 1.28   high clip active (ratio > 1.28, A > 0)
      t2: min(.5, .8)           = .5     not clipped (unclipped is smaller)
    row 1, A = -2, ratios [.5, 1.5, pad], mask [1, 1, 0]
      t0: min(-1, .8*-2 = -1.6) = -1.6   low clip active (ratio < .8, A < 0)
      t1: min(-3, 1.28*-2)      = -3     not clipped
    per-token loss = -obj: [-1, -1.28, -.5], [1.6, 3, pad]; sum = 1.82 over 5 tokens
    """
    old = torch.tensor([[-1.0, -2.0, -0.5], [-1.5, -0.7, -3.0]])
    ratio = torch.tensor([[1.0, 1.5, 0.5], [0.5, 1.5, 1.0]])
    logp = (old + ratio.log()).requires_grad_(True)
    adv = torch.tensor([1.0, -2.0])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    return logp, old, adv, mask


KW = dict(eps_low=0.2, eps_high=0.28)


@pytest.mark.parametrize(
    "agg, kw, expected",
    [
        ("token_mean", {}, 1.82 / 5),  # 0.364
        ("seq_mean_token_mean", {}, (-2.78 / 3 + 4.6 / 2) / 2),  # (-.926667 + 2.3) / 2 = .686667
        ("dr_grpo", {"max_completion_length": 4}, 1.82 / (2 * 4)),  # .2275
        ("dr_grpo", {}, 1.82 / (2 * 3)),  # default length = padded T = 3
    ],
)
def test_aggregations_by_hand(agg, kw, expected):
    logp, old, adv, mask = clip_case()
    loss, _ = policy_loss(logp, old, adv, mask, agg=agg, **KW, **kw)
    close(loss, expected)


def test_clip_stats_and_gradient_with_clipping():
    logp, old, adv, mask = clip_case()
    loss, stats = policy_loss(logp, old, adv, mask, agg="token_mean", **KW)
    # one low-clipped and one high-clipped token out of 5
    close(stats["clip_frac_low"], 0.2)
    close(stats["clip_frac_high"], 0.2)
    close(stats["clip_frac"], 0.4)
    close(stats["ratio_mean"], (1 + 1.5 + 0.5 + 0.5 + 1.5) / 5)  # 1.0
    close([stats["ratio_min"], stats["ratio_max"]], [0.5, 1.5])
    close(stats["adv_mean"], (1 + 1 + 1 - 2 - 2) / 5)  # -0.2
    close(stats["surrogate_mean"], -1.82 / 5)
    assert stats["num_tokens"] == 5 and "kl_mean" not in stats
    close(stats["loss"], loss.item())
    loss.backward()
    # d loss / d logp = -(ratio * A) / 5 where the unclipped term is active, 0 where clipped or padding:
    # row 0: [-1/5, 0, -.5/5] ; row 1: [0, -(1.5 * -2)/5 = .6, 0]
    close(logp.grad, [[-0.2, 0.0, -0.1], [0.0, 0.6, 0.0]])


def test_symmetric_clip_moves_the_high_boundary():
    # with eps_high = .2 instead of .28: row 0 t1 becomes min(1.5, 1.2) = 1.2 -> sum = 1.82 + .08 = 1.90
    logp, old, adv, mask = clip_case()
    loss, stats = policy_loss(logp, old, adv, mask, eps_low=0.2, eps_high=0.2)
    close(loss, 1.90 / 5)
    close(stats["clip_frac_high"], 0.2)


@pytest.mark.parametrize("agg", AGGREGATIONS)
def test_gradient_at_ratio_one_is_A_over_normaliser(agg):
    # on-policy (old = logp.detach(), ratio = 1): d loss / d logp_t = -A_t / normaliser
    logp = torch.tensor([[-1.0, -2.0, -3.0, -4.0], [-0.5, -0.5, 9.9, 9.9]], requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    adv = torch.tensor([[0.5, -1.0, 2.0, 1.0], [3.0, -3.0, 7.0, 7.0]])  # token-level A
    loss, stats = policy_loss(logp, None, adv, mask, agg=agg, max_completion_length=5)
    loss.backward()
    m = mask.float()
    if agg == "token_mean":  # 6 tokens
        expected = -adv * m / 6
    elif agg == "seq_mean_token_mean":  # B = 2 sequences of 4 and 2 tokens
        expected = -adv * m / (2 * torch.tensor([[4.0], [2.0]]))
    else:  # dr_grpo: B * L = 2 * 5
        expected = -adv * m / 10
    close(logp.grad, expected)
    assert stats["clip_frac"] == 0 and stats["ratio_mean"] == 1


def test_sequence_and_token_advantages_agree():
    logp, old, _, mask = clip_case()
    a, _ = policy_loss(logp, old, torch.tensor([1.0, -2.0]), mask, **KW)
    b, _ = policy_loss(logp, old, torch.tensor([[1.0] * 3, [-2.0] * 3]), mask, **KW)
    assert a.item() == b.item()


def test_k3_kl_value_and_gradient():
    # d = ref - logp: d = ln2 -> 2 - .693147 - 1 = .306853 ; d = -1 -> e^-1 + 1 - 1 = .367879 ; d = 0 -> 0
    logp = torch.tensor([[0.0, 0.0, 1.0]], requires_grad=True)
    ref = torch.tensor([[LN2, -1.0, 1.0]])
    close(k3_kl(logp, ref), [[1 - LN2, math.exp(-1), 0.0]])
    # A = 0 -> surrogate 0: loss = beta * mean(kl) = .1 * (.306853 + .367879 + 0) / 3 = .0224911
    mask = torch.ones(1, 3)
    loss, stats = policy_loss(logp, None, torch.zeros(1), mask, ref_logp_BT=ref, beta=0.1)
    close(loss, 0.1 * (1 - LN2 + math.exp(-1)) / 3)
    close(stats["kl_mean"], (1 - LN2 + math.exp(-1)) / 3)
    loss.backward()
    # d kl / d logp = 1 - exp(ref - logp): [1 - 2, 1 - e^-1, 0] ; times beta / 3
    close(logp.grad, [[-0.1 / 3, 0.1 * (1 - math.exp(-1)) / 3, 0.0]])


def test_beta_zero_needs_no_reference():
    logp, old, adv, mask = clip_case()
    base, stats = policy_loss(logp, old, adv, mask, ref_logp_BT=None, beta=0.0, **KW)
    assert "kl_mean" not in stats
    # a reference with beta = 0 is reported but does not change the loss
    ref = old - 0.3
    with_ref, stats2 = policy_loss(logp, old, adv, mask, ref_logp_BT=ref, beta=0.0, **KW)
    assert with_ref.item() == base.item() and stats2["kl_mean"] > 0
    with pytest.raises(ValueError):
        policy_loss(logp, old, adv, mask, beta=0.04)


def test_padding_garbage_does_not_leak():
    logp, old, adv, mask = clip_case()
    ref = old.clone()
    clean_loss, _ = policy_loss(logp, old, adv, mask, ref_logp_BT=ref, beta=0.1, **KW)
    (g_clean,) = torch.autograd.grad(clean_loss, logp)
    # put NaN / inf in every padded position of every input
    logp2 = logp.detach().clone()
    logp2[1, 2] = float("nan")
    logp2.requires_grad_(True)
    old2, ref2 = old.clone(), ref.clone()
    old2[1, 2], ref2[1, 2] = float("inf"), float("-inf")
    adv_tok = adv[:, None].expand(2, 3).clone()
    adv_tok[1, 2] = float("nan")
    for agg in AGGREGATIONS:
        a, _ = policy_loss(logp, old, adv, mask, ref_logp_BT=ref, beta=0.1, agg=agg, **KW)
        b, stats = policy_loss(logp2, old2, adv_tok, mask, ref_logp_BT=ref2, beta=0.1, agg=agg, **KW)
        assert torch.isfinite(b) and b.item() == pytest.approx(a.item(), abs=1e-7)
        assert all(math.isfinite(v) for v in stats.values())
    b, _ = policy_loss(logp2, old2, adv_tok, mask, ref_logp_BT=ref2, beta=0.1, **KW)
    (g,) = torch.autograd.grad(b, logp2)
    assert torch.isfinite(g).all() and g[1, 2] == 0
    close(g, g_clean)


@pytest.mark.parametrize("agg", AGGREGATIONS)
def test_micro_batches_sum_to_full_batch(agg):
    logp, old, adv, mask = clip_case()
    kw = dict(agg=agg, max_completion_length=4, **KW)
    full, _ = policy_loss(logp, old, adv, mask, **kw)
    totals = dict(total_tokens=float(mask.sum()), num_sequences=2)
    parts = [policy_loss(logp[i : i + 1], old[i : i + 1], adv[i : i + 1], mask[i : i + 1], **kw, **totals)[0] for i in (0, 1)]
    close(sum(parts), full)


def test_empty_rows_and_helpers():
    # a sequence with no tokens counts as 0 in seq_mean_token_mean: (mean(2, 4) + 0) / 2 = 1.5
    x = torch.tensor([[2.0, 4.0], [5.0, 5.0]])
    m = torch.tensor([[1, 1], [0, 0]])
    close(aggregate(x, m, "seq_mean_token_mean"), 1.5)
    close(aggregate(x, m, "token_mean"), 3.0)
    close(masked_mean(x, torch.zeros(2, 2)), 0.0)
    with pytest.raises(ValueError):
        aggregate(x, m, "sum")
    with pytest.raises(ValueError):
        LossConfig(agg="mean")
    cfg = LossConfig(eps_high=0.28, agg="dr_grpo", max_completion_length=4)
    logp, old, adv, mask = clip_case()
    close(policy_loss(logp, old, adv, mask, **vars(cfg))[0], 1.82 / 8)


# -- log-probs and entropy ----------------------------------------------------------------


def test_token_logprobs_by_hand():
    # logits [0, ln 3] -> softmax [1/4, 3/4]: log p(1) = ln .75 = -.287682, log p(0) = ln .25 = -1.386294
    logits = torch.tensor([[[0.0, math.log(3)], [0.0, math.log(3)]]])  # [B=1, T=2, V=2]
    close(token_logprobs(logits, torch.tensor([[1, 0]])), [[math.log(0.75), math.log(0.25)]])
    # temperature 2: logits [0, ln3 / 2] -> p(0) = 1 / (1 + sqrt 3) = .366025
    close(token_logprobs(logits, torch.tensor([[0, 0]]), temperature=2.0), [[-math.log(1 + math.sqrt(3))] * 2])
    # a -inf (banned) logit: [0, 0, -inf] -> log p(0) = -ln 2
    close(token_logprobs(torch.tensor([[[0.0, 0.0, -math.inf]]]), torch.tensor([[0]])), [[-LN2]])


def test_token_entropy_by_hand():
    # [1/4, 3/4]: .25 ln 4 + .75 ln(4/3) = .346574 + .215762 = .562335 ; uniform over 4: ln 4 ; [0, 0, -inf]: ln 2
    logits = torch.tensor([[[0.0, math.log(3), -math.inf, -math.inf], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, -math.inf, -math.inf]]])
    close(token_entropy(logits), [[0.25 * math.log(4) + 0.75 * math.log(4 / 3), math.log(4), LN2]])


def test_chunked_matches_full_log_softmax_and_gradients():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g, dtype=torch.float64, requires_grad=True)
    ids = torch.randint(0, 11, (3, 5), generator=g)
    ref = torch.log_softmax(logits, -1).gather(-1, ids[..., None]).squeeze(-1)
    out = token_logprobs(logits, ids, chunk_rows=4)  # 15 rows -> chunks of 4, 4, 4, 3
    close(out, ref, tol=1e-12)
    (g_ref,) = torch.autograd.grad(ref.sum(), logits)
    (g_out,) = torch.autograd.grad(out.sum(), logits)
    close(g_out, g_ref, tol=1e-12)
    p = torch.softmax(logits, -1)
    close(token_entropy(logits, chunk_rows=4), -(p * p.log()).sum(-1), tol=1e-12)


def test_bf16_logits_give_float32():
    logits = torch.randn(2, 3, 7).to(torch.bfloat16)
    ids = torch.zeros(2, 3, dtype=torch.long)
    out = token_logprobs(logits, ids)
    assert out.dtype == torch.float32 and token_entropy(logits).dtype == torch.float32
    close(out, torch.log_softmax(logits.float(), -1)[..., 0], tol=1e-6)
    with pytest.raises(ValueError):
        token_logprobs(logits, ids[:, :2])
