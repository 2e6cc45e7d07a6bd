"""Grader behaviour: extraction, the equivalence table, keys, fast path, cache, MATH-500 golds."""

from __future__ import annotations

import json
import threading
import time

import pytest

from obe import grading as G
from obe.grading import numeric, pool
from obe.grading import (
    ERROR_KEY, NO_ANSWER_KEY, SENTINEL_KEYS, TIMEOUT_KEY, TOO_LONG_KEY, ExtractConfig, GradeResult, extract, grade,
    outcome_key, verify,
)

# (gold, pred, expected verify) -- written for obe's conventions (see the module docstring).
TABLE: list[tuple[str, str, bool]] = [
    # integers, signs, leading zeros, trailing periods
    ("5", "5", True), ("5", "5.", True), ("5", "05", True), ("025", "25", True), ("5", "-5", False),
    ("-5", "-5", True), ("-5", "- 5", True), ("0", "-0", True), ("27.0", "27", True), ("27", "27.00", True),
    ("7", "8", False), ("100", "1000", False), ("3", "+3", True), ("12", "1 2", True), ("2", "2.5", False),
    # fractions / decimals / \frac / \dfrac / slash
    ("\\frac{1}{2}", "0.5", True), ("\\frac{1}{2}", "1/2", True), ("\\frac12", "\\dfrac{1}{2}", True),
    ("\\dfrac12", "\\tfrac{1}{2}", True), ("0.5", "\\frac{2}{4}", True), ("\\frac{1}{2}", "\\frac{1}{3}", False),
    ("-\\frac{1}{2}", "\\frac{-1}{2}", True), ("-\\frac{1}{2}", "-0.5", True), ("\\frac{1}{2}", "-0.5", False),
    ("\\frac{3}{4}", "0.75", True), ("\\frac{1}{3}", "0.333", False), ("\\frac13", "0.333333", True), ("\\frac13", "0.33333", False),
    ("\\frac{7}{2}", "3.5", True), ("3\\frac{1}{2}", "\\frac{7}{2}", True), ("\\frac{10}{4}", "\\frac{5}{2}", True),
    ("\\frac{1}{2^{99}}", "\\frac{1}{2^{98}}", False), ("\\frac{1}{2^{99}}", "2^{-99}", True),
    ("2^{10}", "1024", True), ("1.5\\times10^{3}", "1500", True), ("\\frac{9}{4}", "2.25", True),
    # degrees
    ("30^\\circ", "30", True), ("30", "30^{\\circ}", True), ("30^\\circ", "30^\\circ", True), ("30^\\circ", "60^\\circ", False),
    ("45", "45^\\circ", True), ("90^\\circ", "\\frac{\\pi}{2}", False),
    # percentages
    ("50\\%", "50", True), ("50\\%", "50\\%", True), ("50", "50%", True), ("50\\%", "0.5", False), ("12.5\\%", "12.5", True),
    # thousands separators
    ("1,000", "1000", True), ("1000", "1{,}000", True), ("1,000,000", "1000000", True), ("3,890", "3890", True),
    ("1,000", "100", False), ("1000", "1\\,000", True),
    # units in \text{}
    ("5\\text{ cm}", "5", True), ("5", "5 \\text{ cm}", True), ("12\\text{ inches}", "12", True), ("\\$18.90", "18.90", True),
    ("18.90", "18.9", True), ("5\\text{ cm}", "6\\text{ cm}", False), ("\\text{Monday}", "Monday", True),
    ("\\text{Monday}", "Tuesday", False), ("\\text{(C)}", "(C)", True), ("\\text{even}", "\\textbf{even}", True),
    ("\\text{odd}", "\\text{even}", False),
    # intervals vs sets vs tuples
    ("(1,2)", "(1,2)", True), ("(1,2)", "\\{1,2\\}", False), ("\\{1,2\\}", "(1,2)", False), ("(1,2)", "[1,2]", False),
    ("[1,2)", "[1,2)", True), ("[1,2)", "[1,2]", False), ("(1,2)", "(2,1)", False), ("\\{1,2\\}", "\\{2,1\\}", True),
    ("1,2", "\\{1,2\\}", True), ("1,2", "2,1", True), ("(1,2)", "1, 2", True), ("(1,2)", "2,1", False),
    ("1,2", "(2,1)", True), ("\\{1,2\\}", "{2, 1}", True), ("(-\\infty,3)", "(-\\infty, 3)", True),
    ("(-\\infty,3)", "(-\\infty,3]", False), ("(3,\\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
    ("(3,\\frac{\\pi}{2})", "(3,\\frac{\\pi}{3})", False), ("[-2,7]", "[-2, 7]", True),
    ("(-\\infty,-1)\\cup(1,\\infty)", "(-\\infty,-1)\\cup(1,\\infty)", True),
    ("(-\\infty,-1)\\cup(1,\\infty)", "(1,\\infty)\\cup(-\\infty,-1)", True),
    ("(0.5,1)", "(\\frac12,1)", True), ("(0.333,1)", "(\\frac13,1)", False),
    # matrices and vectors
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", True),
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}2\\\\1\\end{pmatrix}", False),
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}", True),
    ("\\begin{pmatrix}\\frac12\\\\0\\end{pmatrix}", "\\begin{pmatrix}0.5\\\\0\\end{pmatrix}", True),
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "(1,2)", False),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", True),
    # square roots
    ("\\sqrt{2}/2", "\\frac{\\sqrt2}{2}", True), ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", True),
    ("\\sqrt{2}", "1.414214", True), ("\\sqrt{2}", "1.41421", False), ("\\sqrt{2}", "1.414213", False), ("2\\sqrt{3}", "\\sqrt{12}", True), ("\\sqrt{3}", "\\sqrt{2}", False),
    ("2", "\\sqrt{4}", True), ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt3", True), ("3\\sqrt{2}", "\\sqrt{18}", True),
    ("\\sqrt[3]{2}", "2^{1/3}", True), ("\\sqrt{2}+1", "1+\\sqrt{2}", True), ("\\sqrt{2}-1", "1-\\sqrt{2}", False),
    # pi and other constants
    ("2\\pi", "2 \\pi", True), ("\\pi", "3.14", False), ("\\frac{\\pi}{4}", "\\frac14\\pi", True), ("4\\pi", "\\pi", False),
    # commutativity and symbolic forms
    ("x+1", "1+x", True), ("a+b", "b+a", True), ("2x+3", "3+2x", True), ("(x+1)^2", "x^2+2x+1", True),
    ("x^2-1", "(x-1)(x+1)", True), ("x+1", "x+2", False), ("x=5", "5", True), ("y=2x+3", "2x+3", True),
    ("y=2x+3", "y=3+2x", True), ("xy", "yx", True), ("\\frac{x}{2}", "0.5x", True), ("2x", "x", False),
    # complex numbers
    ("1+2i", "2i+1", True), ("1+2i", "1-2i", False), ("i", "i", True),
    # thousands separators, percent and unit words, long decimals, equations
    ("1000.99", "1,000.99", True), ("12000023", "12,000,023", True), ("14916", "14{,}916", True),
    ("16386.20", "16,\\!386.20", True), ("32349", "32, 349", False), ("11111111100", "11,\\! 111,\\! 111,\\! 100", True),
    ("28\\%", "28 percent", True), ("28\\%", "28 pct", True), ("28\\%", "28\\text{ percent}", True),
    ("125", "125\\textnormal{ miles}", True), ("15", "15\\mbox{ cm}^2", True), ("10", "10 dollars", True),
    ("\\frac{1}{12}", "0.0833333333333333", True), ("\\sqrt{17}", "4.123105625617661", True),
    ("\\frac{1}{12}", "0.0833", False), ("\\frac{2}{3}", "0.6666667", True), ("\\frac{2}{3}", "0.666666", False),
    ("0.3333333", "0.333333", True), ("(1,\\frac{9}{2})", "(1,4.5)", True),
    ("2x+4y-3=0", "y=-\\frac{1}{2}x+\\frac{3}{4}", True), ("34x+45y-20z+100=0", "-34x-45y+20z-100=0", True),
    ("x^2/4+y^2/3=1", "x^2/16+y^2/12=1/4", True), ("2x+4y-3=0", "y=-\\frac{1}{2}x+\\frac{3}{2}", False),
    ("7=11a+c", "11a+c", False), ("k=1", "1", True),
    # non-answers
    ("5", "", False), ("5", "   ", False), ("5", "\\text{}", False), ("\\frac{1}{2}", "frac", False),
    ("5", "no solution", False), ("1,2", "1", False),
]


