"""Grading one response or a batch: the verdict (:func:`verify`), the key (:func:`outcome_key`),
both with the extracted answer (:func:`grade`, :func:`grade_many`).

Answers are normalized (:mod:`obe.grading.normalization`), answered in process when the fast
path is certain (:mod:`obe.grading.fastpath`), else by a Math-Verify worker
(:mod:`obe.grading.pool`); verdicts and keys are cached in bounded LRUs keyed by the
normalized strings. The contract these functions keep is in :mod:`obe.grading`'s docstring.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Sequence

from obe.grading import pool  # called as pool.slow, so tests can replace it
from obe.grading.extraction import (
    EXTRACT_CACHE, GOLD_CACHE, MAX_RESPONSE_CHARS, ExtractConfig, extract_or_raise, extract_slow, gold_answer,
    needs_worker_extraction, same_text, strip_think, text_key,
)
from obe.grading.fastpath import fast_eq, fast_key, fast_poly, fast_val, shape
from obe.grading.normalization import is_equation, normalize
from obe.grading.pool import CACHE_SIZE, DEFAULT_TIMEOUT_S, LRU, WorkerError

MAX_ANSWER_CHARS = 2000
NO_ANSWER_KEY = "<no_answer>"
TIMEOUT_KEY = "<timeout>"
TOO_LONG_KEY = "<too_long>"  # an answer over MAX_ANSWER_CHARS: not graded, never an error
ERROR_KEY = "<error>"  # grading raised: a bug to see (GradeResult.error), never a "no answer"
SENTINEL_KEYS = frozenset({NO_ANSWER_KEY, TIMEOUT_KEY, TOO_LONG_KEY, ERROR_KEY})
KNOWN_KEY_EXCEPTIONS: tuple[tuple[str, str], ...] = (
    ("\\sqrt{2}", "1.414214"), ("\\sqrt{17}", "4.123105625617661"),
    ("2x+4y-3=0", "y=-\\frac{1}{2}x+\\frac{3}{4}"),
    ("(1,2)", "1,2"), ("(1,2)", "2,1"), ("(2,1)", "1,2"), ("(2,1)", "2,1"),
)
"""(a, b) answer pairs (compared after ``normalize``) where ``verify(a, b)`` holds but the keys
differ, from these known classes:
  * a decimal of 6+ places against an irrational it rounds to (Math-Verify's precision
    convention) keys as the simplest fraction of its 6-place rounding cell, the irrational
    by 12 significant digits. "Equal at 6 places" cannot be keyed together with
    "exact numbers compare exactly" (1/2^98 != 1/2^99, both 0.000000 at 6 places);
  * an assignment ``y = ...`` keys as its right side (``y=2x+3`` == ``2x+3``) but equals the
    same line written as an equation (``2x-y+3=0``), which keys as an equation;
  * a bare list keys as a set (``1,2`` == ``2,1``) but answers a gold pair in order
    (``1,2`` == ``(1,2)``), which keys as a pair.
