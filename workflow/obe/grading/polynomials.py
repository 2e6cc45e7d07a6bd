"""Polynomials over the rationals in single-letter variables, exactly: a fast-path parser.

:func:`parse_poly` reads ``x^2+2x+1``, ``(a+5)(b+2)``, ``\\frac{x+1}{2}`` as an expanded
canonical dict, so two polynomials are equal iff their dicts are equal. Variable names are
those of the worker's sympy symbols (:func:`_letter`); degree, term count and coefficient
size are bounded, so hostile input costs bounded work.
"""

from __future__ import annotations

import re
from fractions import Fraction

from obe.grading.closedform import Bail, TokenStream, check

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
        raise Bail
    return t.lower()  # "i" stays the (non-real) symbol i, not the imaginary unit, as in Math-Verify


def _pmul(a: Poly, b: Poly) -> Poly:
    if len(a) * len(b) > 2000:
        raise Bail  # bounded work on hostile input: (x+1)^{64}(y+1)^{64}
    out: Poly = {}
    for ma, ca in a.items():
        for mb, cb in b.items():
            exps = dict(ma)
            for v, k in mb:
                exps[v] = exps.get(v, 0) + k
                if exps[v] > _MAX_DEGREE:
                    raise Bail
            m = tuple(sorted(exps.items()))
            c = out.get(m, 0) + ca * cb
            if c:
                out[m] = check(c)
            else:
                out.pop(m, None)
    if len(out) > _MAX_POLY_TERMS:
        raise Bail
    return out


def _padd(a: Poly, b: Poly, sign: int) -> Poly:
    out = dict(a)
    for m, c in b.items():
        v = out.get(m, 0) + sign * c
        if v:
            out[m] = check(v)
        else:
            out.pop(m, None)
    if len(out) > _MAX_POLY_TERMS:
        raise Bail
    return out


class _PolyParser(TokenStream):
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
                raise Bail  # x2: not a product we guess at
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
                raise Bail
        if not t.isdigit() or len(t) > 2 or (len(t) == 2 and self.toks[self.pos - 2] == "^"):
            raise Bail  # x^23 (Math-Verify: x**23), negative or symbolic powers: not covered
        n = int(t)
        if n > _MAX_DEGREE:
            raise Bail
        if n == 0:
            raise Bail
        out: Poly = {(): Fraction(1)}
        for _ in range(n):
            out = _pmul(out, base)
        return out

    def atom(self) -> Poly:
        t = self.take()
        if t in ("(", "{"):
            v = self.expr()
            if self.take() != (")" if t == "(" else "}"):
                raise Bail
            return v
        if t == "\\frac":
            if self.take() != "{":
                raise Bail
            num = self.expr()
            if self.take() != "}" or self.take() != "{":
                raise Bail
            den = self.expr()
            if self.take() != "}" or set(den) - {()} or not den:
                raise Bail  # only constant, non-zero denominators
            return {m: check(c / den[()]) for m, c in num.items()}
        if t.isalpha():
            return {((_letter(t), 1),): Fraction(1)}
        if t[0].isdigit() or t[0] == ".":
            c = Fraction(t)
            return {(): c} if c else {}
        raise Bail


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
    except (Bail, ValueError, ZeroDivisionError, OverflowError, RecursionError):
        return None
    return v if any(m for m in v) else None
