"""Plain numbers: exact rationals of arithmetic answers, and decimals compared at 6 places.

:func:`exact_number` reads plain arithmetic (``+ - * / ^``, ``\\frac``, ``\\cdot``,
``\\times``, ``\\div``, parentheses) as an exact ``Fraction``. :func:`rounded` and
:func:`approx_key` carry Math-Verify's precision convention for decimals written with
``DECIMAL_PLACES`` or more places.
"""

from __future__ import annotations

import re
from decimal import localcontext
from fractions import Fraction
from typing import Any

from obe.grading.closedform import Bail, to_decimal

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


# Math-Verify's precision convention: when either side is a decimal, both are rounded to
# ``DECIMAL_PLACES`` places and compared (``0.0833333333333333`` == ``\frac{1}{12}``,
# ``4.123105625617661`` == ``\sqrt{17}``, ``0.333`` != ``\frac13``). obe applies it to decimals
# written with at least that many places; shorter decimals stay exact (``0.5`` is 1/2).
DECIMAL_PLACES = 6
_SCALE = 10**DECIMAL_PLACES


def rounded(v: Any) -> int | None:
    """``round(value * 10**6)`` of a fast value ("num" or "approx"), or None if not a number."""
    try:
        if v[0] == "approx":
            return round(v[1] * _SCALE)
        if v[0] != "num":
            return None
        c = v[1]
        if not c:
            return 0
        if len(c) == 1 and c[0][0] == (1, 0):
            return round(c[0][1] * _SCALE)
        with localcontext() as ctx:
            ctx.prec = 80
            return int((to_decimal(dict(c)) * _SCALE).to_integral_value())  # half-even, as round()
    except (Bail, ArithmeticError, ValueError, OverflowError, TypeError, IndexError):
        return None


def _simplest_between(lo: Fraction, hi: Fraction) -> Fraction:
    """The fraction with the smallest denominator in ``[lo, hi]`` (continued fractions)."""
    if lo <= 0 <= hi:
        return Fraction(0)
    if hi < 0:
        return -_simplest_between(-hi, -lo)
    c = -((-lo.numerator) // lo.denominator)  # ceil(lo)
    if c <= hi:
        return Fraction(c)
    f = lo.numerator // lo.denominator
    return f + 1 / _simplest_between(1 / (hi - f), 1 / (lo - f))


def approx_key(d: Fraction) -> str:
    """The key of a decimal compared at 6 places: the key of the simplest fraction that rounds
    to the same 6 places (``0.0833333333333333`` -> ``"1/12"``, as the exact 1/12 keys). It
    depends only on the 6-place value, so decimals equal at 6 places share it; and fractions
    with denominators up to 1000 are more than 1e-6 apart, so such a fraction is the simplest
    of its rounding cell and an exact answer like ``\\frac{1}{12}`` keys the same."""
    g = round(d * _SCALE)
    half = Fraction(1, 2 * _SCALE)
    for shrink in (Fraction(0), Fraction(1, 10**15)):  # the closed cell, then the open one
        best = _simplest_between(Fraction(g, _SCALE) - half + shrink, Fraction(g, _SCALE) + half - shrink)
        if round(best * _SCALE) == g:
            return str(best)
    return str(Fraction(g, _SCALE))