Neither affects training counts: :func:`grade` gives a correct answer the gold's key. Keys of
irrational constants use 12 significant digits, so two *different* constants that agree to 12
digits would share a key (the converse direction)."""


_EQ_CACHE = LRU(CACHE_SIZE)  # (gold, answer) normalized -> True, False or "timeout"
_KEY_CACHE = LRU(CACHE_SIZE)  # normalized answer -> key


def clear_caches(worker: bool = False) -> None:
    """Empty the result caches (benchmarks, tests); ``worker=True`` also restarts the worker,
    emptying its parse cache (the next slow call waits for its imports, ~1-2 s)."""
    _EQ_CACHE.clear()
    _KEY_CACHE.clear()
    EXTRACT_CACHE.clear()
    GOLD_CACHE.clear()
    fast_val.cache_clear()
    fast_poly.cache_clear()
    _compare_forms.cache_clear()
    if worker:
        pool.POOL.stop()


@dataclass(frozen=True)
class GradeResult:
    """Outcome of grading one response. ``status``: "ok", "no_answer", "timeout", "too_long" or
    "error"; ``error``: for "error" only, what raised (``Type: message``), in the grader or in
    its worker."""

    answer: str | None
    outcome_key: str
    correct: bool
    status: str
    error: str | None = None


def _failed(answer: str | None, exc: BaseException) -> GradeResult:
    return GradeResult(answer, ERROR_KEY, False, "error", f"{type(exc).__name__}: {exc}"[:500])


def _too_long(s: str) -> bool:
    return len(s) > MAX_ANSWER_CHARS


def outcome_key(answer: str | None, *, timeout: float = DEFAULT_TIMEOUT_S) -> str:
    """One canonical string per equivalence class of answers (sentinels for none/timeout/error)."""
    if answer is None:
        return NO_ANSWER_KEY
    try:
        s = normalize(answer)
        if not s:
            return NO_ANSWER_KEY
        if _too_long(s):
            return TOO_LONG_KEY
        return _key_of(s, timeout)
    except Exception:
        return ERROR_KEY


def _key_of(s: str, timeout: float) -> str:
    key = _KEY_CACHE.get(s)
    if key is None:
        key = fast_key(s)
        if key is None:
            resp, cacheable = pool.slow({"op": "key", "a": s}, timeout)
            if resp is None:
                key = TIMEOUT_KEY
            elif "error" in resp:
                raise WorkerError(f"the grading worker raised {resp['error']} keying {s[:200]!r}")
            else:
                key = resp["key"]
            if not cacheable:
                return key
        _KEY_CACHE.put(s, key)
    return key


def _eq_known(g: str, p: str) -> bool | str | None:
    """The cached or fast verdict (True, False, or "timeout" when cached so), else ``None``."""
    eq = _EQ_CACHE.get((g, p))
    if eq is None:
        eq = fast_eq(g, p)
        if eq is not None:
            _EQ_CACHE.put((g, p), eq)
    return eq


def _key_known(s: str) -> bool:
    return _KEY_CACHE.get(s) is not None or fast_key(s) is not None


def _eq_of(g: str, p: str, timeout: float, want_key: bool = False) -> bool | None:
    """Equivalence of two normalized answers; ``None`` on timeout.

    With ``want_key`` the worker also keys ``p``, and ``g`` when they are equivalent, in the
    same round trip (what ``grade`` needs next: one call instead of up to three).
    """
    eq = _eq_known(g, p)
    if eq is None:
        req: dict[str, Any] = {"op": "eq", "g": g, "p": p}
        if want_key:
            req["key"] = not _key_known(p)
            req["gkey"] = not _key_known(g)
        resp, cacheable = pool.slow(req, timeout)
        if resp is None:
            if cacheable:
                _EQ_CACHE.put((g, p), "timeout")
            return None
        if "error" in resp:  # not "unequal": a worker that raised has no verdict
            raise WorkerError(f"the grading worker raised {resp['error']} comparing {p[:200]!r} with {g[:200]!r}")
        eq = bool(resp["eq"])
        if cacheable:
            if "key" in resp:
                _KEY_CACHE.put(p, resp["key"])
            if "gkey" in resp:
                _KEY_CACHE.put(g, resp["gkey"])
        _EQ_CACHE.put((g, p), eq)
    return None if eq == "timeout" else bool(eq)


@lru_cache(maxsize=CACHE_SIZE)
def _compare_forms(gold: str, pred: str) -> tuple[str, str]:
    """The normalized forms to compare: with the single-letter assignments dropped
    (``y = 2x+3`` == ``2x+3``) and computations read by their result (``\\sqrt{4} = 2`` is 2,
    see ``normalize``); when one side is still an equation both are compared whole
    (``2x+4y-3=0`` == ``y=-\\frac12x+\\frac34``; ``7 = 11a+c`` != ``11a+c``)."""
    g, p = normalize(gold), normalize(pred)
    if is_equation(g) or is_equation(p):
        return normalize(gold, keep_assignment=True), normalize(pred, keep_assignment=True)
    if "," in p and "," in g:  # a bare list against a pair: in order if the gold is the pair
        if _is_bare_list(p) and shape(g) == "()":
            return g, "(" + p + ")"
        if _is_bare_list(g) and shape(p) == "()":
            return g, p[1:-1]
    return g, p


def _is_bare_list(s: str) -> bool:
    return not s.startswith("\\{") and shape(s) == "set"


def verify(gold: str, pred: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> bool:
    """Whether answer ``pred`` is equivalent to ``gold``; False on timeout or error, never raises.

    ``timeout`` is the CPU-time budget (seconds) of each worker call, so the verdict does not
    depend on machine load; wall-clock time only bounds a call at :func:`wall_guard`.
    """
    try:
        g, p = _compare_forms(gold, pred)
        if not g or not p or _too_long(g) or _too_long(p):
            return False
        return bool(_eq_of(g, p, timeout))
    except Exception:
        return False


def grade(
    response: str, gold: str, *, config: ExtractConfig = ExtractConfig(),
    timeout: float = DEFAULT_TIMEOUT_S,
) -> GradeResult:
    """Extract, verify and key one response. Never raises: what raises inside (a bug, or the
    worker failing on this input) is the result's ``error`` with status "error".

    ``gold`` is normally a bare answer; a gold written as a solution (a ``\\boxed{}`` in
    text, or prose) is read the same way as a response. ``timeout``: CPU seconds per worker
    call (at most one for extraction and two for the verdict and key).
    """
    answer = None
    try:
        prepared = _prepare(response, gold, config, timeout)
        if isinstance(prepared, GradeResult):
            return prepared
        answer, g, p = prepared
        return _finish(answer, g, p, timeout)
    except Exception as exc:
        return _failed(answer, exc)


def _prepare(response: str, gold: str, config: ExtractConfig,
             timeout: float = DEFAULT_TIMEOUT_S) -> GradeResult | tuple[str, str, str]:
    same = config.mode != "boxed" and same_text(response, gold)
    if same:
        answer: str | None = strip_think(response).strip()  # it states the reference answer
    else:
        answer = extract_or_raise(response, config, timeout=timeout)
    if answer is None or not normalize(answer):
        return GradeResult(answer, NO_ANSWER_KEY, False, "no_answer")
    g, p = _compare_forms(gold if same else gold_answer(gold, timeout), answer)
    if _too_long(p) or _too_long(g):
        return GradeResult(answer, TOO_LONG_KEY, False, "too_long")
    return answer, g, p  # type: ignore[return-value]


def _finish(answer: str, g: str, p: str, timeout: float) -> GradeResult:
    eq = _eq_of(g, p, timeout, want_key=True)
    if eq is None:
        return GradeResult(answer, TIMEOUT_KEY, False, "timeout")
    try:
        key = _key_of(g if eq else p, timeout)  # correct answers share the gold's key
    except WorkerError as exc:  # the verdict stands; the answer has no key of its own (reported)
        return GradeResult(answer, ERROR_KEY, eq, "error", f"{type(exc).__name__}: {exc}"[:500])
    status = "timeout" if key == TIMEOUT_KEY else "ok"
    return GradeResult(answer, key, eq and status == "ok", status)


def grade_many(
    responses: Sequence[str], golds: Sequence[str], *, config: ExtractConfig = ExtractConfig(),
    timeout: float = DEFAULT_TIMEOUT_S,
) -> list[GradeResult]:
    """``[grade(r, g) for r, g in zip(responses, golds)]``, faster on a batch.

    Each distinct response that needs Math-Verify's extraction, then each distinct (gold,
    answer) pair that needs the worker, is sent once, spread over the workers in parallel (one
    thread per worker, a gold's pairs on one worker, whose parse cache then holds it). Every
    worker call keeps its own CPU budget ``timeout``, so a hostile answer costs its lane about
    ``timeout`` CPU seconds. The results equal ``grade``'s. Never raises.
    """
    responses, golds = list(responses), list(golds)
    if len(responses) != len(golds):
        raise ValueError(f"{len(responses)} responses but {len(golds)} golds")
    texts: dict[str, None] = {}  # responses and golds that need Math-Verify's extraction
    for response, gold in zip(responses, golds):
        try:
            if needs_worker_extraction(response, config)[1]:
                texts[strip_think(response)[-MAX_RESPONSE_CHARS:]] = None
        except Exception:
            pass  # the final pass grades this item again and reports the error
    _run_lanes([[(t, "")] for t in texts if EXTRACT_CACHE.get(text_key(t)) is None],
               lambda t, _: extract_slow(t, timeout))
    prepared: list[GradeResult | tuple[str, str, str]] = []
    pending: dict[str, dict[str, None]] = {}  # gold -> answers it needs the worker for
    for response, gold in zip(responses, golds):
        answer = None
        try:
            item = _prepare(response, gold, config, timeout)
            if not isinstance(item, GradeResult):
                answer, g, p = item
                if _eq_known(g, p) is None:
                    pending.setdefault(g, {})[p] = None
        except Exception as exc:
            item = _failed(answer, exc)
        prepared.append(item)
    _run_lanes([[(g, p) for p in ps] for g, ps in pending.items()],
               lambda g, p: _eq_of(g, p, timeout, want_key=True))
    keys: dict[str, None] = {}  # keys still unknown (eq answered from the cache or fast path)
    for item in prepared:
        if not isinstance(item, GradeResult):
            _, g, p = item
            eq = _eq_known(g, p)
            if eq is not None and eq != "timeout":
                s = g if eq else p
                if not _key_known(s):
                    keys[s] = None
    _run_lanes([[(s, "")] for s in keys], lambda s, _: _key_of(s, timeout))
    out = []
    for item in prepared:
        if isinstance(item, GradeResult):
            out.append(item)
            continue
        try:
            out.append(_finish(*item, timeout))
        except Exception as exc:
            out.append(_failed(item[0], exc))
    return out


def _run_lanes(groups: list[list[tuple[str, str]]], job: Callable[[str, str], object]) -> None:
    """Run ``job`` on every pair, groups kept together, one thread per worker."""
    n = min(len(pool.POOL.workers), sum(len(gr) for gr in groups))
    lanes: list[list[tuple[str, str]]] = [[] for _ in range(max(n, 1))]
    for gr in sorted(groups, key=len, reverse=True):
        min(lanes, key=len).extend(gr)

    def run(i: int) -> None:
        pool.POOL.prefer(i)
        for a, b in lanes[i]:
            try:
                job(a, b)
            except Exception:
                pass  # the final pass grades this item again and reports the error

    if n <= 1:
        run(0)
        return
    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
