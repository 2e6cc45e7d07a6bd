"""obe.train's model side: the policy (and reference) as loaded for training, their forward
passes (HF, or obe.engines.fastlm's lean engine on CPU) and mixed precision.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from obe.engines.fastlm import LeanLM, resolve_engine
from obe.engines.models import torch_dtype
from obe.rl.loss import token_logprobs


def compute_dtype_of(cfg) -> torch.dtype:
    """The dtype forward passes run in: ``cfg.dtype``, or the checkpoint's own for ``auto``."""
    if cfg.dtype != "auto":
        return torch_dtype(cfg.dtype)
    from transformers import AutoConfig

    own = getattr(AutoConfig.from_pretrained(cfg.model), "dtype", None) or torch.float32
    return getattr(torch, own) if isinstance(own, str) else own


def engine_for(cfg, compute_dtype: torch.dtype) -> str:
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
    if param_dtype == compute_dtype:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=compute_dtype)


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


@dataclass
class Policy:
    """The model being trained and how its forward passes run: ``lean`` (obe.engines.fastlm, or
    None for HF), ``precision`` (autocast to the compute dtype, or a no-op) and the frozen
    reference model of the KL term (None when beta = 0)."""

    model: Any
    lean: Optional[LeanLM]
    precision: Callable
    ref: Any = None
    ref_lean: Optional[LeanLM] = None

    def logits(self, prompt_ids, prompt_mask, comp_ids, comp_mask) -> torch.Tensor:
        with self.precision():
            return forward_logits(self.model, prompt_ids, prompt_mask, comp_ids, comp_mask, self.lean)

    def ref_logits(self, prompt_ids, prompt_mask, comp_ids, comp_mask) -> torch.Tensor:
        with self.precision():
            return forward_logits(self.ref, prompt_ids, prompt_mask, comp_ids, comp_mask, self.ref_lean)

    @torch.no_grad()
    def fixed_logprobs(self, chunks: list, temperature: float, *, old: bool) -> tuple[list, list]:
        """Per micro-batch, the log-probs the loss holds fixed: the behaviour policy's (only with
        ``old``, i.e. mu > 1; with one update the loss detaches the current ones) and the
        reference model's (only with a reference); None where absent."""
        old_lp, ref_lp = [None] * len(chunks), [None] * len(chunks)
        for j, mb in enumerate(chunks):
            if old:
                old_lp[j] = token_logprobs(self.logits(mb.prompt_ids, mb.prompt_mask, mb.completion_ids,
                                                       mb.completion_mask), mb.completion_ids, temperature)
            if self.ref is not None:
                ref_lp[j] = token_logprobs(self.ref_logits(mb.prompt_ids, mb.prompt_mask, mb.completion_ids,
                                                           mb.completion_mask), mb.completion_ids, temperature)
        return old_lp, ref_lp


def load_policy(cfg, checkpoint: Optional[Path], dev: torch.device) -> Policy:
    """The policy (from ``checkpoint``'s model, else ``cfg.model``) on ``dev`` in train mode, and
    the reference model when ``cfg.beta > 0``.

    Mixed precision (``--master-weights``): the compute dtype is the model's (bf16 in the GPU
    presets); fp32 master weights keep AdamW updates that are smaller than bf16's resolution
    (lr 1e-6 on weights of size ~0.01), at 16 bytes per parameter instead of 8."""
    from transformers import AutoModelForCausalLM

    compute_dtype = compute_dtype_of(cfg)
    param_dtype = torch.float32 if cfg.master_weights == "float32" else compute_dtype
    model = AutoModelForCausalLM.from_pretrained(str(checkpoint / "model") if checkpoint else cfg.model, dtype=param_dtype)
    model.to(dev).train()
    if cfg.gradient_checkpointing:  # transformers >= 5.2x renamed it; the GPU pin (5.17) has the old name
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lean = resolve_engine(engine_for(cfg, compute_dtype), model, dev)
    print(f"obe.train: engine {'lean (obe.engines.fastlm)' if lean else 'hf'}; weights {param_dtype}, compute {compute_dtype}"
          f"{', gradient checkpointing' if cfg.gradient_checkpointing else ''}", file=sys.stderr, flush=True)
    policy = Policy(model, lean, autocast_factory(dev, param_dtype, compute_dtype))
    if cfg.beta > 0:  # no gradients: held in the compute dtype
        policy.ref = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=compute_dtype).to(dev).eval().requires_grad_(False)
        policy.ref_lean = LeanLM(policy.ref) if lean is not None else None
    return policy
