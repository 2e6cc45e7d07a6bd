"""The closed-form fast path (obe.grading.fastpath, fastmath) agrees with the Math-Verify slow path.

For every fast-path shape: the fast key equals the key the worker gives the same string
(forced through ``pool.POOL``), verdicts between fast answers equal the worker's verdicts, and the
fast path never calls the worker. Plus ``grade_many`` == ``[grade(...)]`` and the worker pool.
"""

from __future__ import annotations

import threading
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from obe.grading import fastmath as F
from obe import grading as G
from obe.grading import fastpath, pool
from obe.grading import GradeResult, grade, grade_many, normalize, outcome_key, verify

# Answers the fast path must cover; each keyed as the worker keys it.
FAST: list[str] = [
    # square roots
    "\\sqrt2", "\\sqrt{2}", "3\\sqrt{13}", "-\\sqrt{3}", "\\sqrt{12}", "2\\sqrt{3}", "11\\sqrt2", "70\\sqrt{2}",
    "\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}", "\\frac{\\sqrt{2}}{2}", "\\sqrt{2}/2", "\\frac{1}{\\sqrt2}",
    "\\dfrac{3\\sqrt{3}}{4}", "\\frac{\\sqrt{21}}{5}", "\\frac{1}{2}\\sqrt3", "\\frac{1}{2\\sqrt3}", "\\sqrt{\\frac{1}{2}}",
    "\\sqrt{0.5}", "0.5\\sqrt2", "1+2\\sqrt{3}", "11\\sqrt{5}+11", "\\sqrt{2}+1", "1+\\sqrt{2}", "\\sqrt{2}-1",
    "\\sqrt{8}-2\\sqrt2", "\\sqrt{4}", "\\sqrt{\\sqrt{16}}", "\\sqrt{2}\\cdot\\sqrt{3}", "\\sqrt{6}/\\sqrt{3}",
    "\\sqrt{12}/\\sqrt{3}", "(\\sqrt{2})^2", "\\sqrt{2}^{3}", "2^{-1}\\sqrt{2}", "\\frac{\\sqrt{2}}{2^{99}}",
    "10^{30}\\sqrt2", "\\sqrt{1000001}", "\\frac{2+\\sqrt{2}}{4}", "-\\frac{\\sqrt{5}}{5}", "\\sqrt{\\frac{8}{9}}",
    "3-\\sqrt{2}", "\\frac{5\\sqrt{2}}{2}-1",
    # pi
    "\\pi", "2\\pi", "2 \\pi", "\\frac{\\pi}{4}", "\\frac14\\pi", "-\\frac{\\pi}{6}", "288\\pi", "\\frac{20000}{\\pi}",
    "18+2\\pi", "\\frac{\\pi^2}{8}", "\\pi^{-1}", "\\frac{\\sqrt{2}\\pi}{4}", "\\pi\\sqrt{2}", "4\\pi-8",
    "\\frac{3\\pi}{2}", "\\frac{\\pi}{\\pi}", "100\\pi", "\\frac{32\\pi}{3}",
    # sets, bare lists, tuples, intervals of such numbers
    "\\{1,2\\}", "\\{2,1\\}", "\\{1,1\\}", "\\{5\\}", "1,2", "2,1", "1,-2", "-2,1", "3,5,7", "1,00", "1,2345",
    "\\{\\sqrt2,1\\}", "\\{-\\sqrt{3},\\sqrt{3}\\}", "(1,2)", "(2,1)", "(1,1)", "(6,31,-1)", "(1,-16,-4,43)",
    "(\\frac{3}{2},-13)", "(0.5,\\pi)", "(-\\sqrt{3},\\sqrt{3})", "(3,\\frac{\\pi}{2})", "[1,2]", "[1,2)", "(3,4]",
    "[-2,7]", "(2,\\infty)", "(-\\infty,0]", "(-\\infty,3)", "[2,\\infty)", "(-\\infty,\\infty)", "(5,\\infty)",
    "[\\frac{\\pi^2}{8},\\frac{5\\pi^2}{4}]", "(\\frac{3}{5},\\frac{8}{3}]", "(-\\infty,-\\sqrt2)",
    # plus-minus, unions of two intervals
    "1\\pm\\sqrt{19}", "\\pm\\sqrt{2}", "\\pm 3", "3\\pm2\\sqrt{2}", "\\{1\\pm\\sqrt{5},-2\\}", "1\\pm\\sqrt{5},-2",
    "(0,9)\\cup(9,36)", "(-\\infty,2)\\cup(3,\\infty)", "(1,3)\\cup(3,5]", "(3,5)\\cup(1,2)", "[-2,0)\\cup(0,\\sqrt{2}]",
    "(-\\infty,-1)\\cup(1,\\infty)", "(2,12)\\cup(12,102)",
    # mixed numbers, matrices
    "1\\frac{4}{5}", "137\\frac{1}{2}", "137\\frac{2}{2}", "-1\\frac{4}{5}", "1\\frac45", "3\\dfrac{1}{2}",
    "\\begin{pmatrix}-1/3\\\\2/3\\\\5/3\\end{pmatrix}", "\\begin{pmatrix} -2 \\\\ -14 \\\\ -7 \\end{pmatrix}",
    "\\begin{pmatrix}-1&0\\\\0&-1\\end{pmatrix}", "\\begin{bmatrix}\\frac12&\\sqrt2\\end{bmatrix}",
    "\\begin{pmatrix}16/49\\\\48/49\\\\24/49\\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}",
]

