"""Closed-form numbers, exactly: the number parser of the grader's fast path (no sympy, no eval).

:func:`parse_number` reads rational arithmetic (``+ - * / ^``, ``\\frac``, ``\\cdot``,
``\\times``, ``\\div``, parentheses/braces) extended with ``\\sqrt{...}`` of a non-negative
rational and ``\\pi``, e.g. ``3\\sqrt{13}``, ``\\frac{\\sqrt{3}}{3}``, ``\\frac{1}{\\sqrt2}``,
``-\\frac{\\pi}{6}``, ``\\frac{20000}{\\pi}``, ``18+2\\pi``, ``\\frac{\\pi^2}{8}``.

A number is a finite sum of terms ``c * sqrt(m) * pi^k`` (rational ``c``, square-free ``m``,
integer ``k``) kept in canonical form; these terms are linearly independent over the
rationals, so two numbers are equal iff their canonical forms are equal (exact, no rounding).
Products of two sums, division by a sum, powers of a sum, nested/other roots, ``e``, ``i``
and implicit multiplication other than before ``\\sqrt``/``\\pi`` are not covered (``None``).

:func:`num_key` renders a number as the worker's ``canon`` does: ``str`` of the fraction for a
rational, ``"~" + format(float, ".12g")`` for an irrational real, ``~inf``/``~-inf``.
Every bound (coefficient bits, radicand, powers of pi, terms) raises :class:`Bail`, so
hostile input costs bounded work.
"""

from __future__ import annotations

import re
from decimal import Decimal, localcontext
from fractions import Fraction
from math import gcd, isqrt

_TOKEN_RE = re.compile(
    r"\d+(?:\.\d*)?|\.\d+|\\frac|\\sqrt|\\pi|\\cdot|\\times|\\div|\\infty|[-+*/^(){}\[\]]"
)
_MAX_BITS = 4096  # coefficient size bound (as numeric.exact_number's power bound)
_MAX_RADICAND = 10**12  # square-free part found by trial division up to the cube root
_MAX_PI_POW = 12
_MAX_TERMS = 16
_PI = Decimal(
    "3.14159265358979323846264338327950288419716939937510582097494459230781640628620899"
)

# A number: dict {(m, k): c} meaning sum c * sqrt(m) * pi**k, zero coefficients dropped.
Num = dict[tuple[int, int], Fraction]
INF = ("inf", 1)
NEG_INF = ("inf", -1)


class Bail(Exception):
    """The input is outside the covered shapes or bounds: the caller answers ``None``."""


def check(c: Fraction) -> Fraction:
    """``c``, unless its size is past the bound (then :class:`Bail`)."""
    if max(abs(c.numerator), c.denominator).bit_length() > _MAX_BITS:
        raise Bail
    return c


