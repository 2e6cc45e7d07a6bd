"""obe.scale: the memory formulas against independent counts (parameters of models built here,
a real generate call's KV cache, the tensors autograd keeps, the bytes TRL's chunked LM head keeps
and allocates, the dtype TRL loads the reference model in), and every GPU preset fits its stated
hardware with obe.scale.HEADROOM to spare by that computation (docs/scale.md is up to date).
The unsharded gradients FSDP2 keeps under no_sync are checked against a real 2-rank run in
tests/test_fsdp2.py."""

from __future__ import annotations

import ast
import copy
import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
import yaml

from conftest import REPO_ROOT
from obe import scale
from obe.scale import tables as scale_tables
from obe.core.config import deep_merge

H, I, V = 128, 352, 512  # the tiny test architecture (4 heads of 32, 2 kv heads)


def tiny(kind: str = "qwen2", layers: int = 2, tied: bool = False):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    cls, cfg_cls = (Qwen2ForCausalLM, Qwen2Config) if kind == "qwen2" else (LlamaForCausalLM, LlamaConfig)
    cfg = cfg_cls(vocab_size=V, hidden_size=H, intermediate_size=I, num_hidden_layers=layers, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=tied)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return cls(cfg)


def tiny_arch(kind: str = "qwen2", layers: int = 2, tied: bool = False) -> scale.Arch:
    return scale.Arch(hidden=H, layers=layers, heads=4, kv_heads=2, head_dim=32, intermediate=I, vocab=V, tied=tied,
                      max_positions=256, qkv_bias=kind == "qwen2")


# --------------------------------------------------------------------------- parameters


@pytest.mark.parametrize("kind,tied", [("qwen2", False), ("qwen2", True), ("llama", False), ("llama", True)])
def test_param_count_equals_a_built_model(kind, tied):
    model = tiny(kind, layers=3, tied=tied)
    assert scale.param_count(tiny_arch(kind, layers=3, tied=tied)) == sum(p.numel() for p in model.parameters())
    # U, one FSDP unit of accelerate's layout
    assert scale.decoder_layer_params(tiny_arch(kind, layers=3, tied=tied)) == sum(p.numel() for p in model.model.layers[0].parameters())


def test_param_count_of_the_embedded_model():
    from obe import base_model

    for size in ("smoke", "default"):
        model = base_model.build_model(base_model.SIZES[size], base_model.build_tokenizer())
        assert scale.param_count(scale.embedded_arch(size)) == sum(p.numel() for p in model.parameters())


def hf_config(a: scale.Arch):
    from transformers import LlamaConfig, Qwen2Config

    common = dict(vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.intermediate,
                  num_hidden_layers=a.layers, num_attention_heads=a.heads, num_key_value_heads=a.kv_heads,
                  max_position_embeddings=a.max_positions, tie_word_embeddings=a.tied)
    return Qwen2Config(**common) if a.qkv_bias else LlamaConfig(head_dim=a.head_dim, **common)


@pytest.mark.parametrize("name", sorted(scale.ARCHS))
def test_paper_models_parameter_count(name):
    """The formula equals a model of that architecture built (on the meta device, no weights)
    by transformers, and rounds to the parameter count its publisher states."""
    from transformers import AutoModelForCausalLM

    a = scale.ARCHS[name]
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf_config(a))
    n = sum(p.numel() for p in model.parameters())
    assert scale.param_count(a) == n
    assert 0 <= n / 1e9 - float(a.published.rstrip("B")) < 0.01  # cards truncate: 7,615,616,512 is "7.61B"


