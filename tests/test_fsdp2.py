"""obe.engines.fsdp on a real FSDP2 model: 2 processes (torchrun, gloo, CPU, 1 thread each), a tiny
Llama (untied) and a tiny Qwen2 (tied embeddings, q/k/v biases), each sharded by accelerate 1.15's
own ``fsdp2_prepare_model`` (one unit per decoder layer, the embedding, [final norm, lm head],
the root), the layout ``accelerate launch --config_file configs/accelerate/fsdp.yaml`` builds on
GPUs. Accelerate itself cannot run FSDP on CPU, so the worker hands that function a stand-in for
the ``Accelerator`` (the three attributes it reads) and a real ``FullyShardedDataParallelPlugin``.

(a) ``full_state_dict`` on rank 0 equals the unsharded model's state dict, reflects each rank's
    current shard, and ``save_pretrained(state_dict=...)`` reloads with ``from_pretrained`` to
    the sharded model's logits;
(b) accumulating k micro-batches with ``sharded_accumulation`` inside ``no_sync`` (as the HF loop
    calls it) gives the gradient of one large batch: fp32 compute to 1e-5 (summation order only),
    accelerate's bf16 policy (gradient checkpointing, TRL's fused LM head as GRPO computes it) and
    obe's bf16/fp32-reduce policy to 3% of the gradient's norm (bf16 compute: 8-bit mantissas
    through two layers); the gradients stay sharded (local shards ~1/world of each parameter) in
    fp32, and no unsharded gradient is left after any micro-batch;
(c) the defect: under ``set_requires_gradient_sync(False)`` (accelerate's ``no_sync``) with the
    policy accelerate builds for ``bf16=True``, every rank holds the full, unsharded gradient of
    every parameter, in bf16, and no sharded one: the c P bytes ``obe.scale.accumulation_bytes``
    counts.

The worker runs once per session (12-31 s on 2 shared cores at load 4-9, 2026-12-07) and
writes what it measured; the tests assert on it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FAMILIES = ("llama", "qwen2-tied")
POLICIES = ("fp32", "accelerate-bf16", "obe-bf16-fp32-reduce")
K, B, T, VOCAB = 3, 2, 12, 101  # micro-batches per step, sequences per micro-batch, tokens; odd vocab: uneven shards


# --------------------------------------------------------------------------- the worker (torchrun)


def build(family: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)  # the same weights on every rank, as a checkpoint loaded everywhere
    if family == "llama":
        model = LlamaForCausalLM(LlamaConfig(tie_word_embeddings=False, **common))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(tie_word_embeddings=True, **common))
    model.config._attn_implementation = "sdpa"
    return model


def shard(model, policy: str):
    """``model`` sharded by accelerate's fsdp2_prepare_model, with the mixed precision ``policy``."""
    import types

    import torch
    import torch.distributed as dist
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_model

    from obe.engines import fsdp

    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="TRANSFORMER_BASED_WRAP",
                                            reshard_after_forward=True, state_dict_type="SHARDED_STATE_DICT",
                                            cpu_ram_efficient_loading=False)
    mixed = "no"
    if policy == "accelerate-bf16":  # what AcceleratorState does for TrainingArguments(bf16=True)
        mixed = "bf16"
        plugin.set_mixed_precision("bf16")
    elif policy == "obe-bf16-fp32-reduce":
        mixed = "bf16"
        plugin.mixed_precision_policy = fsdp.mixed_precision_policy(torch.bfloat16, torch.float32)
    stand_in = types.SimpleNamespace(state=types.SimpleNamespace(fsdp_plugin=plugin), torch_device_mesh=None,
                                     mixed_precision=mixed, is_main_process=dist.get_rank() == 0)
    return fsdp2_prepare_model(stand_in, model)


def batches(rank: int):
    """K micro-batches of B x T token ids for ``rank`` (different on every rank)."""
    import torch

    g = torch.Generator().manual_seed(1000 + rank)
    return [torch.randint(0, VOCAB, (B, T), generator=g) for _ in range(K)]


def unsharded_grads(model) -> dict[str, tuple[int, str]]:
    """Unsharded gradients FSDP2 holds for its parameters (torch 2.13 internals: the autograd
    gradient of the gathered parameter, or the copy FSDP keeps in the reduce dtype)."""
    from obe.engines import fsdp

    out = {}
    for unit in fsdp.fsdp2_units(model):
        for group in unit._get_fsdp_state()._fsdp_param_groups:
            for p in group.fsdp_params:
                g = p.unsharded_accumulated_grad
                if g is None and hasattr(p, "_unsharded_param"):
                    g = p._unsharded_param.grad
                if g is not None:
                    out[p._param_fqn] = (g.numel(), str(g.dtype).replace("torch.", ""))
    return out