def test_table_size() -> None:
    assert len(TABLE) >= 100


@pytest.mark.parametrize(("gold", "pred", "expected"), TABLE)
def test_table(gold: str, pred: str, expected: bool) -> None:
    assert verify(gold, pred) is expected
    # boxed in a response, graded end to end
    r = grade(f"Thus the answer is $\\boxed{{{pred}}}$.", gold)
    if pred.strip() and pred.strip() != "\\text{}":
        assert r.correct is expected, r


def test_extract_boxed_and_fallbacks() -> None:
    assert extract("a \\boxed{1} then \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert extract("\\fbox{7}") == "7"
    assert extract("The final answer is $\\frac{3}{4}$.\nDone") == "\\frac{3}{4}"
    assert extract("work\n#### 3,890") == "3890"  # Math-Verify's number pattern drops the separator
    assert extract("no answer here") is None
    assert extract("Answer: 12") == "12"
    assert extract("truncated \\boxed{\\frac{1}{") is None
    assert extract("first \\boxed{2} then truncated \\boxed{3") == "2"
    # strict box-only mode (training rewards): free text never counts
    strict = ExtractConfig(mode="boxed")
    assert extract("The final answer is 5", strict) is None and extract("$5$", strict) is None
    assert extract("so \\boxed{5}", strict) == "5"
    with pytest.raises(ValueError, match="mode"):
        ExtractConfig(mode="lenient")


# (response, extracted answer): no complete box -> Math-Verify's extraction (free-text final answers as models write them)
FREE_TEXT = [
    ("$9$", "9"), ("Answer \\[ 9 \\]", "9"), ("Answer \\( (9+1) \\)", "(9+1)"),
    ("Therefore $x \\geq 5$ is the solution.", "x \\geq 5"), ("The answer is 34", "34"),
    ("Final Answer: The largest $n$ is 34.", "34"),
    ("Final Answer: The final answer is $14{,}916$. I hope it is correct.", "14{,}916"),
    ("Final Answer: The final answer is 12,000,023. I hope it is correct. <|im_start|>user", "12000023"),
    ("The identity matrix is $ \\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix} $.",
     "\\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix}"),
    ("The answer is $\\frac{1}{3}.$", "\\frac{1}{3}"),
    ("I am not sure how to proceed", None),
]


@pytest.mark.parametrize(("response", "answer"), FREE_TEXT)
def test_free_text_extraction(response: str, answer: str | None) -> None:
    assert extract(response) == answer


def test_boxes_think_and_minerva_tail() -> None:
    # boxes that follow each other with only "and"/commas between them are one set
    assert extract("The integers are \\boxed{-2} and \\boxed{1}.") == "-2, 1"
    assert extract("\\[ \\boxed{-2} \\quad \\text{and} \\quad \\boxed{1}. \\]") == "-2, 1"
    assert extract("$\\boxed{1}\\boxed{2}$") == "1, 2"
    assert extract("so \\boxed{200}. Then we add the interest of the second CD: \\boxed{255}") == "255"
    # <think> content is never graded
    assert extract("<think>maybe \\boxed{3}</think> The answer is 4.") == "4"
    assert extract("<think>maybe \\boxed{3}</think>") is None
    # a Minerva "final answer ... I hope it is correct." after the last box wins (rightmost)
    text = "$\\boxed{200}$ and later $\\boxed{255}$. Final Answer: The final answer is $10,455$. I hope it is correct."
    assert extract(text) == "10,455" and grade(text, "10455").correct


def test_grade_result_shape() -> None:
    r = grade("so \\boxed{\\dfrac12}", "0.5")
    assert r == GradeResult(answer="\\dfrac12", outcome_key="1/2", correct=True, status="ok")
    with pytest.raises(AttributeError):
        r.correct = False  # type: ignore[misc]
    assert grade("I give up", "5") == GradeResult(None, NO_ANSWER_KEY, False, "no_answer")
    assert grade("\\boxed{}", "5").status == "no_answer"
    assert grade("The final answer is 7.", "7").correct


def test_grade_never_raises() -> None:
    for bad in (None, 5, b"bytes", object()):
        r = grade(bad, "5")  # type: ignore[arg-type]
        assert isinstance(r, GradeResult) and not r.correct
    assert grade("\\boxed{5}", None).status == "error"  # type: ignore[arg-type]
    assert verify(None, "5") is False  # type: ignore[arg-type]
    assert outcome_key(12) == ERROR_KEY  # type: ignore[arg-type]


def test_keys_one_per_class() -> None:
    assert len({outcome_key(a) for a in ("1/2", "0.5", "\\frac{1}{2}", "\\dfrac12", "\\frac{2}{4}", ".5")}) == 1
    assert outcome_key("x+1") == outcome_key("1+x")
    assert outcome_key("1,000") == outcome_key("1000") == "1000"
    assert outcome_key("\\{1,2\\}") != outcome_key("(1,2)")
    assert outcome_key("\\frac{1}{2^{98}}") != outcome_key("\\frac{1}{2^{99}}")
    assert outcome_key(None) == NO_ANSWER_KEY and outcome_key("  ") == NO_ANSWER_KEY
    assert SENTINEL_KEYS == {NO_ANSWER_KEY, TIMEOUT_KEY, TOO_LONG_KEY, ERROR_KEY} and len(SENTINEL_KEYS) == 4
    assert outcome_key("5") != outcome_key("6")


def test_math_verify_known_mistakes_are_fixed() -> None:
    assert not verify("(1,2)", "\\{1,2\\}")
    assert not verify("\\frac{1}{2^{99}}", "\\frac{1}{2^{98}}")
    # the same, past the fast path: exact closed forms compared at 50 digits in the worker
    assert not verify("\\frac{\\sqrt{2}}{2^{99}}", "\\frac{\\sqrt{2}}{2^{98}}")
    assert verify("\\frac{\\sqrt{2}}{2^{99}}", "\\sqrt{2}\\cdot 2^{-99}")


def test_fast_path_never_calls_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("slow path taken")

    G.clear_caches()
    monkeypatch.setattr(pool, "slow", boom)
    fast = [("1/2", "0.5"), ("1,000", "1000"), ("\\dfrac{3}{4}", "0.75"), ("x^2+\\sqrt{2}", "x^2 + \\sqrt{2}"),
            ("30^\\circ", "30"), ("5\\text{ cm}", "5"), ("\\text{Monday}", "monday"), ("7", "8"), ("-3", "\\frac{-6}{2}")]
    for g, p in fast:
        verify(g, p)
        outcome_key(p) if numeric.exact_number(G.normalize(p)) is not None else None
        grade(f"\\boxed{{{g}}}", g)  # identical strings: key from a number or the gold's cache
    for g, p in fast[:2] + fast[6:]:
        assert grade(f"\\boxed{{{p}}}", g).status == "ok"


def test_cache_hits_skip_worker() -> None:
    G.clear_caches()
    calls = pool.POOL.calls
    assert verify("\\sin(x)+1", "1+\\sin x")  # not a fast-path shape
    after_first = pool.POOL.calls
    assert after_first > calls
    for _ in range(5):
        assert verify("\\sin(x)+1", "1+\\sin x")
        grade("\\boxed{1+\\sin x}", "\\sin(x)+1")
    assert pool.POOL.calls <= after_first + 1  # at most the keys, in one call


def test_thread_safe_and_off_main_thread() -> None:
    G.clear_caches()
    results: list[bool] = []

    def work() -> None:
        results.append(verify("\\sin(x)+1", "1+\\sin x", timeout=30))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 4


def test_math500_golds_verify_themselves(shared_data) -> None:
    rows = [json.loads(line) for line in (shared_data / "math500" / "test.jsonl").open()]
    assert len(rows) == 500
    start = time.monotonic()
    bad = []
    for row in rows:
        gold = row["answer"]
        key = outcome_key(gold, timeout=10)
        boxed = grade(f"The answer is $\\boxed{{{gold}}}$.", gold, timeout=10)
        reformatted = gold.replace("\\frac", "\\dfrac")
        if not (verify(gold, gold, timeout=10) and verify(gold, reformatted, timeout=10) and boxed.correct) \
                or key in SENTINEL_KEYS:
            bad.append((gold, key, boxed))
    assert not bad, bad[:10]
    assert time.monotonic() - start < 60
