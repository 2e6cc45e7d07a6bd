"""Memory per GPU of a preset's training and sampling jobs, computed from architecture numbers
and the config (docs/scale.md is this module's output, rendered by :mod:`obe.scale.tables`).

    python -m obe.scale --config configs/qwen2.5-7b.yaml   # one preset, merged over config.yaml
    python -m obe.scale --markdown                         # rewrites the tables in docs/scale.md

Everything is in bytes; tables print GB (10^9 bytes). Notation: P parameters, N the GPUs the
training state is sharded over (1 without sharding), L layers, h hidden size, I MLP
intermediate size, V vocabulary, q = heads x head_dim, kv = kv_heads x head_dim, c the bytes of
the compute dtype (``base_model.dtype``), m the bytes of the stored weights (4 with
``train.master_weights: float32``, else c), r the bytes of the residual stream between layers,
U the parameters of one decoder layer.

Training state (:func:`training_state`), AdamW, no offload:

* weights   = m P / N, plus c P / N for a compute-dtype copy: torch.autocast's cached casts of
  the fp32 weights on one GPU (``obe.train``, the trl backend), ZeRO-3's bf16 partition; FSDP2
  keeps only the fp32 shards (it casts a unit to bf16 as it gathers it);
* gradients = m P / N;  optimizer = 2 m P / N (AdamW's two moments, in the weights' dtype);
* reference model (``train.beta > 0``): in the dtype its trainer loads it in. The trl backend:
  TRL 1.16 loads it with the policy's ``model_init_kwargs``, i.e. fp32 (m) for fp32 master
  weights, sharded over N under FSDP (TRL's ``prepare_fsdp`` wraps it as ONE unit, so its
  forward gathers the whole model, c P, during the rollouts) and in bf16 (c) under ZeRO-3
  (DeepSpeed casts it); ``obe.train`` holds it in c.

Gradient accumulation (:func:`accumulation_bytes`): with FSDP2, a micro-batch run under
accelerate's ``no_sync`` keeps the unsharded gradient of every parameter on every GPU until the
step's last micro-batch, c P bytes (FSDP's reduce dtype equals the compute dtype under
accelerate's policy). The trl backend reduce-scatters every micro-batch instead
(``obe.engines.fsdp.sharded_accumulation``): 0 bytes extra, and per unit a reduce-scatter
buffer, (c + 4) U for the largest decoder layer (its gradient and an fp32 copy).

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

LM head per micro-batch, t_c = b x completion tokens. ``obe.train`` (:func:`logits_bytes`):
``obe.rl.loss.token_logprobs`` keeps the logits (c), their fp32 copies per chunk for
logsumexp's backward (4, none when c = 4) and, in the backward, the logits' gradient (c):
(2c + 4) V t_c (2c V t_c in fp32), plus chunk temporaries 3 x 1024 x V x 4
(:data:`LOGIT_CHUNK_ROWS`). The trl backend (:func:`trl_lm_head_bytes`): TRL 1.16 never
materialises the logits; its chunked log-prob function keeps the completion positions' hidden
states (r h t_c) and three per-token numbers (16 t_c), and its backward allocates fp32
gradients of the head weight and of those hidden states (4 V h + 4 h t_c), their casts to the
weight's and the hidden states' dtypes (w V h when the head weight is read in w = c < 4 bytes,
r h t_c when r < 4) and one projection tile of 4096 tokens x 32768 vocabulary entries in c.

KV cache (:func:`kv_cache_bytes`): 2 L kv c per token and sequence. HF ``generate`` in the
trainer (:func:`generate_peak`) holds it for ``train.rollout_batch`` sequences at full length,
with the prefill's one-layer transients before and the sampling logits after. vLLM
(:func:`vllm_memory`) takes ``gpu_memory_utilization`` of the memory torch reports for the GPU
(:func:`gpu_capacity`, more than the nominal "80 GB"): weights c P / tp, a profiled
activation peak and sampler buffers (estimated below), CUDA graphs (estimated), the rest is KV
cache; it must hold at least one ``max_model_len`` sequence.

The trainer's peak (:func:`training_memory`) is the state plus the worst of the update (one
micro-batch's activations and LM head, the unsharded gradients without sharded accumulation,
ZeRO-3/FSDP gathered units and reduce buffers), the rollouts (HF generate; with a colocated
vLLM, whose share is fixed, the trainer only adds the weight sync to vLLM, one parameter
gathered in m at a time under sharding, and the reference model's forward) and the optimizer
step (torch's foreach AdamW makes one temporary the size of the local parameters, m P / N).
A plan fits when trainer peak x (1 + :data:`FRAGMENTATION`) + colocated vLLM share +
:data:`RUNTIME_OVERHEAD` <= the GPU's capacity, and keeps :data:`HEADROOM` of it free for what is not counted. Not
measured on a GPU here: FRAGMENTATION, RUNTIME_OVERHEAD, the vLLM estimates, the GPU kernels'
saved tensors and the capacities are assumptions or transcriptions, stated as such in
docs/scale.md.

This module computes; :mod:`obe.scale.tables` formats its numbers as the tables of docs/scale.md,
and ``python -m obe.scale`` (:mod:`obe.scale.__main__`) is the command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

REPO_ROOT = Path(__file__).resolve().parents[3]
PRESETS = ("configs/qwen2.5-math-1.5b.yaml", "configs/qwen2.5-7b.yaml", "configs/llama-3.1-8b-instruct.yaml")
GB = 1e9

FRAGMENTATION = 0.10        # caching-allocator headroom on the trainer's peak (assumed; not measured)
HEADROOM = 0.10             # share of the GPU a preset's plan leaves free for what is not counted
RUNTIME_OVERHEAD = 1.5e9    # CUDA context, cuBLAS/NCCL workspaces per GPU process (assumed)
LOGIT_CHUNK_ROWS = 1024     # obe.rl.loss.token_logprobs / token_entropy chunk size
TRL_TILE = (4096, 32768)    # TRL 1.16's chunked log-prob tile: tokens (TOKEN_CHUNK_SIZE) x vocabulary entries
VLLM_CUDA_GRAPHS = 1.0e9    # vLLM's captured CUDA graphs (assumed)
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
GIB = 2 ** 30
# What torch.cuda.mem_get_info() reports as the total of a GPU (the base of vLLM's
# gpu_memory_utilization), by hardware.gpu. Transcribed, not measured here: PyTorch's
# out-of-memory messages on H100 80GB HBM3 cards read "total capacity of 79.18 GiB" to "79.21 GiB"
# (public issue threads), so 79.18 GiB. A GPU not listed counts gpu_memory_gb x 10^9 bytes.
GPU_CAPACITY = {"H100-80GB": 79.18 * GIB}
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


def training_state(params: int, p: Precision, shards: int = 1, reference: float = 0.0,
                   compute_copy: bool = True) -> dict[str, float]:
    """Weights, gradients, optimizer state and reference model per GPU (see the module docstring).
    ``reference``: the bytes per parameter the reference model is held in (0: none), sharded
    like the policy; ``compute_copy``: whether a compute-dtype copy of the weights is kept when
    m != c (not under FSDP2)."""
    copy = params * p.compute if p.master != p.compute and compute_copy else 0
    return {"weights": (params * p.master + copy) / shards, "gradients": params * p.master / shards,
            "optimizer": 2 * params * p.master / shards, "reference": params * reference / shards}


def accumulation_bytes(params: int, p: Precision, sharded_accumulation: bool) -> float:
    """Gradients held beyond the sharded ones while micro-batches accumulate under FSDP2: none
    when every micro-batch reduce-scatters (obe.engines.fsdp.sharded_accumulation), else the
    unsharded gradient of every parameter in the compute dtype, c P (accelerate's no_sync)."""
    return 0.0 if sharded_accumulation else params * p.compute


def decoder_layer_params(a: Arch) -> float:
    """U: the parameters of one decoder layer (what one FSDP unit of accelerate's layout holds)."""
    return (param_count(a) - a.hidden - a.vocab * a.hidden * (1 if a.tied else 2)) / a.layers


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


def trl_lm_head_bytes(a: Arch, p: Precision, sequences: int, completion_tokens: int, weight_bytes: int,
                      tile: tuple[int, int] = TRL_TILE) -> dict[str, float]:
    """TRL 1.16's chunked log-probs of one micro-batch (``add_fused_lm_head``; t_c = sequences x
    completion tokens, w = ``weight_bytes`` of the head weight as it is read):

    * kept for the backward: the completion positions' hidden states r h t_c, their targets
      (int64), log-normaliser and entropy (fp32), 16 t_c;
    * backward: fp32 gradients 4 V h + 4 h t_c, their casts w V h (w < 4) and r h t_c (r < 4),
      one tile of min(t_c, tokens) x vocabulary entries in c (that wide even for a smaller V)
      and the casts to c of one vocabulary chunk of the weight (w != c) and of one token chunk
      of the hidden states (r != c)."""
    t = sequences * completion_tokens
    kept = t * (p.residual * a.hidden + 16)
    grads = 4 * a.vocab * a.hidden + 4 * a.hidden * t
    casts = (weight_bytes * a.vocab * a.hidden if weight_bytes < 4 else 0) + (p.residual * a.hidden * t if p.residual < 4 else 0)
    tiles = (min(t, tile[0]) * tile[1] * p.compute + (tile[1] * a.hidden * p.compute if weight_bytes != p.compute else 0)
             + (min(t, tile[0]) * a.hidden * p.compute if p.residual != p.compute else 0))
    return {"kept": kept, "backward": grads + casts + tiles, "total": kept + grads + casts + tiles}


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
    backend: str = "obe"       # train.backend: obe (obe.train) | trl (TRL's GRPOTrainer, obe.engines.trl_backend)
    sharded_accumulation: bool = True  # FSDP2: every micro-batch reduce-scatters (obe.engines.fsdp); False: no_sync

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
        sampling_utilization=sa.get("gpu_memory_utilization", 0.9), tensor_parallel=sa.get("tensor_parallel_size", 1),
        backend=tr.get("backend", "obe"))


