"""The embedded base model stage: smoke build, HF reload, tokenizer round trip, generation; the
rehearsal's stand-ins (obe.engines.tiny_models: family, tokenizer, chat format; --size rehearsal)."""

from __future__ import annotations

import json
import os

import pytest

# Spinning OpenMP threads slow torch ~5x on shared cores; effective only if torch is not yet
# imported (a conftest-level setting would cover every module).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from obe import base_model
from obe.tasks import synthetic  # noqa: E402
from obe.grading.latex import last_boxed  # noqa: E402


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("base_model_smoke")
    rc = base_model.main(
        ["--out", str(out), "--seed", "0", "--size", "smoke", "--threads", "2",
         "--eval-questions", "4", "--eval-samples", "4"]
    )
    assert rc == 0
    return out


def test_smoke_build_writes_model_and_report(smoke_dir):
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "generation_config.json", base_model.REPORT_NAME):
        assert (smoke_dir / name).is_file(), name
    report = json.loads((smoke_dir / base_model.REPORT_NAME).read_text())
    assert report["size"] == "smoke"
    assert report["params"] > 0 and report["train_seconds"] >= 0
    assert report["prompt_template"] == base_model.PROMPT_TEMPLATE
    ev = report["eval"]
    for key in ("pass@1", "pass@4", "distinct_answers_per_question", "boxed_fraction"):
        assert 0.0 <= ev[key] <= (4.0 if key.startswith("distinct") else 1.0)
    cfg = json.loads((smoke_dir / "tokenizer_config.json").read_text())
    assert cfg["tokenizer_class"] == "PreTrainedTokenizerFast"


def test_reload_with_auto_classes_and_generate(smoke_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

    tok = AutoTokenizer.from_pretrained(str(smoke_dir))
    model = AutoModelForCausalLM.from_pretrained(str(smoke_dir))
    assert isinstance(tok, PreTrainedTokenizerFast)
    assert tok.pad_token_id is not None and tok.eos_token_id is not None and tok.bos_token_id is not None
    assert model.config.vocab_size == len(tok)

    problems = [r.problem for r in synthetic.make_split("test", 3, seed=0, difficulty=3)]
    enc = tok([base_model.format_prompt(p) for p in problems], return_tensors="pt", padding=True)
    assert enc["input_ids"][0, -1].item() != tok.pad_token_id  # left padding
    torch.manual_seed(0)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=8, do_sample=True)
    new = out[:, enc["input_ids"].shape[1]:]
    assert new.shape[0] == 3 and new.shape[1] >= 1
    texts = tok.batch_decode(new, skip_special_tokens=True)
    assert any(t for t in texts)


def test_tokenizer_round_trip():
    tok = base_model.build_tokenizer()
    r = synthetic.make_split("train", 1, seed=0, difficulty=3)[0]
    text = base_model.format_prompt(r.problem) + synthetic.worked_solution(r.problem)
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id
    assert tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert "\\boxed{" in tok.convert_ids_to_tokens(ids)  # one token for the box command
    assert len(ids) < 70  # short enough for cheap sampling
    # prompt and solution tokenise independently (the training code relies on it)
    joint = tok(text, add_special_tokens=False)["input_ids"]
    split = tok(base_model.format_prompt(r.problem), add_special_tokens=False)["input_ids"] + tok(
        synthetic.worked_solution(r.problem), add_special_tokens=False
    )["input_ids"]
    assert joint == split


def test_training_labels_mask_prompt():
    tok = base_model.build_tokenizer()
    recs = synthetic.make_split("train", 2, seed=0, difficulty=3)
    sols = [synthetic.worked_solution(r.problem) for r in recs]
    ids, mask, labels = base_model.encode_examples(tok, [r.problem for r in recs], sols)
    for i, (r, s) in enumerate(zip(recs, sols)):
        n_prompt = len(tok(base_model.format_prompt(r.problem))["input_ids"])
        kept = labels[i][labels[i] != -100].tolist()
        assert (labels[i, :n_prompt] == -100).all()
        assert kept[-1] == tok.eos_token_id
        assert tok.decode(kept, skip_special_tokens=True) == s
        assert int(mask[i].sum()) == n_prompt + len(kept)


