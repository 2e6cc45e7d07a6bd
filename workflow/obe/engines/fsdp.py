"""What the trl backend does itself when the policy is sharded with FSDP2 (``fully_shard``): gather
the weights for an HF folder, and accumulate gradients sharded.

Accelerate 1.15 shards the policy (configs/accelerate/fsdp.yaml: ``fsdp_version: 2``,
``TRANSFORMER_BASED_WRAP``) into one FSDP unit per decoder layer, one for the input embedding
(untied), one for [final norm, lm head] that stays gathered from the forward to the backward, and
the root. Two things the HF ``Trainer`` (transformers 5.17) and accelerate get wrong for us there:

1. **Saving a model folder.** ``Trainer.save_model`` writes weights under FSDP only with
   ``FULL_STATE_DICT``; with ``SHARDED_STATE_DICT`` (what checkpoints for resume should be) it
   writes nothing, so ``snapshots/`` and ``final/`` would hold a tokenizer and no weights.
   :func:`full_state_dict` gathers the full state dict (every rank calls it; the main process
   gets it) for ``save_pretrained(state_dict=...)``; checkpoints stay sharded.

2. **Gradient accumulation.** ``Trainer._inner_training_loop`` runs every micro-batch but the last
   of an optimizer step inside ``accelerator.no_sync(model)``, which for FSDP2 is
   ``model.set_requires_gradient_sync(False)``. FSDP2 then skips the reduce-scatter and keeps
   each parameter's *unsharded* gradient on every rank until the last micro-batch: 2 P bytes
   per GPU more than the sharded fp32 gradient (P parameters, in the all-gather dtype bf16; in
   fp32, 4 P, when the reduce dtype is fp32), and the micro-batches are summed in bf16 although
   the master weights are fp32. :func:`sharded_accumulation` switches the reduce-scatter back on
   for each micro-batch: the gradient of every micro-batch is reduce-scattered and added to the
   sharded ``.grad``, which has the parameters' own dtype (fp32 master weights: fp32).
   Cost: one reduce-scatter per micro-batch instead of one per optimizer step, i.e. P x (reduce
   dtype bytes) x (N - 1) / N sent per GPU and micro-batch, overlapped with the backward of the
   next unit; no memory beyond FSDP's per-unit reduce-scatter buffers. (Computed, not measured:
   for 7.6B parameters in bf16 over 8 GPUs, 13 GB per micro-batch, ~0.04 s at ~350 GB/s of
   NVLink bus bandwidth, against ~1 s of compute for 2 x 4096 tokens.)
   The loop does not use accelerate's ``accumulate`` (transformers gives accelerate
   ``num_steps=1`` and calls ``no_sync`` itself); both skip ``no_sync`` when the gradient
   accumulation plugin has ``sync_each_batch=True``, which ``TrainingArguments(accelerator_config=
   {"gradient_accumulation_kwargs": {"sync_each_batch": True}})`` sets: the same effect as
   :func:`sharded_accumulation`, through HF's configuration instead of the trainer.

The dtypes under our settings (``grpo_args`` in :mod:`obe.engines.trl_trainer`: the policy loaded
in fp32 for ``master_weights: float32``, ``TrainingArguments(bf16=True)``; the launch config's
``mixed_precision: 'no'``): transformers sets ``args.mixed_precision = "bf16"`` and creates the
``Accelerator`` with it, so accelerate's FSDP plugin builds ``MixedPrecisionPolicy(param_dtype=
bf16, reduce_dtype=bf16, output_dtype=bf16)`` and wraps the forward in bf16 autocast. FSDP2 keeps
the fp32 shards (the master weights), all-gathers them cast to bf16 and computes the gradients
in bf16; as reduce dtype = param dtype it reduce-scatters in bf16, then casts the reduced shard
to fp32 and adds it to the fp32 sharded ``.grad``. So with :func:`sharded_accumulation` the sum
over micro-batches is fp32 and only the sum over ranks of one micro-batch is bf16;
:func:`mixed_precision_policy` (bf16 compute, fp32 reduce) makes that fp32 as well, at twice the
bytes per reduce-scatter.

Everything here uses torch's public FSDP2 API, so tests drive it through ``fully_shard`` on CPU
(gloo), where accelerate cannot run FSDP at all (``distributed_type: FSDP`` with ``use_cpu``
becomes MULTI_CPU and saves full weights).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn


def fsdp2_units(model: nn.Module) -> list[nn.Module]:
    """The modules of ``model`` that ``fully_shard`` made FSDP2 units (none: not sharded)."""
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


def is_fsdp2(model: nn.Module) -> bool:
    return bool(fsdp2_units(model))


def full_state_dict(model: nn.Module, dtype: Optional[torch.dtype] = None) -> dict[str, torch.Tensor]:
    """The full, unsharded state dict of ``model``, as CPU tensors, on global rank 0 (the main
    process); ``{}`` on the other ranks. Collective: every rank must call it, in the same order.

    Each parameter is all-gathered in turn (one full parameter on the GPU at a time; on rank 0
    the whole state dict in host memory), with ``torch.distributed.checkpoint.state_dict.
    get_model_state_dict(full_state_dict=True, cpu_offload=True)``. A model that is not
    sharded gives its own state dict the same way. ``dtype`` casts the floating-point tensors
    (e.g. to the checkpoint's bf16); None keeps the parameters' dtype (fp32 master weights: fp32).

    Accelerate 1.15's ``Accelerator.get_state_dict(model)`` does the same for FSDP2 (the same
    call, plus ``broadcast_from_rank0=True``, which only matters when loading). We call torch
    directly because accelerate takes that branch only when its own state is FSDP2: on CPU,
    where accelerate cannot run FSDP, it would return the local DTensor shards instead, so tests
    could not check the gather, and the function would need an ``Accelerator``.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    return state


def sharded_accumulation(model: nn.Module) -> bool:
    """Make the next backward of ``model`` reduce-scatter its gradients into the sharded ``.grad``
    (sharded accumulation; see the module docstring). Call it at the start of each micro-batch's
    ``training_step``: the HF loop has just entered ``accelerator.no_sync(model)``, which turned the
    reduce-scatter off; no_sync turns it back on as it exits, so nothing needs restoring.
    Returns whether ``model`` is FSDP2-sharded (otherwise nothing is done)."""
    units = fsdp2_units(model)
    for unit in units:
        unit.set_requires_gradient_sync(True, recurse=False)
    return bool(units)


def mixed_precision_policy(compute: torch.dtype, reduce: torch.dtype = torch.float32):
    """FSDP2's ``MixedPrecisionPolicy`` with ``compute`` for the gathered parameters, the
    gradients and the root's outputs (as accelerate builds it) and ``reduce`` for the
    reduce-scatter (accelerate uses ``compute``). Put it on the plugin before the model is
    prepared: ``accelerator.state.fsdp_plugin.mixed_precision_policy = mixed_precision_policy(...)``."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    return MixedPrecisionPolicy(param_dtype=compute, reduce_dtype=reduce, output_dtype=compute)
