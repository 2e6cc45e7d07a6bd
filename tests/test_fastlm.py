"""obe.engines.fastlm: the lean forward equals HF's forward, gradients and greedy generation included."""

from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from obe.engines.fastlm import LeanLM, unsupported_reason

VOCAB, PAD, EOS = 40, 0, 2


def _random(model_cls, config_cls, **kw):
    """A small random model of that class (seeded); ``kw`` overrides the shared settings."""
    cfg = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
               max_position_embeddings=128, pad_token_id=PAD, eos_token_id=EOS, bos_token_id=1)
    cfg.update(kw)
    torch.manual_seed(0)
    return model_cls(config_cls(**cfg)).float()


def llama(**kw):
    return _random(LlamaForCausalLM, LlamaConfig, **{"num_key_value_heads": 2, "tie_word_embeddings": False, **kw})


def qwen2(**kw):
    model = _random(Qwen2ForCausalLM, Qwen2Config, **{"num_key_value_heads": 1, "tie_word_embeddings": True, **kw})
    with torch.no_grad():  # Qwen2 has q/k/v biases, zero at init: make them matter
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_(0, 0.5)
    return model


MODELS = {
    "llama-gqa": lambda: llama(),
    "llama-mha-tied-bias": lambda: llama(num_key_value_heads=4, tie_word_embeddings=True, attention_bias=True,
                                         mlp_bias=True),
    "llama3-rope": lambda: llama(rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                                  "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                  "original_max_position_embeddings": 32}),
    "qwen2": lambda: qwen2(),
}


def left_padded(rows):
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), PAD, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r)
        mask[i, width - len(r):] = 1
    return ids, mask


def batch(n_per_prompt=3, T=7, seed=0):
    """Prompts of different lengths, each repeated n times, and right-padded completions."""
    g = torch.Generator().manual_seed(seed)
    prompts = [[1] + torch.randint(3, VOCAB, (k,), generator=g).tolist() for k in (5, 9, 2)]
    p_ids, p_mask = left_padded([p for p in prompts for _ in range(n_per_prompt)])
    S = p_ids.shape[0]
    c_ids = torch.randint(3, VOCAB, (S, T), generator=g)
    lengths = torch.randint(1, T + 1, (S,), generator=g)
    lengths[0] = T  # one full row
    c_mask = (torch.arange(T)[None] < lengths[:, None]).long()
    c_ids = c_ids.masked_fill(c_mask == 0, PAD)
    return p_ids, p_mask, c_ids, c_mask


def hf_completion_logits(model, p_ids, p_mask, c_ids, c_mask):
    """The trainer's reference forward (obe.engines.policy.forward_logits with the HF model)."""
    from obe.engines.policy import forward_logits

    return forward_logits(model, p_ids, p_mask, c_ids, c_mask)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_logits_match_hf_forward(name):
    model = MODELS[name]().eval()
    ids, mask = left_padded([[1, 5, 6, 7, 8, 9, 10], [1, 11, 12], [1, 13, 14, 15, 16]])
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
        got = LeanLM(model).logits(ids, mask)
    real = mask.bool()
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got[real], ref[real], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_completion_logits_and_gradients_match_hf(name):
    model = MODELS[name]().train()
    p_ids, p_mask, c_ids, c_mask = batch()
    ref = hf_completion_logits(model, p_ids, p_mask, c_ids, c_mask)
    keep = c_mask.bool()
    weights = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1))
    (ref * weights)[keep].sum().backward()
    ref_grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)

    got = LeanLM(model).completion_logits(p_ids, p_mask, c_ids, c_mask)
    assert got.shape == ref.shape
    torch.testing.assert_close(got[keep], ref[keep].detach(), rtol=1e-5, atol=1e-5)
    (got * weights)[keep].sum().backward()
    for k, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[k], rtol=1e-4, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")


def test_completion_logits_without_shared_prompts_and_single_token():
    model = llama().eval()
    p_ids, p_mask, c_ids, c_mask = batch(n_per_prompt=1, T=1)
    with torch.no_grad():
        ref = hf_completion_logits(model, p_ids, p_mask, c_ids, c_mask)
        got = LeanLM(model).completion_logits(p_ids, p_mask, c_ids, c_mask)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["llama-gqa", "qwen2"])
def test_greedy_generation_matches_hf_generate(name):
    model = MODELS[name]().eval()
    ids, mask = left_padded([[1, 5, 6, 7], [1, 8], [1, 9, 10, 11, 12, 13]])
    cfg = GenerationConfig(do_sample=False, max_new_tokens=12, eos_token_id=[EOS, 3], pad_token_id=PAD)
    with torch.no_grad():
        ref = model.generate(input_ids=ids, attention_mask=mask, generation_config=cfg)[:, ids.shape[1]:]
    got = LeanLM(model).generate(ids, mask, max_new_tokens=12, eos_token_ids=[EOS, 3], pad_token_id=PAD,
                                 temperature=0)
    assert torch.equal(got, ref)


