"""Exact values of the answer shapes the grader's fast path covers (no sympy, no eval).

``fast_value(s)`` reads a *normalized* answer (see :mod:`obe.grading.normalization`) of a
common competition shape and returns a hashable canonical value, or ``None`` when the shape is
not covered (the caller then asks the Math-Verify worker). Covered shapes:

  * numbers: closed forms of :mod:`obe.grading.closedform` (rational arithmetic with
    ``\\sqrt{...}`` of a rational and ``\\pi``);
  * sets ``\\{a,b\\}`` and bare lists ``a,b`` of such numbers;
  * ``A\\pm B`` / ``\\pm B`` (a set of two numbers, also as a set element);
  * a union ``I\\cup J`` of two intervals that do not merge (``(0,9)\\cup(9,36)``);
  * mixed numbers ``1\\frac{4}{5}`` (= 9/5, as Math-Verify reads them);
  * ``pmatrix``/``bmatrix`` matrices of such numbers (at least two entries);
  * tuples ``(a,b,...)``; intervals ``[a,b]``, ``[a,b)``, ``(a,b]`` with ``a < b``; and
    ``(a,b)``, where ``-\\infty``/``\\infty`` may stand as the first/last element.

``value_key`` renders the same key as the worker's ``canon`` (obe.grading.worker): ``str`` of
the fraction for a rational, ``"~" + format(float, ".12g")`` for an irrational real, ``{..}``
(sorted, deduplicated) for sets, ``(..)`` for tuples, ``M[a,b;c,d]`` for matrices, ``[a,b)``
etc. for intervals and ``~inf``/``~-inf`` for the infinities. tests/test_grading_fast.py
checks every covered shape against the slow path's key.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

from obe.grading.closedform import INF, NEG_INF, Bail, Num, add, num_key, parse_number, to_decimal
from obe.grading.numeric import approx_key


def _split_top(s: str) -> list[str] | None:
    """``s`` split at commas outside any bracket, or None if brackets do not balance."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(s):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                return None
        elif ch == "," and depth == 0:
            parts.append(s[start:i])
            start = i + 1
    if depth != 0:
        return None
    parts.append(s[start:])
    return parts


def _canon_num(v: Num) -> tuple[tuple[tuple[int, int], Fraction], ...]:
    return tuple(sorted(v.items()))


def _endpoint(s: str) -> Any:
    if s == "\\infty" or s == "+\\infty":
        return INF
    if s == "-\\infty":
        return NEG_INF
    v = parse_number(s)
    return None if v is None else _canon_num(v)


def _less(a: Any, b: Any) -> bool | None:
    """a < b for canonical numbers/infinities; None when not decided cheaply."""
    if a == NEG_INF:
        return b != NEG_INF
    if b == INF:
        return a != INF
    if a == INF or b == NEG_INF:
        return False
    d = add(dict(b), dict(a), -1)
    if not d:
        return False
    return to_decimal(d) > 0


def fast_value(s: str) -> Any:
    """Canonical hashable value of a normalized answer, or ``None`` (see the module docstring)."""
    try:
        return _fast_value(s)
    except (Bail, ValueError, ZeroDivisionError, OverflowError, RecursionError, ArithmeticError):
        return None


_MIXED_RE = re.compile(r"(-?)(\d+)\\frac(?:\{(\d+)\}\{(\d+)\}|(\d)(\d))")
_MATRIX_RE = re.compile(r"\\begin\{([pb]matrix)\}(.*)\\end\{\1\}")


def _fast_value(s: str) -> Any:
    if not s or len(s) > 400:
        return None
    m = _MIXED_RE.fullmatch(s)
    if m:  # a mixed number, as Math-Verify reads it: 1\frac{4}{5} = 9/5, -1\frac45 = -9/5
        sign, whole, a, b = m.group(1), int(m.group(2)), int(m.group(3) or m.group(5)), int(m.group(4) or m.group(6))
        if b == 0:
            return None
        v = (whole + Fraction(a, b)) * (-1 if sign else 1)
        return ("num", (((1, 0), v),) if v else ())
    if s.startswith("\\begin{"):
        return _matrix(s)
    if "\\cup" in s:
        return _union(s)
    if "\\pm" in s and "," not in s:
        return _set_of([s])
    if s.startswith("\\{") and s.endswith("\\}"):
        parts = _split_top(s[2:-2])
        if parts is None or not all(parts):
            return None
        return _set_of(parts)
    if "," not in s:
        v = parse_number(s)
        return None if v is None else ("num", _canon_num(v))
    parts = _split_top(s)
    if parts is None or not all(parts):
        return None
    if len(parts) > 1:  # a bare list: a set (obe.grading.normalize removed thousands separators)
        return _set_of(parts)
    return _bracketed(s, as_interval=False)


