"""Cheap string rewrites applied to every answer before it is compared or keyed (:func:`normalize`).

Linear time, no parsing: delimiters, spacing, degree and percent signs, units, thousands
separators and single-letter assignments are dropped, so that equal answers written
differently usually become the same string and the fast path or a cache answers them.
"""

from __future__ import annotations

import re

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


def is_equation(s: str) -> bool:
    """Whether ``s`` has a top-level equals sign (``7=11a+c``; not ``\\sum_{k=0}^n k``)."""
    return "=" in s and len(_equation_parts(s)) > 1


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