def test_score_completions():
    comps = [["a \\boxed{3}", "\\boxed{4}", "no box", "\\boxed{3}"], ["\\boxed{1}"] * 4]
    s = base_model.score_completions(comps, ["3", "2"])
    assert s["pass@1"] == pytest.approx((2 / 4 + 0) / 2)
    assert s["pass@4"] == pytest.approx(0.5)
    assert s["distinct_answers_per_question"] == pytest.approx((2 + 1) / 2)
    assert s["boxed_fraction"] == pytest.approx((3 / 4 + 1) / 2)


def test_build_is_deterministic(tmp_path):
    from safetensors.torch import load_file

    cfg = base_model.SIZES["smoke"]
    a = base_model.build(tmp_path / "a", seed=1, size=cfg, eval_questions=0, steps=5, log_every=0)
    b = base_model.build(tmp_path / "b", seed=1, size=cfg, eval_questions=0, steps=5, log_every=0)
    assert a["final_loss"] == b["final_loss"]
    wa = load_file(str(tmp_path / "a" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("difficulty", [1, 3, 8])
def test_generation_budget_covers_solutions(difficulty):
    tok = base_model.build_tokenizer()
    recs = synthetic.make_split("train", 50, seed=0, difficulty=difficulty)
    longest = max(
        len(tok(synthetic.worked_solution(r.problem), add_special_tokens=False)["input_ids"]) + 1 for r in recs
    )
    assert longest <= base_model.default_max_new_tokens(difficulty)
    assert longest + 40 <= base_model.SIZES["default"].max_positions


def test_train_data_jsonl(tmp_path):
    from obe.core.records import write_jsonl

    path = tmp_path / "train.jsonl"
    write_jsonl(str(path), synthetic.make_split("train", 30, seed=2, difficulty=2))
    rep = base_model.build(tmp_path / "m", seed=0, size=base_model.SIZES["smoke"], train_data=str(path),
                           difficulty=2, eval_questions=2, eval_samples=2, steps=3, log_every=0)
    assert rep["train_questions"] == 30 and rep["difficulty"] == 2
    assert rep["eval"]["questions"] == 2


# -- the rehearsal's stand-ins (obe.engines.tiny_models, --size rehearsal) ---------------------------

from obe.engines import tiny_models  # noqa: E402

PRESET_PROMPT = "{problem}\nPlease reason step by step, and put your final answer within \\boxed{}.\n"
TEXTS = ["Find $\\frac{1}{2} + x^2$ if $x = 3$.", "Évaluer ∑ 你好 \\left( 3, \\frac{\\pi}{2} \\right)", "25", "0.5"]


def test_family_and_tied_embeddings_come_from_the_hub_name():
    assert tiny_models.family_of("meta-llama/Llama-3.1-8B-Instruct") == "llama"
    assert tiny_models.family_of("Qwen/Qwen2.5-7B") == tiny_models.family_of("Qwen/Qwen2.5-Math-1.5B") == "qwen2"
    assert tiny_models.ties_embeddings("Qwen/Qwen2.5-Math-1.5B") and tiny_models.ties_embeddings("meta-llama/Llama-3.2-1B")
    assert not tiny_models.ties_embeddings("Qwen/Qwen2.5-7B") and not tiny_models.ties_embeddings("meta-llama/Llama-3.1-8B")
    with pytest.raises(ValueError, match="mistralai/Mistral-7B"):
        tiny_models.family_of("mistralai/Mistral-7B")


@pytest.mark.parametrize("family,chat", [("llama", True), ("llama", False), ("qwen2", True), ("qwen2", False)])
def test_stand_in_tokenizer_covers_any_text_with_the_familys_special_tokens(family, chat):
    tok = tiny_models.build_tokenizer(family, TEXTS * 3, chat=chat, vocab_size=300)
    for text in TEXTS + ["never seen: ж ψ ∫ \u2028 emoji 🙂"]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text and tok.unk_token_id not in ids
    sp = tiny_models.specials(family, chat)
    for name in [sp.eos, sp.end_of_text, *sp.extra]:
        assert len(tok(name, add_special_tokens=False)["input_ids"]) == 1, name  # one token, never split
    assert tok.eos_token == sp.eos and tok.pad_token == sp.pad
    first = tok("x")["input_ids"][0]
    assert (first == tok.convert_tokens_to_ids("<|begin_of_text|>")) == (family == "llama")  # Qwen adds no BOS
    assert bool(tok.chat_template) == chat


def test_chat_templates_render_the_familys_format():
    msgs = [{"role": "user", "content": "What is 2+3?\n"}]
    llama = tiny_models.build_tokenizer("llama", TEXTS, chat=True, vocab_size=300)
    assert llama.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False) == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
        "Today Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+3?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n")
    with_system = llama.apply_chat_template([{"role": "system", "content": "Be brief."}, *msgs], tokenize=False)
    assert "Today Date: 26 Jul 2024\n\nBe brief.<|eot_id|>" in with_system and with_system.count("system") == 1
    qwen = tiny_models.build_tokenizer("qwen2", TEXTS, chat=True, vocab_size=300)
    assert qwen.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is 2+3?\n<|im_end|>\n"
        "<|im_start|>assistant\n")


