"""obe.engines.models: config, loading (dtype, trust_remote_code, padding), prompt building."""

from __future__ import annotations

import pytest
import torch

from obe.engines import models
from obe.engines.models import ModelConfig, build_prompt, load_model, load_tokenizer, prompt_adds_special_tokens
from tiny_model import build_tiny_model, build_tokenizer

torch.set_num_threads(1)

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def tiny_chat_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny_chat"), chat_template=CHAT_TEMPLATE)


def test_config_defaults_and_from_dict():
    cfg = ModelConfig.from_dict({"name_or_path": "Qwen/Qwen2.5-Math-1.5B", "dtype": "bfloat16", "device": "cuda"})
    assert cfg.trust_remote_code is False
    assert cfg.prompt_template == "{problem}\n"
    assert cfg.use_chat_template == "auto"
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown ModelConfig keys"):
        ModelConfig.from_dict({"name_or_path": "x", "temprature": 1.0})
    with pytest.raises(ValueError, match="dtype"):
        ModelConfig("x", dtype="fp8")
    with pytest.raises(ValueError, match="problem"):
        ModelConfig("x", prompt_template="no placeholder")
    with pytest.raises(ValueError, match="use_chat_template"):
        ModelConfig("x", use_chat_template="sometimes")
    assert ModelConfig("x", use_chat_template=True).use_chat_template == "always"
    assert ModelConfig("x", use_chat_template=False).use_chat_template == "never"
    with pytest.raises(Exception):
        cfg.dtype = "float16"  # frozen


@pytest.mark.parametrize("dtype,expected", [("float32", torch.float32), ("bfloat16", torch.bfloat16)])
def test_load_round_trip_dtype(tiny_dir, dtype, expected):
    model = load_model(ModelConfig(tiny_dir, dtype=dtype))
    assert {p.dtype for p in model.parameters()} == {expected}
    assert model.device.type == "cpu"
    assert not model.training


def test_trust_remote_code_off_by_default(tiny_dir, monkeypatch):
    import transformers

    seen = []
    real_model = transformers.AutoModelForCausalLM.from_pretrained
    real_tok = transformers.AutoTokenizer.from_pretrained

    def spy_model(*a, **kw):
        seen.append(("model", kw.get("trust_remote_code")))
        return real_model(*a, **kw)

    def spy_tok(*a, **kw):
        seen.append(("tokenizer", kw.get("trust_remote_code")))
        return real_tok(*a, **kw)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy_model)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", spy_tok)
    models.load(ModelConfig(tiny_dir))
    assert seen == [("model", False), ("tokenizer", False)]
    seen.clear()
    models.load(ModelConfig(tiny_dir, trust_remote_code=True))
    assert seen == [("model", True), ("tokenizer", True)]


def test_tokenizer_left_padding_and_pad_fallback(tiny_dir):
    tok = load_tokenizer(ModelConfig(tiny_dir))
    assert tok.padding_side == "left"
    assert tok.pad_token == "<pad>"
    raw = build_tokenizer()
    raw.pad_token = None
    models.prepare_tokenizer(raw)
    assert raw.pad_token == raw.eos_token == "</s>"
    assert raw.padding_side == "left"
    batch = tok(["a", "abc"], padding=True)["attention_mask"]
    assert batch[0][:2] == [0, 0]  # left padded


def test_prompt_without_chat_template(tiny_dir):
    tok = load_tokenizer(ModelConfig(tiny_dir))
    assert not tok.chat_template
    cfg = ModelConfig(tiny_dir)
    assert build_prompt(tok, "What is 1+1?", cfg) == "What is 1+1?\n"
    assert prompt_adds_special_tokens(tok, cfg) is True
    # LaTeX braces in template and problem are kept literally (no str.format).
    cfg2 = ModelConfig(tiny_dir, prompt_template="Q: {problem}\nPut the answer in \\boxed{}.\n")
    assert build_prompt(tok, "x^{2}", cfg2) == "Q: x^{2}\nPut the answer in \\boxed{}.\n"
    cfg3 = ModelConfig(tiny_dir, system_prompt="Be brief.")
    assert build_prompt(tok, "P", cfg3) == "Be brief.\n\nP\n"
    with pytest.raises(ValueError, match="no chat template"):
        build_prompt(tok, "P", ModelConfig(tiny_dir, use_chat_template="always"))


def test_prompt_with_chat_template(tiny_chat_dir):
    tok = load_tokenizer(ModelConfig(tiny_chat_dir))
    assert tok.chat_template == CHAT_TEMPLATE
    cfg = ModelConfig(tiny_chat_dir, system_prompt="S")
    assert build_prompt(tok, "2+2?", cfg) == "<|system|>S\n<|user|>2+2?\n\n<|assistant|>"
    assert prompt_adds_special_tokens(tok, cfg) is False
    never = ModelConfig(tiny_chat_dir, use_chat_template="never")
    assert build_prompt(tok, "2+2?", never) == "2+2?\n"
    assert prompt_adds_special_tokens(tok, never) is True
    assert models.build_prompts(tok, ["a", "b"], ModelConfig(tiny_chat_dir)) == [
        "<|user|>a\n\n<|assistant|>",
        "<|user|>b\n\n<|assistant|>",
    ]


def test_a_hub_model_trains_from_its_pinned_cached_snapshot(tmp_path, monkeypatch):
    """local_model: a folder is itself; a hub name is the cache's snapshot at the pinned commit
    (offline), and an uncached one says what to prefetch."""
    from huggingface_hub import constants

    from hf_cache import put_repo
    from obe.engines.models import local_model
    from obe.core.hub import NotFetched

    assert local_model(str(tmp_path)) == str(tmp_path)
    cache = tmp_path / "hub"
    files = {"config.json": b'{"model_type": "llama"}', "model.safetensors": b"weights"}
    old = put_repo(cache, "org/tiny", {**files, "model.safetensors": b"old"}, repo_type="model", commit="a" * 40)
    pinned = put_repo(cache, "org/tiny", files, repo_type="model", commit="b" * 40, branch=None)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert local_model("org/tiny", "b" * 40) == str(pinned)
    assert local_model("org/tiny") == str(old)  # main, as the download recorded it
    with pytest.raises(NotFetched, match="python -m obe.prefetch"):
        local_model("org/other", "c" * 40)
