"""Training at scale on CPU: rollout micro-batches, mixed precision, gradient checkpointing and the
prompts evaluation uses (chat template included)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from obe.engines import generation
from obe.engines import models
from obe import train as T
from obe.engines.rollout import RolloutConfig, _generate_once, concat_rollouts, generate_rollouts
from test_train import config, env, read_rows, stable, weights  # noqa: F401  (env is a fixture)


def _rollout_setup(env):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(env["model"])
    tok = AutoTokenizer.from_pretrained(env["model"])
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    prompts = [tok(f"{a}*{a+1}=")["input_ids"] for a in range(2, 7)]
    return model, tok, prompts


def test_rollout_batch_bounds_each_call_and_one_call_is_unchanged(env):
    torch.set_num_threads(1)
    model, tok, prompts = _rollout_setup(env)
    cfg = RolloutConfig(n=3, max_new_tokens=12)
    whole = generate_rollouts(model, tok, prompts, cfg, seed=11)
    for big in (0, 15, 100):  # one call: exactly the unchunked rollouts
        same = generate_rollouts(model, tok, prompts, cfg, seed=11, max_sequences=big)
        assert same.texts == whole.texts and torch.equal(same.completion_ids, whole.completion_ids)
    calls = []
    real = _generate_once

    def spy(model_, tok_, ids, cfg_, seed, lean=None):
        calls.append((len(ids), seed))
        return real(model_, tok_, ids, cfg_, seed, lean)

    import obe.engines.rollout as R

    R._generate_once = spy
    try:
        chunked = generate_rollouts(model, tok, prompts, cfg, seed=11, max_sequences=7)  # 2 questions per call
    finally:
        R._generate_once = real
    assert [c for c, _ in calls] == [2, 2, 1]  # whole questions, at most 7 // 3 = 2 per call
    assert calls[0][1] == 11 and len({s for _, s in calls}) == 3
    # the merge equals the calls made one by one, re-padded
    parts = [real(model, tok, prompts[i:i + 2], cfg, s) for i, (_, s) in zip(range(0, 5, 2), calls)]
    assert chunked.texts == [t for p in parts for t in p.texts]
    S = 5 * 3
    assert chunked.prompt_ids.shape[0] == chunked.completion_ids.shape[0] == S
    assert torch.equal(chunked.num_tokens, torch.cat([p.num_tokens for p in parts]))
    assert torch.equal(chunked.completion_mask.sum(1), chunked.num_tokens)
    for row, (p, q) in enumerate((p, q) for p in parts for q in range(p.prompt_ids.shape[0])):
        width = int(p.prompt_mask[q].sum())
        assert chunked.prompt_ids[row, -width:].tolist() == p.prompt_ids[q, -width:].tolist()
        assert int(chunked.prompt_mask[row].sum()) == width
    again = generate_rollouts(model, tok, prompts, cfg, seed=11, max_sequences=7)
    assert again.texts == chunked.texts  # deterministic: a resumed run regenerates the same rollouts


def test_concat_rollouts_pads_prompts_left_and_completions_right():
    from obe.engines.rollout import Rollouts

    def ro(p, c):
        pi, ci = torch.tensor(p), torch.tensor(c)
        return Rollouts(pi, (pi != 0).long(), ci, (ci != 0).long(), ["x"] * len(p), (ci != 0).sum(1),
                        torch.zeros(len(p), dtype=torch.bool))

    out = concat_rollouts([ro([[5, 6]], [[7]]), ro([[8]], [[9, 10, 11]])], pad_id=0)
    assert out.prompt_ids.tolist() == [[5, 6], [0, 8]] and out.prompt_mask.tolist() == [[1, 1], [0, 1]]
    assert out.completion_ids.tolist() == [[7, 0, 0], [9, 10, 11]]
    assert out.completion_mask.tolist() == [[1, 0, 0], [1, 1, 1]]


@pytest.mark.slow
@pytest.mark.parametrize("master,param_dtype", [("float32", torch.float32), ("model", torch.bfloat16)])
def test_bfloat16_training_keeps_the_stated_precision(env, tmp_path, master, param_dtype, capsys):
    out = tmp_path / master
    summary = T.train(config(env, out, steps=2, dtype="bfloat16", master_weights=master, micro_batch=5,
                             rollout_batch=8))
    assert summary["steps"] == 2
    assert {t.dtype for t in weights(out).values()} == {param_dtype}
    rows = read_rows(out / "metrics.jsonl")
    assert len(rows) == 2 and all(isinstance(r["loss"], float) and r["grad_norm"] == r["grad_norm"] for r in rows)
    err = capsys.readouterr().err
    assert f"weights {param_dtype}, compute torch.bfloat16" in err and "engine hf" in err  # lean is fp32-only
    with pytest.raises(SystemExit, match="engine lean"):
        T.train(config(env, tmp_path / "lean", dtype="bfloat16", engine="lean"))


@pytest.mark.slow
def test_gradient_checkpointing_gives_the_same_run(env, tmp_path):
    a, b = tmp_path / "plain", tmp_path / "gc"
    T.train(config(env, a, steps=2, engine="hf", micro_batch=6))
    T.train(config(env, b, steps=2, engine="hf", micro_batch=6, gradient_checkpointing=True))
    ra, rb = stable(read_rows(a / "metrics.jsonl")), stable(read_rows(b / "metrics.jsonl"))
    assert [r["reward"] for r in ra] == [r["reward"] for r in rb]  # same rollouts
    for x, y in zip(ra, rb):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5, abs=1e-7)
        assert x["grad_norm"] == pytest.approx(y["grad_norm"], rel=1e-4)
    wa, wb = weights(a), weights(b)
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-5


def test_training_prompts_are_the_evaluation_prompts(env, tmp_path, monkeypatch):
    """With a chat template and use_chat_template: always, rollouts start from exactly the token
    ids obe.sampling would give the same question (before: the raw template, never evaluated)."""
    import shutil

    from transformers import AutoTokenizer

    model_dir = tmp_path / "chat_model"
    shutil.copytree(env["model"], model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    # markers made of characters the tiny arithmetic vocabulary has
    tok.chat_template = ("{% for m in messages %}=={{ m.content }}\n{% endfor %}"
                         "{% if add_generation_prompt %}??{% endif %}")
    tok.save_pretrained(model_dir)
    seen = []
    real = T.generate_rollouts

    def spy(model, tokenizer, prompt_ids, cfg, seed, **kw):
        seen.extend(prompt_ids)
        return real(model, tokenizer, prompt_ids, cfg, seed, **kw)

    monkeypatch.setattr(T, "generate_rollouts", spy)
    cfg = config(env, tmp_path / "run", model=str(model_dir), steps=1, use_chat_template="always",
                 system_prompt="7*7")
    T.train(cfg)
    records = [json.loads(line) for line in Path(env["data"]).read_text().splitlines()]
    mcfg = models.ModelConfig(str(model_dir), prompt_template=cfg.prompt_template, use_chat_template="always",
                              system_prompt="7*7")
    tok = models.load_tokenizer(mcfg)
    expected = generation.tokenize_prompts(tok, models.build_prompts(tok, [r["problem"] for r in records], mcfg),
                                         models.prompt_adds_special_tokens(tok, mcfg))
    assert seen and all(ids in expected for ids in seen)
    text = tok.decode(seen[0])
    assert text.startswith("==7*7\n==") and text.endswith("??"), text
