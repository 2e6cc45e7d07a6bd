"""Hostile model output: every call returns within its bounds and nothing it contains runs.

A worker call's ``timeout`` is a CPU-time budget (so grades do not depend on machine load);
the wall-clock bounds asserted here are the contract's last guard (``G.wall_guard``), and the
CPU spent per call is checked against the budget separately. Correctness bounds, not speed
benchmarks.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from obe import grading as G
from obe.grading import SENTINEL_KEYS, GradeResult, grade, outcome_key, pool, verify

TIMEOUT = 1.0
MARGIN = 8.0  # worker kill + generous scheduling slack; a grade() may use two timeouts


def _hostile(sentinel: Path) -> list[str]:
    code = f"__import__('os').system('touch {sentinel}')"
    return [
        code,
        f"\\boxed{{{code}}}",
        f"\\boxed{{\\text{{{code}}}}}",
        f"$\\boxed{{exec(\"open('{sentinel}', 'w')\")}}$",
        f"\\boxed{{eval('__import__(\"os\").system(\"touch {sentinel}\")')}}",
        "\\boxed{9^9^9^9^9}",
        "\\boxed{9^{9^{9^{9^{9}}}}}",
        "\\boxed{10^{10^{10^{10}}}}",
        "\\boxed{1000000!}",
        "\\boxed{(10^{100})!}",
        "\\boxed{" + "{" * 100_000 + "1" + "}" * 100_000 + "}",
        "{" * 100_000,
        "\\boxed{" * 100_000,
        "\\boxed{" + "\\frac{" * 300 + "1" + "}{2}" * 300 + "}",
        "\\boxed{" + "(" * 5000 + "1" + ")" * 5000 + "}",
        "\\boxed{" + "1" * 1_000_000 + "}",
        "1" * 1_000_000,
        "The final answer is " + "9" * 1_000_000,
        "\\boxed{" + "x+" * 900 + "x}",
        "\\boxed{(x+1)^{100000}}",
        "\\boxed{\\sum_{n=1}^{10^{12}} n^{n}}",
        "\\boxed{\\int_0^1 e^{-x^{100}}\\sin(x^{x^x})\\,dx}",
        "\\boxed{\\lim_{x\\to 0} \\frac{\\sin(x)^{1000}}{x^{999}}}",
        "\\boxed{" + "a" * 1500 + "}",
        "\\boxed{\\begin{pmatrix}" + "\\\\".join(["1&2"] * 800) + "\\end{pmatrix}}",
        "\\boxed{\x00\x01\ud800}",
        "\\boxed{" + "\\{" * 3000 + "}",
        "final answer is " + "(" * 50_000,
        "\\boxed{" + "{" * 900 + "1" + "}" * 900 + "}",  # deep, but short enough for the worker
        "\\boxed{" + "\\frac{1}{" * 150 + "2" + "}" * 150 + "}",
        "\\boxed{" + "\\sqrt{" * 250 + "2" + "}" * 250 + "}",
    ]


def _assert_fast(fn, *args, timeout: float = TIMEOUT, budget: float = 1.0):  # type: ignore[no-untyped-def]
    start = time.monotonic()
    out = fn(*args, timeout=timeout)
    elapsed = time.monotonic() - start
    assert elapsed < budget * G.wall_guard(timeout) + MARGIN, (elapsed, repr(args)[:80])
    return out


def _worker_cpu_s() -> float:
    """CPU seconds (user + system) used so far by the live grading workers (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for w in pool.POOL.workers:
        if w._proc is not None and w._proc.poll() is None:
            fields = Path(f"/proc/{w._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


@pytest.fixture(scope="module", autouse=True)
def _warm() -> None:
    assert G.warm_up(timeout=120)


def test_hostile_inputs_bounded_and_inert(tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    for i, text in enumerate(_hostile(sentinel)):
        gold = ("5", "\\frac{\\sqrt{2}}{2}")[i % 2]
        r = _assert_fast(grade, text, gold, budget=2.0)
        assert isinstance(r, GradeResult) and not r.correct
        assert r.status in ("ok", "no_answer", "timeout", "too_long", "error")
        answer = G.extract(text)
        if answer is not None:
            assert not _assert_fast(verify, gold, answer)
            assert isinstance(_assert_fast(outcome_key, answer), str)
    assert not sentinel.exists()
    assert not Path("/tmp/pwned").exists() or Path("/tmp/pwned").stat().st_mtime < time.time() - 3600


def test_pathological_answers_time_out_and_worker_recovers() -> None:
    G.clear_caches()
    r = _assert_fast(grade, "\\boxed{9^{9^{9^{9}}}}", "5")
    assert r.status in ("timeout", "error") and r.outcome_key in SENTINEL_KEYS
    assert verify("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", timeout=60)  # restarted worker works


def test_timeout_holds_off_main_thread() -> None:
    G.clear_caches()
    out: list[tuple[float, GradeResult]] = []

    def work() -> None:
        start = time.monotonic()
        r = grade("\\boxed{(10^{100})! + 9^{9^{9^{9}}}}", "5", timeout=TIMEOUT)
        out.append((time.monotonic() - start, r))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(out) == 3
    for elapsed, r in out:
        assert elapsed < 2 * G.wall_guard(TIMEOUT) + MARGIN and not r.correct


def test_configured_timeout_is_respected() -> None:
    G.clear_caches()
    start = time.monotonic()
    assert outcome_key("9^{9^{9^{9}}}", timeout=0.5) in SENTINEL_KEYS
    assert time.monotonic() - start < G.wall_guard(0.5) + MARGIN


def test_cpu_budget_bounds_the_cpu_a_call_spends() -> None:
    # sympy expanding a huge power: pure Python, interrupted by the worker's CPU timer
    G.clear_caches()
    assert G.warm_up(timeout=120)
    before = _worker_cpu_s()
    r = grade("\\boxed{(x+y+z)^{300}}", "(z+y+x)^{300}", timeout=1.0)
    spent = _worker_cpu_s() - before
    assert r.status == "timeout" and 0.9 < spent < 1.0 + 1.5, spent  # the budget, plus unwinding