def test_generation_stops_at_eos_and_pads_after_it():
    model = llama().eval()
    with torch.no_grad():  # make EOS likely so that rows stop at different steps
        model.lm_head.weight[EOS] += 0.6 * model.model.norm.weight.sign() * 3
    ids, mask = left_padded([[1, 5, 6, 7]] * 16)
    lean = LeanLM(model)
    out = lean.generate(ids, mask, max_new_tokens=20, eos_token_ids=[EOS], pad_token_id=PAD,
                        generator=torch.Generator().manual_seed(0))
    is_eos = out == EOS
    assert is_eos.any(1).sum() >= 2, out
    for row in out.tolist():
        if EOS in row:
            j = row.index(EOS)
            assert all(t == PAD for t in row[j + 1:]), row
    # the batch ends once every row stopped, or at max_new_tokens
    assert out.shape[1] == 20 or bool(is_eos.any(1).all())
    again = lean.generate(ids, mask, max_new_tokens=20, eos_token_ids=[EOS], pad_token_id=PAD,
                          generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_sampling_follows_the_model_distribution():
    """First-token frequencies over many rows match softmax(logits / T), nucleus applied."""
    model = llama().eval()
    ids, mask = left_padded([[1, 5, 6]] * 4000)
    lean = LeanLM(model)
    with torch.no_grad():
        probs = (lean.logits(ids[:1], mask[:1])[0, -1] / 0.7).softmax(-1)
    out = lean.generate(ids, mask, max_new_tokens=1, eos_token_ids=[EOS], pad_token_id=PAD, temperature=0.7,
                        generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(out[:, 0], minlength=VOCAB).float() / out.shape[0]
    assert (freq - probs).abs().max() < 0.03  # ~4 standard errors at 4000 draws
    # top-p: only the nucleus is ever drawn
    sorted_p, order = probs.sort(descending=True)
    nucleus = set(order[: int((sorted_p.cumsum(0) < 0.5).sum()) + 1].tolist())
    out = lean.generate(ids, mask, max_new_tokens=1, eos_token_ids=[EOS], pad_token_id=PAD, temperature=0.7,
                        top_p=0.5, generator=torch.Generator().manual_seed(0))
    assert set(out[:, 0].tolist()) == nucleus


def test_unsupported_models_are_named():
    assert unsupported_reason(llama()) is None
    assert unsupported_reason(qwen2()) is None
    assert "sliding" in unsupported_reason(qwen2(use_sliding_window=True, sliding_window=4, max_window_layers=0))
    assert "dropout" in unsupported_reason(llama(attention_dropout=0.1))
    assert "model type" in unsupported_reason(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="does not support"):
        LeanLM(llama(attention_dropout=0.1))


def test_trainer_engine_choice():
    from obe.engines.fastlm import resolve_engine

    cpu = torch.device("cpu")
    assert isinstance(resolve_engine("auto", llama(), cpu), LeanLM)
    assert isinstance(resolve_engine("lean", qwen2(), cpu), LeanLM)
    assert resolve_engine("hf", llama(), cpu) is None
    assert resolve_engine("auto", llama(), torch.device("cuda")) is None  # GPUs keep HF's kernels
    unsupported = llama(attention_dropout=0.1)
    assert resolve_engine("auto", unsupported, cpu) is None
    with pytest.raises(SystemExit, match="attention dropout"):
        resolve_engine("lean", unsupported, cpu)
    with pytest.raises(ValueError, match="engine"):
        resolve_engine("fast", llama(), cpu)


def test_distinct_rows_groups_consecutive_duplicates():
    from obe.engines.fastlm import distinct_rows

    ids = torch.tensor([[0, 1, 5], [0, 1, 5], [1, 4, 5], [0, 1, 5], [0, 1, 5]])
    mask = torch.tensor([[0, 1, 1]] * 2 + [[1, 1, 1]] + [[0, 1, 1], [1, 1, 1]])  # same ids, other mask: new run
    firsts, group = distinct_rows(ids, mask)
    assert firsts.tolist() == [0, 2, 3, 4] and group.tolist() == [0, 0, 1, 2, 3]


def test_generation_with_repeated_prompts_matches_one_prompt_at_a_time():
    """One prefill per distinct prompt (rows repeated n times) gives what separate calls give."""
    model = qwen2().eval()
    prompts = [[1, 5, 6, 7], [1, 8], [1, 9, 10, 11, 12, 13]]
    ids, mask = left_padded([p for p in prompts for _ in range(3)])
    lean = LeanLM(model)
    got = lean.generate(ids, mask, max_new_tokens=9, eos_token_ids=[EOS], pad_token_id=PAD, temperature=0)
    for i, p in enumerate(prompts):
        one = lean.generate(*left_padded([p]), max_new_tokens=9, eos_token_ids=[EOS], pad_token_id=PAD, temperature=0)
        for row in got[3 * i: 3 * i + 3]:
            assert row[: one.shape[1]].tolist() == one[0].tolist()


def test_right_padded_logits_match_hf_default_positions():
    """Right padding (the base model's pre-training batches): real tokens match HF's plain call."""
    model = llama().train()
    rows = [[1, 5, 6, 7, 8, 9, 10], [1, 11, 12], [1, 13, 14, 15, 16]]
    width = max(map(len, rows))
    ids = torch.tensor([r + [PAD] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    ref = model(input_ids=ids, attention_mask=mask).logits
    got = LeanLM(model).logits(ids, mask)
    torch.testing.assert_close(got[mask.bool()], ref[mask.bool()], rtol=1e-5, atol=1e-5)
