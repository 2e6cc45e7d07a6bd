"""Memory per GPU of a preset's training and sampling jobs, computed from architecture numbers
and the config (docs/scale.md is this module's output).

    python -m obe.scale --config configs/qwen2.5-7b.yaml   # one preset, merged over config.yaml
    python -m obe.scale --markdown                         # rewrites the tables in docs/scale.md

Everything is in bytes; tables print GB (10^9 bytes). Notation: P parameters, N the GPUs the
training state is sharded over (1 without sharding), L layers, h hidden size, I MLP
intermediate size, V vocabulary, q = heads x head_dim, kv = kv_heads x head_dim, c the bytes of
the compute dtype (``base_model.dtype``), m the bytes of the stored weights (4 with
``train.master_weights: float32``, else c), r the bytes of the residual stream between layers.

Training state (:func:`training_state`), AdamW, no offload:

* weights   = m P / N, plus c P / N for the compute-dtype copy when m != c (torch.autocast's
  cached casts of the fp32 weights in ``obe.train``; ZeRO-3's bf16 partition under sharding);
* gradients = m P / N;  optimizer = 2 m P / N (AdamW's two moments, in the weights' dtype);
* reference model (``train.beta > 0``) = c P / N.

Per micro-batch of b sequences of T tokens, t = b T (:func:`activation_bytes`), the tensors
autograd keeps for the backward of one decoder layer of HF Llama/Qwen2 with SDPA and a padding
mask, per token: 2 (4h + r h) for the two RMSNorms (fp32 input of the variance, normalised
output kept for the weight product), 4 c q for q, k, v (transformers repeats k, v to every head
when there is a mask) and the attention output, 4 heads for the logsumexp, c T for SDPA's mask,
3 c I for the SwiGLU MLP. Without gradient checkpointing all L layers keep theirs; with it each
layer keeps only its input (r h per token) and one layer is recomputed at a time. Outside the
layers: the final norm, the lm head's input and the ids, (4 + r + c) h + 8. These
coefficients were obtained by counting autograd's saved tensors on CPU
(tests/test_scale.py checks them within 2%); on a GPU the kernels may keep slightly different
tensors.

Logits per micro-batch (:func:`logits_bytes`), t_c = b x completion tokens: ``obe.rl.loss.
token_logprobs`` keeps the logits (c), their fp32 copies per chunk for logsumexp's backward (4,
none when c = 4) and, in the backward, the logits' gradient (c): (2c + 4) V t_c (2c V t_c in
fp32), plus chunk temporaries 3 x 1024 x V x 4 (:data:`LOGIT_CHUNK_ROWS`).

KV cache (:func:`kv_cache_bytes`): 2 L kv c per token and sequence. HF ``generate`` in the
trainer (:func:`generate_peak`) holds it for ``train.rollout_batch`` sequences at full length,
with the prefill's one-layer transients before and the sampling logits after. vLLM
(:func:`vllm_memory`) takes ``gpu_memory_utilization`` of the GPU: weights c P / tp, a profiled
activation peak and sampler buffers (estimated below), CUDA graphs (estimated), the rest is KV
cache; it must hold at least one ``max_model_len`` sequence.

The trainer's peak (:func:`training_memory`) is the state plus the worse of the update (one
micro-batch's activations and logits, chunk temporaries, ZeRO-3/FSDP gathered layers) and the
rollouts (HF generate; nothing extra with a colocated vLLM, which has its fixed share).
A plan fits when trainer peak x (1 + :data:`FRAGMENTATION`) + colocated vLLM share +
:data:`RUNTIME_OVERHEAD` <= the GPU's nominal memory (an "80 GB" card has at least 80 x 10^9
bytes). Not measured on a GPU here: FRAGMENTATION, RUNTIME_OVERHEAD, the vLLM estimates and the
GPU kernels' saved tensors are assumptions, stated as such in docs/scale.md.

This module computes; ``obe.scale_tables`` formats its numbers as the tables of docs/scale.md.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]
DOC_PATH = REPO_ROOT / "docs" / "scale.md"
PRESETS = ("configs/qwen2.5-math-1.5b.yaml", "configs/qwen2.5-7b.yaml", "configs/llama-3.1-8b-instruct.yaml")
GB = 1e9

FRAGMENTATION = 0.10        # caching-allocator headroom on the trainer's peak (assumed; not measured)
RUNTIME_OVERHEAD = 1.5e9    # CUDA context, cuBLAS/NCCL workspaces per GPU process (assumed)
LOGIT_CHUNK_ROWS = 1024     # obe.rl.loss.token_logprobs / token_entropy chunk size
VLLM_CUDA_GRAPHS = 1.0e9    # vLLM's captured CUDA graphs (assumed)
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
SHARDINGS = ("none", "zero3", "fsdp")


@dataclass(frozen=True)
class Arch:
    """Architecture numbers of a decoder-only Llama/Qwen2 model (its config.json)."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool                 # tie_word_embeddings: the lm head is the embedding matrix
    max_positions: int         # max_position_embeddings
    qkv_bias: bool             # Qwen2 has biases on q, k, v; Llama none
    dtype: str = "bfloat16"    # the checkpoint's torch_dtype (what base_model.dtype: auto loads)
    published: Optional[str] = None  # parameter count as its publisher states it
    source: str = ""


