"""The fast path: verdicts and keys of normalized answers in process, exactly, without the worker.

:func:`fast_eq` answers True/False only when it is certain (equal strings; canonical values of
:mod:`obe.grading.fastmath`; lone decimals of 6+ places at 6 places; polynomials; words; shape
mismatches such as set vs tuple), else ``None`` and the worker decides. :func:`fast_key` renders
a covered answer's key exactly as the worker would.
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache
from typing import Any

from obe.grading.fastmath import fast_value, value_key
from obe.grading.normalization import is_equation
from obe.grading.numeric import DECIMAL_PLACES, exact_number, rounded
from obe.grading.polynomials import parse_poly
from obe.grading.pool import CACHE_SIZE

_WORD_RE = re.compile(r"[A-Za-z][A-Za-z ]*[A-Za-z]")


def shape(s: str) -> str:
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


def is_word(s: str) -> bool:
    """An all-letter answer of 3+ letters (``Monday``, ``odd``), compared case-insensitively."""
    return len(s) >= 3 and _WORD_RE.fullmatch(s) is not None and "\\" not in s


@lru_cache(maxsize=CACHE_SIZE)
def fast_val(s: str) -> Any:
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
def fast_poly(s: str) -> Any:
    """A polynomial in single-letter variables (``obe.grading.polynomials.parse_poly``) as a hashable
    canonical value, else ``None``; words (``is_word``) are not polynomials."""
    if is_word(s) or "." in s and _LONG_DECIMAL_RE.search(s):
        return None
    v = parse_poly(s)
    return None if v is None else frozenset(v.items())


def fast_key(s: str) -> str | None:
    """The worker's key of a covered answer, computed in process, else ``None``."""
    v = fast_val(s)
    if v is not None:
        key = value_key(v)
        if key is not None:
            return key
    if is_word(s):
        return "text:" + s.lower()
    return None


_NUMS = ("num", "approx")


def fast_eq(g: str, p: str) -> bool | None:
    """Verdict without sympy when it is certain, else ``None``."""
    if g == p:
        return True
    if is_equation(g) != is_equation(p):
        return False  # an equation (7 = 11a+c) is not a number or an expression (11a+c)
    gv, pv = fast_val(g), fast_val(p)
    if gv is not None and pv is not None:
        if gv[0] == "approx" or pv[0] == "approx":  # a long decimal: equal at 6 places
            if gv[0] not in _NUMS or pv[0] not in _NUMS:
                return False  # a number never equals a set, tuple, interval or matrix
            gr, pr = rounded(gv), rounded(pv)
            return None if gr is None or pr is None else gr == pr
        return gv == pv  # canonical forms: equal iff the values are equal
    if is_word(g) or is_word(p):
        return g.lower() == p.lower()
    gq = fast_poly(g) if gv is None else None
    pq = fast_poly(p) if pv is None else None
    if gq is not None and pq is not None:
        return gq == pq  # expanded polynomials: equal iff identical
    if (gq is not None and pv is not None) or (pq is not None and gv is not None):
        return False  # a non-constant polynomial never equals a number, set, tuple or interval
    gs, ps = shape(g), shape(p)
    if gs != ps and "plain" not in (gs, ps):
        return False  # set vs tuple vs interval vs matrix: Math-Verify 0.9.0 accepts some of these
    if gs != ps and ((gv is not None and gv[0] in _NUMS) or (pv is not None and pv[0] in _NUMS)):
        return False  # a number never equals a set, tuple, interval or matrix
    return None