# Not covered: left to the worker (ambiguous or outside the algebra).
NOT_FAST = ["(0,9)\\cup(0,36)", "[1,3)\\cup[3,5]", "(1,2)\\cup(2,3)\\cup(4,5)", "(1,2)\\cup\\{5\\}", "1\\pm2+3",
            "\\sqrt12", "1/2\\sqrt3", "\\begin{pmatrix}5\\end{pmatrix}", "1\\frac{x}{5}", "2\\frac{\\sqrt{3}}{2}", "\\sqrt[3]{2}", "\\sqrt{-4}",
            "(1+\\sqrt2)(1-\\sqrt2)", "\\frac{1}{1+\\sqrt2}", "(1+\\sqrt2)^2", "[2,1]", "[1,1]", "[2,\\infty]",
            "[1,2,3]", "(1,2),(3,4)", "\\sqrt{\\pi}", "e", "2i", "x\\sqrt2", "\\sqrt{2}3",
            "2(1+\\sqrt{3})"]


def _slow_key(s: str, mv: bool = True) -> str:
    """The worker's key, by default from Math-Verify's own parse (no quick path)."""
    resp, _ = pool.POOL.request({"op": "key", "a": normalize(s), "mv": mv}, 60)
    assert resp is not None and "error" not in resp, (s, resp)
    return resp["key"]


def _slow_eq(g: str, p: str, mv: bool = True) -> bool:
    resp, _ = pool.POOL.request({"op": "eq", "g": normalize(g), "p": normalize(p), "mv": mv}, 60)
    assert resp is not None and "error" not in resp, (g, p, resp)
    return bool(resp["eq"])


@pytest.fixture(scope="module", autouse=True)
def _warm() -> None:
    assert G.warm_up(timeout=120)


@pytest.mark.parametrize("answer", FAST)
def test_fast_key_equals_slow_key(answer: str) -> None:
    fast = fastpath.fast_key(normalize(answer))
    assert fast is not None, answer
    assert fast == _slow_key(answer), answer


@pytest.mark.parametrize("answer", FAST)
def test_worker_quick_parse_agrees(answer: str) -> None:
    assert _slow_key(answer, mv=False) == _slow_key(answer, mv=True), answer


@pytest.mark.parametrize("answer", NOT_FAST)
def test_not_covered_shapes_go_slow(answer: str) -> None:
    assert F.fast_value(normalize(answer)) is None, answer