# Facts from the models' public config.json files (transcribed; no network here). Published
# parameter counts: the Qwen2.5 model cards ("Number of Parameters"; Qwen2.5-Math-1.5B is built on
# Qwen2.5-1.5B, same architecture except context 4096 and rope theta 10^4) and the parameter
# count the hub shows from Llama-3.1-8B-Instruct's safetensors metadata.
ARCHS: dict[str, Arch] = {
    "Qwen/Qwen2.5-Math-1.5B": Arch(
        hidden=1536, layers=28, heads=12, kv_heads=2, head_dim=128, intermediate=8960, vocab=151936,
        tied=True, max_positions=4096, qkv_bias=True, published="1.54B",
        source="https://huggingface.co/Qwen/Qwen2.5-Math-1.5B/blob/main/config.json"),
    "Qwen/Qwen2.5-7B": Arch(
        hidden=3584, layers=28, heads=28, kv_heads=4, head_dim=128, intermediate=18944, vocab=152064,
        tied=False, max_positions=131072, qkv_bias=True, published="7.61B",
        source="https://huggingface.co/Qwen/Qwen2.5-7B/blob/main/config.json"),
    "meta-llama/Llama-3.1-8B-Instruct": Arch(
        hidden=4096, layers=32, heads=32, kv_heads=8, head_dim=128, intermediate=14336, vocab=128256,
        tied=False, max_positions=131072, qkv_bias=False, published="8.03B",
        source="https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct/blob/main/config.json"),
}


def embedded_arch(size: str = "default") -> Arch:
    """The embedded model's numbers, read from obe.base_model (its SIZES and its tokenizer)."""
    from obe import base_model

    s = base_model.SIZES[size]
    vocab = len(base_model.SPECIAL_TOKENS) + 1 + len(base_model.ALPHABET)  # + the \boxed{ token
    return Arch(hidden=s.hidden, layers=s.layers, heads=s.heads, kv_heads=s.heads, head_dim=s.hidden // s.heads,
                intermediate=s.intermediate, vocab=vocab, tied=True, max_positions=s.max_positions,
                qkv_bias=False, dtype="float32", source=f"obe.base_model.SIZES[{size!r}]")


# --------------------------------------------------------------------------- the formulas


def param_count(a: Arch) -> int:
    """P = V h (embedding) [+ V h untied lm head] + L (attention + MLP + 2 norms) + h (final norm).

    Attention: h q (q_proj) + 2 h kv (k, v) + q h (o_proj) [+ q + 2 kv biases]; MLP: 3 h I."""
    q, kv = a.heads * a.head_dim, a.kv_heads * a.head_dim
    attn = a.hidden * q + 2 * a.hidden * kv + q * a.hidden + ((q + 2 * kv) if a.qkv_bias else 0)
    layer = attn + 3 * a.hidden * a.intermediate + 2 * a.hidden
    return a.vocab * a.hidden * (1 if a.tied else 2) + a.layers * layer + a.hidden


