"""The trainers' metric vocabulary: every key of a ``metrics.jsonl`` row (also the W&B keys),
documented once in :data:`METRICS` (``python -m obe.train --list-metrics`` prints it), and the
per-step statistics of a batch of rollouts that both trainers compute the same way.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

import torch

from obe.grading import ERROR_KEY, SENTINEL_KEYS
from obe.metrics import distinct_answers
from obe.rl.advantages import CORRECT_THRESHOLD
from obe.rl.counts import OutcomeCounts
from obe.tasks.synthetic import ROLLOUT_METRICS as TASK_ROLLOUT_METRICS

METRICS: dict[str, str] = {
    "step": "optimizer step just completed (1-based)",
    "epoch": "fractional epoch: questions consumed / training-set size",
    "loss": "policy loss (clipped surrogate + beta * k3 KL), full batch, mean over mu updates",
    "kl": "mean k3 KL(pi || ref) per completion token (null when beta = 0: no reference model)",
    "entropy": "mean per-token entropy of the policy (at sampling temperature) over completion tokens",
    "entropy/correct": "same, over tokens of correct samples (null if none)",
    "entropy/incorrect": "same, over tokens of incorrect samples (null if none)",
    "clip_ratio": "fraction of completion tokens whose gradient the ratio clip cuts (low or high)",
    "clip_ratio/low": "fraction clipped at 1 - eps_low with A < 0",
    "clip_ratio/high": "fraction clipped at 1 + eps_high with A > 0",
    "grad_norm": "total gradient norm before clipping (mean over mu updates)",
    "lr": "learning rate used for this step",
    "reward": "mean reward (fraction of correct samples)",
    "reward_std": "mean over groups of the per-group reward std (the --std convention)",
    "frac_reward_zero_std": "fraction of groups whose n rewards are all equal (no GRPO signal)",
    "frac_groups_solved": "fraction of groups with at least one correct sample",
    "bonus/mean": "mean exploration bonus b_i after gating, before multiplying by coef (0 with --bonus-in-reward)",
    "bonus/min": "min of b_i",
    "bonus/max": "max of b_i",
    "advantage/mean": "mean per-sample advantage adv_i + coef * b_i",
    "answers/distinct_per_group": "mean distinct answers per group (outcome keys, no-answer/error excluded)",
    "answers/distinct_solved": "same over groups with >= 1 correct sample (null if none)",
    "answers/distinct_unsolved": "same over groups with no correct sample (null if none)",
    "answers/no_answer_frac": "fraction of samples without a gradable answer (no answer, grading timeout, answer too "
                              "long; grading errors are not in it)",
    "grading/errors": "samples whose grading raised (each logged with its input; see max_grading_error_frac)",
    "cumulative/questions_solved": "training questions ever solved (>= 1 correct rollout) so far",
    "cumulative/questions_seen": "training questions sampled at least once so far",
    "cumulative/distinct_answers": "mean over seen questions of distinct answers ever sampled",
    "cumulative/distinct_answers_unsolved": "same over seen questions never solved (null if none)",
    "counts/entries": "size of the N(x, a) table (distinct question-answer pairs)",
    "completions/mean_length": "mean completion length in tokens (EOS included)",
    "completions/max_length": "max completion length",
    "completions/min_length": "min completion length",
    "completions/clipped_ratio": "fraction of samples truncated at max_new_tokens (no EOS)",
    "num_tokens": "completion tokens in the batch",
    "perf/tokens_per_sec": "completion tokens / step wall time (timing: differs between runs)",
    "perf/peak_memory_gb": "peak memory so far, GB: GPU memory torch allocated (cuda), else the process's host RSS",
    "time/generate": "seconds spent sampling (timing)",
    "time/grade": "seconds spent grading (timing)",
    "time/update": "seconds spent in forward/backward/optimizer (timing)",
    "time/step": "seconds for the whole step incl. logging (timing; checkpoint time excluded)",
    **TASK_ROLLOUT_METRICS,  # the synthetic task's shared-behaviour rate (null for other data)
}
TIMING_KEYS = frozenset(k for k in METRICS if k.startswith(("time/", "perf/")))
# The W&B completions table (every --log-completions-every steps), as TRL logs its completions.
COMPLETION_COLUMNS = ("step", "question_id", "prompt", "completion", "answer", "correct", "bonus", "count")


def print_metric_keys() -> None:
    """``--list-metrics`` of both trainers: every key of a metrics row with its meaning."""
    for key, desc in METRICS.items():
        print(f"{key:40s} {desc}")


def mean_or_none(xs: Sequence[float]) -> Optional[float]:
    return sum(xs) / len(xs) if xs else None


def group_metrics(rewards_Bn: torch.Tensor, keys_Bn: list[list[str]], bonus_Bn: torch.Tensor,
                  sample_adv_Bn: torch.Tensor, std: str) -> dict[str, Any]:
    """The ``reward`` .. ``answers/no_answer_frac`` keys of :data:`METRICS` for one batch of B
    groups: rewards ``[B, n]``, outcome keys, bonuses ``b_i`` and per-sample advantages."""
    solved_B = (rewards_Bn.amax(dim=1) > CORRECT_THRESHOLD).tolist()
    distinct_B = [len({k for k in ks if k not in SENTINEL_KEYS}) for ks in keys_Bn]
    num_samples = rewards_Bn.numel()
    return {
        "reward": float(rewards_Bn.mean()),
        "reward_std": float(rewards_Bn.std(dim=1, correction=1 if std == "sample" else 0).nan_to_num(0.0).mean()),
        "frac_reward_zero_std": float((rewards_Bn.amax(dim=1) == rewards_Bn.amin(dim=1)).float().mean()),
        "frac_groups_solved": float((rewards_Bn.amax(dim=1) > CORRECT_THRESHOLD).float().mean()),
        "bonus/mean": float(bonus_Bn.mean()), "bonus/min": float(bonus_Bn.min()), "bonus/max": float(bonus_Bn.max()),
        "advantage/mean": float(sample_adv_Bn.mean()),
        "answers/distinct_per_group": mean_or_none(distinct_B),
        "answers/distinct_solved": mean_or_none([d for d, s in zip(distinct_B, solved_B) if s]),
        "answers/distinct_unsolved": mean_or_none([d for d, s in zip(distinct_B, solved_B) if not s]),
        "answers/no_answer_frac": sum(k in SENTINEL_KEYS - {ERROR_KEY} for ks in keys_Bn for k in ks) / num_samples,
    }


def distinct_answers_per_question(counts: OutcomeCounts, questions: Iterable[Any]) -> dict[str, int]:
    """Distinct (non-sentinel) answers ever sampled for each of ``questions``, from the count table:
    the entries of the ``cumulative/distinct_answers`` statistics (a trainer keeps one table and
    updates the batch's questions after each step)."""
    return {str(q): distinct_answers(list(counts.question_counts(q))) for q in questions}


def cumulative_metrics(counts: OutcomeCounts, solved: set[str], distinct_q: dict[str, int]) -> dict[str, Any]:
    """The ``cumulative/*`` and ``counts/entries`` keys of :data:`METRICS` after a step."""
    return {
        "cumulative/questions_solved": len(solved), "cumulative/questions_seen": counts.num_questions(),
        "cumulative/distinct_answers": mean_or_none(list(distinct_q.values())),
        "cumulative/distinct_answers_unsolved": mean_or_none([v for q, v in distinct_q.items() if q not in solved]),
        "counts/entries": counts.num_entries(),
    }