# Verdicts between fast answers: equal to the worker's (pairs chosen across and within classes).
PAIRS = [
    ("\\frac{\\sqrt{2}}{2}", "\\sqrt{2}/2"), ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt2}"), ("2\\sqrt{3}", "\\sqrt{12}"),
    ("\\sqrt{3}", "\\sqrt{2}"), ("3\\sqrt{2}", "\\sqrt{18}"), ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt3"),
    ("\\sqrt{2}+1", "1+\\sqrt{2}"), ("\\sqrt{2}-1", "1-\\sqrt{2}"), ("2\\pi", "\\pi"), ("\\frac{\\pi}{4}", "\\frac14\\pi"),
    ("\\frac{\\sqrt{2}}{2^{99}}", "\\frac{\\sqrt{2}}{2^{98}}"), ("\\frac{\\sqrt{2}}{2^{99}}", "\\sqrt{2}\\cdot 2^{-99}"),
    ("(-\\sqrt{3},\\sqrt{3})", "(-\\sqrt{3}, \\sqrt{3})"), ("(-\\sqrt{3},\\sqrt{3})", "(-\\sqrt{3},\\sqrt{2})"),
    ("\\{\\sqrt2,1\\}", "1,\\sqrt{2}"), ("[1,2)", "[1,2]"), ("(2,\\infty)", "(2,\\infty)"), ("(2,\\infty)", "(3,\\infty)"),
    ("\\frac{3\\sqrt{3}}{4}", "\\frac{3}{4}\\sqrt{3}"), ("\\frac{\\sqrt{21}}{5}", "\\frac{\\sqrt{21}}{6}"),
    ("\\frac{20000}{\\pi}", "20000\\pi^{-1}"), ("18+2\\pi", "2\\pi+18"), ("\\sqrt{0.5}", "\\frac{\\sqrt2}{2}"),
    ("\\sqrt{2}", "2"), ("\\pi", "3"), ("\\frac{\\pi}{2}", "90"), ("(1,2)", "(1, 2.0)"),
    ("1\\pm\\sqrt{19}", "1+\\sqrt{19},1-\\sqrt{19}"), ("1\\pm\\sqrt{19}", "\\{1-\\sqrt{19},1+\\sqrt{19}\\}"),
    ("1\\pm\\sqrt{19}", "1\\pm\\sqrt{10}"), ("3\\pm2\\sqrt{2}", "5"), ("\\pm 3", "3"), ("\\pm 3", "-3,3"),
    ("\\{1\\pm\\sqrt{5},-2\\}", "\\{1\\pm\\sqrt{5},-3\\}"), ("(0,9)\\cup(9,36)", "(9,36)\\cup(0,9)"),
    ("(0,9)\\cup(9,36)", "(0,9)\\cup(9,46)"), ("(0,9)\\cup(9,36)", "(0,36)"), ("(0,9)\\cup(9,36)", "4"),
    ("(-\\infty,2)\\cup(3,\\infty)", "(-\\infty,2)\\cup(4,\\infty)"), ("(1,3)\\cup(3,5]", "(1,3)\\cup(3,5)"),
    ("1\\frac{4}{5}", "\\frac{9}{5}"), ("1\\frac{4}{5}", "1.8"), ("1\\frac{4}{5}", "\\frac{4}{5}"),
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{bmatrix}1\\\\2\\end{bmatrix}"),
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}1&2\\end{pmatrix}"),
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}2\\\\1\\end{pmatrix}"),
    ("\\begin{pmatrix}0.5\\\\2\\end{pmatrix}", "\\begin{pmatrix}\\frac12\\\\2\\end{pmatrix}"),
]  # (tuple vs set is decided by the shape pre-check, against the worker: tests/test_grading.py)


@pytest.mark.parametrize(("g", "p"), PAIRS)
def test_fast_verdict_equals_slow_verdict(g: str, p: str) -> None:
    fast = fastpath.fast_eq(normalize(g), normalize(p))
    assert fast is not None, (g, p)
    assert fast == _slow_eq(g, p), (g, p)
    if fast:
        assert fastpath.fast_key(normalize(g)) == fastpath.fast_key(normalize(p))


