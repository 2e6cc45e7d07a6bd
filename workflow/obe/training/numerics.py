"""The trainer's small numeric pieces: data order (:func:`batch_indices`), the LR schedule
(:func:`lr_lambda`), the completion forward pass (:func:`forward_logits`), precision
(:func:`compute_dtype_of`, :func:`engine_for`, :func:`autocast_factory`) and peak memory.
"""

from __future__ import annotations

import math
import random
from functools import lru_cache
from typing import Optional

import torch

from obe.engines.fastlm import LeanLM
from obe.engines.generation import derive_seed
from obe.engines.models import torch_dtype
from obe.training.config import TrainConfig


def lr_lambda(cfg: TrainConfig):
    """The LR factor of ``LambdaLR``: linear warm-up over ``warmup_steps``, then constant or cosine to 0.

    i = training steps (batches) done so far: the scheduler steps once per batch, after its mu
    updates, so the cosine reaches 0 at the last step whatever mu is."""
    def factor(i: int) -> float:
        if i < cfg.warmup_steps:
            return (i + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "constant":
            return 1.0
        progress = (i - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def batch_indices(num: int, pos: int, size: int, seed: int) -> list[int]:
    """Record indices ``pos .. pos+size-1`` of the infinite stream of seeded per-epoch shuffles."""
    @lru_cache(maxsize=4)
    def perm(epoch: int) -> list[int]:
        order = list(range(num))
        random.Random(derive_seed(seed, "epoch", epoch)).shuffle(order)
        return order
    return [perm(g // num)[g % num] for g in range(pos, pos + size)]


def forward_logits(model, prompt_ids, prompt_mask, comp_ids, comp_mask, lean: Optional[LeanLM] = None) -> torch.Tensor:
    """``[S, T, V]`` logits of the completion tokens (one forward, lm head on T+1 positions).

    Position ids follow the left padding (``cumsum(mask) - 1``), as ``generate`` does. With
    ``lean`` (a :class:`LeanLM` of ``model``), the same logits from obe.engines.fastlm, which runs
    each distinct prompt once for its n completions."""
    if lean is not None:
        return lean.completion_logits(prompt_ids, prompt_mask, comp_ids, comp_mask)
    dev = next(model.parameters()).device
    ids = torch.cat([prompt_ids, comp_ids], dim=1).to(dev)
    attn = torch.cat([prompt_mask, comp_mask], dim=1).to(dev)
    pos = (attn.cumsum(-1) - 1).masked_fill(attn == 0, 0)
    T = comp_ids.shape[1]
    out = model(input_ids=ids, attention_mask=attn, position_ids=pos, logits_to_keep=T + 1, use_cache=False)
    return out.logits[:, :-1].float()  # log-softmax over the vocabulary in fp32 (a no-op in fp32)


def peak_memory_gb(device: torch.device) -> float:
    """Peak memory of this process so far (GB): what torch allocated on a CUDA device, else the
    host's resident set (Linux reports ru_maxrss in KiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def compute_dtype_of(cfg: TrainConfig) -> torch.dtype:
    """The dtype forward passes run in: ``cfg.dtype``, or the checkpoint's own for ``auto``."""
    if cfg.dtype != "auto":
        return torch_dtype(cfg.dtype)
    from transformers import AutoConfig

    own = getattr(AutoConfig.from_pretrained(cfg.model), "dtype", None) or torch.float32
    return getattr(torch, own) if isinstance(own, str) else own


def engine_for(cfg: TrainConfig, compute_dtype: torch.dtype) -> str:
    """The engine option to resolve: obe.engines.fastlm runs fp32 without activation checkpointing, so
    ``auto`` means hf for a lower compute dtype or gradient checkpointing; ``lean`` is refused."""
    if compute_dtype == torch.float32 and not cfg.gradient_checkpointing:
        return cfg.engine
    if cfg.engine == "lean":
        raise SystemExit("engine lean runs in float32 without gradient checkpointing; "
                         "use engine hf or auto with dtype bfloat16/float16 or gradient_checkpointing")
    return "hf"


def autocast_factory(device: torch.device, param_dtype: torch.dtype, compute_dtype: torch.dtype):
    """A context-manager factory: ``torch.autocast`` to the compute dtype when the weights are kept
    in a wider one (mixed precision), else a no-op (fp32 runs are unchanged bit for bit)."""
    import contextlib

    if param_dtype == compute_dtype:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=compute_dtype)