def loss_of(model, ids, fused: bool):
    if fused:  # TRL's GRPO loss path: log-probs from its chunked LM head, never the full logits
        out = model(input_ids=ids, labels=ids, fused_lm_head=True)
        return -out.log_probs.mean()
    return model(input_ids=ids, labels=ids).loss


def accumulate(model, rank: int, sync_each: bool, fused: bool) -> dict:
    """One optimizer step's backward as transformers' loop runs it: micro-batches 1..K-1 inside
    accelerate's no_sync (set_requires_gradient_sync(False)), the last outside; with ``sync_each``
    the trainer calls fsdp.sharded_accumulation at the start of each training_step."""
    from obe.engines import fsdp

    seen = []
    for i, ids in enumerate(batches(rank)):
        last = i == K - 1
        if not last:
            model.set_requires_gradient_sync(False)  # accelerate.Accelerator.no_sync, FSDP2 branch
        if sync_each:
            assert fsdp.sharded_accumulation(model)
        (loss_of(model, ids, fused) / K).backward()
        if not last:
            model.set_requires_gradient_sync(True)  # no_sync's exit
        seen.append({"unsharded": unsharded_grads(model), "sharded": sharded_grads(model)})
    return {"micro_batches": seen}


def sharded_grads(model) -> dict[str, dict]:
    from torch.distributed.tensor import DTensor

    out = {}
    for name, p in model.named_parameters():
        if p.grad is not None:
            local = p.grad.to_local() if isinstance(p.grad, DTensor) else p.grad
            out[name] = {"local": local.numel(), "param_local": p.to_local().numel(), "full": p.numel(),
                         "dtype": str(local.dtype).replace("torch.", ""), "dtensor": isinstance(p.grad, DTensor)}
    return out


def full_grads(model) -> dict:
    return {n: p.grad.full_tensor().float() for n, p in model.named_parameters() if p.grad is not None}


def reference_grads(family: str, world: int) -> dict:
    """Gradients of the unsharded fp32 model on the whole global batch (every rank's micro-batches)."""
    import torch

    model = build(family)
    ids = torch.cat([b for r in range(world) for b in batches(r)])
    model(input_ids=ids, labels=ids).loss.backward()
    return {n: p.grad for n, p in model.named_parameters()}


def rel_error(got: dict, ref: dict) -> float:
    """max over parameters of ||got - ref|| / ||ref||."""
    return max(float((got[n] - ref[n]).norm() / ref[n].norm()) for n in ref)


def check_state_dict(family: str, rank: int, work: Path) -> dict:
    import torch
    import torch.distributed as dist
    from transformers import AutoModelForCausalLM

    from obe.engines import fsdp

    model = build(family)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model = shard(model, "fp32")
    res = {}
    sd = fsdp.full_state_dict(model)
    if rank == 0:
        res["keys_equal"] = sorted(sd) == sorted(before)
        res["max_diff"] = max(float((sd[k] - before[k]).abs().max()) for k in before)
        res["on_cpu"] = all(v.device.type == "cpu" for v in sd.values())
    else:
        res["other_rank_empty"] = sd == {}
    # each rank moves its own shard: the gathered tensor must carry every rank's change
    with torch.no_grad():
        for p in model.parameters():
            p.to_local().add_(rank + 1)
    moved = fsdp.full_state_dict(model)
    bf16 = fsdp.full_state_dict(model, dtype=torch.bfloat16)
    world = dist.get_world_size()
    ids = batches(0)[0]
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()
    path = work / f"saved-{family}"
    if rank == 0:
        errs = []
        for k, v in before.items():
            rows = [len(c) for c in torch.chunk(torch.empty(v.shape[0]), world)]  # FSDP2 shards dim 0 like torch.chunk
            offset = torch.cat([torch.full((n,), float(r + 1)) for r, n in enumerate(rows)])
            expected = v + offset.view(-1, *([1] * (v.dim() - 1)))
            errs.append(float((moved[k] - expected).abs().max()))
        res["moved_max_diff"] = max(errs)
        res["bf16_dtypes"] = sorted({str(v.dtype) for v in bf16.values()})
        model.save_pretrained(str(path), state_dict=moved, safe_serialization=True)
    dist.barrier()
    if rank == 0:
        reloaded = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
        with torch.no_grad():
            again = reloaded(input_ids=ids).logits.float()
        res["reload_logits_max_diff"] = float((again - logits).abs().max())
        res["reload_params_equal"] = all(torch.equal(reloaded.state_dict()[k], moved[k]) for k in moved)
        res["files"] = sorted(os.listdir(path))
    return res


