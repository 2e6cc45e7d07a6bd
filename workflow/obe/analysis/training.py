"""Training runs: Tables 1-2 (over the last steps of each run) and the per-step training curves.

- Table 1 (token entropy) averages ``entropy``, ``entropy/correct``, ``entropy/incorrect`` of
  ``metrics.jsonl`` over the last ``--last-frac`` of the logged steps (at least one step) per
  run; then mean (std over seeds, ddof 1).
- Table 2 (distinct answers within a group of n samples) uses the groups of ``rollouts.jsonl``
  (one group = one question drawn at one step) in the same window: mean distinct answers over
  all groups, over solved groups (>= 1 correct) and unsolved groups, group-weighted (falls
  back to the per-step ``answers/*`` metrics when rollouts are absent).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional

import numpy as np

from obe.analysis.options import Options
from obe.analysis.statistics import is_finite, paired_diff, seed_stats
from obe.grading import SENTINEL_KEYS

# Per-step training metrics drawn in the training-dynamics figure (a key no run logs is left out).
TRAINING_KEYS = ("reward", "entropy", "answers/distinct_per_group", "cumulative/questions_solved",
                 "convention/read_plus")


def window_steps(steps: Iterable[int], last_frac: float) -> list[int]:
    """The last ``ceil(last_frac * #steps)`` distinct steps (at least one)."""
    s = sorted(set(int(x) for x in steps))
    if not s:
        return []
    return s[-max(1, math.ceil(last_frac * len(s))):]


def rollout_groups(rollouts: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Groups = runs of consecutive rows with the same (step, question) and increasing sample_index."""
    groups: list[dict[str, Any]] = []
    prev = None
    for r in rollouts:
        key = (int(r["step"]), str(r["question_id"]))
        idx = int(r.get("sample_index", 0))
        if prev is None or key != prev[0] or idx <= prev[1]:
            groups.append({"step": key[0], "question_id": key[1], "keys": [], "correct": []})
        groups[-1]["keys"].append(str(r["outcome_key"]))
        groups[-1]["correct"].append(bool(r["correct"]))
        prev = (key, idx)
    return groups


def group_diversity(groups: Sequence[Mapping[str, Any]], steps: Optional[Iterable[int]] = None,
                    exclude: frozenset[str] = SENTINEL_KEYS) -> dict[str, Any]:
    """Mean distinct answers per group over all / solved / unsolved groups (optionally some steps)."""
    keep = None if steps is None else set(steps)
    allv, sol, uns = [], [], []
    for g in groups:
        if keep is not None and g["step"] not in keep:
            continue
        d = len({k for k in g["keys"] if k not in exclude})
        allv.append(d)
        (sol if any(g["correct"]) else uns).append(d)
    mean = lambda xs: float(np.mean(xs)) if xs else None  # noqa: E731
    return {"all": mean(allv), "solved": mean(sol), "unsolved": mean(uns),
            "num_groups": len(allv), "num_solved": len(sol), "num_unsolved": len(uns)}


def metrics_window_mean(metrics: Sequence[Mapping[str, Any]], key: str, steps: Iterable[int]) -> Optional[float]:
    keep = set(steps)
    xs = [float(r[key]) for r in metrics if int(r["step"]) in keep and is_finite(r.get(key))]
    return float(np.mean(xs)) if xs else None


TABLE1_KEYS = (("all", "entropy"), ("correct", "entropy/correct"), ("incorrect", "entropy/incorrect"))
TABLE2_KEYS = (("all", "answers/distinct_per_group"), ("solved", "answers/distinct_solved"),
               ("unsolved", "answers/distinct_unsolved"))


def training_tables(train: Mapping[str, Mapping[int, Mapping[str, Any]]], opts: Options) -> dict[str, Any]:
    """Per method: Table 1 and Table 2 values per seed, their stats, and paired diffs vs GRPO."""
    per: dict[str, dict[str, dict[int, Optional[float]]]] = {}
    sources: dict[str, set[str]] = defaultdict(set)
    windows: dict[str, dict[str, list[int]]] = defaultdict(dict)
    for method, seeds in train.items():
        vals: dict[str, dict[int, Optional[float]]] = defaultdict(dict)
        for seed, run in seeds.items():
            metrics = run.get("metrics") or []
            steps = [int(r["step"]) for r in metrics] or [int(r["step"]) for r in (run.get("rollouts") or [])]
            win = window_steps(steps, opts.last_frac)
            windows[method][str(seed)] = [win[0], win[-1]] if win else []
            for col, key in TABLE1_KEYS:
                vals[f"entropy/{col}"][seed] = metrics_window_mean(metrics, key, win)
            if run.get("rollouts"):
                gd = group_diversity(rollout_groups(run["rollouts"]), win)
                for col, _ in TABLE2_KEYS:
                    vals[f"distinct/{col}"][seed] = gd[col]
                sources[method].add("rollouts")
            else:
                for col, key in TABLE2_KEYS:
                    vals[f"distinct/{col}"][seed] = metrics_window_mean(metrics, key, win)
                sources[method].add("metrics")
        per[method] = vals
    out: dict[str, Any] = {"last_frac": opts.last_frac, "windows": windows, "methods": {}}
    for method, vals in per.items():
        row: dict[str, Any] = {"source_table2": sorted(sources[method])}
        for key, pv in vals.items():
            row[key] = seed_stats(pv, opts)
            if method != "grpo" and "grpo" in per:
                row[f"{key}_minus_grpo"] = paired_diff(pv, per["grpo"].get(key, {}), opts)
        out["methods"][method] = row
    out["_per_seed"] = {m: {k: {str(s): v for s, v in pv.items()} for k, pv in vals.items()} for m, vals in per.items()}
    return out


def training_curves(train: Mapping[str, Mapping[int, Mapping[str, Any]]], keys: Sequence[str],
                    opts: Options) -> dict[str, Any]:
    """Per method and metric key: steps and per-step seed stats (for the training-dynamics figure)."""
    out: dict[str, Any] = {}
    for method, seeds in train.items():
        res: dict[str, Any] = {}
        for key in keys:
            by_step: dict[int, dict[int, float]] = defaultdict(dict)
            for seed, run in seeds.items():
                for r in run.get("metrics") or []:
                    if is_finite(r.get(key)):
                        by_step[int(r["step"])][seed] = float(r[key])
            steps = sorted(by_step)
            res[key] = {"step": steps, "stats": [seed_stats(by_step[s], opts) for s in steps]}
        out[method] = res
    return out


def infer_group_size(rows: Sequence[Mapping[str, Any]]) -> int:
    """The group size n of a run whose config.json does not say: its largest group in rollouts.jsonl."""
    return max(len(g["keys"]) for g in rollout_groups(rows))
