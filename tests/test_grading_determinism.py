"""A grade never depends on machine load: worker calls are bounded by CPU time.

A batch of slow cases (0.3-1 s of CPU each in the worker) and of cases far over any budget is
graded on an idle machine and again while busy processes spin on every core; the results must
be the same. Under that load the slow cases take several times their CPU time in wall-clock
time, so a wall-clock bound of the same size would have turned them into timeouts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from obe import grading as G
from obe.grading import pool

BUDGET_S = 3.0  # CPU seconds per worker call: ~3x the slowest slow case
SLOW = [  # (response, gold): sympy work of ~0.3-1 s CPU each, well inside the budget
    ("\\boxed{\\int_0^{\\pi} \\sin^{6}(x)\\, dx}", "\\frac{5\\pi}{16}"),
    ("\\boxed{\\frac{(x+1)^{60}-1}{x}}", "(x+1)^{59}"),
    ("\\boxed{\\int_0^1 x^{6} e^x\\, dx}", "1"),
    ("\\boxed{\\sum_{n=1}^{3000} n^3}", "20259004500000"),
    ("The final answer is $\\sin^2(x)+\\cos^2(x)$", "1"),
]
HOSTILE = [  # far over any budget (sympy expanding a huge power): a timeout on every machine
    ("\\boxed{(x+y+z)^{300}}", "(z+y+x)^{300}"),
]


def _grade_all() -> tuple[list[G.GradeResult], float]:
    G.clear_caches(worker=True)  # fresh workers: nothing cached from the other run
    assert G.warm_up(timeout=300)
    items = SLOW + HOSTILE
    start = time.monotonic()
    out = G.grade_many([r for r, _ in items], [g for _, g in items], timeout=BUDGET_S)
    return out, time.monotonic() - start


def test_grades_are_the_same_under_cpu_load() -> None:
    idle, idle_s = _grade_all()
    n_busy = (os.cpu_count() or 1) + 2  # more spinning processes than cores
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n_busy)]
    try:
        time.sleep(0.5)
        loaded, loaded_s = _grade_all()
    finally:
        for p in busy:
            p.kill()
        for p in busy:
            p.wait()
    print(f"idle {idle_s:.1f} s, under {n_busy} busy processes {loaded_s:.1f} s wall "
          f"(load {os.getloadavg()[0]:.1f})")
    assert loaded == idle
    assert [r.status for r in idle[: len(SLOW)]] == ["ok"] * len(SLOW)
    assert [r.status for r in idle[len(SLOW):]] == ["timeout"] * len(HOSTILE)
    assert idle[0].correct and idle[-1].outcome_key == G.TIMEOUT_KEY


def test_wall_guard_is_far_away() -> None:
    # the wall clock only ends a call at many times its CPU budget
    assert G.wall_guard(G.DEFAULT_TIMEOUT_S) >= 20 * G.DEFAULT_TIMEOUT_S
    assert G.wall_guard(BUDGET_S) >= 60


def test_cpu_budget_interrupts_python_and_worker_survives() -> None:
    G.clear_caches()
    pids = [w._proc.pid for w in pool.POOL.workers if w._proc is not None]
    r = G.grade("\\boxed{(x+1)^{100000}}", "5", timeout=0.5)
    assert r.status == "timeout" and r.outcome_key == G.TIMEOUT_KEY
    # a CPU timeout is answered by the worker itself: no restart needed
    assert [w._proc.pid for w in pool.POOL.workers if w._proc is not None] == pids
    assert G.verify("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", timeout=30)
