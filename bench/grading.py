"""Throughput of obe.grading: answers graded per second (medians over repeats; no asserts).

(a) MATH-500 gold answers against themselves re-formatted (boxed, spaces, \\dfrac, ...);
(b) a realistic mix of model-like outputs: correct and incorrect, numbers and LaTeX, some with no
answer, some truncated;
(c) a free-text mix: responses without a box (lm-eval's Minerva "Final Answer: The final answer
is $X$. I hope it is correct.", "the answer is $X$", display math, a <think> block before the
answer), which go through Math-Verify's extraction in the worker.
Cold = empty caches and fresh workers (their imports excluded, as ``warm_up`` does them at
trainer start); warm = the same inputs again. "grade" calls
``grade`` once per response; "batch" calls ``grade_many`` on chunks of ``--batch`` responses
(available to the grading stage and the trainer), which spreads worker calls over the worker pool.

Run: .venv/bin/python bench/grading.py [--repeats 3]
Reads MATH-500 from $OBE_SHARED_DATA or ../shared/data relative to the repo.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path

from obe import grading as G
from obe.grading import pool

REPO = Path(__file__).resolve().parents[1]


def load_golds() -> list[str]:
    root = Path(os.environ.get("OBE_SHARED_DATA") or REPO.parent / "shared" / "data")
    with (root / "math500" / "test.jsonl").open() as f:
        return [json.loads(line)["answer"] for line in f]


def reformat(gold: str, rng: random.Random) -> str:
    """A formatting variant a model might produce for the same answer."""
    s = gold
    if rng.random() < 0.5:
        s = s.replace("\\frac", "\\dfrac")
    if rng.random() < 0.5:
        s = s.replace(",", ", ")
    if rng.random() < 0.3:
        s = " " + s + " "
    if rng.random() < 0.2 and s.strip().lstrip("-").isdigit():
        s = s.strip() + ".0"
    return s


def perturb(gold: str, rng: random.Random, golds: list[str]) -> str:
    """A wrong answer: a nearby number, a tweaked digit, or another problem's answer."""
    g = gold.strip()
    if g.lstrip("-").isdigit():
        return str(int(g) + rng.choice([-2, -1, 1, 2, 10]))
    if rng.random() < 0.5:
        digits = [i for i, c in enumerate(g) if c.isdigit()]
        if digits:
            i = rng.choice(digits)
            return g[:i] + str((int(g[i]) + 1) % 10) + g[i + 1 :]
    return rng.choice(golds)


def build_mix(golds: list[str], per_problem: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    items = []
    for gold in golds:
        for _ in range(per_problem):
            u = rng.random()
            if u < 0.45:  # correct, boxed, maybe re-formatted
                body = f"Let me compute... so the result is $\\boxed{{{reformat(gold, rng)}}}$."
            elif u < 0.85:  # incorrect
                body = f"After simplifying we get \\[\\boxed{{{perturb(gold, rng, golds)}}}\\]"
            elif u < 0.93:  # no answer
                body = "I am not sure how to proceed with this problem. Let me try again from the start"
            else:  # truncated mid-box
                body = f"Hence the answer is \\boxed{{{gold[: max(1, len(gold) // 2)]}"
            items.append(("Step 1: set up the equation. " * 20 + body, gold))
    rng.shuffle(items)
    return items


def build_free_text_mix(golds: list[str], per_problem: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    lead = "We set up the equation and simplify step by step. "
    items = []
    for gold in golds:
        for _ in range(per_problem):
            ans = reformat(gold, rng) if rng.random() < 0.55 else perturb(gold, rng, golds)
            u = rng.random()
            if u < 0.35:
                body = f"Final Answer: The final answer is ${ans}$. I hope it is correct."
            elif u < 0.6:
                body = f"Therefore, the answer is ${ans}$."
            elif u < 0.75:
                body = f"Putting it together we obtain \\[ {ans} \\]"
            elif u < 0.9:
                body = f"<think>maybe \\boxed{{{perturb(gold, rng, golds)}}}, let me check again</think> So the answer is $\\boxed{{{ans}}}$."
            else:
                body = "I could not finish the computation in time, so I will stop here"
            items.append((lead * rng.randint(2, 12) + body, gold))
    rng.shuffle(items)
    return items


def rate(items: list[tuple[str, str]]) -> float:
    start = time.perf_counter()
    for response, gold in items:
        G.grade(response, gold)
    return len(items) / (time.perf_counter() - start)


def rate_batch(items: list[tuple[str, str]], batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(items), batch):
        chunk = items[i : i + batch]
        G.grade_many([r for r, _ in chunk], [g for _, g in chunk])
    return len(items) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--per-problem", type=int, default=8, help="mix: responses per MATH-500 problem")
    ap.add_argument("--batch", type=int, default=512, help="grade_many chunk size")
    args = ap.parse_args()
    golds = load_golds()
    rng = random.Random(1)
    suites = {
        "math500-reformatted": [(f"The answer is $\\boxed{{{reformat(g, rng)}}}$.", g) for g in golds],
        "model-mix": build_mix(golds, args.per_problem),
        "free-text-mix": build_free_text_mix(golds, args.per_problem // 2),
    }
    print(f"cpus={os.cpu_count()} repeats={args.repeats} cpu budget={G.DEFAULT_TIMEOUT_S}s workers={G.WORKERS} "
          f"load={os.getloadavg()[0]:.1f}")
    for name, items in suites.items():
        cold, warm, cold_b, calls = [], [], [], []
        for _ in range(args.repeats):
            G.clear_caches(worker=True)
            G.warm_up()
            c0 = pool.POOL.calls
            cold.append(rate(items))
            calls.append(pool.POOL.calls - c0)
            warm.append(rate(items))
            G.clear_caches(worker=True)
            G.warm_up()
            cold_b.append(rate_batch(items, args.batch))
        statuses: dict[str, int] = {}
        for response, gold in items:
            s = G.grade(response, gold)
            statuses[s.status + ("+correct" if s.correct else "")] = statuses.get(s.status + ("+correct" if s.correct else ""), 0) + 1
        print(f"{name:22s} n={len(items):5d} cold median {statistics.median(cold):7.0f}/s  "
              f"cold batch median {statistics.median(cold_b):7.0f}/s  warm median {statistics.median(warm):7.0f}/s  "
              f"worker calls per cold run={statistics.median(calls):.0f}  {statuses}")
    print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