def worker(out: Path) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    from trl.trainer.utils import add_fused_lm_head

    results: dict = {"world": world}
    for family in FAMILIES:
        fam: dict = {"state_dict": check_state_dict(family, rank, out)}
        ref = reference_grads(family, world)
        for policy in POLICIES:
            model = build(family)
            fused = policy == "accelerate-bf16"  # the production path: checkpointing + TRL's fused LM head
            if fused:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
                add_fused_lm_head(model)
            model.train()
            model = shard(model, policy)
            run = accumulate(model, rank, sync_each=True, fused=fused)
            grads = full_grads(model)
            run["rel_error"] = rel_error(grads, ref)
            fam[f"sync_each/{policy}"] = run
        model = shard(build(family), "accelerate-bf16")
        run = accumulate(model, rank, sync_each=False, fused=False)
        run["rel_error"] = rel_error(full_grads(model), ref)
        fam["no_sync/accelerate-bf16"] = run
        fam["full_shape"] = {n: list(p.shape) for n, p in build(family).named_parameters()}
        results[family] = fam
    gathered = [None] * world
    dist.all_gather_object(gathered, results)
    if rank == 0:
        (out / "results.json").write_text(json.dumps(gathered, indent=1))
    dist.destroy_process_group()


# --------------------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("fsdp2")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{REPO / 'workflow'}{os.pathsep}{REPO / 'tests'}")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(__file__).resolve()), str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if res.returncode != 0:
        raise AssertionError(f"torchrun exit {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-6000:]}")
    return json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("family", FAMILIES)
def test_full_state_dict_gathers_a_loadable_hf_folder(ranks, family):
    r0, r1 = ranks[0][family]["state_dict"], ranks[1][family]["state_dict"]
    assert r0["keys_equal"] and r0["max_diff"] == 0.0 and r0["on_cpu"]
    assert r1["other_rank_empty"]
    assert r0["moved_max_diff"] == 0.0  # every rank's shard, in its place
    assert r0["bf16_dtypes"] == ["torch.bfloat16"]
    assert "model.safetensors" in r0["files"] and "config.json" in r0["files"]
    assert r0["reload_params_equal"]
    assert r0["reload_logits_max_diff"] < 1e-5  # fp32 forward, sharded vs reloaded: summation order only


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("family", FAMILIES)
def test_sharded_accumulation_equals_one_large_batch_and_stays_sharded(ranks, family, policy):
    for rank in ranks:
        run = rank[family][f"sync_each/{policy}"]
        # fp32: the same sums in another order; bf16 compute: 8-bit mantissas through two layers
        assert run["rel_error"] < (1e-5 if policy == "fp32" else 0.03), run["rel_error"]
        shapes = rank[family]["full_shape"]
        for mb in run["micro_batches"]:
            assert mb["unsharded"] == {}, "an unsharded gradient outlived its micro-batch"
            assert set(mb["sharded"]) == set(shapes)
            for name, g in mb["sharded"].items():
                rows, *rest = shapes[name]  # FSDP2 shards dim 0: at most ceil(rows / world) rows per rank
                assert g["dtensor"] and g["dtype"] == "float32", (name, g)
                assert g["local"] == g["param_local"] <= math.ceil(rows / ranks[0]["world"]) * math.prod(rest), (name, g)


@pytest.mark.parametrize("family", FAMILIES)
def test_no_sync_keeps_full_unsharded_bf16_gradients_on_every_rank(ranks, family):
    for rank in ranks:
        run = rank[family]["no_sync/accelerate-bf16"]
        full = {n: math.prod(shape) for n, shape in rank[family]["full_shape"].items()}
        for mb in run["micro_batches"][:-1]:  # inside no_sync
            assert mb["sharded"] == {}
            assert mb["unsharded"] == {n: [size, "bfloat16"] for n, size in full.items()}
        last = run["micro_batches"][-1]  # the synced micro-batch reduces them: right result, late
        assert last["unsharded"] == {} and all(g["local"] < g["full"] for g in last["sharded"].values())
        assert run["rel_error"] < 0.03


@pytest.mark.parametrize("family", FAMILIES)
def test_obe_scale_counts_the_unsharded_gradients_no_sync_keeps(ranks, family):
    from obe import scale

    tied = family != "llama"
    arch = scale.Arch(hidden=32, layers=2, heads=4, kv_heads=2, head_dim=8, intermediate=64, vocab=VOCAB, tied=tied,
                      max_positions=64, qkv_bias=tied)
    kept = ranks[0][family]["no_sync/accelerate-bf16"]["micro_batches"][0]["unsharded"]
    measured = sum(size * {"bfloat16": 2, "float32": 4}[dtype] for size, dtype in kept.values())
    prec = scale.precision("bfloat16", "float32", sharded=True)
    assert measured == scale.accumulation_bytes(scale.param_count(arch), prec, sharded_accumulation=False)
    assert scale.accumulation_bytes(scale.param_count(arch), prec, sharded_accumulation=True) == 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "workflow"))
    worker(Path(sys.argv[1]))