# Polynomials in single-letter variables: verdicts decided in-process, keys from the worker's
# quick parse (sympy constructors) instead of an ANTLR parse; both checked against Math-Verify.
POLYS = ["x^3+3x-6", "3x-6+x^3", "x^3+3x-7", "8n^2+4n+1", "4n+1+8n^2", "8n^2+4n+2", "15x-80", "-80+15x", "p-q", "-q+p",
         "q-p", "2k+2", "2(k+1)", "3k+2", "-13x+3", "5r^5", "5r^6", "6r^2-4r-24", "2(3r^2-2r-12)", "(a+5)(b+2)",
         "ab+2a+5b+10", "(a+5)(b+3)", "\\frac{11+9a}{20}", "\\frac{9a}{20}+\\frac{11}{20}", "0.45a+0.55", "3R^2", "3r^2",
         "(B)", "(E)", "B", "x^5-x^4+x^3-x^2+x-1", "(x+1)^2", "x^2+2x+1", "x^2-1", "(x-1)(x+1)", "2x^2y", "2yx^2",
         "\\frac{x}{2}", "0.5x", "x\\cdot y", "xy", "yx", "x^{10}", "x^{2}+1", "2x+3", "3+2x", "-2x", "-x-x", "ab", "15cm^2",
         "6-5i", "-5i+6", "1+2i", "2i+1", "1-2i", "i", "-i", "i^2", "i^2+1", "1+274i"]
NUMBERS = ["5", "0", "-1", "6", "\\frac{1}{2}", "\\sqrt{2}", "12"]


@pytest.mark.parametrize("answer", POLYS)
def test_poly_quick_key_equals_math_verify_key(answer: str) -> None:
    assert fastpath.fast_poly(normalize(answer)) is not None, answer
    assert _slow_key(answer, mv=False) == _slow_key(answer, mv=True), answer


def test_poly_verdicts_equal_math_verify_verdicts() -> None:
    answers = POLYS[:30] + NUMBERS + POLYS[50:]
    for i, g in enumerate(answers):
        for p in answers[i + 1 : i + 8]:
            fast = fastpath.fast_eq(normalize(g), normalize(p))
            assert fast is not None, (g, p)
            assert fast == _slow_eq(g, p), (g, p)
            assert fast == _slow_eq(g, p, mv=False), (g, p)


def test_fast_shapes_never_call_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("slow path taken")

    G.clear_caches()
    monkeypatch.setattr(pool, "slow", boom)
    for a in FAST:
        assert outcome_key(a) not in G.SENTINEL_KEYS, a
        r = grade(f"so $\\boxed{{{a}}}$", a)
        assert r.correct and r.status == "ok", (a, r)
    for g, p in PAIRS:
        verify(g, p)
        assert grade(f"\\boxed{{{p}}}", g).status == "ok"
    for p in POLYS + NUMBERS:
        assert verify("x^3+3x-6", p) is (normalize(p) in ("x^3+3x-6", "3x-6+x^3"))


# Random closed forms: c1*sqrt(m1) + c2*pi^k written in LaTeX, keyed both ways.
_coef = st.fractions(min_value=-50, max_value=50, max_denominator=12).filter(lambda v: v != 0)


def _latex(c: Fraction, body: str) -> str:
    sign = "-" if c < 0 else ""
    p, q = abs(c.numerator), c.denominator
    num = body if p == 1 and body else f"{p}{body}"
    return f"{sign}\\frac{{{num}}}{{{q}}}" if q != 1 else f"{sign}{num}"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_coef, st.integers(min_value=2, max_value=300), st.one_of(st.none(), _coef), st.integers(-2, 3))
