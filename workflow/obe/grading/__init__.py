"""Answer grading: extract a final answer, check it against gold, and key it.

Every rollout of the RL trainer goes through :func:`grade`, and every place that counts or
compares answers (historical counts N(x, a), batch repetition, maj@k, distinct answers) uses
:func:`outcome_key`, so the two must agree: if ``verify(a, b)`` then
``outcome_key(a) == outcome_key(b)`` (property-tested; exceptions in ``KNOWN_KEY_EXCEPTIONS``).

Extraction (``extract``, ``ExtractConfig``). ``<think>...</think>`` is dropped. The answer is
the last complete ``\\boxed{}`` (boxes that follow each other with only "and"/commas between
them form a set: ``\\boxed{-2} and \\boxed{1}``); a response cut off inside its box has no
answer. Without a box, a one-line bare answer (``x = 2``, ``Monday``) or a response that is
the gold's own text is taken whole; otherwise Math-Verify's own extraction runs in the worker
(its LaTeX and number patterns in its priority order, boxes at the top: "$9$", "\\[ 9 \\]",
"The answer is 34", lm-eval's Minerva "Final Answer: The final answer is $X$. I hope it is
correct.", which also wins over an earlier box). ``ExtractConfig(mode="boxed")`` keeps the
strict box-only reading (training rewards; config ``train.reward_extract``). A gold written
as a solution (a box in text, or prose) is read the same way.

Pipeline. ``extract`` -> ``normalize`` (cheap string rewrites) -> fast path, in process and
exact (equal strings; rationals; closed forms with ``\\sqrt``/``\\pi``, ``\\pm``, sets,
tuples, intervals, two-interval unions, matrices, mixed numbers, via ``obe.grading.fastmath``; lone
decimals of 6+ places at 6 places; verdicts between polynomials in single-letter variables,
and polynomial vs number) -> slow path: Math-Verify 0.9.0 in persistent worker subprocesses
(:mod:`obe.grading.worker`; ``WORKERS``, default ``min(2, cpus)``). Fast keys are rendered
exactly as the worker renders the same value (tests/test_grading_fast.py checks every shape
against Math-Verify's own parse). Results are cached in bounded LRUs keyed by normalized
strings. ``grade_many`` grades a batch: distinct texts and pairs once, spread over the workers.

Time bounds. A worker call is bounded by CPU time, not wall-clock time (``timeout``, default
``DEFAULT_TIMEOUT_S`` = 5 CPU seconds: a SIGPROF timer in the worker, ``RLIMIT_CPU`` past it
for code stuck in C), so a busy machine never changes a grade (tests/test_grading_determinism.py
grades under spinning load). Wall-clock time is only a far-away last guard (:func:`wall_guard`,
160 s for 5 CPU seconds), whose timeouts are not cached. Workers run under a 4 GiB
address-space limit, so no input can hang or exhaust the caller.

Safety. Model output is untrusted: it is never passed to ``eval``/``exec``/``sympify`` or
``parse_expr``. Math-Verify's ``ExprExtractionConfig`` patterns only *find* plain-text
numbers and expressions; a number becomes ``sympy.Number`` of its digits and an expression is
read by the LaTeX (ANTLR) parser instead of its ``parse_expr``. Plain-text ``sqrt(2)`` and
``**`` are rewritten to LaTeX, never run. Answers longer than ``MAX_ANSWER_CHARS`` are graded
"error"; Math-Verify's extraction reads the last ``MAX_RESPONSE_CHARS`` of a response.

Conventions (decisions, tested in tests/test_grading.py and tests/test_grading_peers.py):
  * degrees are dropped: ``30^\\circ`` == ``30`` (as Math-Verify);
  * percent signs and words are dropped: ``50\\%`` == ``50`` == "50 percent" == "50 pct", but
    ``50\\%`` != ``0.5`` (as Math-Verify's tests and MATH's is_equiv);
  * decimals: written with 6 or more places they equal what rounds to them at 6 places
    (Math-Verify's precision convention: ``0.0833333333333333`` == ``\\frac{1}{12}``,
    ``1.414214`` == ``\\sqrt2``, also inside tuples); shorter decimals are exact (``0.5`` ==
    ``\\frac12``, ``0.333`` != ``\\frac13``); no tolerance for Minerva-style physics answers;
  * thousands separators of a whole-answer number are dropped (``12,000,023``, ``14{,}916``,
    ``16,\\!386.20``); a comma followed by a space separates a list (``32, 349`` != 32349);
  * trailing ``\\text{...}``/``\\mbox{...}`` units and unit words after a number are dropped
    (``5\\text{ cm}`` == "5 cm" == ``5``); a whole-answer ``\\text{Monday}`` is a word, compared
    case-insensitively;
  * ``x = 5`` == ``5`` (a single-letter assignment; as Math-Verify); a derivation
    ``x = 5+5+1 = 11`` is its last member; a computation ``\\sqrt{4} = 2`` is its result;
    equations compare up to rearrangement and scaling (``2x+4y-3=0`` ==
    ``y=-\\frac12x+\\frac34``), and an equation in free variables never equals a number or
    an expression (``7=11a+c`` != ``11a+c``);
  * sets ``\\{1,2\\}`` never equal tuples/intervals ``(1,2)``/``[1,2]``; a bare list ``1, 2``
    (or ``{1, 2}``, whose braces only group) is a set (order-free: ``2, 1`` == ``\\{1,2\\}``),
    except against a gold pair, which it answers in order (``1, 2`` == ``(1,2)`` != ``2, 1``, as
    Math-Verify); ``(1,2)`` is one class whether read as a point or an open interval;
  * exact numbers compare exactly: ``\\frac{1}{2^{98}}`` != ``\\frac{1}{2^{99}}``.

Known Math-Verify 0.9.0 mistakes and what obe does: set-for-tuple ``\\{1,2\\}`` vs ``(1,2)``
is fixed by a bracket-shape pre-check; ``\\frac{1}{2^{98}}`` vs ``\\frac{1}{2^{99}}`` is fixed
by the exact fast path and by a 50-digit post-check when both sides are closed-form numbers;
``1 - \\frac{1}{\\mathrm{e}}`` (its extraction cuts it) is read as obe normalizes it.
Performance: the fast path and caches grade thousands of answers per second; a distinct
answer outside the fast shapes costs one Math-Verify (ANTLR) parse, ~10-600 ms, in a worker.
Not fixed: symbolic identities beyond sympy's simplification (e.g. some trigonometric forms)
may be judged unequal; all-letter answers of 3+ letters (``abc``) are read as words; a
decimal comma (``1,22``) is read as a decimal only in free text (Math-Verify's number
pattern), a bare ``1,22`` is the list {1, 22}.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import select
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

from obe.grading.fastmath import DECIMAL_PLACES, fast_value, parse_poly, rounded, value_key

DEFAULT_TIMEOUT_S = 5.0  # CPU seconds per worker call (see wall_guard for the wall clock)
WALL_GUARD_S = 60.0
WALL_GUARD_FACTOR = 20.0
MAX_ANSWER_CHARS = 2000
MAX_RESPONSE_CHARS = 20_000  # Math-Verify's extraction reads the last 20,000 characters
CACHE_SIZE = 1 << 16
NO_ANSWER_KEY = "<no_answer>"
TIMEOUT_KEY = "<timeout>"
ERROR_KEY = "<error>"
SENTINEL_KEYS = frozenset({NO_ANSWER_KEY, TIMEOUT_KEY, ERROR_KEY})
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


# ----------------------------------------------------------------------------- extraction
@dataclass(frozen=True)
class ExtractConfig:
    """Where the answer of a response is read.

    ``mode`` "math_verify" (default): the last complete ``\\boxed{}`` (boxes that follow each
    other with only "and", commas or spaces between them are read together as a set, e.g.
    ``\\boxed{-2} and \\boxed{1}``); a response cut off inside a later box has only the boxes
    before it. Without a complete box, a one-line bare answer is taken whole (``x = 2``);
    otherwise, and when a Minerva-format "Final Answer: The final answer is X. I hope it is
    correct." comes after the last box, Math-Verify's own extraction (its LaTeX and number
    patterns, in its priority order) decides, in the worker. ``mode`` "boxed": only a complete
    box counts (strict training rewards; config key ``train.reward_extract``). Either way
    ``<think>...</think>`` content is ignored.
    """

    mode: str = "math_verify"

    def __post_init__(self) -> None:
        if self.mode not in EXTRACT_MODES:
            raise ValueError(f"ExtractConfig.mode {self.mode!r}: not one of {', '.join(EXTRACT_MODES)}")


EXTRACT_MODES = ("math_verify", "boxed")
_MINERVA_TAIL_RE = re.compile(r"final answer is.{0,400}?I hope", re.IGNORECASE | re.DOTALL)
_BOX_GAP_RE = re.compile(
    r"(?:\s|\$|\\[\[\]()]|[.,;]|\\quad|\\qquad|\\text\{\s*(?:and|or|,)?\s*\}|\band\b|\bor\b)*"
)
_THINK_END = "</think>"
# Words outside math and LaTeX commands: tell a bare answer or a gold from prose.
_MATH_OR_COMMAND_RE = re.compile(
    r"\$\$.*?\$\$|\$[^$]*\$|\\\(.*?\\\)|\\\[.*?\\\]|\\[A-Za-z]+(?:\{[^{}]*\})?|(?<![A-Za-z])sqrt(?=\()", re.DOTALL)
_PROSE_WORD_RE = re.compile(r"[A-Za-z]{2,}")
_STRUCTURE_RE = re.compile(r"[A-Za-z\\{}\[\]=<>]|\(.*,")  # letters, commands, braces, relations, tuples


def _final_boxes(text: str, spans: list[tuple[int, int, str]] | None = None) -> str | None:
    """The last box, joined with the boxes right before it that only "and"/commas separate."""
    from obe.grading.latex import boxed_spans

    spans = boxed_spans(text) if spans is None else spans
    if not spans:
        return None
    run = [spans[-1]]
    for prev in reversed(spans[:-1]):
        gap = text[prev[1] : run[0][0]]
        if len(gap) > 60 or not _BOX_GAP_RE.fullmatch(gap):
            break
        run.insert(0, prev)
    parts = list(dict.fromkeys(c.strip() for _, _, c in run if c.strip()))
    return ", ".join(parts) if parts else ""


def _strip_think(text: str) -> str:
    """What follows the last ``</think>``: the reasoning before it is never graded."""
    return text.rsplit(_THINK_END, 1)[1] if _THINK_END in text else text


def _needs_worker_extraction(text: str, config: ExtractConfig) -> tuple[str | None, bool]:
    """(the boxed answer, whether Math-Verify's extraction in the worker must decide)."""
    from obe.grading.latex import boxed_spans

    text = _strip_think(text)
    spans = boxed_spans(text)
    boxed = _final_boxes(text, spans)
    if config.mode == "boxed":
        return boxed, False
    if text.rfind("boxed{") >= (spans[-1][1] if spans else 0) and "boxed{" in text:
        return boxed, False  # cut off while writing the answer's box: the last complete box or none
    if boxed is None:
        if _is_bare_answer(text):
            return text.strip(), False  # the whole response is the answer: "x = 2", "odd $n$"
        return None, True
    tail = text[spans[-1][1] :]
    return boxed, "I hope" in tail and bool(_MINERVA_TAIL_RE.search(tail))


def extract(text: str, config: ExtractConfig = ExtractConfig(), *, timeout: float = DEFAULT_TIMEOUT_S) -> str | None:
    """The final answer in ``text`` (see :class:`ExtractConfig`), or ``None``.

    Math-Verify's extraction runs in the worker under the same CPU-time bound as every
    worker call (``timeout`` CPU seconds); a response it times out on has no answer.
    """
    boxed, ask = _needs_worker_extraction(text, config)
    if ask:
        found = _extract_slow(_strip_think(text), timeout)
        if found:
            return found
    return boxed.strip() or None if boxed is not None else None


def _is_bare_answer(text: str) -> bool:
    """A response that is only an answer without delimiters, one short line: no word outside
    math and LaTeX commands but some structure a number pattern would cut (``x = 2``,
    ``{1, 2}``, ``2,3,\\frac{3+i\\sqrt3}{2}``), or a single word other than Math-Verify's
    anchor "answer", and no number outside math (``Monday``, ``odd $n$``). Plain numbers
    (``1000,99``, ``11 5/6``) are left to Math-Verify's number patterns."""
    t = text.strip()
    if not 0 < len(t) <= 200 or "\n" in t or "boxed" in t:  # an unclosed box is no answer
        return False
    outside = _MATH_OR_COMMAND_RE.sub(" ", t)
    words = _PROSE_WORD_RE.findall(outside)
    if not words:
        return bool(_STRUCTURE_RE.search(t))
    return (len(words) == 1 and "answer" not in words[0].lower() and ":" not in outside
            and not any(c.isdigit() for c in outside))


def _extract_slow(text: str, timeout: float) -> str | None:
    """Math-Verify's extraction in the worker: the answer string, "" for none, None on timeout."""
    if len(text) > MAX_RESPONSE_CHARS:
        text = text[-MAX_RESPONSE_CHARS:]  # the answer is at the end; bounds the regex work
    key = _text_key(text)
    hit = _EXTRACT_CACHE.get(key)
    if hit is not None:
        return hit
    resp, cacheable = _slow({"op": "extract", "t": text}, timeout)
    if resp is None:
        if cacheable:  # over its CPU budget: the same on any machine, so no answer for good
            _EXTRACT_CACHE.put(key, "")
        return None
    answer = resp.get("answer") or ""
    if cacheable and "error" not in resp:
        _EXTRACT_CACHE.put(key, answer)
    return answer


def _text_key(text: str) -> bytes:
    """The extraction cache's key: a 128-bit digest, so 65,536 long responses cost ~5 MB, not GBs."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


# ----------------------------------------------------------------------------- normalize
_REPLACEMENTS = (
    ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\dbinom", "\\binom"), ("\\tbinom", "\\binom"),
    ("\\right.", ""), ("\\left", ""), ("\\right", ""), ("\\displaystyle", ""),
    ("\\!", ""), ("\\,", ""), ("\\;", ""), ("\\:", ""), ("~", " "),
    ("^{\\circ}", ""), ("^\\circ", ""), ("\\circ", ""), ("\\degree", ""), ("°", ""),
    ("\\%", ""), ("%", ""), ("\\$", ""), ("{,}", ","), ("\\le ", "\\leq "), ("\\ge ", "\\geq "),
)
_TEXT_CMDS = r"(?:text|textbf|textnormal|textit|mbox|mathrm|textrm)"
_TEXT_RE = re.compile(r"\\" + _TEXT_CMDS + r"\{([^{}]*)\}")
_TRAILING_TEXT_RE = re.compile(r"(?<=\S)\s*\\" + _TEXT_CMDS + r"\{[^{}]*\}(?:\^\{?[23]\}?)?\s*$")
# Unit and percent words after a number (lm-eval minerva_math drops the same kind of words).
_UNIT_WORDS = (
    "percent", "percentage", "pct", "dollars", "dollar", "cents", "cent", "units", "unit", "square", "sq",
    "inches", "inch", "feet", "foot", "ft", "miles", "mile", "mph", "km", "cm", "mm", "meters", "meter", "gm",
    "kg", "grams", "pounds", "hours", "hour", "minutes", "minute", "seconds", "second", "days", "day",
    "years", "year", "degrees", "degree", "ways", "points", "digits", "students", "people",
)
_UNIT_WORD_RE = re.compile(
    r"(?<=[\d}.])\s+(?:" + "|".join(_UNIT_WORDS) + r")(?:\^\{?[23]\}?)?\.?\s*$", re.IGNORECASE)
_THOUSANDS_RE = re.compile(r"[-+]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?")  # 12,000,023 (no spaces)
_SEP_BANG_RE = re.compile(r",\s*\\!\s*")  # 11,\! 111,\! 100: a typeset thousands separator
_SPACE_RE = re.compile(r"\s+")
_ESCAPED_SPACE_RE = re.compile(r"(?<!\\)\\ ")  # "\ " but not the row break "\\\\ " of a matrix
_DROP_SPACE_RE = re.compile(r"(?<![A-Za-z]) | (?![A-Za-z])")
_ASSIGN_RE = re.compile(r"^[A-Za-z]=(?!=)")
_EQUATION_RE = re.compile(r"(?<![<>!=\\])=(?!=)")  # an "=" that is not part of <=, >=, !=, ==
_LETTER_RE = re.compile(r"[A-Za-z]")
_COMMAND_RE = re.compile(r"\\(?:begin|end)\{[A-Za-z*]+\}|\\angle\s*[A-Za-z]+|\\[A-Za-z]+")  # not variables


def _equation_parts(s: str) -> list[str]:
    """``s`` split at its top-level equals signs (not those in braces: ``\\sum_{k=0}``)."""
    if "=" not in s:
        return [s]
    parts, depth, start = [], 0, 0
    for m in re.finditer(r"[{}()\[\]]|" + _EQUATION_RE.pattern, s):
        t = m.group()
        if t in "{([":
            depth += 1
        elif t in "})]":
            depth -= 1
        elif depth == 0:
            parts.append(s[start : m.start()])
            start = m.end()
    parts.append(s[start:])
    return parts


_BINDING_RE = re.compile(r"\\(?:lim|sum|prod|int|oint|max|min|sup|inf)(?![A-Za-z])")


def _is_computation(lhs: str, rhs: str) -> bool:
    """``lhs = rhs`` states a value: the right side has no variable, and the left side none
    either (``\\sqrt{4}``, ``e^{i\\pi}``: e and i are constants) or binds its own
    (``\\lim_{x\\to0}``, ``\\sum_{n}``). ``2x+4y-3=0`` and ``7=11a+c`` are equations."""
    if _LETTER_RE.search(_COMMAND_RE.sub("", rhs)):
        return False
    free = set(_LETTER_RE.findall(_COMMAND_RE.sub("", lhs))) - {"e", "i"}
    return not free or bool(_BINDING_RE.search(lhs))


def _is_equation(s: str) -> bool:
    return "=" in s and len(_equation_parts(s)) > 1
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z ]*[A-Za-z]")


_PY_SQRT_RE = re.compile(r"(?<![A-Za-z\\])sqrt\s*\(")


def _python_to_latex(s: str) -> str:
    """Plain-text ``sqrt(x)`` and ``**`` as LaTeX (``\\sqrt{x}``, ``^``): a rewrite, never run."""
    s = s.replace("**", "^")
    while True:
        m = _PY_SQRT_RE.search(s)
        if m is None:
            return s
        depth, i = 1, m.end()
        while i < len(s) and depth:
            depth += {"(": 1, ")": -1}.get(s[i], 0)
            i += 1
        if depth:
            return s  # unbalanced: leave it
        s = s[: m.start()] + "\\sqrt{" + s[m.end() : i - 1] + "}" + s[i:]


def _is_braced_list(s: str) -> bool:
    """``{...}`` whose outer braces match each other and hold a top-level comma."""
    depth = 0
    for i, ch in enumerate(s):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth == 0 and i != len(s) - 1:
            return False
        if ch == "," and depth == 1:
            return True
    return False


def normalize(answer: str, *, keep_assignment: bool = False) -> str:
    """Cheap, linear-time string canonicalization applied before any comparison or keying.

    Drops math delimiters, ``\\left``/``\\right``, spacing, degree and percent signs, trailing
    ``\\text{}`` units and unit/percent words after a number ("28 percent", "5 cm"), and
    thousands separators of a whole-answer number ("12,000,023", "14{,}916", "16,\\!386.20";
    not "32, 349", which is a list). A single-letter assignment ``x = 5`` becomes ``5``
    unless ``keep_assignment`` (equations are then compared whole).
    """
    s = answer.strip()
    if s.startswith("\\boxed{") and s.endswith("}"):
        s = s[7:-1]
    s = s.strip().strip("$").strip()
    if s.startswith("\\[") and s.endswith("\\]") or s.startswith("\\(") and s.endswith("\\)"):
        s = s[2:-2]
    if "\\!" in s:
        s = _SEP_BANG_RE.sub(",", s)
    for old, new in _REPLACEMENTS:
        if old in s:
            s = s.replace(old, new)
    if "$" in s:
        s = s.replace("$", "")  # math delimiters inside the answer ("$125$ miles"); \\$ is gone
    if "sqrt(" in s or "**" in s:
        s = _python_to_latex(s)
    if "\\ " in s:
        s = _ESCAPED_SPACE_RE.sub(" ", s)
    if "\\" in s:
        s = _TRAILING_TEXT_RE.sub("", s)
        s = _TEXT_RE.sub(r"\1", s)
    s = _SPACE_RE.sub(" ", s).strip().rstrip(".").strip()
    if s.endswith("\\"):
        s = s.rstrip("\\").rstrip()  # a stray trailing backslash or line break: "185\\"
    if any(c.isalpha() for c in s):
        s = _UNIT_WORD_RE.sub("", s).strip()
    if "," in s and _THOUSANDS_RE.fullmatch(s):
        s = s.replace(",", "")
    s = _DROP_SPACE_RE.sub("", s)
    s = s.rstrip(".").strip()
    if s[:1] == "{" and s[-1:] == "}" and _is_braced_list(s):
        s = s[1:-1]  # {1, 2}: grouping braces, rendered as the bare list 1, 2
    if "\\approx" in s:  # x \approx 11 is 11; 1/3 \approx 0.33 is the exact 1/3
        first, _, last = s.partition("\\approx")
        s = last if len(first) == 1 and first.isalpha() else first
    if "=" in s and "," not in s and ";" not in s:
        parts = _equation_parts(s)
        if len(parts) > 2:  # a derivation x = 5+5+1 = 11: its last member is the answer
            s = parts[-1]
        elif len(parts) == 2 and _is_computation(*parts):
            s = parts[1]  # a computation \\sqrt{4} = 2, e^{i\\pi} = -1: its result
    if not keep_assignment and _ASSIGN_RE.match(s):
        s = s[2:]
    return s


# ----------------------------------------------------------------------------- exact numbers
_NUM_TOKEN_RE = re.compile(r"\d+(?:\.\d*)?|\.\d+|\\frac|\\cdot|\\times|\\div|[-+*/^(){}]")
_MAX_POW_BITS = 4096


class _NotNumber(Exception):
    pass


def exact_number(s: str) -> Fraction | None:
    """``s`` as an exact rational if it is plain arithmetic on numbers, else ``None``.

    Safe recursive descent over + - * / ^, ``\\frac``, ``\\cdot``, ``\\times``, parentheses;
    powers are bounded (no ``9^9^9^9^9``), so this never hangs.
    """
    if not s or len(s) > 200 or not (s[0].isdigit() or s[0] in "-+.(\\{"):
        return None
    if "," in s:
        return None  # a list; thousands separators were removed by ``normalize``
    toks = _NUM_TOKEN_RE.findall(s)
    if "".join(toks) != s:
        return None
    pos = 0

    def peek() -> str | None:
        return toks[pos] if pos < len(toks) else None

    def take() -> str:
        nonlocal pos
        if pos >= len(toks):
            raise _NotNumber
        pos += 1
        return toks[pos - 1]

    def expr() -> Fraction:
        v = term()
        while peek() in ("+", "-"):
            v = v + term() if take() == "+" else v - term()
        return v

    def term() -> Fraction:
        v = unary()
        while peek() in ("*", "/", "\\cdot", "\\times", "\\div"):
            op = take()
            w = unary()
            if op in ("/", "\\div"):
                if w == 0:
                    raise _NotNumber
                v /= w
            else:
                v *= w
        return v

    def unary() -> Fraction:
        if peek() in ("-", "+"):
            return -unary() if take() == "-" else unary()
        return power()

    def power() -> Fraction:
        base = atom()
        if peek() != "^":
            return base
        take()
        exp = atom_or_digit()
        if exp.denominator != 1 or abs(exp) > 10_000:
            raise _NotNumber
        if max(abs(base.numerator), base.denominator).bit_length() * abs(exp) > _MAX_POW_BITS:
            raise _NotNumber
        if base == 0 and exp < 0:
            raise _NotNumber
        return base ** int(exp)

    def atom_or_digit() -> Fraction:
        t = peek()
        if t is not None and t[0].isdigit() and t.isdigit() and len(t) > 1:
            take()  # x^23 in LaTeX means x^2 3; refuse rather than guess
            raise _NotNumber
        return atom()

    def atom() -> Fraction:
        t = take()
        if t == "(" or t == "{":
            v = expr()
            if take() != (")" if t == "(" else "}"):
                raise _NotNumber
            return v
        if t == "\\frac":
            num, den = frac_arg(), frac_arg()
            if den == 0:
                raise _NotNumber
            return num / den
        if t[0].isdigit() or t[0] == ".":
            return Fraction(t)
        raise _NotNumber

    def frac_arg() -> Fraction:
        t = peek()
        if t == "{":
            return atom()
        if t is not None and t.isdigit():  # \frac12: one digit per argument
            take()
            if len(t) == 1:
                return Fraction(t)
            toks.insert(pos, t[1:])
            return Fraction(t[0])
        raise _NotNumber

    try:
        value = expr()
    except (_NotNumber, ValueError, ZeroDivisionError, OverflowError, RecursionError):
        return None
    return value if pos == len(toks) else None


# ----------------------------------------------------------------------------- shapes & fast path
def _shape(s: str) -> str:
    """Outer shape: "set" (``\\{..\\}`` or a bare list ``1,2``), "matrix", a bracket pair
    with a comma inside like "()" or "[)" (tuple or interval), or "plain"."""
    if s.startswith("\\{") and s.endswith("\\}"):
        return "set"
    if "\\begin{" in s and "matrix" in s:
        return "matrix"
    depth, outer_comma, inner_comma, closes_early = 0, False, False, False
    for i, ch in enumerate(s):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            closes_early = closes_early or (depth == 0 and i != len(s) - 1)
        elif ch == ",":
            outer_comma = outer_comma or depth == 0
            inner_comma = inner_comma or depth == 1
    if outer_comma:
        return "set"
    if s[:1] in ("(", "[") and s[-1:] in (")", "]") and inner_comma and not closes_early:
        return s[0] + s[-1]
    return "plain"


_LONG_DECIMAL_RE = re.compile(r"\.\d{%d}" % DECIMAL_PLACES)
_LONE_DECIMAL_RE = re.compile(r"[-+]?\d*\.\d+")


def _is_word(s: str) -> bool:
    return len(s) >= 3 and _WORD_RE.fullmatch(s) is not None and "\\" not in s


@lru_cache(maxsize=CACHE_SIZE)
def _fast_val(s: str) -> Any:
    """Exact canonical value of a normalized answer of a common shape, else ``None``:
    a rational (``exact_number``), or a closed form / set / tuple / interval (``obe.grading.fastmath``);
    a lone decimal of 6+ places is ``("approx", value)``, compared at 6 places (Math-Verify's
    convention); inside a larger answer such a decimal is left to the worker."""
    if "." in s and _LONG_DECIMAL_RE.search(s):
        return ("approx", Fraction(s)) if _LONE_DECIMAL_RE.fullmatch(s) else None
    v = exact_number(s)
    if v is not None:
        return ("num", (((1, 0), v),) if v else ())
    return fast_value(s)


@lru_cache(maxsize=CACHE_SIZE)
def _fast_poly(s: str) -> Any:
    """A polynomial in single-letter variables (``obe.grading.fastmath.parse_poly``) as a hashable
    canonical value, else ``None``; words (``_is_word``) are not polynomials."""
    if _is_word(s) or "." in s and _LONG_DECIMAL_RE.search(s):
        return None
    v = parse_poly(s)
    return None if v is None else frozenset(v.items())


def _fast_key(s: str) -> str | None:
    v = _fast_val(s)
    if v is not None:
        key = value_key(v)
        if key is not None:
            return key
    if _is_word(s):
        return "text:" + s.lower()
    return None


_NUMS = ("num", "approx")


def _fast_eq(g: str, p: str) -> bool | None:
    """Verdict without sympy when it is certain, else ``None``."""
    if g == p:
        return True
    if _is_equation(g) != _is_equation(p):
        return False  # an equation (7 = 11a+c) is not a number or an expression (11a+c)
    gv, pv = _fast_val(g), _fast_val(p)
    if gv is not None and pv is not None:
        if gv[0] == "approx" or pv[0] == "approx":  # a long decimal: equal at 6 places
            if gv[0] not in _NUMS or pv[0] not in _NUMS:
                return False  # a number never equals a set, tuple, interval or matrix
            gr, pr = rounded(gv), rounded(pv)
            return None if gr is None or pr is None else gr == pr
        return gv == pv  # canonical forms: equal iff the values are equal
    if _is_word(g) or _is_word(p):
        return g.lower() == p.lower()
    gq = _fast_poly(g) if gv is None else None
    pq = _fast_poly(p) if pv is None else None
    if gq is not None and pq is not None:
        return gq == pq  # expanded polynomials: equal iff identical
    if (gq is not None and pv is not None) or (pq is not None and gv is not None):
        return False  # a non-constant polynomial never equals a number, set, tuple or interval
    gs, ps = _shape(g), _shape(p)
    if gs != ps and "plain" not in (gs, ps):
        return False  # set vs tuple vs interval vs matrix: Math-Verify 0.9.0 accepts some of these
    if gs != ps and ((gv is not None and gv[0] in _NUMS) or (pv is not None and pv[0] in _NUMS)):
        return False  # a number never equals a set, tuple, interval or matrix
    return None


# ----------------------------------------------------------------------------- caches
class _LRU:
    """Small thread-safe bounded LRU mapping."""

    def __init__(self, size: int) -> None:
        self._d: OrderedDict[Any, Any] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, k: Any) -> Any:
        with self._lock:
            v = self._d.get(k)
            if v is not None:
                self._d.move_to_end(k)
            return v

    def put(self, k: Any, v: Any) -> None:
        with self._lock:
            self._d[k] = v
            self._d.move_to_end(k)
            if len(self._d) > self._size:
                self._d.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()


_EQ_CACHE = _LRU(CACHE_SIZE)
_KEY_CACHE = _LRU(CACHE_SIZE)
_EXTRACT_CACHE = _LRU(CACHE_SIZE)
_GOLD_CACHE = _LRU(CACHE_SIZE)


def clear_caches(worker: bool = False) -> None:
    """Empty the result caches (benchmarks, tests); ``worker=True`` also restarts the worker,
    emptying its parse cache (the next slow call waits for its imports, ~1-2 s)."""
    _EQ_CACHE.clear()
    _KEY_CACHE.clear()
    _EXTRACT_CACHE.clear()
    _GOLD_CACHE.clear()
    _fast_val.cache_clear()
    _fast_poly.cache_clear()
    _compare_forms.cache_clear()
    if worker:
        _WORKER.stop()


# ----------------------------------------------------------------------------- worker (parent side)
class _Timeout(Exception):
    pass


def wall_guard(cpu_s: float) -> float:
    """The wall-clock last resort for a call with a ``cpu_s`` CPU budget: far enough that no
    plausible machine load reaches it (a 5 s budget: 160 s), so grades depend on CPU time only."""
    return WALL_GUARD_S + WALL_GUARD_FACTOR * cpu_s


class _Worker:
    """A persistent subprocess (:mod:`obe.grading.worker`) doing the sympy work.

    A call is bounded by CPU time in the worker (its ``timeout`` is sent as the budget; over
    it the worker answers "timeout", or is ended by ``RLIMIT_CPU``, read here as a timeout).
    Wall-clock time is only the far-away :func:`wall_guard`: past it the worker is killed and
    restarted and the timeout is not cached, being the machine's fault, not the input's.
    Calls are serialized with a lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid = os.getpid()
        self._buf = b""
        self._ready = False
        self.calls = 0  # requests sent, for tests of the fast path

    def _start(self) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
        pkg_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = pkg_root + os.pathsep + env.get("PYTHONPATH", "")
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from obe.grading.worker import main; main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
        )
        self._buf, self._ready, self._pid = b"", False, os.getpid()

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and self._pid == os.getpid():
            proc.kill()
            proc.wait()

    def _readline(self, deadline: float) -> bytes:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - _now()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise _Timeout
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise EOFError("grading worker died")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def ensure_started(self, timeout: float) -> bool:
        deadline = _now() + timeout
        if not self._lock.acquire(timeout=max(timeout, 0)):
            return False
        try:
            return self._wait_ready(deadline)
        except (_Timeout, EOFError, OSError):
            return False
        finally:
            self._lock.release()

    def _wait_ready(self, deadline: float) -> bool:
        if self._proc is None or self._pid != os.getpid() or self._proc.poll() is not None:
            self._start()
        if not self._ready:
            self._readline(deadline)  # the worker prints one line once its imports are done
            self._ready = True
        return True

    def request(self, req: dict[str, Any], timeout: float,
                deadline: float | None = None) -> tuple[dict[str, Any] | None, bool]:
        """(response, cacheable); response is None on timeout. ``timeout``: CPU seconds."""
        if deadline is None:
            deadline = _now() + wall_guard(timeout)
        if not self._lock.acquire(timeout=max(deadline - _now(), 0)):
            return None, False
        try:
            try:
                self._wait_ready(deadline)
            except _Timeout:
                return None, False  # still importing: not the input's fault, do not cache
            assert self._proc is not None and self._proc.stdin is not None
            self.calls += 1
            self._proc.stdin.write(json.dumps(dict(req, cpu=timeout)).encode() + b"\n")
            self._proc.stdin.flush()
            try:
                resp = json.loads(self._readline(deadline))
            except _Timeout:  # the wall-clock last resort: the machine's fault, not cached
                self.stop()
                self._start()  # warm up the replacement in the background
                return None, False
            except EOFError:  # ended by RLIMIT_CPU: over its CPU budget in C code
                self.stop()
                self._start()
                return None, True
            return (None, True) if resp.get("timeout") else (resp, True)
        except (OSError, ValueError):
            self.stop()
            raise
        finally:
            self._lock.release()


