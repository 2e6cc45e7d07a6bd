"""Exact closed-form values for the grader's fast path (no sympy, no eval).

``fast_value(s)`` reads a *normalized* answer (see ``obe.grading.normalize``) of a common
competition shape and returns a hashable canonical value, or ``None`` when the shape is not
covered (the caller then asks the Math-Verify worker). Covered shapes:

  * numbers: rational arithmetic (``+ - * / ^``, ``\\frac``, ``\\cdot``, ``\\times``,
    ``\\div``, parentheses/braces) extended with ``\\sqrt{...}`` of a non-negative rational and
    ``\\pi``, e.g. ``3\\sqrt{13}``, ``\\frac{\\sqrt{3}}{3}``, ``\\frac{1}{\\sqrt2}``,
    ``-\\frac{\\pi}{6}``, ``\\frac{20000}{\\pi}``, ``18+2\\pi``, ``\\frac{\\pi^2}{8}``;
  * sets ``\\{a,b\\}`` and bare lists ``a,b`` of such numbers;
  * ``A\\pm B`` / ``\\pm B`` (a set of two numbers, also as a set element);
  * a union ``I\\cup J`` of two intervals that do not merge (``(0,9)\\cup(9,36)``);
  * mixed numbers ``1\\frac{4}{5}`` (= 9/5, as Math-Verify reads them);
  * ``pmatrix``/``bmatrix`` matrices of such numbers (at least two entries);
  * tuples ``(a,b,...)``; intervals ``[a,b]``, ``[a,b)``, ``(a,b]`` with ``a < b``; and
    ``(a,b)``, where ``-\\infty``/``\\infty`` may stand as the first/last element.

A number is a finite sum of terms ``c * sqrt(m) * pi^k`` (rational ``c``, square-free ``m``,
integer ``k``) kept in canonical form; these terms are linearly independent over the
rationals, so two numbers are equal iff their canonical forms are equal (exact, no rounding).
Products of two sums, division by a sum, powers of a sum, nested/other roots, ``e``, ``i``
and implicit multiplication other than before ``\\sqrt``/``\\pi`` are not covered.

``value_key`` renders the same key as the worker's ``canon`` (obe.grading): ``str`` of the
fraction for a rational, ``"~" + format(float, ".12g")`` for an irrational real, ``{..}``
(sorted, deduplicated) for sets, ``(..)`` for tuples, ``M[a,b;c,d]`` for matrices, ``[a,b)`` etc. for intervals and
``~inf``/``~-inf`` for the infinities. tests/test_grading_fast.py checks every covered shape
against the slow path's key.
"""

from __future__ import annotations

import re
from decimal import Decimal, localcontext
from fractions import Fraction
from math import gcd, isqrt
from typing import Any

_TOKEN_RE = re.compile(
    r"\d+(?:\.\d*)?|\.\d+|\\frac|\\sqrt|\\pi|\\cdot|\\times|\\div|\\infty|[-+*/^(){}\[\]]"
)
_MAX_BITS = 4096  # coefficient size bound (as exact_number's power bound)
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


class _Bail(Exception):
    pass


def _check(c: Fraction) -> Fraction:
    if max(abs(c.numerator), c.denominator).bit_length() > _MAX_BITS:
        raise _Bail
    return c


def _squarefree(n: int) -> tuple[int, int]:
    """(s, m) with n == s*s*m and m square-free, for 0 < n <= _MAX_RADICAND."""
    if n > _MAX_RADICAND:
        r = isqrt(n)
        if r * r == n:
            return r, 1
        raise _Bail
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


def _add(a: Num, b: Num, sign: int = 1) -> Num:
    out = dict(a)
    for t, c in b.items():
        v = out.get(t, 0) + sign * c
        if v:
            out[t] = _check(v)
        else:
            out.pop(t, None)
    if len(out) > _MAX_TERMS:
        raise _Bail
    return out