@dataclass(frozen=True)
class Precision:
    compute: int   # c: bytes of the forward/backward dtype
    master: int    # m: bytes of the stored weights, gradients and AdamW moments
    residual: int  # r: bytes of the residual stream between layers


def precision(dtype: str, master_weights: str = "float32", sharded: bool = False) -> Precision:
    """The byte sizes of a mixed-precision scheme.

    ``master_weights: float32`` keeps weights, gradients and AdamW state in fp32. In ``obe.train``
    the forward runs under ``torch.autocast``, so the residual stream (additions of fp32 embeddings
    and layer outputs) stays fp32 (r = 4). Under ZeRO-3/FSDP the gathered parameters are cast to
    the compute dtype and there is no autocast: r = c. ``master_weights: model`` keeps everything
    in the compute dtype."""
    c = DTYPE_BYTES[dtype]
    m = 4 if master_weights == "float32" else c
    return Precision(compute=c, master=m, residual=c if sharded else m)


def training_state(params: int, p: Precision, shards: int = 1, reference: bool = False) -> dict[str, float]:
    """Weights, gradients, optimizer state and reference model per GPU (see the module docstring)."""
    copy = params * p.compute if p.master != p.compute else 0
    return {"weights": (params * p.master + copy) / shards, "gradients": params * p.master / shards,
            "optimizer": 2 * params * p.master / shards,
            "reference": params * p.compute / shards if reference else 0.0}


def layer_activation_bytes_per_token(a: Arch, p: Precision, seq_len: int) -> float:
    """Bytes autograd keeps per token for one decoder layer's backward (padded batch, SDPA):
    2 (4h + r h) + 4 c q + 4 heads + c T + 3 c I."""
    q = a.heads * a.head_dim
    norms = 2 * (4 * a.hidden + p.residual * a.hidden)
    attention = 4 * p.compute * q + 4 * a.heads + p.compute * seq_len
    return norms + attention + 3 * p.compute * a.intermediate


def model_activation_bytes_per_token(a: Arch, p: Precision) -> float:
    """Per token outside the layers: the final RMSNorm (4h + r h), the lm head's input (c h) and
    the int64 input ids."""
    return 4 * a.hidden + p.residual * a.hidden + p.compute * a.hidden + 8


def activation_bytes(a: Arch, p: Precision, sequences: int, seq_len: int, checkpointing: bool) -> float:
    """Activations kept for the backward of one micro-batch of ``sequences`` x ``seq_len`` tokens.

    Without checkpointing: t (L x layer + model); with it: t (L r h + layer + model), each layer's
    input kept and one layer recomputed at a time (its gradients are transient and not counted)."""
    t = sequences * seq_len
    layer = layer_activation_bytes_per_token(a, p, seq_len)
    model = model_activation_bytes_per_token(a, p)
    if checkpointing:
        return t * (a.layers * p.residual * a.hidden + layer + model)
    return t * (a.layers * layer + model)


def logits_bytes(a: Arch, p: Precision, sequences: int, completion_tokens: int) -> float:
    """(2c + 4) V t_c (2c V t_c when c = 4): the completion logits, their fp32 chunk copies kept
    for logsumexp's backward (none when c = 4) and the logits' gradient."""
    per = 2 * p.compute + (4 if p.compute < 4 else 0)
    return per * a.vocab * sequences * completion_tokens


def logit_chunk_bytes(a: Arch) -> float:
    """fp32 temporaries of one chunk in token_logprobs / token_entropy: 3 x rows x V x 4."""
    return 3 * LOGIT_CHUNK_ROWS * a.vocab * 4


def kv_cache_bytes(a: Arch, sequences: int, tokens: int, dtype_bytes: int) -> float:
    """2 (keys and values) x L x kv_heads x head_dim x bytes, per token and sequence."""
    return 2 * a.layers * a.kv_heads * a.head_dim * dtype_bytes * sequences * tokens


