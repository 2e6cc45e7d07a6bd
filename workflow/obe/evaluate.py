"""Evaluation stage: graded samples -> per-question metrics and a pass@k summary.

    python -m obe.evaluate --graded graded.jsonl --out-questions per_question.jsonl \
        --out-summary summary.json

Reads the graded sample rows written by ``obe.grade`` (one row per sample with
``question_id``, ``outcome_key``, ``correct``, ``num_tokens``, ``finish_reason``) and
writes, per question, everything needed to recompute any aggregate without sampling
again: n, c, pass@k for every k in 1..n, maj@k at powers of two, distinct answers,
answer entropy, mean length, fraction without an answer, and the outcome-key counts.
The summary averages those over questions. Questions with fewer samples than the
others are an error (a half-finished sampling file must not pass silently).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from obe.grading import NO_ANSWER_KEY, SENTINEL_KEYS
from obe.core.records import iter_json_lines
from obe.metrics import (
    answer_entropy,
    distinct_answers,
    maj_at_k,
    pass_at_k_curve,
    powers_of_two_upto,
)

REQUIRED_FIELDS = ("question_id", "sample_index", "outcome_key", "correct", "num_tokens", "finish_reason")


def read_graded(path: str) -> list[dict[str, Any]]:
    """Graded rows from JSONL; a row missing a field or never graded names file and line."""
    rows = []
    for lineno, row in iter_json_lines(path):
        missing = [k for k in REQUIRED_FIELDS if k not in row]
        if missing:
            raise ValueError(f"{path} line {lineno}: missing fields {missing}")
        if row["outcome_key"] is None or row["correct"] is None:
            raise ValueError(f"{path} line {lineno}: sample is not graded (run obe.grade first)")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no graded samples")
    return rows


def question_metrics(question_id: str, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """All per-question numbers for one question's samples (ordered by sample index)."""
    rows = sorted(rows, key=lambda r: r["sample_index"])
    keys = [r["outcome_key"] for r in rows]
    correct = [bool(r["correct"]) for r in rows]
    n, c = len(rows), sum(correct)
    return {
        "question_id": question_id,
        "n": n,
        "c": c,
        "pass_at_k": pass_at_k_curve(n, c),  # index k-1
        "maj_at_k": {str(k): maj_at_k(keys, correct, k, exclude=SENTINEL_KEYS) for k in powers_of_two_upto(n)},
        "mean_at_n": c / n,
        "distinct_answers": distinct_answers(keys, exclude=SENTINEL_KEYS),
        "answer_entropy": answer_entropy(keys, exclude=SENTINEL_KEYS),
        "mean_length": float(np.mean([r["num_tokens"] for r in rows])),
        "frac_truncated": sum(r["finish_reason"] == "length" for r in rows) / n,
        "frac_no_answer": sum(k == NO_ANSWER_KEY for k in keys) / n,
        "answer_counts": dict(Counter(keys).most_common()),
    }


def evaluate(rows: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-question metrics and their means over questions."""
    by_q: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_q[str(r["question_id"])].append(r)
    sizes = {len(v) for v in by_q.values()}
    if len(sizes) != 1:
        short = sorted(q for q, v in by_q.items() if len(v) < max(sizes))[:5]
        raise ValueError(f"questions have different sample counts {sorted(sizes)}; e.g. {short}")
    n = sizes.pop()
    per_q = [question_metrics(q, v) for q, v in sorted(by_q.items())]
    pass_curve = np.mean([q["pass_at_k"] for q in per_q], axis=0)
    summary = {
        "num_questions": len(per_q),
        "n": n,
        "pass_at_k": {str(k): float(pass_curve[k - 1]) for k in range(1, n + 1)},
        "maj_at_k": {str(k): float(np.mean([q["maj_at_k"][str(k)] for q in per_q])) for k in powers_of_two_upto(n)},
    }
    for key in ("mean_at_n", "distinct_answers", "answer_entropy", "mean_length", "frac_truncated", "frac_no_answer"):
        summary[key] = float(np.mean([q[key] for q in per_q]))
    # every way a sample ended (vLLM may add "abort", "error", "repetition" to "stop"/"length")
    summary["finish_reasons"] = dict(sorted(Counter(str(r["finish_reason"]) for r in rows).items()))
    return per_q, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m obe.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--graded", required=True, help="graded samples JSONL (from obe.grade)")
    parser.add_argument("--out-questions", required=True, help="per-question metrics JSONL to write")
    parser.add_argument("--out-summary", required=True, help="summary JSON to write")
    args = parser.parse_args(argv)
    try:
        per_q, summary = evaluate(read_graded(args.graded))
    except ValueError as exc:
        print(f"obe.evaluate: {exc}", file=sys.stderr)
        return 2
    with open(args.out_questions, "w", encoding="utf-8") as f:
        for q in per_q:
            f.write(json.dumps(q) + "\n")
    with open(args.out_summary, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    ks = powers_of_two_upto(summary["n"])
    print(f"{summary['num_questions']} questions x {summary['n']} samples")
    print("pass@k  " + "  ".join(f"k={k}: {summary['pass_at_k'][str(k)]:.3f}" for k in ks))
    print(f"distinct answers/question {summary['distinct_answers']:.2f}  no answer {summary['frac_no_answer']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
