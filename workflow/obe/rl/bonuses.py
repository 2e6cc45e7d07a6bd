"""Outcome-based exploration bonuses (Song, Kempe & Munos, arXiv 2509.06941).

One config key, ``method``, picks a function from the registry :data:`BONUSES`. Every
bonus function has the signature :data:`BonusFn`::

    fn(keys_Bn, counts_Bn, cfg) -> bonus_Bn      # float64 tensor [B, n]

``keys_Bn``: outcome keys (opaque strings, the no-answer sentinel included) of the n
samples of each of B questions; ``counts_Bn``: ``N(x, a_i)`` read from an
:class:`obe.rl.counts.OutcomeCounts` (``None`` is fine for methods that do not use it).

How the bonus enters (:func:`exploration_advantages`, paper convention): AFTER the group
normalisation, ``A_i = adv_i + c * bonus_i`` with ``c = cfg.coef`` (default 0.2).
Trainers call one function, :func:`apply_exploration` (count update, bonus, gating,
normalisation, per-token advantages with the answer-token mask): ``obe.train``, the TRL
backend (``obe.engines.trl_backend``) and ``bench/grpo_step.py`` all go through it.

* ``gate_solved`` (default on): a group whose samples are ALL correct gets bonus 0.
* ``mask_answer_tokens`` (default on): at token level (:func:`token_advantages`) the
  exploration term is applied to the reasoning tokens, not to the tokens of the final
  ``\\boxed{}`` answer, so the policy is not pushed to write novel answer strings:
  ``A_t = adv + c * bonus * (1 - answer_mask_t)``.
* ``bonus_in_reward`` (ablation, default off): use ``r + c * bonus`` as the reward
  BEFORE normalisation instead. Prototype finding: this makes every all-wrong group
  train at full strength (std-normalised) towards never-seen wrong answers, and UCB
  collapsed to pass@1 = 0 at c = 0.1 and at c = 0.5.
* ``count_before_update`` (default on): read ``N`` before adding the current batch to the
  table (see :meth:`obe.rl.counts.OutcomeCounts.observe_batch`).

N = 0 convention: a never-seen outcome (``N = 0``, possible only when counts are read
before the update) gets the maximal bonus 1, via ``min(1, 1/sqrt(max(N, 1)))``.

With ``c = 0`` every method gives exactly (bit for bit) the ``grpo`` advantages: the
exploration term is skipped rather than added as ``0 * bonus``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import NamedTuple, Optional, Union

import torch

from obe.rl.advantages import CORRECT_THRESHOLD, AdvantageConfig, RewardsLike, as_float_table, group_advantages_cfg
from obe.rl.counts import OutcomeCounts
from obe.rl.methods import METHODS

KeysBn = Sequence[Sequence[str]]
CountsLike = Union[torch.Tensor, Sequence[Sequence[int]]]
BonusFn = Callable[[KeysBn, Optional[CountsLike], "ExplorationConfig"], torch.Tensor]

@dataclass(frozen=True)
class ExplorationConfig:
    """Exploration options: THE definition of each setting (name, default, help). The trainers'
    flat ``TrainConfig`` fields, their help texts, the config's ``methods.<m>`` keys (schema)
    and the train rule's flags follow it (:data:`EXPLORATION_FIELDS`, :func:`exploration_help`;
    tests check the schema and ``TrainConfig`` against it)."""

    method: str = field(metadata={"help": "exploration method (obe.rl.bonuses.BONUSES)"})
    coef: float = field(default=0.2, metadata={"help": "c in A_i = adv_i + c * bonus_i (0 = plain GRPO, bit for bit)"})
    b0: float = field(default=0.5, metadata={"help": "constant baseline of ucb_con"})
    leave_one_out: bool = field(default=False, metadata={"help": "ucb_mean: subtract the mean bonus of the OTHER samples"})
    count_before_update: bool = field(
        default=True, metadata={"help": "read N(x, a) before adding the current batch (never-seen -> bonus 1)"})
    gate_solved: bool = field(default=True, metadata={"help": "no exploration term for groups whose samples are all correct"})
    mask_answer_tokens: bool = field(
        default=True, metadata={"help": "exploration term skips the final \\boxed{...} answer tokens"})
    bonus_in_reward: bool = field(
        default=False, metadata={"help": "ablation: add c * bonus to the reward before group normalisation"})

    def __post_init__(self) -> None:
        if self.method not in BONUSES:
            raise ValueError(f"unknown exploration method {self.method!r}; choose from {sorted(BONUSES)}")
        if not math.isfinite(self.coef):
            raise ValueError(f"coef must be finite, got {self.coef!r}")
        if not math.isfinite(self.b0):
            raise ValueError(f"b0 must be finite, got {self.b0!r}")

    @property
    def uses_counts(self) -> bool:
        """Whether the method reads the historical count table N(x, a)."""
        return self.method in COUNT_METHODS


# -- helpers -------------------------------------------------------------------------


def _shape(keys_Bn: KeysBn) -> tuple[int, int]:
    if isinstance(keys_Bn, str) or any(isinstance(ks, str) for ks in keys_Bn):
        raise TypeError("keys_Bn must be a sequence of groups (lists of outcome keys)")
    sizes = {len(ks) for ks in keys_Bn}
    if len(sizes) > 1:
        raise ValueError(f"groups of keys have different sizes {sorted(sizes)}")
    return len(keys_Bn), (sizes.pop() if sizes else 0)


def _counts_table(keys_Bn: KeysBn, counts_Bn: Optional[CountsLike], method: str) -> torch.Tensor:
    if counts_Bn is None:
        raise ValueError(f"method {method!r} needs counts_Bn (N(x, a) from OutcomeCounts)")
    shape = _shape(keys_Bn)
    N_Bn = torch.as_tensor(counts_Bn, dtype=torch.float64)
    if shape[0] == 0 and N_Bn.numel() == 0:
        return torch.zeros(shape, dtype=torch.float64)
    if tuple(N_Bn.shape) != shape:
        raise ValueError(f"counts_Bn has shape {tuple(N_Bn.shape)}, keys_Bn has {shape}")
    if (N_Bn < 0).any():
        raise ValueError("counts must be >= 0")
    return N_Bn


def ucb_raw(counts_Bn: torch.Tensor) -> torch.Tensor:
    """``min(1, 1/sqrt(max(N, 1)))``: N = 0 and N = 1 both give 1, N = 4 gives 0.5."""
    N_Bn = torch.as_tensor(counts_Bn, dtype=torch.float64)
    return (1.0 / torch.sqrt(N_Bn.clamp(min=1.0))).clamp(max=1.0)


# -- the methods ----------------------------------------------------------------------


def grpo_bonus(keys_Bn: KeysBn, counts_Bn: Optional[CountsLike], cfg: "ExplorationConfig") -> torch.Tensor:
    """GRPO: no exploration, ``b_i = 0``."""
    return torch.zeros(_shape(keys_Bn), dtype=torch.float64)


def ucb_bonus(keys_Bn: KeysBn, counts_Bn: Optional[CountsLike], cfg: "ExplorationConfig") -> torch.Tensor:
    """Historical exploration (UCB): ``b(x, a) = min(1, 1/sqrt(N(x, a)))``.

    ``N(x, a)`` counts outcome ``a`` for question ``x`` over the training history; the
    N = 0 convention is ``min(1, 1/sqrt(max(N, 1))) = 1``.
    """
    return ucb_raw(_counts_table(keys_Bn, counts_Bn, "ucb"))


def ucb_mean_bonus(keys_Bn: KeysBn, counts_Bn: Optional[CountsLike], cfg: "ExplorationConfig") -> torch.Tensor:
    """UCB-Mean: ``b_i - mean_j b_j`` over the question's group of n samples.

    With ``cfg.leave_one_out``: ``b_i - mean_{j != i} b_j = n/(n-1) * (b_i - mean_j b_j)``
    (0 when n = 1).
    """
    b_Bn = ucb_raw(_counts_table(keys_Bn, counts_Bn, "ucb_mean"))
    n = b_Bn.shape[1]
    if n == 0:
        return b_Bn
    centered_Bn = b_Bn - b_Bn.mean(dim=1, keepdim=True)
    if cfg.leave_one_out:
        return centered_Bn * (n / (n - 1)) if n > 1 else torch.zeros_like(b_Bn)
    return centered_Bn


def ucb_con_bonus(keys_Bn: KeysBn, counts_Bn: Optional[CountsLike], cfg: "ExplorationConfig") -> torch.Tensor:
    """UCB-Con: ``b_i - b0`` with a constant baseline ``b0`` (default 0.5)."""
    return ucb_raw(_counts_table(keys_Bn, counts_Bn, "ucb_con")) - cfg.b0


def batch_bonus(keys_Bn: KeysBn, counts_Bn: Optional[CountsLike], cfg: "ExplorationConfig") -> torch.Tensor:
    """Batch exploration: ``b_i = -(1/n) * #{j != i : a_j = a_i}`` within the group.

    Penalises answers repeated inside the question's own group; needs no history.
    """
    B, n = _shape(keys_Bn)
    rows = []
    for ks in keys_Bn:
        freq = Counter(ks)
        rows.append([-(freq[k] - 1) / n for k in ks])
    return torch.tensor(rows, dtype=torch.float64).reshape(B, n)


# the registry's rows (obe.rl.methods) with their functions
BONUSES: dict[str, BonusFn] = {m.name: globals()[m.bonus] for m in METHODS}
COUNT_METHODS: frozenset[str] = frozenset(m.name for m in METHODS if m.uses_counts)
# Every exploration setting, in order; all but ``method`` are the per-method keys of the config.
EXPLORATION_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ExplorationConfig))
METHOD_SETTINGS: tuple[str, ...] = EXPLORATION_FIELDS[1:]


def exploration_defaults() -> dict[str, object]:
    """``{setting: default}`` of :class:`ExplorationConfig` (``method`` has none)."""
    return {f.name: f.default for f in fields(ExplorationConfig) if f.default is not MISSING}


def exploration_help() -> dict[str, str]:
    """``{setting: help text}`` of :class:`ExplorationConfig` (the trainers' CLI help)."""
    return {f.name: f.metadata["help"] for f in fields(ExplorationConfig)}


def compute_bonus(keys_Bn: KeysBn, counts_Bn: Optional[CountsLike], cfg: ExplorationConfig) -> torch.Tensor:
    """The raw (ungated) bonus ``[B, n]`` (float64) of ``cfg.method``."""
    return BONUSES[cfg.method](keys_Bn, counts_Bn, cfg)


# -- putting it together --------------------------------------------------------------


class ExplorationAdvantages(NamedTuple):
    """``adv_Bn``: group-normalised advantages (they include the bonus only when
    ``bonus_in_reward``); ``bonus_Bn``: the bonus still to add as ``c * bonus`` AFTER
    normalisation (gated; all zeros when ``bonus_in_reward``). Both in the rewards' dtype."""

    adv_Bn: torch.Tensor
    bonus_Bn: torch.Tensor


def solved_groups(rewards_Bn: RewardsLike) -> torch.Tensor:
    """``[B]`` bool: every sample of the group is correct (reward > 0.5)."""
    r_Bn = as_float_table(rewards_Bn)
    return (r_Bn > CORRECT_THRESHOLD).all(dim=1)


def exploration_advantages(
    rewards_Bn: RewardsLike,
    keys_Bn: KeysBn,
    counts_Bn: Optional[CountsLike],
    cfg: ExplorationConfig,
    adv_cfg: Optional[AdvantageConfig] = None,
) -> ExplorationAdvantages:
    """Group advantages and the (gated) exploration bonus for one training step.

    Returns ``(adv_Bn, bonus_Bn)``; the per-sample advantage is
    :func:`total_advantages` ``= adv + c * bonus`` and the per-token one
    :func:`token_advantages`. ``counts_Bn`` is ``N(x, a_i)`` as returned by
    ``OutcomeCounts.observe_batch(..., before_update=cfg.count_before_update)``; it may
    be ``None`` for ``grpo`` and ``batch``.
    """
    r_Bn = as_float_table(rewards_Bn)
    if _shape(keys_Bn) != tuple(r_Bn.shape):
        raise ValueError(f"keys_Bn has shape {_shape(keys_Bn)}, rewards_Bn {tuple(r_Bn.shape)}")
    bonus_Bn = compute_bonus(keys_Bn, counts_Bn, cfg).to(device=r_Bn.device, dtype=r_Bn.dtype)
    if cfg.gate_solved:
        bonus_Bn = bonus_Bn.masked_fill(solved_groups(r_Bn)[:, None], 0.0)
    if not cfg.bonus_in_reward:
        return ExplorationAdvantages(group_advantages_cfg(r_Bn, adv_cfg), bonus_Bn)
    shaped_Bn = r_Bn + cfg.coef * bonus_Bn if cfg.coef != 0 else r_Bn
    return ExplorationAdvantages(group_advantages_cfg(shaped_Bn, adv_cfg), torch.zeros_like(bonus_Bn))


def exploration_step(
    rewards_Bn: RewardsLike,
    keys_Bn: KeysBn,
    question_ids_B: Sequence[object],
    counts: Optional[OutcomeCounts],
    cfg: ExplorationConfig,
    adv_cfg: Optional[AdvantageConfig] = None,
) -> ExplorationAdvantages:
    """One training step's advantages, updating the count table.

    Adds the batch to ``counts`` (reading ``N`` before or after, per
    ``cfg.count_before_update``), then calls :func:`exploration_advantages`. Every method
    updates the table when one is given (so ``grpo`` runs keep comparable statistics);
    ``counts=None`` is allowed only for methods that do not read it.
    """
    if counts is None:
        if cfg.uses_counts:
            raise ValueError(f"method {cfg.method!r} needs an OutcomeCounts table")
        N_Bn = None
    else:
        N_Bn = counts.observe_batch(question_ids_B, keys_Bn, before_update=cfg.count_before_update)
    return exploration_advantages(rewards_Bn, keys_Bn, N_Bn, cfg, adv_cfg)


def _skip_term(bonus: torch.Tensor, coef: float) -> bool:
    # Adding c * 0 could still turn -0.0 into +0.0 (or 0 * inf into NaN): skip it instead.
    return coef == 0 or not bool(bonus.any())


def total_advantages(adv: torch.Tensor, bonus: torch.Tensor, coef: float) -> torch.Tensor:
    """Per-sample ``adv + coef * bonus`` (any shape); exactly ``adv`` when the term is 0."""
    if adv.shape != bonus.shape:
        raise ValueError(f"adv shape {tuple(adv.shape)} != bonus shape {tuple(bonus.shape)}")
    if _skip_term(bonus, coef):
        return adv.clone()
    return adv + coef * bonus.to(adv.dtype)


def token_advantages(
    adv_B: torch.Tensor,
    bonus_B: torch.Tensor,
    answer_mask_BT: torch.Tensor,
    coef: float,
    mask_answer_tokens: bool = True,
) -> torch.Tensor:
    """Token-level advantages ``[..., T]`` from per-sequence parts ``[...]``.

    ``A_bt = adv_b + coef * bonus_b * (1 - answer_mask_bt)`` when ``mask_answer_tokens``,
    else ``adv_b + coef * bonus_b`` on every token. ``answer_mask_BT`` is 1 on the tokens
    of the final ``\\boxed{}`` answer (padding is handled by the loss's completion mask).
    Leading shapes may be ``[B*n]`` (flattened) or ``[B, n]``.
    """
    if tuple(answer_mask_BT.shape[:-1]) != tuple(adv_B.shape) or adv_B.shape != bonus_B.shape:
        raise ValueError(
            f"shapes: adv {tuple(adv_B.shape)}, bonus {tuple(bonus_B.shape)}, answer_mask {tuple(answer_mask_BT.shape)}"
        )
    base_BT = adv_B[..., None].expand(answer_mask_BT.shape)
    if _skip_term(bonus_B, coef):
        return base_BT.clone()
    term_BT = (coef * bonus_B.to(adv_B.dtype))[..., None].expand(answer_mask_BT.shape)
    if mask_answer_tokens:
        term_BT = term_BT * (1 - answer_mask_BT.to(adv_B.dtype))
    return base_BT + term_BT


class StepAdvantages(NamedTuple):
    """What one training step's exploration term produced (all in the rewards' dtype).

    ``adv_Bn``: group-normalised advantages (with the bonus only when ``bonus_in_reward``);
    ``bonus_Bn``: the gated bonus ``b_i`` (zeros when ``bonus_in_reward``); ``sample_Bn``:
    per-sample ``adv + c * b`` (for logging); ``token_RT``: per-token advantages of the
    requested rows (flattened question-major sample index ``b * n + i``), ready for the loss.
    """

    adv_Bn: torch.Tensor
    bonus_Bn: torch.Tensor
    sample_Bn: torch.Tensor
    token_RT: torch.Tensor


def apply_exploration(
    rewards_Bn: RewardsLike,
    keys_Bn: KeysBn,
    question_ids_B: Sequence[object],
    counts: Optional[OutcomeCounts],
    cfg: ExplorationConfig,
    adv_cfg: Optional[AdvantageConfig],
    completion_mask_RT: torch.Tensor,
    answer_mask: Callable[[], torch.Tensor],
    rows: slice = slice(None),
) -> StepAdvantages:
    """THE exploration term of one training step, shared by every trainer (obe.train, the
    TRL backend) and bench/grpo_step.py, so the method semantics live in one place.

    Updates ``counts`` with the whole batch (:func:`exploration_step`: count timing,
    ``gate_solved``, ``bonus_in_reward``, group normalisation with ``adv_cfg``), then builds
    the per-token advantages ``A_t = adv + c * b * (1 - answer_mask_t)``
    (:func:`token_advantages`) for the flattened samples ``rows`` (all by default; a rank
    of a distributed run passes its own slice of the global batch, whose keys and rewards
    every rank holds). ``completion_mask_RT`` gives those rows' ``[R, T]`` shape;
    ``answer_mask()`` returns their ``[R, T]`` final-answer token mask and is only called
    when it matters (``mask_answer_tokens`` on and a nonzero term), since it costs a
    tokenizer pass.
    """
    adv_Bn, bonus_Bn = exploration_step(rewards_Bn, keys_Bn, question_ids_B, counts, cfg, adv_cfg)
    adv_R, bonus_R = adv_Bn.reshape(-1)[rows], bonus_Bn.reshape(-1)[rows]
    if tuple(completion_mask_RT.shape[:1]) != tuple(adv_R.shape):
        raise ValueError(f"completion_mask_RT has {completion_mask_RT.shape[0]} rows, the rows selected {adv_R.shape[0]}")
    if cfg.mask_answer_tokens and not _skip_term(bonus_R, cfg.coef):
        amask_RT = answer_mask()
    else:
        amask_RT = torch.zeros(completion_mask_RT.shape)
    token_RT = token_advantages(adv_R, bonus_R, amask_RT.to(adv_R.device), cfg.coef, cfg.mask_answer_tokens)
    return StepAdvantages(adv_Bn, bonus_Bn, total_advantages(adv_Bn, bonus_Bn, cfg.coef), token_RT)
