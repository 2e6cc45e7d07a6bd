"""The trainers' small numeric pieces: data order (:func:`batch_indices`), the LR schedule
(:func:`lr_lambda`) and peak memory. (obe.train's forward passes and precision are in
:mod:`obe.engines.policy`.)
"""

from __future__ import annotations

import math
import random
from functools import lru_cache

import torch

from obe.core.seeds import derive_seed
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


def peak_memory_gb(device: torch.device) -> float:
    """Peak memory of this process so far (GB): what torch allocated on a CUDA device, else the
    host's resident set (Linux reports ru_maxrss in KiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
