"""The grading worker: Math-Verify 0.9.0 and sympy in a subprocess of :mod:`obe.grading`.

``python -m obe.grading.worker`` (the pool starts it as ``python -c "from obe.grading.worker
import main; main()"``) serves JSON-line requests on stdin, one response line each:

  * ``{"op": "eq", "g", "p", "key", "gkey"}`` -> ``{"eq", "key"?, "gkey"?}``: whether normalized
    answers g and p are equivalent; "key"/"gkey" also ask for the key of p / of g (if equal);
  * ``{"op": "key", "a"}`` -> ``{"key"}``: the outcome key of a normalized answer;
  * ``{"op": "extract", "t"}`` -> ``{"answer"}``: Math-Verify's extraction of a response
    without a usable box (its LaTeX and number patterns, in its priority order; the answer
    string of the first match that parses, or null).

Every request carries ``"cpu"``: its CPU-time budget in seconds. A call over budget answers
``{"timeout": true}``: a ``setitimer(ITIMER_PROF)`` signal interrupts it (process CPU time,
so the verdict does not depend on how busy the machine is), and ``RLIMIT_CPU`` set 3 s past
the budget ends the process if it is stuck in C code (the parent reads that as a timeout).
Memory is bounded by ``RLIMIT_AS`` (4 GiB).

Never executes text: answers go through Math-Verify's LaTeX (ANTLR) parser only. Math-Verify's
``ExprExtractionConfig`` patterns are used to *find* plain-text numbers and expressions, but
an expression match is parsed with the LaTeX parser instead of its ``parse_expr`` (which
evaluates Python), and a number match with ``sympy.Number`` of its digits, as Math-Verify does.
"""

from __future__ import annotations

import json
import logging
import math
import re
import resource
import signal
import sys
from fractions import Fraction
from functools import lru_cache
from itertools import groupby
from typing import Any

ERROR_KEY = "<error>"  # obe.grading.ERROR_KEY (not imported: the worker stays independent)
DEFAULT_CPU_S = 5.0
BACKSTOP_S = 3  # RLIMIT_CPU ends the process this many CPU seconds past a call's budget


class CpuTimeout(BaseException):
    """Raised by the SIGPROF handler; a BaseException, so no ``except Exception`` in sympy or
    Math-Verify can swallow it."""


def _on_prof(signum: int, frame: Any) -> None:
    raise CpuTimeout


def _cpu_used() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _limit_cpu(budget: float) -> None:
    soft = int(_cpu_used() + budget) + BACKSTOP_S
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (soft, resource.RLIM_INFINITY))
    except (ValueError, OSError):
        pass
    signal.setitimer(signal.ITIMER_PROF, budget)