def generate_peak(a: Arch, p: Precision, sequences: int, prompt_tokens: int, seq_len: int) -> dict[str, float]:
    """HF ``generate`` of ``sequences`` rollouts in one call (no grad), two moments:

    * prefill: KV of the prompts + one layer's transients c t (h + 2q + 2kv + 3I) + the 4-D mask
      c x sequences x prompt_tokens^2;
    * last step: KV at full length + the step's fp32 logits, scores and probabilities 3 x 4 V per
      sequence."""
    q, kv = a.heads * a.head_dim, a.kv_heads * a.head_dim
    c = p.compute
    t = sequences * prompt_tokens
    prefill = (kv_cache_bytes(a, sequences, prompt_tokens, c) + c * t * (a.hidden + 2 * q + 2 * kv + 3 * a.intermediate)
               + c * sequences * prompt_tokens ** 2)
    last = kv_cache_bytes(a, sequences, seq_len, c) + 3 * 4 * a.vocab * sequences
    return {"kv_cache": kv_cache_bytes(a, sequences, seq_len, c), "peak": max(prefill, last)}


def vllm_memory(a: Arch, gpu_bytes: float, utilization: float, dtype_bytes: int, tensor_parallel: int,
                max_model_len: int, max_num_batched_tokens: int, max_num_seqs: int) -> dict[str, float]:
    """What one vLLM worker GPU holds: utilization x GPU memory, of which

    * weights c P / tp;
    * the profiled forward peak, estimated as one layer's transients for max_num_batched_tokens
      tokens, c tokens (h + (2q + 2kv + 3I) / tp), plus the sampler's fp32 logits and
      probabilities 2 x 4 V x max_num_seqs;
    * CUDA graphs (:data:`VLLM_CUDA_GRAPHS`, assumed);
    * the rest: KV cache, in full-length sequences of max_model_len tokens."""
    q, kv = a.heads * a.head_dim, a.kv_heads * a.head_dim
    c, tp = dtype_bytes, tensor_parallel
    share = utilization * gpu_bytes
    weights = param_count(a) * c / tp
    working = (c * max_num_batched_tokens * (a.hidden + (2 * q + 2 * kv + 3 * a.intermediate) / tp)
               + 2 * 4 * a.vocab * max_num_seqs + VLLM_CUDA_GRAPHS)
    kv_budget = share - weights - working
    per_sequence = kv_cache_bytes(a, 1, max_model_len, c) / tp
    return {"share": share, "weights": weights, "working": working, "kv_cache": kv_budget,
            "sequences": max(0, int(kv_budget // per_sequence)), "fits": kv_budget >= per_sequence}


# --------------------------------------------------------------------------- config -> plan


@dataclass(frozen=True)
class Plan:
    """What the formulas read from one merged config."""

    name: str                  # preset file or "config.yaml"
    model: str
    arch: Arch
    dtype: str
    master_weights: str
    seq_len: int               # T: prompt + completion tokens, the longest sequence of a batch
    completion_tokens: int
    sequences_per_gpu: int     # B x n / (GPUs of the training job)
    micro_batch: int           # resolved: 0 in the config means all sequences_per_gpu
    rollout_batch: int         # resolved likewise (trainer rollouts by HF generate only)
    gradient_checkpointing: bool
    reference: bool
    gpu: Optional[str]
    gpu_memory_gb: Optional[float]
    gpus: int                  # of the whole training job (hardware.gpus x hardware.nodes)
    sharding: str
    colocate: Optional[float]  # vLLM colocate share of each training GPU; None: HF generate
    sampling_backend: str
    sampling_utilization: float
    tensor_parallel: int

    @property
    def shards(self) -> int:
        return self.gpus if self.sharding != "none" else 1


def plan_from_config(cfg: Mapping[str, Any], name: str = "config.yaml") -> Plan:
    """The memory plan of a merged config (defaults as in config.yaml for keys it lacks)."""
    bm, tr, sa = cfg["base_model"], cfg["train"], cfg["sampling"]
    hw = cfg.get("hardware") or {}
    if bm.get("embedded", False):
        arch, model = embedded_arch(bm.get("size", "default")), f"embedded ({bm.get('size', 'default')})"
    else:
        model = bm["name_or_path"]
        if model not in ARCHS:
            raise ValueError(f"obe.scale has no architecture numbers for {model!r} (known: {', '.join(ARCHS)}); "
                             "add its config.json facts to obe.scale.ARCHS")
        arch = ARCHS[model]
    dtype = bm.get("dtype", "float32")
    dtype = arch.dtype if dtype == "auto" else dtype
    # The longest sequence: vLLM caps prompt + completion at max_model_len; without it the model's
    # context is the bound.
    seq_len = min(sa.get("max_model_len") or arch.max_positions, arch.max_positions)
    completion = min(sa["max_new_tokens"], seq_len - 1)
    gpus = int(hw.get("gpus") or 1) * int(hw.get("nodes") or 1)  # hardware.gpus is per node
    sharding = hw.get("sharding", "none")
    if sharding not in SHARDINGS:
        raise ValueError(f"hardware.sharding must be one of {SHARDINGS}, got {sharding!r}")
    S = tr["batch_questions"] * tr["n"]
    per_gpu = S // gpus if sharding != "none" else S
    return Plan(
        name=name, model=model, arch=arch, dtype=dtype, master_weights=tr.get("master_weights", "float32"),
        seq_len=seq_len, completion_tokens=completion, sequences_per_gpu=per_gpu,
        micro_batch=tr.get("micro_batch", 0) or per_gpu, rollout_batch=tr.get("rollout_batch", 0) or per_gpu,
        gradient_checkpointing=bool(tr.get("gradient_checkpointing", False)), reference=tr.get("beta", 0) > 0,
        gpu=hw.get("gpu"), gpu_memory_gb=hw.get("gpu_memory_gb"), gpus=gpus, sharding=sharding,
        colocate=hw.get("colocate_vllm"), sampling_backend=sa.get("backend", "hf"),
        sampling_utilization=sa.get("gpu_memory_utilization", 0.9), tensor_parallel=sa.get("tensor_parallel_size", 1))


def load_plan(preset: Optional[str] = None) -> Plan:
    """The plan of ``preset`` merged over config.yaml (as Snakemake merges --configfile), or of
    config.yaml alone."""
    from obe.core.config import load_config

    paths = [str(REPO_ROOT / "config.yaml")]
    if preset:  # relative to the working directory, else to the repository (as PRESETS are)
        path = Path(preset)
        paths.append(str(path if path.is_file() or path.is_absolute() else REPO_ROOT / path))
    return plan_from_config(load_config(*paths), name=preset or "config.yaml")


@dataclass(frozen=True)
class Breakdown:
    """Bytes per GPU of one training job (see :func:`training_memory`)."""

    weights: float
    gradients: float
    optimizer: float
    reference: float
    activations: float         # update: one micro-batch's activations
    logits: float              # update: one micro-batch's logits
    update_other: float        # update: logit chunks, ZeRO-3/FSDP gathered layers
    kv_cache: float            # rollouts: HF generate's KV cache, or the colocated vLLM's KV budget
    rollout: float             # rollouts: HF generate's peak above the state (KV cache included); 0 with vLLM
    trainer_peak: float        # what PyTorch's allocator holds at the worst moment
    vllm_share: float          # colocated vLLM engine (0 without)
    total: float               # trainer_peak x (1 + FRAGMENTATION) + vllm_share + RUNTIME_OVERHEAD
    capacity: Optional[float]  # the GPU's nominal memory; None on CPU
    vllm_sequences: Optional[int] = None  # full-length sequences the colocated KV cache holds

    @property
    def state(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.reference

    @property
    def update(self) -> float:
        return self.activations + self.logits + self.update_other

    @property
    def fits(self) -> Optional[bool]:
        if self.capacity is None:
            return None
        return self.total <= self.capacity and (self.vllm_sequences is None or self.vllm_sequences >= 1)


def training_memory(plan: Plan) -> Breakdown:
    """Peak memory per GPU of the training job: the state (gradients stay allocated between
    steps), plus the worse of the update (one micro-batch's activations and logits) and the
    rollouts (HF generate in the trainer; with vLLM colocated, the engine's fixed share instead)."""
    a = plan.arch
    sharded = plan.sharding != "none"
    p = precision(plan.dtype, plan.master_weights, sharded)
    P = param_count(a)
    state = training_state(P, p, plan.shards, plan.reference)
    act = activation_bytes(a, p, plan.micro_batch, plan.seq_len, plan.gradient_checkpointing)
    lg = logits_bytes(a, p, plan.micro_batch, plan.completion_tokens)
    other = logit_chunk_bytes(a)
    if sharded:
        # ZeRO-3/FSDP gather one unit (a layer, or the embedding) at a time and prefetch the next.
        layer = (P - a.vocab * a.hidden * (1 if a.tied else 2)) / a.layers
        other += 2 * p.compute * max(layer, a.vocab * a.hidden)
    capacity = plan.gpu_memory_gb * GB if plan.gpu and plan.gpu_memory_gb else None
    if plan.colocate:
        if capacity is None:
            raise ValueError(f"{plan.name}: hardware.colocate_vllm needs hardware.gpu and gpu_memory_gb")
        v = vllm_memory(a, capacity, plan.colocate, p.compute, plan.tensor_parallel, plan.seq_len,
                        max_num_batched_tokens=4096,  # what TRL's colocate mode passes to vllm.LLM
                        max_num_seqs=plan.sequences_per_gpu * plan.tensor_parallel)
        kv, rollout, vshare, vseq = v["kv_cache"], 0.0, v["share"], v["sequences"]
    else:
        g = generate_peak(a, p, plan.rollout_batch, plan.seq_len - plan.completion_tokens, plan.seq_len)
        kv, rollout, vshare, vseq = g["kv_cache"], g["peak"], 0.0, None
    peak = sum(state.values()) + max(act + lg + other, rollout)
    total = peak * (1 + FRAGMENTATION) + vshare + (RUNTIME_OVERHEAD if capacity else 0)
    return Breakdown(weights=state["weights"], gradients=state["gradients"], optimizer=state["optimizer"],
                     reference=state["reference"], activations=act, logits=lg, update_other=other, kv_cache=kv,
                     rollout=rollout, trainer_peak=peak, vllm_share=vshare, total=total, capacity=capacity,
                     vllm_sequences=vseq)


def sampling_memory(plan: Plan) -> Optional[dict[str, float]]:
    """The vLLM sampling/evaluation job (its GPU to itself); None for the hf backend or on CPU."""
    if plan.sampling_backend != "vllm" or not plan.gpu_memory_gb:
        return None
    big = plan.gpu_memory_gb >= 70  # vLLM's LLM-class defaults are larger on >= 70 GB cards (assumed)
    return vllm_memory(plan.arch, plan.gpu_memory_gb * GB, plan.sampling_utilization, DTYPE_BYTES[plan.dtype],
                       plan.tensor_parallel, plan.seq_len, max_num_batched_tokens=16384 if big else 8192,
                       max_num_seqs=1024 if big else 256)


# --------------------------------------------------------------------------- CLI


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m obe.scale", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", action="append", default=[],
                    help="a preset merged over config.yaml (repeatable); none: the embedded default")
    ap.add_argument("--markdown", action="store_true", help=f"rewrite the generated tables in {DOC_PATH.relative_to(REPO_ROOT)}")
    args = ap.parse_args(argv)
    # Imported here: obe.scale_tables imports this module's formulas.
    from obe.scale_tables import render_tables, sampling_table, settings_table, training_table, update_doc

    if args.markdown:
        DOC_PATH.write_text(update_doc(DOC_PATH.read_text(encoding="utf-8"), render_tables()), encoding="utf-8")
        print(f"wrote {DOC_PATH}")
        return 0
    plans = [load_plan(c) for c in args.config] or [load_plan(None)]
    print(settings_table(plans), training_table(plans), sampling_table(plans), sep="\n\n")
    return 0 if all(training_memory(p).fits is not False for p in plans) else 1


if __name__ == "__main__":
    sys.exit(main())