# --------------------------------------------------------------------------- KV cache


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kv_cache_bytes_equal_a_generate_calls_cache(dtype):
    torch.set_num_threads(1)
    model = tiny("qwen2", layers=2).to(dtype).eval()
    B, prompt, new = 3, 7, 5
    ids = torch.randint(1, V, (B, prompt))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0  # left padding, as rollouts have
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                         return_dict_in_generate=True, use_cache=True, pad_token_id=0, eos_token_id=None)
    cache = out.past_key_values
    tensors = [t for layer in cache.layers for t in (layer.keys, layer.values)]
    tokens = cache.get_seq_length()
    assert tokens == prompt + new - 1  # the last sampled token is never fed back
    nbytes = sum(t.numel() * t.element_size() for t in tensors)
    assert nbytes == scale.kv_cache_bytes(tiny_arch(), B, tokens, torch.finfo(dtype).bits // 8)


# --------------------------------------------------------------------------- activations and logits


def saved_bytes(model, ids, mask, autocast: bool) -> int:
    """Bytes of the tensors autograd keeps for the backward of one forward (each storage once;
    weights and their casts or transposes left out: they are the training state, not activations)."""
    shapes = {tuple(p.shape) for p in model.parameters()} | {tuple(p.shape[::-1]) for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        if tuple(t.shape) not in shapes:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=1)
    return sum(seen.values())


SCHEMES = {  # name: (model dtype, autocast, Precision the formula is given)
    "bf16": (torch.bfloat16, False, scale.precision("bfloat16", "model")),
    "fp32 master + bf16 autocast": (torch.float32, True, scale.precision("bfloat16", "float32")),
    "fp32": (torch.float32, False, scale.precision("float32", "float32")),
}


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
@pytest.mark.parametrize("checkpointing", [False, True], ids=["full", "checkpointed"])
def test_layer_activations_equal_the_tensors_autograd_keeps(scheme, checkpointing):
    """One more decoder layer keeps what the per-layer formula says (within 2%), in a left-padded
    batch; with gradient checkpointing, only its input (r h per token)."""
    torch.set_num_threads(1)
    dtype, autocast, prec = SCHEMES[scheme]
    B, T = 2, 64
    ids = torch.randint(0, V, (B, T))
    mask = torch.ones_like(ids)
    mask[:, :5] = 0
    kept = []
    for layers in (1, 2):
        model = tiny("qwen2", layers=layers).to(dtype)
        if checkpointing:
            if hasattr(model, "activation_checkpointing_enable"):  # the name from transformers 5.2x on
                model.activation_checkpointing_enable()
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.train()
        kept.append(saved_bytes(model, ids, mask, autocast))
    per_layer = (kept[1] - kept[0]) / (B * T)
    a = tiny_arch("qwen2", layers=1)
    if checkpointing:
        assert per_layer == prec.residual * H
    else:
        assert per_layer == pytest.approx(scale.layer_activation_bytes_per_token(a, prec, T), rel=0.02)
    # the whole formula, layers and the rest: full = L x layer + model; checkpointed = L r h + layer + model
    two = scale.activation_bytes(tiny_arch("qwen2", layers=2), prec, B, T, checkpointing)
    measured = kept[1] + (B * T * scale.layer_activation_bytes_per_token(a, prec, T) if checkpointing else 0)
    assert two == pytest.approx(measured, rel=0.05)


def test_logits_bytes_equal_what_token_logprobs_keeps():
    """bf16 logits: token_logprobs keeps fp32 chunk copies (4 bytes per logit), the backward makes a
    bf16 gradient; with the logits themselves that is the formula's (2c + 4) V t."""
    from obe.rl.loss import token_logprobs

    torch.set_num_threads(1)
    B, Tc = 3, 40
    logits = torch.randn(B, Tc, V, dtype=torch.bfloat16, requires_grad=True)
    ids = torch.randint(0, V, (B, Tc))
    seen: dict[int, int] = {}

    def pack(t):
        if t.dtype.is_floating_point and t.numel() >= V:  # the logit-sized tensors
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logp = token_logprobs(logits, ids)
    logp.sum().backward()
    measured = logits.numel() * 2 + sum(seen.values()) + logits.grad.numel() * logits.grad.element_size()
    a = replace(tiny_arch(), vocab=V)
    assert scale.logits_bytes(a, scale.precision("bfloat16", "float32"), B, Tc) == pytest.approx(measured, rel=0.01)


def kineto_peak(prof) -> int:
    """Peak of the bytes allocated minus freed, over the profiler's raw memory events in time
    order (each allocation and free is one event; torch internals, 2.13)."""
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"), key=lambda e: e.start_ns())
    now = peak = 0
    for e in events:
        now += e.nbytes()
        peak = max(peak, now)
    return peak


@pytest.mark.parametrize("scheme", ["fsdp: bf16 weight and hidden states", "one GPU: fp32 weight, bf16 autocast"])
def test_trl_lm_head_bytes_equal_what_trls_chunked_logprobs_keep_and_allocate(scheme):
    """TRL 1.16's ChunkedLogProbFunction (the fused LM head GRPO's loss uses): what autograd keeps
    (saved-tensor hooks) and the peak its backward allocates (the CPU profiler's allocation
    events), against trl_lm_head_bytes with the same tile. The small tile keeps the CPU fold's
    per-tile temporaries (Triton works in place on a GPU) below 0.1% of the count."""
    from torch.profiler import ProfilerActivity, profile
    from trl.kernels.chunked_logprob import ChunkedLogProbFunction

    torch.set_num_threads(1)
    fsdp = scheme.startswith("fsdp")
    Vh, Hh, t, tile = 4096, 256, 32, (4096, 8)
    dtype = torch.bfloat16 if fsdp else torch.float32
    torch.manual_seed(0)
    weight = torch.randn(Vh, Hh, dtype=dtype, requires_grad=True)
    hidden = torch.randn(t, Hh, dtype=dtype, requires_grad=True)
    kept: dict[int, int] = {}

    def pack(x):
        if x is not weight:  # the head weight is the training state, not the micro-batch's
            kept[x.untyped_storage().data_ptr()] = x.untyped_storage().nbytes()
        return x

    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=not fsdp):
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
            logp, entropy, *_ = ChunkedLogProbFunction.apply(hidden, weight, None, torch.randint(0, Vh, (t,)), 1.0,
                                                              tile[1], None, 1.0, ("log_probs", "entropy"))
    loss = logp.sum() + entropy.sum()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        loss.backward()
    a = replace(tiny_arch(), vocab=Vh, hidden=Hh)
    p = scale.precision("bfloat16", "float32", sharded=fsdp)  # r = c under FSDP, fp32 residual under autocast
    count = scale.trl_lm_head_bytes(a, p, 1, t, weight_bytes=2 if fsdp else 4, tile=tile)
    assert sum(kept.values()) == count["kept"]  # no V-sized tensor kept: the logits are never materialised
    assert kineto_peak(prof) == pytest.approx(count["backward"], rel=0.01)