class _Pool:
    """``WORKERS`` workers (default ``min(2, cpus)``, env ``OBE_GRADING_WORKERS``), started lazily.

    A call takes its preferred worker when idle (index 0, or the lane of a ``grade_many``
    thread, so one gold's parse stays in one worker's cache), else any idle one, else waits;
    the wait counts against the call's wall guard only. A worker still restarting after
    a timeout is passed over while another idle one is ready.
    """

    def __init__(self, n: int) -> None:
        self.workers = [_Worker() for _ in range(max(1, n))]
        self._busy = [False] * len(self.workers)
        self._cond = threading.Condition()
        self._local = threading.local()

    @property
    def calls(self) -> int:
        return sum(w.calls for w in self.workers)

    def prefer(self, index: int) -> None:
        """Make this thread's calls go to worker ``index`` when it is idle."""
        self._local.prefer = index % len(self.workers)

    def _acquire(self, deadline: float) -> int | None:
        prefer = getattr(self._local, "prefer", 0)
        with self._cond:
            while True:
                idle = [i for i, b in enumerate(self._busy) if not b]
                # the preferred worker, unless it is (re)starting and another is ready
                ready = [i for i in idle if self.workers[i]._ready]
                idx = prefer if prefer in (ready or idle) else next(iter(ready or idle), None)
                if idx is not None:
                    self._busy[idx] = True
                    return idx
                left = deadline - _now()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def _release(self, idx: int) -> None:
        with self._cond:
            self._busy[idx] = False
            self._cond.notify()

    def request(self, req: dict[str, Any], timeout: float) -> tuple[dict[str, Any] | None, bool]:
        deadline = _now() + wall_guard(timeout)
        idx = self._acquire(deadline)
        if idx is None:
            return None, False  # every worker busy past the wall guard: not the input's fault
        try:
            return self.workers[idx].request(req, timeout, deadline)
        finally:
            self._release(idx)

    def ensure_started(self, timeout: float) -> bool:
        deadline = _now() + timeout
        for w in self.workers:  # spawn all first, so their imports overlap
            if w._lock.acquire(timeout=max(deadline - _now(), 0)):
                try:
                    if w._proc is None or w._pid != os.getpid() or w._proc.poll() is not None:
                        w._start()
                finally:
                    w._lock.release()
        return all([w.ensure_started(max(deadline - _now(), 0)) for w in self.workers])

    def stop(self) -> None:
        for w in self.workers:
            with w._lock:
                w.stop()