def load_plan(preset: Optional[str] = None) -> Plan:
    """The plan of ``preset`` merged over config.yaml (as Snakemake merges --configfile), or of
    config.yaml alone."""
    from obe.core.config import load_config

    paths = [str(REPO_ROOT / "config.yaml")]
    if preset:  # relative to the working directory, else to the repository (as PRESETS are)
        path = Path(preset)
        paths.append(str(path if path.is_file() or path.is_absolute() else REPO_ROOT / path))
    return plan_from_config(load_config(*paths), name=preset or "config.yaml")


def gpu_capacity(plan: Plan) -> Optional[float]:
    """The bytes torch reports for one GPU of the plan (:data:`GPU_CAPACITY`, else the nominal
    ``gpu_memory_gb``); None on CPU."""
    if not (plan.gpu and plan.gpu_memory_gb):
        return None
    return GPU_CAPACITY.get(plan.gpu, plan.gpu_memory_gb * GB)


@dataclass(frozen=True)
class Breakdown:
    """Bytes per GPU of one training job (see :func:`training_memory`)."""

    weights: float
    gradients: float
    optimizer: float
    reference: float
    accumulation: float        # update: unsharded gradients kept between micro-batches (FSDP2 under no_sync)
    activations: float         # update: one micro-batch's activations
    logits: float              # update: one micro-batch's LM head (obe's logits, or TRL's chunked log-probs)
    update_other: float        # update: logit chunks, ZeRO-3/FSDP gathered units and reduce buffers
    kv_cache: float            # rollouts: HF generate's KV cache, or the colocated vLLM's KV budget
    rollout: float             # rollouts: HF generate's peak (KV cache included); with vLLM: weight sync, reference forward
    step: float                # optimizer step: foreach AdamW's temporary the size of the local parameters
    trainer_peak: float        # what PyTorch's allocator holds at the worst moment
    vllm_share: float          # colocated vLLM engine (0 without)
    total: float               # trainer_peak x (1 + FRAGMENTATION) + vllm_share + RUNTIME_OVERHEAD
    capacity: Optional[float]  # what torch reports for the GPU (gpu_capacity); None on CPU
    vllm_sequences: Optional[int] = None  # full-length sequences the colocated KV cache holds

    @property
    def state(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.reference

    @property
    def update(self) -> float:
        return self.accumulation + self.activations + self.logits + self.update_other

    @property
    def fits(self) -> Optional[bool]:
        if self.capacity is None:
            return None
        return self.total <= self.capacity and (self.vllm_sequences is None or self.vllm_sequences >= 1)

    @property
    def headroom(self) -> Optional[float]:
        """The share of the GPU the plan leaves free (None on CPU)."""
        return None if self.capacity is None else 1 - self.total / self.capacity

    @property
    def keeps_headroom(self) -> Optional[bool]:
        """Fits with :data:`HEADROOM` of the GPU to spare."""
        return None if self.fits is None else bool(self.fits and self.headroom >= HEADROOM)


def training_memory(plan: Plan) -> Breakdown:
    """Peak memory per GPU of the training job: the state (counted throughout), plus the worst
    of the update (one micro-batch's activations and LM head, plus what sharding and gradient
    accumulation hold), the rollouts (HF generate in the trainer; with vLLM colocated, the
    engine's fixed share, and in the trainer the weight sync and the reference forward) and the
    optimizer step."""
    a = plan.arch
    sharded, fsdp = plan.sharding != "none", plan.sharding == "fsdp"
    p = precision(plan.dtype, plan.master_weights, sharded)
    P = param_count(a)
    if not plan.reference:
        ref = 0
    elif plan.backend == "trl" and plan.sharding != "zero3":
        ref = p.master  # TRL loads it like the policy (model_init_kwargs: fp32 for fp32 master weights)
    else:
        ref = p.compute
    state = training_state(P, p, plan.shards, ref, compute_copy=not fsdp)
    accumulation = accumulation_bytes(P, p, plan.sharded_accumulation) if fsdp else 0.0
    act = activation_bytes(a, p, plan.micro_batch, plan.seq_len, plan.gradient_checkpointing)
    if plan.backend == "trl":
        head, other = trl_lm_head_bytes(a, p, plan.micro_batch, plan.completion_tokens,
                                        weight_bytes=p.compute if sharded else p.master)["total"], 0.0
    else:
        head, other = logits_bytes(a, p, plan.micro_batch, plan.completion_tokens), logit_chunk_bytes(a)
    layer = decoder_layer_params(a)
    if sharded:
        # ZeRO-3/FSDP gather one unit (a layer, or the embedding / lm head) at a time and prefetch the next.
        other += 2 * p.compute * max(layer, a.vocab * a.hidden)
    if fsdp:
        other += (p.compute + 4) * layer  # a layer's gradient and its reduce-scatter copy (fp32 counted)
    capacity = gpu_capacity(plan)
    if plan.colocate:
        if capacity is None:
            raise ValueError(f"{plan.name}: hardware.colocate_vllm needs hardware.gpu and gpu_memory_gb")
        v = vllm_memory(a, capacity, plan.colocate, p.compute, plan.tensor_parallel, plan.seq_len,
                        max_num_batched_tokens=4096,  # what TRL's colocate mode passes to vllm.LLM
                        max_num_seqs=plan.sequences_per_gpu * plan.tensor_parallel)
        # Weight sync to vLLM: sharded, one parameter gathered in m at a time (the largest is V h).
        sync = p.master * a.vocab * a.hidden if sharded else 0.0
        # The reference's forward (no grad): TRL shards it as ONE FSDP unit, gathered whole in c.
        ref_forward = (p.compute * P + TRL_TILE[0] * TRL_TILE[1] * p.compute
                       if plan.reference and fsdp and plan.backend == "trl" else 0.0)
        kv, rollout, vshare, vseq = v["kv_cache"], max(sync, ref_forward), v["share"], v["sequences"]
    else:
        g = generate_peak(a, p, plan.rollout_batch, plan.seq_len - plan.completion_tokens, plan.seq_len)
        kv, rollout, vshare, vseq = g["kv_cache"], g["peak"], 0.0, None
    step = p.master * P / plan.shards  # torch's foreach AdamW: sqrt of the second moments, a new list
    peak = sum(state.values()) + max(accumulation + act + head + other, rollout, step)
    total = peak * (1 + FRAGMENTATION) + vshare + (RUNTIME_OVERHEAD if capacity else 0)
    return Breakdown(weights=state["weights"], gradients=state["gradients"], optimizer=state["optimizer"],
                     reference=state["reference"], accumulation=accumulation, activations=act, logits=head,
                     update_other=other, kv_cache=kv, rollout=rollout, step=step, trainer_peak=peak, vllm_share=vshare,
                     total=total, capacity=capacity, vllm_sequences=vseq)


def sampling_memory(plan: Plan) -> Optional[dict[str, float]]:
    """The vLLM sampling/evaluation job (its GPU to itself); None for the hf backend or on CPU."""
    if plan.sampling_backend != "vllm" or not plan.gpu_memory_gb:
        return None
    big = plan.gpu_memory_gb >= 70  # vLLM's LLM-class defaults are larger on >= 70 GB cards (assumed)
    return vllm_memory(plan.arch, gpu_capacity(plan), plan.sampling_utilization, DTYPE_BYTES[plan.dtype],
                       plan.tensor_parallel, plan.seq_len, max_num_batched_tokens=16384 if big else 8192,
                       max_num_seqs=1024 if big else 256)
