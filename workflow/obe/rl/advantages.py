"""Group-relative advantages (GRPO), as pure functions on a ``[B, n]`` reward table.

Row ``b`` holds the ``n`` samples drawn for question ``b``. The reward is binary:
1.0 for a correct final answer, else 0.0 (:func:`binary_rewards`). The advantage of
sample ``i`` in its group is

    scale="group":  A_i = (r_i - mean(r)) / (std(r) + eps)
    scale="none":   A_i =  r_i - mean(r)                      (Dr. GRPO style)

``std`` names the standard-deviation convention:

* ``"sample"`` (the DEFAULT): unbiased sample std, ddof=1, divides by ``n - 1``. This is
  what TRL's GRPOTrainer (``torch.std``) and verl use.
* ``"population"``: ddof=0, divides by ``n``.

Example, rewards ``[1, 0, 0, 1]`` (mean 0.5):
population std = sqrt(4 * 0.25 / 4) = 0.5    -> A = +-0.5 / 0.5 = [1, -1, -1, 1];
sample std     = sqrt(4 * 0.25 / 3) = 0.5774 -> A = +-0.5 / 0.5774 = +-0.866.

A group whose rewards are all equal (all right, all wrong, or ``n == 1``) gets advantage
exactly ``+0.0`` under every setting: no signal, and no ``0 / eps`` round-off or ``0 / 0``
when ``eps == 0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Union

import torch

Scale = Literal["group", "none"]
StdKind = Literal["sample", "population"]

SCALES: tuple[str, ...] = ("group", "none")
STD_DDOF: dict[str, int] = {"population": 0, "sample": 1}

RewardsLike = Union[torch.Tensor, Sequence[Sequence[float]]]


@dataclass(frozen=True)
class AdvantageConfig:
    """How rewards become advantages; see the module docstring.

    scale: ``"group"`` divides by the group std (+ eps), ``"none"`` only centres.
    std: ``"sample"`` (ddof=1, default, as TRL/verl) or ``"population"`` (ddof=0).
    eps: added to the std before dividing (TRL uses 1e-4; we default to 1e-6).
    """

    scale: Scale = "group"
    std: StdKind = "sample"
    eps: float = 1e-6

    def __post_init__(self) -> None:
        _check_options(self.scale, self.std, self.eps)


def _check_options(scale: str, std: str, eps: float) -> None:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if std not in STD_DDOF:
        raise ValueError(f"std must be one of {tuple(STD_DDOF)}, got {std!r}")
    if not eps >= 0.0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")


def as_float_table(values: RewardsLike, name: str = "rewards_Bn") -> torch.Tensor:
    """A ``[B, n]`` floating tensor from a tensor or nested lists (ints/bools become the
    default float dtype; floating tensors keep their dtype)."""
    t = torch.as_tensor(values)
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    if t.dim() != 2:
        raise ValueError(f"{name} must be [B, n] (questions x samples), got shape {tuple(t.shape)}")
    if t.shape[0] > 0 and t.shape[1] == 0:
        raise ValueError(f"{name} has empty groups (n = 0)")
    return t


# A reward above this is a correct answer (rewards are 1 correct / 0 wrong; a group is solved
# when one of its rewards is above it). The one definition, for the trainers and metrics too.
CORRECT_THRESHOLD = 0.5


def binary_rewards(correct_Bn: RewardsLike) -> torch.Tensor:
    """Reward 1.0 for a correct final answer, else 0.0 (``correct_Bn`` booleans/0-1)."""
    c = torch.as_tensor(correct_Bn)
    return as_float_table(c != 0, name="correct_Bn")


def group_advantages(
    rewards_Bn: RewardsLike,
    scale: Scale = "group",
    std: StdKind = "sample",
    eps: float = 1e-6,
) -> torch.Tensor:
    """Group-relative advantages ``[B, n]``: ``(r - mean) / (std + eps)`` per row.

    ``std="sample"`` (default) uses ddof=1 (TRL/verl), ``std="population"`` ddof=0;
    ``scale="none"`` returns ``r - mean`` only. Rows with all-equal rewards give +0.0.
    """
    _check_options(scale, std, eps)
    r_Bn = as_float_table(rewards_Bn)
    n = r_Bn.shape[1]
    centered_Bn = r_Bn - r_Bn.mean(dim=1, keepdim=True)
    if scale == "group":
        ddof = STD_DDOF[std]
        if n - ddof > 0:
            std_B1 = r_Bn.std(dim=1, keepdim=True, correction=ddof)
        else:  # n == 1 with the sample std: undefined; the group is constant anyway
            std_B1 = torch.zeros_like(centered_Bn[:, :1])
        adv_Bn = centered_Bn / (std_B1 + eps)
    else:
        adv_Bn = centered_Bn
    constant_B1 = r_Bn.amax(dim=1, keepdim=True) == r_Bn.amin(dim=1, keepdim=True)
    return adv_Bn.masked_fill(constant_B1, 0.0)


def group_advantages_cfg(rewards_Bn: RewardsLike, cfg: AdvantageConfig | None = None) -> torch.Tensor:
    """:func:`group_advantages` with the options from an :class:`AdvantageConfig`."""
    cfg = cfg or AdvantageConfig()
    return group_advantages(rewards_Bn, scale=cfg.scale, std=cfg.std, eps=cfg.eps)