def test_trl_loads_the_reference_model_in_the_policys_load_dtype(tmp_path):
    """With beta > 0, TRL 1.16 builds the reference model with the policy's model_init_kwargs:
    fp32 for fp32 master weights even from a bf16 checkpoint. obe.scale counts it in m bytes."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from tiny_model import build_tiny_model

    torch.set_num_threads(1)
    path = build_tiny_model(tmp_path / "m", hidden_size=32, num_layers=2, num_heads=4)
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(path).to(torch.bfloat16).save_pretrained(path)  # as hub checkpoints ship
    args = GRPOConfig(output_dir=str(tmp_path / "out"), use_cpu=True, beta=0.04, model_init_kwargs={"dtype": "float32"},
                      per_device_train_batch_size=2, num_generations=2, max_completion_length=4, report_to="none",
                      max_steps=1)
    trainer = GRPOTrainer(model=path, reward_funcs=lambda completions, **kw: [0.0] * len(completions), args=args,
                          train_dataset=Dataset.from_dict({"prompt": ["a", "b"]}))
    ref = trainer.ref_model
    P = sum(x.numel() for x in ref.parameters())
    held = sum(x.numel() * x.element_size() for x in ref.parameters())
    plan = replace(scale.load_plan("configs/qwen2.5-math-1.5b.yaml"), reference=True)
    b = scale.training_memory(plan)
    assert held == 4 * P and b.reference == 4 * scale.param_count(plan.arch)


# --------------------------------------------------------------------------- the presets


def merged(preset: str) -> dict:
    with open(REPO_ROOT / "config.yaml") as f:
        base = yaml.safe_load(f)
    with open(REPO_ROOT / preset) as f:
        return deep_merge(base, yaml.safe_load(f))


@pytest.mark.parametrize("preset", scale.PRESETS)
def test_each_preset_fits_its_stated_hardware_with_headroom(preset):
    plan = scale.load_plan(str(REPO_ROOT / preset))
    assert plan.gpu and plan.gpu_memory_gb, f"{preset} states no hardware"
    train = scale.training_memory(plan)
    assert train.keeps_headroom, f"{preset}: {train.total / 1e9:.1f} GB per GPU leaves {train.headroom:.0%} of the GPU"
    sample = scale.sampling_memory(plan)
    assert sample is not None and sample["fits"] and sample["share"] <= scale.gpu_capacity(plan)


def test_vllm_takes_its_share_of_the_memory_torch_reports():
    """gpu_memory_utilization is a fraction of torch.cuda.mem_get_info()'s total (79.18 GiB on an
    H100 80GB, transcribed), not of the nominal 80 x 10^9 bytes."""
    plan = scale.load_plan("configs/qwen2.5-7b.yaml")
    assert scale.gpu_capacity(plan) == 79.18 * 2 ** 30 > plan.gpu_memory_gb * scale.GB
    assert scale.training_memory(plan).vllm_share == plan.colocate * 79.18 * 2 ** 30
    unknown = replace(plan, gpu="X-48GB", gpu_memory_gb=48)
    assert scale.gpu_capacity(unknown) == 48e9


@pytest.mark.parametrize("preset", ["configs/qwen2.5-7b.yaml", "configs/llama-3.1-8b-instruct.yaml"])
def test_fsdp_plans_count_the_accumulation_and_fail_without_sharded_accumulation(preset):
    """Under accelerate's no_sync every GPU keeps the unsharded bf16 gradient (c P): the plan then
    no longer keeps its headroom; with sharded accumulation nothing is kept beyond the shards."""
    plan = scale.load_plan(preset)
    P = scale.param_count(plan.arch)
    fixed, defect = scale.training_memory(plan), scale.training_memory(replace(plan, sharded_accumulation=False))
    assert fixed.accumulation == 0 and defect.accumulation == 2 * P
    assert defect.trainer_peak - fixed.trainer_peak == pytest.approx(2 * P)
    assert fixed.keeps_headroom and not defect.keeps_headroom
    assert fixed.weights == 4 * P / 8  # FSDP2 keeps only the fp32 shards


@pytest.mark.parametrize("preset", scale.PRESETS)
def test_slurm_resources_ask_for_the_gpus_of_the_plan(preset):
    cfg = merged(preset)
    res, hw = cfg["resources"], cfg["hardware"]
    train_gpus = res["train"]["gpus"] if res["train"]["gpus"] is not None else cfg["gpus_per_job"]
    sample_gpus = res["sample"]["gpus"] if res["sample"]["gpus"] is not None else cfg["gpus_per_job"]
    assert train_gpus == hw["gpus"]
    assert sample_gpus == cfg["sampling"]["tensor_parallel_size"]


@pytest.mark.parametrize("preset", scale.PRESETS)
def test_raising_micro_batch_past_the_memory_fails_the_check(preset):
    cfg = merged(preset)
    cfg["train"]["micro_batch"] *= 16
    assert scale.training_memory(scale.plan_from_config(cfg, preset)).fits is False
    cfg["train"]["micro_batch"] = 0  # 0: every sequence of a step in one forward pass, far over the memory
    assert scale.training_memory(scale.plan_from_config(cfg, preset)).fits is False


def test_rollout_batch_past_the_memory_fails_the_check():
    cfg = merged("configs/qwen2.5-math-1.5b.yaml")
    cfg["train"]["backend"], cfg["hardware"]["colocate_vllm"] = "obe", None  # rollouts by HF generate
    assert scale.training_memory(scale.plan_from_config(cfg)).fits is True  # the obe backend fits too
    cfg["train"]["rollout_batch"] = 0  # all 1024 rollouts in one generate call
    assert scale.training_memory(scale.plan_from_config(cfg)).fits is False


def test_a_vllm_share_below_the_weights_fails_the_check():
    cfg = merged("configs/qwen2.5-7b.yaml")
    cfg["sampling"]["gpu_memory_utilization"] = 0.2  # 16 GB: the bf16 weights alone take 15.2 GB
    sample = scale.sampling_memory(scale.plan_from_config(cfg))
    assert sample["weights"] == 2 * scale.param_count(scale.ARCHS["Qwen/Qwen2.5-7B"])
    assert not sample["fits"] and sample["sequences"] == 0
    cfg = merged("configs/qwen2.5-7b.yaml")
    cfg["hardware"]["colocate_vllm"] = 0.2  # the colocated engine as well
    assert scale.training_memory(scale.plan_from_config(cfg)).fits is False


def test_qwen_math_sequences_fit_its_4096_token_context():
    cfg = merged("configs/qwen2.5-math-1.5b.yaml")
    context = scale.ARCHS["Qwen/Qwen2.5-Math-1.5B"].max_positions
    assert context == 4096
    assert cfg["sampling"]["max_model_len"] <= context
    assert cfg["sampling"]["max_new_tokens"] < cfg["sampling"]["max_model_len"]
    plan = scale.plan_from_config(cfg)
    assert plan.seq_len == cfg["sampling"]["max_model_len"]
    loose = copy.deepcopy(cfg)
    loose["sampling"]["max_model_len"] = None  # the bound is then the model's own context
    assert scale.plan_from_config(loose).seq_len == context


def test_sharding_divides_the_state_over_every_gpu_of_the_job():
    cfg = merged("configs/qwen2.5-7b.yaml")
    one = scale.training_memory(scale.plan_from_config(cfg))
    cfg["hardware"]["nodes"] = 2  # hardware.gpus is per node
    two = scale.training_memory(scale.plan_from_config(cfg))
    assert two.optimizer == pytest.approx(one.optimizer / 2) and two.gradients == pytest.approx(one.gradients / 2)
    cfg["hardware"]["sharding"] = "none"
    whole = scale.training_memory(scale.plan_from_config(cfg))
    assert whole.optimizer == pytest.approx(8 * scale.param_count(scale.ARCHS["Qwen/Qwen2.5-7B"]))  # 2 fp32 moments
    assert whole.fits is False


def test_unknown_model_is_named():
    cfg = merged("configs/qwen2.5-7b.yaml")
    cfg["base_model"]["name_or_path"] = "someone/other-7b"
    with pytest.raises(ValueError, match="someone/other-7b"):
        scale.plan_from_config(cfg)


def test_the_plan_never_imports_the_tables():
    """No import circle: obe.scale.tables and obe.scale.__main__ import the plan, never the other
    way round (importing obe.scale loads no table code)."""
    for name in ("__init__.py", "plan.py"):
        tree = ast.parse((REPO_ROOT / "workflow" / "obe" / "scale" / name).read_text())
        names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not any(x and ("tables" in x or "__main__" in x) for x in names), name
    out = subprocess.run([sys.executable, "-c", "import sys, obe.scale; print('obe.scale.tables' in sys.modules)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_docs_scale_md_is_up_to_date():
    text = (REPO_ROOT / "docs" / "scale.md").read_text(encoding="utf-8")
    assert scale_tables.render_tables() in text, "docs/scale.md is stale: run python -m obe.scale --markdown"


def test_cli_prints_a_presets_table(capsys):
    assert scale_tables.main(["--config", str(REPO_ROOT / "configs" / "qwen2.5-7b.yaml")]) == 0
    out = capsys.readouterr().out
    assert "8 x H100-80GB, FSDP" in out and "**yes**" in out
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT / "workflow"))
    res = subprocess.run([sys.executable, "-m", "obe.scale", "--config", "configs/llama-3.1-8b-instruct.yaml"],
                         capture_output=True, text=True, cwd=REPO_ROOT, env=env)
    assert res.returncode == 0 and "8 x H100-80GB, FSDP" in res.stdout, res.stderr