def _squarefree(n: int) -> tuple[int, int]:
    """(s, m) with n == s*s*m and m square-free, for 0 < n <= _MAX_RADICAND."""
    if n > _MAX_RADICAND:
        r = isqrt(n)
        if r * r == n:
            return r, 1
        raise Bail
    s, m, p = 1, 1, 2
    while p * p * p <= n:
        if n % p == 0:
            e = 0
            while n % p == 0:
                n //= p
                e += 1
            s *= p ** (e // 2)
            if e % 2:
                m *= p
        p += 1 if p == 2 else 2
    # n is now 1, a prime, a product of two distinct primes, or a prime squared
    r = isqrt(n)
    if r * r == n:
        s *= r
    else:
        m *= n
    return s, m


def _rational(c: Fraction) -> Num:
    return {(1, 0): c} if c else {}


def add(a: Num, b: Num, sign: int = 1) -> Num:
    out = dict(a)
    for t, c in b.items():
        v = out.get(t, 0) + sign * c
        if v:
            out[t] = check(v)
        else:
            out.pop(t, None)
    if len(out) > _MAX_TERMS:
        raise Bail
    return out


def _mono_mul(t1: tuple[int, int], c1: Fraction, t2: tuple[int, int], c2: Fraction) -> tuple[tuple[int, int], Fraction]:
    (m1, k1), (m2, k2) = t1, t2
    g = gcd(m1, m2)
    k = k1 + k2
    if abs(k) > _MAX_PI_POW:
        raise Bail
    return ((m1 // g) * (m2 // g), k), check(c1 * c2 * g)


def _mul(a: Num, b: Num) -> Num:
    if not a or not b:
        return {}
    if len(a) > 1 and len(b) > 1:
        raise Bail  # a product of two sums: the worker's key may not be value-canonical
    if len(a) > 1:
        a, b = b, a
    ((t1, c1),) = a.items()
    out: Num = {}
    for t2, c2 in b.items():
        t, c = _mono_mul(t1, c1, t2, c2)
        out[t] = c
    return out


def _inv(a: Num) -> Num:
    if len(a) != 1:
        raise Bail  # zero, or division by a sum
    (((m, k), c),) = a.items()
    if abs(k) > _MAX_PI_POW:
        raise Bail
    return {(m, -k): check(1 / (c * m))}  # 1/sqrt(m) = sqrt(m)/m


def _pow(a: Num, e: Fraction) -> Num:
    if e.denominator != 1 or abs(e) > 10_000:
        raise Bail
    n = int(e)
    if n == 0:
        if not a:
            raise Bail  # 0^0
        return _rational(Fraction(1))
    if not a:
        if n < 0:
            raise Bail
        return {}
    if len(a) != 1:
        raise Bail  # power of a sum
    (((m, k), c),) = a.items()
    if max(abs(c.numerator), c.denominator, m).bit_length() * abs(n) > _MAX_BITS or abs(k * n) > _MAX_PI_POW:
        raise Bail
    out = {(m if n % 2 else 1, k * n): check(c**n * Fraction(m) ** (n // 2))}
    return out  # note n // 2 floors for negative n: sqrt(m)^-3 = m^-2 * sqrt(m)


def _sqrt(a: Num) -> Num:
    if not a:
        return {}
    if set(a) != {(1, 0)}:
        raise Bail  # only square roots of rationals
    c = a[(1, 0)]
    if c < 0:
        raise Bail
    s, m = _squarefree(c.numerator * c.denominator)
    return {(m, 0): Fraction(s, c.denominator)}


def parse_number(s: str) -> Num | None:
    """``s`` as a canonical closed-form number, or ``None`` when not covered."""
    if not s or len(s) > 200:
        return None
    toks = _TOKEN_RE.findall(s)
    if "".join(toks) != s:
        return None
    try:
        v, pos = _Parser(toks).run()
    except (Bail, ValueError, ZeroDivisionError, OverflowError, RecursionError, IndexError):
        return None
    return v


class TokenStream:
    """Recursive-descent helpers shared by the number and polynomial parsers."""

    def __init__(self, toks: list[str]) -> None:
        self.toks, self.pos = toks, 0

    def peek(self) -> str | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self) -> str:
        if self.pos >= len(self.toks):
            raise Bail
        self.pos += 1
        return self.toks[self.pos - 1]


class _Parser(TokenStream):
    def run(self) -> tuple[Num, int]:
        v = self.expr()
        if self.pos != len(self.toks):
            raise Bail
        return v, self.pos

    def expr(self) -> Num:
        v = self.term()
        while self.peek() in ("+", "-"):
            sign = 1 if self.take() == "+" else -1
            v = add(v, self.term(), sign)
        return v

    def term(self) -> Num:
        v = self.unary()
        divided = False
        while True:
            t = self.peek()
            if t in ("*", "/", "\\cdot", "\\times", "\\div"):
                self.take()
                w = self.unary()
                if t in ("/", "\\div"):
                    divided = True
                    v = _mul(v, _inv(w))
                else:
                    v = _mul(v, w)
            elif t in ("\\sqrt", "\\pi"):
                if divided:
                    raise Bail  # 1/2\sqrt3: the worker reads 1/(2 sqrt 3); do not guess
                v = _mul(v, self.power())
            else:
                return v

    def unary(self) -> Num:
        t = self.peek()
        if t in ("-", "+"):
            self.take()
            v = self.unary()
            return {k: -c for k, c in v.items()} if t == "-" else v
        return self.power()

    def power(self) -> Num:
        base = self.atom()
        if self.peek() != "^":
            return base
        self.take()
        t = self.peek()
        if t is not None and t.isdigit() and len(t) > 1:
            raise Bail  # x^23 is x^2 3 in LaTeX
        exp = self.atom()
        if set(exp) - {(1, 0)}:
            raise Bail
        return _pow(base, exp.get((1, 0), Fraction(0)))

    def atom(self) -> Num:
        t = self.take()
        if t == "(" or t == "{":
            v = self.expr()
            if self.take() != (")" if t == "(" else "}"):
                raise Bail
            return v
        if t == "\\frac":
            num = self.arg()
            den = self.arg()
            return _mul(num, _inv(den))
        if t == "\\sqrt":
            return _sqrt(self.arg())
        if t == "\\pi":
            return {(1, 1): Fraction(1)}
        if t[0].isdigit() or t[0] == ".":
            return _rational(Fraction(t))
        raise Bail

    def arg(self) -> Num:
        t = self.peek()
        if t == "{":
            return self.atom()
        if t is not None and t.isdigit():  # \frac12, \sqrt2: one digit per argument
            self.take()
            if len(t) == 1:
                return _rational(Fraction(t))
            if self.toks[self.pos - 2] == "\\sqrt":
                raise Bail  # \sqrt12 is \sqrt{1}2; leave it to the worker
            self.toks.insert(self.pos, t[1:])
            return _rational(Fraction(t[0]))
        raise Bail


# ----------------------------------------------------------------------------- value and key
def to_decimal(v: Num, prec: int = 60) -> Decimal:
    """The value of ``v`` to ``prec`` digits (:class:`Bail` when cancellation leaves < 30 exact)."""
    with localcontext() as ctx:
        ctx.prec = prec
        total, biggest = Decimal(0), Decimal(0)
        for (m, k), c in v.items():
            term = Decimal(c.numerator) / Decimal(c.denominator)
            if m != 1:
                term *= Decimal(m).sqrt()
            if k:
                term *= _PI**k
            total += term
            biggest = max(biggest, abs(term))
        if total == 0 or abs(total) < biggest * Decimal(10) ** -(prec - 30):
            raise Bail  # too much cancellation to trust 30 digits
        return +total


def num_key(c: tuple[tuple[tuple[int, int], Fraction], ...]) -> str:
    """The worker's key of a canonical number (``sorted(num.items())``) or an infinity."""
    if c == INF:
        return "~inf"
    if c == NEG_INF:
        return "~-inf"
    if not c:
        return "0"
    if len(c) == 1 and c[0][0] == (1, 0):
        return str(c[0][1])  # "3", "-1/2": what sympy prints for a Rational
    f = float(to_decimal(dict(c)))
    if not 1e-300 < abs(f) < 1e300:
        raise Bail
    return "~" + format(f, ".12g")