def main() -> None:  # pragma: no cover - runs in the subprocess
    for lim, val in ((resource.RLIMIT_AS, 4 << 30), (resource.RLIMIT_CORE, 0)):
        try:
            resource.setrlimit(lim, (val, val))
        except (ValueError, OSError):
            pass
    signal.signal(signal.SIGPROF, _on_prof)
    logging.disable(logging.CRITICAL)

    import sympy
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse
    from math_verify import verify as mv_verify
    from math_verify.parser import extract_expr, extract_latex, get_extraction_regexes, parse_latex_cached

    from obe.grading.fastmath import fast_value
    from obe.grading.normalization import normalize as obe_normalize
    from obe.grading.numeric import DECIMAL_PLACES, approx_key
    from obe.grading.polynomials import parse_poly

    latex_only = [LatexExtractionConfig(boxed_match_priority=0)]
    # Math-Verify's extraction patterns (boxes at the top priority, as its own test suite uses them)
    patterns = sorted(
        ((pattern, target, priority)
         for pats, target in get_extraction_regexes([LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()])
         for pattern, priority in pats),
        key=lambda x: x[2],
    )
    priority_groups = [list(g) for _, g in groupby(patterns, key=lambda x: x[2])]
    long_decimal = re.compile(r"\.\d{%d}" % DECIMAL_PLACES)
    mixed_number = re.compile(r"([-+]?)(\d+) (\d+)/(\d+)")

    def parse_tex(s: str) -> Any:
        try:
            return parse_latex_cached(s)
        except Exception:  # noqa: BLE001 - not LaTeX we can read
            return None

    def read_match(m: re.Match[str], target: Any) -> tuple[Any, str]:
        if isinstance(target, LatexExtractionConfig):
            groups = m.groupdict()
            raw = next((v for k, v in groups.items() if k.startswith("first_latex") and v), "")
            if raw and not any(v for k, v in groups.items() if k.startswith("next") and v):
                n = obe_normalize(raw)  # a shape obe reads without sympy: skip the ANTLR parse
                if n and (fast_value(n) is not None or parse_poly(n) is not None):
                    raw = raw.strip()
                    return True, raw[:-1].rstrip() if raw[-1:] in ".,;" and not raw.endswith("..") else raw
            expr, s = extract_latex(m, target)
            t = s.rstrip()
            if expr is None and t[-1:] in (".", ",", ";") and not t.endswith(".."):
                s = t[:-1].rstrip()  # sentence punctuation inside the delimiters: "$\frac13.$"
                expr = parse_tex(s)
            if expr is None:  # what obe reads in the raw match (Math-Verify drops \mathrm{e})
                raw = next((v for k, v in m.groupdict().items() if k.startswith("first_latex") and v), "")
                if raw.strip() and parsed(obe_normalize(raw)) is not None:
                    return True, raw
            return expr, s
        if m.groupdict().get("expr"):  # 2/3, (9+1)*2: the LaTeX parser, never parse_expr
            s = m.group("expr").replace("×", "\\times ").replace("÷", "\\div ").replace("**", "^")
            s = s.strip().rstrip(".").strip()
            mixed = mixed_number.fullmatch(s)
            if mixed:  # 4 4/9 is the mixed number 40/9, as Math-Verify reads it
                sign, whole, num, den = mixed.groups()
                s = "%s%s\\frac{%s}{%s}" % ("-" if sign == "-" else "", whole, num, den)
            return parse_tex(s), s
        return extract_expr(m)  # a number: sympy.Number of its digits

    def extract(text: str) -> str | None:
        for group in priority_groups:
            matches = sorted(
                ((m, target) for pattern, target, _ in group for m in pattern.finditer(text)),
                key=lambda mt: (mt[0].end(), -mt[0].start()), reverse=True,
            )  # as Math-Verify: the rightmost match first
            for m, target in matches:
                expr, s = read_match(m, target)
                if expr is not None and s.strip():
                    return s.strip()
        return None

    def exactify(e: Any) -> Any:
        """Decimals become the rationals they denote (``0.5`` is 1/2, ``0.333`` is not 1/3)."""
        if isinstance(e, (sympy.Basic, sympy.MatrixBase)):
            floats = e.atoms(sympy.Float)
            if floats:
                e = e.xreplace({f: sympy.Rational(str(f)) for f in floats})
        return e

    def quick(s: str) -> Any:
        """The expression Math-Verify would build, for the shapes obe.grading.fastmath reads (our own
        bounded parser, sympy constructors only): skips an ANTLR parse of 10-800 ms."""
        if long_decimal.search(s):
            return None  # kept as a float by Math-Verify's parse (compared at 6 places)
        poly = None if len(s) >= 3 and s.isalpha() else parse_poly(s)
        if poly is not None:
            syms: dict[str, Any] = {}

            def sym(name: str) -> Any:
                if name not in syms:
                    # as latex2sympy's letters: real, except i (a non-real symbol, not I)
                    syms[name] = sympy.Symbol(name, real=name != "i")
                return syms[name]

            return sympy.Add(*[
                sympy.Rational(c.numerator, c.denominator) * sympy.Mul(*[sym(v) ** k for v, k in mono])
                for mono, c in poly.items()
            ])
        v = fast_value(s)
        if v is not None and v[0] == "num":
            return sympy.Add(*[
                sympy.Rational(c.numerator, c.denominator) * sympy.sqrt(m) * sympy.pi**k
                for (m, k), c in v[1]
            ])
        return None

    @lru_cache(maxsize=8192)
    def parsed(s: str, mv: bool = False) -> Any:
        if not mv:
            e = quick(s)
            if e is not None:
                return e
        for item in parse("\\boxed{" + s + "}", extraction_config=latex_only, parsing_timeout=None):
            if not isinstance(item, str):
                # an answer written with a decimal of 6+ places keeps its floats, which
                # Math-Verify compares at 6 places; otherwise decimals are exact
                return item if long_decimal.search(s) else exactify(item)
        return None

    def closed_number(e: Any) -> bool:
        return isinstance(e, sympy.Expr) and not e.free_symbols and e.is_number

    def num_equal(a: Any, b: Any) -> bool:
        d, m = sympy.N(a - b, 50), max(abs(sympy.N(a, 50)), abs(sympy.N(b, 50)))
        return bool(d == 0 or abs(d) <= m * sympy.Rational(1, 10**40))

    def canon(e: Any) -> str:
        if isinstance(e, sympy.MatrixBase):
            return "M[" + ";".join(",".join(canon(x) for x in e.row(i)) for i in range(e.rows)) + "]"
        if isinstance(e, sympy.FiniteSet):
            return "{" + ",".join(sorted({canon(x) for x in e.args})) + "}"
        if isinstance(e, sympy.Tuple):
            return "(" + ",".join(canon(x) for x in e.args) + ")"
        if isinstance(e, sympy.Interval):
            lo, hi = "(" if e.left_open else "[", ")" if e.right_open else "]"
            return lo + canon(e.start) + "," + canon(e.end) + hi
        if isinstance(e, sympy.Union):
            return "U(" + ",".join(sorted(canon(x) for x in e.args)) + ")"
        if isinstance(e, sympy.Eq):
            if isinstance(e.lhs, sympy.Symbol):
                return canon(e.rhs)  # assignment x = 5 keys as 5, as Math-Verify compares it
            return equation_key(e)
        if isinstance(e, sympy.Expr):
            if isinstance(e, sympy.Float):  # only answers with a 6+ place decimal keep floats
                return approx_key(Fraction(str(e)))  # as obe.grading.numeric keys a lone long decimal
            if closed_number(e):
                v = e.doit()
                if v.is_Rational:
                    return str(v)
                n = sympy.N(v, 30)
                re_, im_ = (float(x) for x in n.as_real_imag())
                if math.isnan(re_) or math.isnan(im_):
                    return "sym:" + str(v)  # 12:00 read as 12/0
                return "~" + format(re_, ".12g") + ("" if im_ == 0 else format(im_, "+.12g") + "i")
            return str(sympy.cancel(sympy.expand(e)))
        return "sym:" + str(e)

    def equation_key(e: Any) -> str:
        """One key per equation up to rearrangement and scaling: 2x+4y-3=0 and y=-x/2+3/4 both
        key as the primitive numerator of lhs - rhs with a positive leading sign."""
        num, _ = sympy.fraction(sympy.together(sympy.expand(e.lhs - e.rhs)))
        num = sympy.expand(num)
        if num == 0:
            return "eq:true"
        _, prim = num.as_content_primitive()
        prim = sympy.expand(prim)
        if prim.could_extract_minus_sign():
            prim = sympy.expand(-prim)
        return "eq:" + str(prim)

    def key(s: str, mv: bool = False) -> str:
        e = parsed(s, mv)
        return "text:" + s if e is None else canon(e)

    def has_long_float(e: Any) -> bool:
        return isinstance(e, (sympy.Basic, sympy.MatrixBase)) and bool(e.atoms(sympy.Float))

    def eq(g: str, p: str, mv: bool = False) -> bool:
        ge, pe = parsed(g, mv), parsed(p, mv)
        if ge is None or pe is None:
            return False
        if not mv_verify(ge, pe, timeout_seconds=None):
            return False
        if closed_number(ge) and closed_number(pe) and not (has_long_float(ge) or has_long_float(pe)):
            return num_equal(ge, pe)  # Math-Verify rounds; exact numbers must match exactly
        return True

    def handle(req: dict[str, Any]) -> dict[str, Any]:
        op = req["op"]
        mv = bool(req.get("mv"))  # tests: Math-Verify's own parse, no quick path
        if op == "extract":
            return {"answer": extract(req["t"])}
        if op == "key":
            return {"key": key(req["a"], mv)}
        resp: dict[str, Any] = {"eq": eq(req["g"], req["p"], mv)}
        for field, arg, wanted in (("key", "p", True), ("gkey", "g", resp["eq"])):
            if req.get(field) and wanted:
                try:  # a failing key must not turn the verdict into "error"
                    resp[field] = key(req[arg], mv)
                except Exception:  # noqa: BLE001
                    pass
        return resp

    # Pay sympy's and the ANTLR parser's one-time warm-up (~0.5-1 s: caches, lazy imports)
    # before "ready", so it falls in warm_up() and not on the first graded answers.
    try:
        for g, p in (("x^2+1", "(x+1)^2-2x"), ("\\frac{\\sqrt{3}}{2}", "\\sin(\\frac{\\pi}{3})"),
                     ("(0,1]\\cup(2,\\infty)", "\\{1,2\\}"), ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "12_3"),
                     ("2x+4y-3=0", "y=-\\frac{1}{2}x+\\frac{3}{4}")):
            eq(g, p, mv=True)
            key(g, mv=True)
            key(p, mv=True)
            eq(g, p)
        extract("Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.")
        extract("so the answer is 12,000 dollars or \\(x \\geq 5\\)")
    except Exception:  # noqa: BLE001 - a warm-up failure only costs time later
        pass
    parsed.cache_clear()

    out = sys.stdout.buffer
    out.write(b"ready\n")
    out.flush()
    for line in sys.stdin.buffer:
        try:
            req = json.loads(line)
            try:
                try:
                    _limit_cpu(float(req.get("cpu") or DEFAULT_CPU_S))
                    resp = handle(req)
                finally:
                    signal.setitimer(signal.ITIMER_PROF, 0)
            except CpuTimeout:
                resp = {"timeout": True}
        except BaseException as exc:  # noqa: BLE001 - MemoryError, RecursionError, sympy bugs
            if isinstance(exc, KeyboardInterrupt):
                raise
            resp = {"eq": False, "key": ERROR_KEY, "answer": None, "error": type(exc).__name__}
        out.write(json.dumps(resp).encode() + b"\n")
        out.flush()


if __name__ == "__main__":  # pragma: no cover
    main()