_now = time.monotonic
WORKERS = int(os.environ.get("OBE_GRADING_WORKERS") or min(2, os.cpu_count() or 1))
_WORKER = _Pool(WORKERS)
atexit.register(_WORKER.stop)


def warm_up(timeout: float = 60.0) -> bool:
    """Start the workers and wait for their imports (~2 s), so the first graded call is not slow."""
    return _WORKER.ensure_started(timeout)


def _slow(req: dict[str, Any], timeout: float) -> tuple[dict[str, Any] | None, bool]:
    """The sympy path (monkeypatched in tests to prove the fast path is taken)."""
    return _WORKER.request(req, timeout)


# ----------------------------------------------------------------------------- public API
@dataclass(frozen=True)
class GradeResult:
    """Outcome of grading one response. ``status``: "ok", "no_answer", "timeout" or "error"."""

    answer: str | None
    outcome_key: str
    correct: bool
    status: str


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
            return ERROR_KEY
        return _key_of(s, timeout)
    except Exception:
        return ERROR_KEY


def _key_of(s: str, timeout: float) -> str:
    key = _KEY_CACHE.get(s)
    if key is None:
        key = _fast_key(s)
        if key is None:
            resp, cacheable = _slow({"op": "key", "a": s}, timeout)
            if resp is None:
                key = TIMEOUT_KEY
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
        eq = _fast_eq(g, p)
        if eq is not None:
            _EQ_CACHE.put((g, p), eq)
    return eq