def test_random_closed_forms_agree(c1: Fraction, m: int, c2: Fraction | None, k: int) -> None:
    s = _latex(c1, f"\\sqrt{{{m}}}")
    if c2 is not None and k != 0:
        term = _latex(c2, "\\pi" if k == 1 else f"\\pi^{{{k}}}")
        s = s + ("" if term.startswith("-") else "+") + term
    fast = fastpath.fast_key(normalize(s))
    assert fast is not None, s
    assert fast == _slow_key(s), s


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(-20, 20), min_size=1, max_size=4), st.integers(2, 30), st.sampled_from(["set", "tuple", "list"]))
def test_random_structures_agree(ints: list[int], m: int, kind: str) -> None:
    elems = [f"{a}\\sqrt{{{m}}}" if a % 3 == 0 else str(a) for a in ints]
    if kind == "set":
        s = "\\{" + ",".join(elems) + "\\}"
    elif kind == "tuple" and len(elems) >= 2:
        s = "(" + ",".join(elems) + ")"
    elif len(elems) >= 2:
        s = ", ".join(elems)
    else:
        return
    if any(len(e) == 3 and e.isdigit() for e in elems[1:]):
        return
    fast = fastpath.fast_key(normalize(s))
    assert fast is not None, s
    assert fast == _slow_key(s), s


def test_fastmath_bounded_on_hostile_shapes() -> None:
    for s in ["\\sqrt{" * 300 + "2" + "}" * 300, "\\pi^{100000}", "2^{10000}\\sqrt{3}", "\\sqrt{" + "9" * 150 + "}",
              "(" * 150 + "\\sqrt2" + ")" * 150, "\\sqrt{99999999999989}", ",".join(["\\sqrt2"] * 80)]:
        v = F.fast_value(s)
        if v is not None:
            F.value_key(v)


def test_grade_many_matches_grade() -> None:
    golds = ["\\frac{\\sqrt{3}}{3}", "x^2-1", "(1,2)", "5", "2\\pi", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"]
    preds = ["\\frac{1}{\\sqrt3}", "(x-1)(x+1)", "(x+1)(x-1)", "\\{1,2\\}", "5.0", "6", "2 \\pi", "x+1", "x^2-1",
             "\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\text{no}", "1-x^2"]
    responses, gs = [], []
    for g in golds:
        for p in preds:
            responses.append(f"so \\boxed{{{p}}}.")
            gs.append(g)
        responses.append("no box here")
        gs.append(g)
        for p in preds[:4]:  # free text: Math-Verify's extraction in the worker, batched too
            responses.append(f"Final Answer: The final answer is ${p}$. I hope it is correct.")
            gs.append(g)
    G.clear_caches()
    batch = grade_many(responses, gs, timeout=30)
    G.clear_caches()
    single = [grade(r, g, timeout=30) for r, g in zip(responses, gs)]
    assert batch == single
    assert all(isinstance(r, GradeResult) for r in batch)
    assert grade_many([], []) == []
    assert grade_many([None, "\\boxed{5}"], ["5", None])[0].status == "error"  # type: ignore[list-item]
    with pytest.raises(ValueError):
        grade_many(["a"], [])


def test_grade_many_bounded_on_hostile_batch() -> None:
    import time

    G.clear_caches()
    responses = ["\\boxed{9^{9^{9^{9}}}}", "\\boxed{x^2-1}", "\\boxed{(10^{100})! + 9^{9^{9^{9}}}}", "\\boxed{x+1}"]
    start = time.monotonic()
    out = grade_many(responses, ["x^2-1"] * 4, timeout=1.0)
    assert time.monotonic() - start < 2 * 2.0 + 8.0
    assert not out[0].correct and not out[2].correct
    assert out[1].correct or out[1].status == "timeout"  # a worker may still be restarting
    assert out[3].status in ("ok", "timeout") and not out[3].correct
    assert verify("x^2-1", "(x-1)(x+1)", timeout=60)  # the workers recovered


def test_pool_spreads_concurrent_calls() -> None:
    G.clear_caches()
    before = [w.calls for w in pool.POOL.workers]
    results: list[bool] = []

    def work(i: int) -> None:
        results.append(verify(f"\\sin x+{i}", f"{i}+\\sin(x)", timeout=60))  # not a fast shape

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    if G.WORKERS > 1:
        assert sum(w.calls > b for w, b in zip(pool.POOL.workers, before)) > 1