def _mono_mul(t1: tuple[int, int], c1: Fraction, t2: tuple[int, int], c2: Fraction) -> tuple[tuple[int, int], Fraction]:
    (m1, k1), (m2, k2) = t1, t2
    g = gcd(m1, m2)
    k = k1 + k2
    if abs(k) > _MAX_PI_POW:
        raise _Bail
    return ((m1 // g) * (m2 // g), k), _check(c1 * c2 * g)


def _mul(a: Num, b: Num) -> Num:
    if not a or not b:
        return {}
    if len(a) > 1 and len(b) > 1:
        raise _Bail  # a product of two sums: the worker's key may not be value-canonical
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
        raise _Bail  # zero, or division by a sum
    (((m, k), c),) = a.items()
    if abs(k) > _MAX_PI_POW:
        raise _Bail
    return {(m, -k): _check(1 / (c * m))}  # 1/sqrt(m) = sqrt(m)/m


def _pow(a: Num, e: Fraction) -> Num:
    if e.denominator != 1 or abs(e) > 10_000:
        raise _Bail
    n = int(e)
    if n == 0:
        if not a:
            raise _Bail  # 0^0
        return _rational(Fraction(1))
    if not a:
        if n < 0:
            raise _Bail
        return {}
    if len(a) != 1:
        raise _Bail  # power of a sum
    (((m, k), c),) = a.items()
    if max(abs(c.numerator), c.denominator, m).bit_length() * abs(n) > _MAX_BITS or abs(k * n) > _MAX_PI_POW:
        raise _Bail
    out = {(m if n % 2 else 1, k * n): _check(c**n * Fraction(m) ** (n // 2))}
    return out  # note n // 2 floors for negative n: sqrt(m)^-3 = m^-2 * sqrt(m)


def _sqrt(a: Num) -> Num:
    if not a:
        return {}
    if set(a) != {(1, 0)}:
        raise _Bail  # only square roots of rationals
    c = a[(1, 0)]
    if c < 0:
        raise _Bail
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
    except (_Bail, ValueError, ZeroDivisionError, OverflowError, RecursionError, IndexError):
        return None
    return v


class _TokenStream:
    """Recursive-descent helpers shared by the number and polynomial parsers."""

    def __init__(self, toks: list[str]) -> None:
        self.toks, self.pos = toks, 0

    def peek(self) -> str | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self) -> str:
        if self.pos >= len(self.toks):
            raise _Bail
        self.pos += 1
        return self.toks[self.pos - 1]


class _Parser(_TokenStream):
    def run(self) -> tuple[Num, int]:
        v = self.expr()
        if self.pos != len(self.toks):
            raise _Bail
        return v, self.pos

    def expr(self) -> Num:
        v = self.term()
        while self.peek() in ("+", "-"):
            sign = 1 if self.take() == "+" else -1
            v = _add(v, self.term(), sign)
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
                    raise _Bail  # 1/2\sqrt3: the worker reads 1/(2 sqrt 3); do not guess
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
            raise _Bail  # x^23 is x^2 3 in LaTeX
        exp = self.atom()
        if set(exp) - {(1, 0)}:
            raise _Bail
        return _pow(base, exp.get((1, 0), Fraction(0)))

    def atom(self) -> Num:
        t = self.take()
        if t == "(" or t == "{":
            v = self.expr()
            if self.take() != (")" if t == "(" else "}"):
                raise _Bail
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
        raise _Bail

    def arg(self) -> Num:
        t = self.peek()
        if t == "{":
            return self.atom()
        if t is not None and t.isdigit():  # \frac12, \sqrt2: one digit per argument
            self.take()
            if len(t) == 1:
                return _rational(Fraction(t))
            if self.toks[self.pos - 2] == "\\sqrt":
                raise _Bail  # \sqrt12 is \sqrt{1}2; leave it to the worker
            self.toks.insert(self.pos, t[1:])
            return _rational(Fraction(t[0]))
        raise _Bail


# ----------------------------------------------------------------------------- structures
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
    d = _add(dict(b), dict(a), -1)
    if not d:
        return False
    return _to_decimal(d) > 0


def fast_value(s: str) -> Any:
    """Canonical hashable value of a normalized answer, or ``None`` (see the module docstring)."""
    try:
        return _fast_value(s)
    except (_Bail, ValueError, ZeroDivisionError, OverflowError, RecursionError, ArithmeticError):
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
    return [_add(va, vb), _add(va, vb, -1)]


def _set_of(parts: list[str]) -> Any:
    vals = []
    for p in parts:
        vs = _plus_minus(p) if "\\pm" in p else [parse_number(p)]
        if vs is None or any(v is None for v in vs):
            return None
        vals.extend(_canon_num(v) for v in vs)  # type: ignore[arg-type]
    return ("set", frozenset(vals))


# ----------------------------------------------------------------------------- keys
def _to_decimal(v: Num, prec: int = 60) -> Decimal:
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
            raise _Bail  # too much cancellation to trust 30 digits
        return +total


def num_key(c: tuple[tuple[tuple[int, int], Fraction], ...]) -> str:
    if c == INF:
        return "~inf"
    if c == NEG_INF:
        return "~-inf"
    if not c:
        return "0"
    if len(c) == 1 and c[0][0] == (1, 0):
        return str(c[0][1])  # "3", "-1/2": what sympy prints for a Rational
    f = float(_to_decimal(dict(c)))
    if not 1e-300 < abs(f) < 1e300:
        raise _Bail
    return "~" + format(f, ".12g")


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
    except (_Bail, ArithmeticError, ValueError, OverflowError):
        return None


# ----------------------------------------------------------------------------- polynomials
_POLY_TOKEN_RE = re.compile(r"\d+(?:\.\d*)?|\.\d+|\\frac|\\cdot|\\times|[A-Za-z]|[-+*^(){}]")
_MAX_DEGREE = 64
_MAX_POLY_TERMS = 200
Mono = tuple[tuple[str, int], ...]
Poly = dict[Mono, Fraction]


def _letter(t: str) -> str:
    """The worker's symbol name for a letter (Math-Verify: ``R`` is the real symbol ``r``,
    ``E`` the symbol ``e``, ``i`` the non-real symbol ``i``); the constants ``e`` and ``I``
    are not covered."""
    if t in ("e", "I"):
        raise _Bail
    return t.lower()  # "i" stays the (non-real) symbol i, not the imaginary unit, as in Math-Verify


def _pmul(a: Poly, b: Poly) -> Poly:
    if len(a) * len(b) > 2000:
        raise _Bail  # bounded work on hostile input: (x+1)^{64}(y+1)^{64}
    out: Poly = {}
    for ma, ca in a.items():
        for mb, cb in b.items():
            exps = dict(ma)
            for v, k in mb:
                exps[v] = exps.get(v, 0) + k
                if exps[v] > _MAX_DEGREE:
                    raise _Bail
            m = tuple(sorted(exps.items()))
            c = out.get(m, 0) + ca * cb
            if c:
                out[m] = _check(c)
            else:
                out.pop(m, None)
    if len(out) > _MAX_POLY_TERMS:
        raise _Bail
    return out


def _padd(a: Poly, b: Poly, sign: int) -> Poly:
    out = dict(a)
    for m, c in b.items():
        v = out.get(m, 0) + sign * c
        if v:
            out[m] = _check(v)
        else:
            out.pop(m, None)
    if len(out) > _MAX_POLY_TERMS:
        raise _Bail
    return out


class _PolyParser(_TokenStream):
    """Polynomials over the rationals in single-letter variables: + - * ``\\cdot``
    ``\\times``, implicit products (``2x^2y``, ``(a+5)(b+2)``), integer powers (one digit or
    braced), parentheses/braces, ``\\frac{poly}{rational}``."""

    def expr(self) -> Poly:
        v = self.term()
        while self.peek() in ("+", "-"):
            sign = 1 if self.take() == "+" else -1
            v = _padd(v, self.term(), sign)
        return v

    def term(self) -> Poly:
        if self.peek() in ("+", "-"):
            sign = self.take()
            v = self.term()
            return {m: -c for m, c in v.items()} if sign == "-" else v
        v = self.power()
        while True:
            t = self.peek()
            if t in ("*", "\\cdot", "\\times"):
                self.take()
                v = _pmul(v, self.power())
            elif t is not None and (t.isalpha() or t in ("(", "\\frac")):
                v = _pmul(v, self.power())
            elif t is not None and (t[0].isdigit() or t[0] == "."):
                raise _Bail  # x2: not a product we guess at
            else:
                return v

    def power(self) -> Poly:
        base = self.atom()
        if self.peek() != "^":
            return base
        self.take()
        t = self.take()
        if t == "{":
            t = self.take()
            if self.take() != "}":
                raise _Bail
        if not t.isdigit() or len(t) > 2 or (len(t) == 2 and self.toks[self.pos - 2] == "^"):
            raise _Bail  # x^23 (Math-Verify: x**23), negative or symbolic powers: not covered
        n = int(t)
        if n > _MAX_DEGREE:
            raise _Bail
        if n == 0:
            raise _Bail
        out: Poly = {(): Fraction(1)}
        for _ in range(n):
            out = _pmul(out, base)
        return out

    def atom(self) -> Poly:
        t = self.take()
        if t in ("(", "{"):
            v = self.expr()
            if self.take() != (")" if t == "(" else "}"):
                raise _Bail
            return v
        if t == "\\frac":
            if self.take() != "{":
                raise _Bail
            num = self.expr()
            if self.take() != "}" or self.take() != "{":
                raise _Bail
            den = self.expr()
            if self.take() != "}" or set(den) - {()} or not den:
                raise _Bail  # only constant, non-zero denominators
            return {m: _check(c / den[()]) for m, c in num.items()}
        if t.isalpha():
            return {((_letter(t), 1),): Fraction(1)}
        if t[0].isdigit() or t[0] == ".":
            c = Fraction(t)
            return {(): c} if c else {}
        raise _Bail


def parse_poly(s: str) -> Poly | None:
    """``s`` as a canonical polynomial with at least one variable, or ``None``.

    ``{((var, exp), ...): coefficient}``; two polynomials are equal iff these dicts are equal.
    Variable names are those of the worker's sympy symbols (``_letter``)."""
    if not s or len(s) > 200 or "^" in s and re.search(r"\^\d\d", s):
        return None
    s = s.replace("\\cdot ", "\\cdot").replace("\\times ", "\\times")  # normalize keeps "\cdot y"
    toks = _POLY_TOKEN_RE.findall(s)
    if "".join(toks) != s or not any(t.isalpha() for t in toks):
        return None
    try:
        p = _PolyParser(toks)
        v = p.expr()
        if p.pos != len(toks):
            return None
    except (_Bail, ValueError, ZeroDivisionError, OverflowError, RecursionError):
        return None
    return v if any(m for m in v) else None


# ----------------------------------------------------------------------------- decimals at 6 places
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
            return int((_to_decimal(dict(c)) * _SCALE).to_integral_value())  # half-even, as round()
    except (_Bail, ArithmeticError, ValueError, OverflowError, TypeError, IndexError):
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