def _key_known(s: str) -> bool:
    return _KEY_CACHE.get(s) is not None or _fast_key(s) is not None


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
        resp, cacheable = _slow(req, timeout)
        if resp is None:
            if cacheable:
                _EQ_CACHE.put((g, p), "timeout")
            return None
        eq = bool(resp["eq"])
        if "error" not in resp and cacheable:
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
    if _is_equation(g) or _is_equation(p):
        return normalize(gold, keep_assignment=True), normalize(pred, keep_assignment=True)
    if "," in p and "," in g:  # a bare list against a pair: in order if the gold is the pair
        if _is_bare_list(p) and _shape(g) == "()":
            return g, "(" + p + ")"
        if _is_bare_list(g) and _shape(p) == "()":
            return g, p[1:-1]
    return g, p


def _is_bare_list(s: str) -> bool:
    return not s.startswith("\\{") and _shape(s) == "set"


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
    """Extract, verify and key one response. Never raises.

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
    except Exception:
        return GradeResult(answer, ERROR_KEY, False, "error")


def _gold_answer(gold: str, timeout: float) -> str:
    """The answer of a gold: itself, unless it is a worked solution (a box in text, or two
    or more words outside math: "answer is 10000"), which is then read as a response is."""
    hit = _GOLD_CACHE.get(gold)
    if hit is None:
        hit = _read_gold(gold, timeout)
        if hit is not None:
            _GOLD_CACHE.put(gold, hit)
    return gold if hit is None else hit


def _read_gold(gold: str, timeout: float) -> str | None:
    """The gold's answer, or None when Math-Verify's extraction timed out (not cached)."""
    text = _strip_think(gold)
    boxed = _final_boxes(text)
    if boxed:
        return boxed
    if len(_PROSE_WORD_RE.findall(_MATH_OR_COMMAND_RE.sub(" ", text))) >= 2:
        found = _extract_slow(text, timeout)
        if found is None:
            return None
        if found:
            return found
    return gold


def _same_text(response: str, gold: str) -> bool:
    if len(response) > 2 * len(gold) + 64:  # cheap rejection of the usual long response
        return False
    return " ".join(_strip_think(response).split()) == " ".join(gold.split())


def _prepare(response: str, gold: str, config: ExtractConfig,
             timeout: float = DEFAULT_TIMEOUT_S) -> GradeResult | tuple[str, str, str]:
    same = config.mode != "boxed" and _same_text(response, gold)
    if same:
        answer: str | None = _strip_think(response).strip()  # it states the reference answer
    else:
        answer = extract(response, config, timeout=timeout)
    if answer is None or not normalize(answer):
        return GradeResult(answer, NO_ANSWER_KEY, False, "no_answer")
    g, p = _compare_forms(gold if same else _gold_answer(gold, timeout), answer)
    if _too_long(p) or _too_long(g):
        return GradeResult(answer, ERROR_KEY, False, "error")
    return answer, g, p  # type: ignore[return-value]


def _finish(answer: str, g: str, p: str, timeout: float) -> GradeResult:
    eq = _eq_of(g, p, timeout, want_key=True)
    if eq is None:
        return GradeResult(answer, TIMEOUT_KEY, False, "timeout")
    key = _key_of(g if eq else p, timeout)  # correct answers share the gold's key
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
            if _needs_worker_extraction(response, config)[1]:
                texts[_strip_think(response)[-MAX_RESPONSE_CHARS:]] = None
        except Exception:
            pass  # the final pass grades this item again and reports the error
    _run_lanes([[(t, "")] for t in texts if _EXTRACT_CACHE.get(_text_key(t)) is None],
               lambda t, _: _extract_slow(t, timeout))
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
        except Exception:
            item = GradeResult(answer, ERROR_KEY, False, "error")
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
        except Exception:
            out.append(GradeResult(item[0], ERROR_KEY, False, "error"))
    return out


def _run_lanes(groups: list[list[tuple[str, str]]], job: Callable[[str, str], object]) -> None:
    """Run ``job`` on every pair, groups kept together, one thread per worker."""
    n = min(len(_WORKER.workers), sum(len(gr) for gr in groups))
    lanes: list[list[tuple[str, str]]] = [[] for _ in range(max(n, 1))]
    for gr in sorted(groups, key=len, reverse=True):
        min(lanes, key=len).extend(gr)

    def run(i: int) -> None:
        _WORKER.prefer(i)
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