def _bracketed(s: str, as_interval: bool) -> Any:
    """A tuple or an interval; with ``as_interval`` (inside a union) ``(a,b)`` is an interval."""
    lo, hi = s[0], s[-1]
    if lo not in "([" or hi not in ")]":
        return None
    inner = _split_top(s[1:-1])
    if inner is None or len(inner) < 2 or not all(inner):
        return None
    if len(inner) > 2:
        if lo + hi != "()" or as_interval:
            return None
        vals = [parse_number(p) for p in inner]
        if any(v is None for v in vals):
            return None
        return ("tuple", tuple(_canon_num(v) for v in vals))  # type: ignore[arg-type]
    a, b = _endpoint(inner[0]), _endpoint(inner[1])
    if a is None or b is None or a == INF or b == NEG_INF:
        return None
    if lo + hi == "()" and not as_interval:
        return ("tuple", (a, b))  # point or open interval: the same class and key
    if (lo == "[" and a == NEG_INF) or (hi == "]" and b == INF) or not _less(a, b):
        return None
    return ("interval", lo, a, b, hi)


def _matrix(s: str) -> Any:
    """``\\begin{pmatrix}..\\end{pmatrix}`` (or bmatrix) of numbers, at least 2 entries."""
    m = _MATRIX_RE.fullmatch(s)
    if m is None or "\\begin" in m.group(2) or "\\end" in m.group(2):
        return None
    rows = []
    for row in m.group(2).split("\\\\"):
        cells = []
        for cell in row.split("&"):
            v = parse_number(cell)
            if v is None:
                return None
            cells.append(_canon_num(v))
        rows.append(tuple(cells))
    if len({len(r) for r in rows}) != 1 or len(rows) * len(rows[0]) < 2:
        return None
    return ("matrix", tuple(rows))


def _union(s: str) -> Any:
    """``I\\cup J`` of two intervals that a union cannot merge (disjoint, and not touching at
    a closed end): then equal sets have the same two intervals. Math-Verify leaves the union
    unevaluated, so its key is ``U(`` + the two interval keys, sorted + ``)``."""
    parts = s.split("\\cup")
    if len(parts) != 2:
        return None  # 3+ parts nest in the worker's key: not covered
    a, b = (_bracketed(p, as_interval=True) for p in parts)
    if a is None or b is None or a[0] != "interval" or b[0] != "interval":
        return None
    if not _less(a[2], b[2]):
        a, b = b, a
    if not _less(a[3], b[2]) and not (a[3] == b[2] and a[4] == ")" and b[1] == "("):
        return None  # overlapping or touching at a closed end: mergeable, not canonical
    return ("union", frozenset((a, b)))


def _plus_minus(p: str) -> list[Num] | None:
    """``A\\pm B`` (or ``\\pm B``) as [A+B, A-B]; B a single term."""
    a, _, b = p.partition("\\pm")
    if "\\pm" in b or "+" in b or "-" in b:
        return None
    va = parse_number(a) if a else {}
    vb = parse_number(b)
    if va is None or vb is None:
        return None
    return [add(va, vb), add(va, vb, -1)]


def _set_of(parts: list[str]) -> Any:
    vals = []
    for p in parts:
        vs = _plus_minus(p) if "\\pm" in p else [parse_number(p)]
        if vs is None or any(v is None for v in vs):
            return None
        vals.extend(_canon_num(v) for v in vs)  # type: ignore[arg-type]
    return ("set", frozenset(vals))


def value_key(v: Any) -> str | None:
    """The worker's key for value ``v`` (from :func:`fast_value`), or None if not renderable."""
    try:
        kind = v[0]
        if kind == "num":
            return num_key(v[1])
        if kind == "approx":
            return approx_key(v[1])
        if kind == "set":
            return "{" + ",".join(sorted({num_key(x) for x in v[1]})) + "}"
        if kind == "tuple":
            return "(" + ",".join(num_key(x) for x in v[1]) + ")"
        if kind == "matrix":
            return "M[" + ";".join(",".join(num_key(x) for x in row) for row in v[1]) + "]"
        if kind == "union":
            return "U(" + ",".join(sorted(value_key(x) for x in v[1])) + ")"  # type: ignore[type-var]
        _, lo, a, b, hi = v
        return lo + num_key(a) + "," + num_key(b) + hi
    except (Bail, ArithmeticError, ValueError, OverflowError):
        return None
