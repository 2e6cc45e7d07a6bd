"""RL as a sampling process (paper Fig. 2): training rollouts as samples, against sampling the base model.

Every rollout of a training question is a sample of it. A question's rollouts are ordered by
training step (then sample index), so after it has been drawn t times it has k = n*t samples
(n = group size; with several epochs a question's k grows by n every time it is drawn). At
each k on the grid n, 2n, ... the *eligible* questions are those with at least k rollouts in
that run (all of them once every question has been drawn k/n times; a random subset in a
partial epoch, because the per-epoch order is a seeded shuffle). Over the eligible questions:
fraction solved (>= 1 correct among its first k rollouts), mean distinct answers among the
first k, and mean distinct answers over the eligible questions not yet solved. Distinct
answers never count the sentinel keys (no answer, timeout, error).

The base model is compared on the *same* eligible questions with k of its samples: by default
the exact expectation over uniformly random k-subsets of its samples (``--base-sampling
expected``: solved = the unbiased pass@k, distinct = the sum over answers of P(answer in
subset); on unsolved questions the ratio E[sum_q distinct_q * 1{q unsolved}] / E[#unsolved]),
or its first k samples in sample_index order (``--base-sampling first``). k is capped at the
number of base samples per question. The headline comparison uses k* = the largest grid k at
which every training question is eligible in every GRPO seed (else the largest k with eligible
questions in all seeds and base samples).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional

import numpy as np

from obe.analysis.options import Options
from obe.analysis.statistics import is_finite, pass_at_k_se, seed_stats
from obe.analysis.training import infer_group_size
from obe.grading import SENTINEL_KEYS
from obe.metrics import pass_at_k


def question_sequences(rollouts: Iterable[Mapping[str, Any]]) -> dict[str, list[tuple[str, bool]]]:
    """Per question, its rollouts as (outcome_key, correct) in sampling order (step, then file order)."""
    indexed = sorted(enumerate(rollouts), key=lambda t: (int(t[1]["step"]), t[0]))
    seqs: dict[str, list[tuple[str, bool]]] = defaultdict(list)
    for _, r in indexed:
        seqs[str(r["question_id"])].append((str(r["outcome_key"]), bool(r["correct"])))
    return dict(seqs)


def first_k_stats(seqs: Mapping[str, Sequence[tuple[str, bool]]], k: int,
                  questions: Optional[Iterable[str]] = None,
                  exclude: frozenset[str] = SENTINEL_KEYS) -> dict[str, Any]:
    """Solved / distinct answers over each eligible question's first k samples.

    Eligible: questions (of ``questions`` if given) with at least k samples.
    """
    pool = seqs.keys() if questions is None else [q for q in questions if q in seqs]
    eligible = sorted(q for q in pool if len(seqs[q]) >= k)
    solved, distinct, distinct_unsolved = 0, [], []
    for q in eligible:
        first = seqs[q][:k]
        ok = any(c for _, c in first)
        d = len({key for key, _ in first if key not in exclude})
        solved += ok
        distinct.append(d)
        if not ok:
            distinct_unsolved.append(d)
    m = len(eligible)
    return {"k": k, "num_questions": m, "solved": solved, "frac_solved": solved / m if m else None,
            "distinct": float(np.mean(distinct)) if distinct else None,
            "num_unsolved": len(distinct_unsolved),
            "distinct_unsolved": float(np.mean(distinct_unsolved)) if distinct_unsolved else None,
            "questions": eligible}


def _miss(n: int, m: int, k: int) -> float:
    """P(a uniformly random k-subset of n items avoids m given items) = C(n-m, k) / C(n, k)."""
    if m <= 0:
        return 1.0
    if n - m < k:
        return 0.0
    p = 1.0
    for i in range(m):
        p *= (n - k - i) / (n - i)
    return p


def expected_subset_stats(samples: Sequence[tuple[str, bool]], k: int,
                          exclude: frozenset[str] = SENTINEL_KEYS) -> dict[str, float]:
    """Exact expectations over uniformly random k-subsets of one question's samples.

    ``p_solved`` (= unbiased pass@k), ``distinct`` (E[#distinct answers]), ``p_unsolved`` and
    ``distinct_and_unsolved`` (E[#distinct * 1{no correct sample}]).
    """
    n = len(samples)
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k} n={n}")
    c = sum(ok for _, ok in samples)
    all_counts = Counter(key for key, _ in samples if key not in exclude)
    wrong_counts = Counter(key for key, ok in samples if key not in exclude and not ok)
    p_unsolved = _miss(n, c, k)
    return {
        "p_solved": pass_at_k(n, c, k),
        "distinct": sum(1.0 - _miss(n, m, k) for m in all_counts.values()),
        "p_unsolved": p_unsolved,
        "distinct_and_unsolved": sum(p_unsolved - _miss(n, c + m, k) for m in wrong_counts.values()),
    }


def base_sampling_stats(base_seqs: Mapping[str, Sequence[tuple[str, bool]]], k: int,
                        questions: Optional[Iterable[str]] = None, mode: str = "expected",
                        exclude: frozenset[str] = SENTINEL_KEYS) -> dict[str, Any]:
    """The base model's k-sample numbers over ``questions`` (default: all with >= k samples).

    ``mode="first"``: its first k samples (sample_index order), as :func:`first_k_stats`.
    ``mode="expected"``: exact expectation over random k-subsets (see module docstring).
    """
    pool = base_seqs.keys() if questions is None else [q for q in questions if q in base_seqs]
    qs = sorted(q for q in pool if len(base_seqs[q]) >= k)
    if mode == "first":
        return first_k_stats(base_seqs, k, qs, exclude)
    if mode != "expected":
        raise ValueError(f"mode must be expected or first, got {mode!r}")
    if not qs:
        return {"k": k, "num_questions": 0, "solved": None, "frac_solved": None, "distinct": None,
                "num_unsolved": None, "distinct_unsolved": None, "questions": []}
    ex = [expected_subset_stats(base_seqs[q], k, exclude) for q in qs]
    solved = sum(e["p_solved"] for e in ex)
    unsolved = sum(e["p_unsolved"] for e in ex)
    return {"k": k, "num_questions": len(qs), "solved": solved, "frac_solved": solved / len(qs),
            "distinct": float(np.mean([e["distinct"] for e in ex])), "num_unsolved": unsolved,
            "distinct_unsolved": (sum(e["distinct_and_unsolved"] for e in ex) / unsolved) if unsolved > 1e-12 else None,
            "questions": qs}


def base_solved_se(base_seqs: Mapping[str, Sequence[tuple[str, bool]]], k: int, questions: Iterable[str],
                   mode: str = "expected") -> Optional[float]:
    """Sampling standard error of the base model's fraction solved at k over ``questions``.

    ``expected``: of the mean unbiased pass@k (:func:`pass_at_k_se`); ``first``: of the mean
    of 1{a correct sample among the first k}, Bernoulli(1 - (1 - p~)^k) per question.
    """
    qs = [q for q in questions if q in base_seqs]
    if not qs:
        return None
    counts = [(len(base_seqs[q]), sum(ok for _, ok in base_seqs[q])) for q in qs]
    if mode == "expected":
        return pass_at_k_se(counts, k)
    var = 0.0
    for n, c in counts:
        solved = 1.0 - (1.0 - (c + 0.5) / (n + 1.0)) ** k
        var += solved * (1.0 - solved)
    return math.sqrt(var) / len(counts)


def base_sequences(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[tuple[str, bool]]]:
    """Graded base samples per question in sample_index order."""
    by_q: dict[str, list[tuple[int, str, bool]]] = defaultdict(list)
    for r in rows:
        if r.get("outcome_key") is None or r.get("correct") is None:
            raise ValueError(f"base train sample of question {r.get('question_id')!r} is not graded")
        by_q[str(r["question_id"])].append((int(r["sample_index"]), str(r["outcome_key"]), bool(r["correct"])))
    return {q: [(k, c) for _, k, c in sorted(v)] for q, v in by_q.items()}


SAMPLING_METRICS = ("frac_solved", "distinct", "distinct_unsolved")


def sampling_analysis(rl_runs: Mapping[str, Mapping[int, list[Mapping[str, Any]]]],
                      group_sizes: Mapping[str, Mapping[int, int]],
                      base_rows: Optional[list[Mapping[str, Any]]], opts: Options) -> dict[str, Any]:
    """Figure 2 numbers: per method and seed the cumulative curves, the base curve, paired diffs."""
    base_seqs = base_sequences(base_rows) if base_rows else None
    base_n = min((len(v) for v in base_seqs.values()), default=0) if base_seqs else 0
    universe = sorted(base_seqs) if base_seqs else None
    out: dict[str, Any] = {"base_n": base_n, "base_mode": opts.base_sampling, "methods": {}, "notes": [],
                           "num_train_questions": len(universe) if universe else None}
    all_ks: set[int] = set()
    for method, seeds in rl_runs.items():
        per_seed: dict[int, dict[int, dict[str, Any]]] = {}
        for seed, rows in seeds.items():
            seqs = question_sequences(rows)
            if universe is not None:
                outside = set(seqs) - set(universe)
                if outside:
                    out["notes"].append(f"{method} seed {seed}: {len(outside)} rollout questions are not in the "
                                        f"base train samples; they are left out of the RL-as-sampling curves")
            n = group_sizes[method][seed]
            kmax = max((len(s) for s in seqs.values()), default=0)
            curve = {}
            for k in range(n, kmax + 1, n):
                st = first_k_stats(seqs, k, universe)
                if not st["num_questions"]:
                    break
                full = st["num_questions"] == (len(universe) if universe else len(seqs))
                entry = {m: st[m] for m in ("num_questions", "solved", "frac_solved", "distinct", "num_unsolved",
                                             "distinct_unsolved")}
                entry["all_questions"] = full
                if base_seqs and k <= base_n:
                    b = base_sampling_stats(base_seqs, k, st["questions"], opts.base_sampling)
                    entry["base"] = {m: b[m] for m in SAMPLING_METRICS}
                    entry["base_se"] = {"frac_solved": base_solved_se(base_seqs, k, st["questions"], opts.base_sampling)}
                curve[k] = entry
            per_seed[seed] = curve
            all_ks.update(curve)
        ks = sorted(set.intersection(*(set(c) for c in per_seed.values()))) if per_seed else []
        res: dict[str, Any] = {"k": ks, "seeds": sorted(per_seed), "per_seed": {str(s): {str(k): v for k, v in c.items()}
                                                                               for s, c in per_seed.items()}}
        for m in SAMPLING_METRICS:
            res[m] = [seed_stats({s: per_seed[s][k][m] for s in per_seed}, opts) for k in ks]
            # the base model's sampling error (frac_solved only; seeds may see different questions
            # in a partial epoch, so the largest of their base standard errors is used)
            res[f"{m}_minus_base"] = [
                seed_stats({s: (per_seed[s][k][m] - per_seed[s][k]["base"][m])
                            for s in per_seed if "base" in per_seed[s][k]
                            and is_finite(per_seed[s][k][m]) and is_finite(per_seed[s][k]["base"][m])}, opts,
                           extra_se=max((per_seed[s][k].get("base_se", {}).get(m) or 0.0 for s in per_seed),
                                        default=0.0) or None)
                for k in ks]
        full_ks = [k for k in ks if all(per_seed[s][k]["all_questions"] for s in per_seed)]
        base_ks = [k for k in ks if all("base" in per_seed[s][k] for s in per_seed)]
        cand = [k for k in full_ks if k in base_ks] or base_ks
        res["k_star"] = max(cand) if cand else None
        res["k_star_all_questions"] = bool(cand) and cand[-1] in full_ks
        out["methods"][method] = res
    if base_seqs:
        grid = list(range(1, base_n + 1))
        out["base"] = {"k": grid, **{m: [base_sampling_stats(base_seqs, k, None, opts.base_sampling)[m] for k in grid]
                                     for m in SAMPLING_METRICS}}
    return out


def rollouts_by_run(train_runs: Mapping[str, Mapping[int, Mapping[str, Any]]], notes: list[str]
                    ) -> tuple[dict[str, dict[int, list[Mapping[str, Any]]]], dict[str, dict[int, int]]]:
    """The runs with rollouts (per method and seed) and their group sizes n; runs without are noted.

    A run whose rollouts solve a different number of questions than its own counter
    (``cumulative/questions_solved`` of metrics.jsonl) is noted too: truncated or mismatched files.
    """
    rl = {m: {s: r["rollouts"] for s, r in runs.items() if r.get("rollouts")} for m, runs in train_runs.items()}
    rl = {m: v for m, v in rl.items() if v}
    for m, runs in train_runs.items():
        for s, r in runs.items():
            if not r.get("rollouts"):
                notes.append(f"{m}__s{s}: no rollouts.jsonl; left out of the RL-as-sampling curves")
    sizes = {m: {s: int(train_runs[m][s]["config"].get("n") or infer_group_size(rows)) for s, rows in v.items()}
             for m, v in rl.items()}
    for m, runs in rl.items():
        for s, rows in runs.items():
            logged = [r.get("cumulative/questions_solved") for r in train_runs[m][s]["metrics"]]
            ours = len({str(r["question_id"]) for r in rows if r["correct"]})
            if logged and logged[-1] is not None and int(logged[-1]) != ours:
                notes.append(f"{m}__s{s}: rollouts.jsonl solves {ours} questions but metrics.jsonl's last "
                             f"cumulative/questions_solved is {logged[-1]} (truncated or mismatched files?)")
    return rl, sizes