@pytest.fixture(scope="module")
def rehearsal_data(tmp_path_factory):
    from obe.core.records import Record, write_jsonl

    path = tmp_path_factory.mktemp("rehearsal_data") / "q.jsonl"
    write_jsonl(str(path), [Record(id=f"q{i}", problem=f"What is ${i} \\times 7$?", answer=str(7 * i), source="math500")
                            for i in range(8)])
    return str(path)


@pytest.mark.parametrize("name,chat", [("meta-llama/Llama-3.1-8B-Instruct", "always"), ("Qwen/Qwen2.5-Math-1.5B", "never")])
def test_rehearsal_stand_in_loads_as_its_family_and_is_deterministic(tmp_path, rehearsal_data, name, chat):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw = dict(stand_in_for=name, data=[rehearsal_data], prompt_template=PRESET_PROMPT, use_chat_template=chat,
              dtype="bfloat16", threads=1, steps=3, log_every=0)
    rep = base_model.build_rehearsal(tmp_path / "a", eval_samples=1, **kw)
    base_model.build_rehearsal(tmp_path / "b", eval_samples=0, **kw)
    wa, wb = (load_file(str(tmp_path / d / "model.safetensors")) for d in "ab")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "a")
    tok = AutoTokenizer.from_pretrained(tmp_path / "a")
    family = tiny_models.family_of(name)
    assert model.config.model_type == family and model.dtype == torch.bfloat16
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # grouped-query attention
    assert model.config.tie_word_embeddings == tiny_models.ties_embeddings(name)
    assert bool(tok.chat_template) == (chat == "always")
    assert model.generation_config.eos_token_id == tiny_models.generation_eos_ids(tok, family, chat == "always")[
        slice(None) if chat == "always" else 0]
    assert rep["family"] == family and rep["questions"] == 8 and rep["eval"]["samples_per_question"] == 1
    assert base_model.rehearsal_target("42") == "The final answer is $\\boxed{42}$."


def test_rehearsal_cli_needs_the_model_it_stands_in_for(tmp_path):
    with pytest.raises(SystemExit):
        base_model.main(["--out", str(tmp_path / "m"), "--size", "rehearsal", "--data", "x.jsonl"])
