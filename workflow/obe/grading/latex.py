"""Small LaTeX string helpers shared by data loading and grading."""

from __future__ import annotations

import re

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
# What a grader reads as a box: also the spellings models produce without the backslash
# ("boxed {19}", "\\beginboxed{...}") and "□{610}".
_LOOSE_BOX_RE = re.compile(r"(?:boxed|fbox)\s*\{|□\s*\{")  # starts with a literal: a fast scan
# Braces that change depth; ``\{`` and ``\}`` are escaped (literal) braces and do not.
_BRACE_RE = re.compile(r"\\[{}]|[{}]")


def _last_box(text: str) -> tuple[int, int, int] | None:
    """``(start of \\boxed, start of its content, position of its closing brace)`` of the last
    complete ``\\boxed{...}``/``\\fbox{...}`` in ``text``, or ``None``. Linear time even on
    hostile input (100,000 nested braces, or 100,000 unclosed ``\\boxed{``): one pass matches
    every brace with a stack, then the last box whose brace closes wins."""
    starts = {m.end() - 1: (m.start(), m.end()) for m in _BOX_RE.finditer(text)}
    if not starts:
        return None
    stack: list[int] = []
    best: tuple[int, int, int] | None = None
    for m in _BRACE_RE.finditer(text):
        tok = m.group()
        if len(tok) == 2:
            continue  # escaped brace
        pos = m.start()
        if tok == "{":
            stack.append(pos)
        elif stack:
            box = starts.get(stack.pop())
            if box is not None and (best is None or box[0] > best[0]):
                best = (box[0], box[1], pos)
    return best


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` or ``\\fbox{...}`` in ``text``, braces balanced.

    Returns ``None`` when there is no complete box (e.g. an unclosed brace at the end of a
    truncated generation); an earlier complete box is then returned instead.
    """
    box = _last_box(text)
    return None if box is None else text[box[1] : box[2]]


def last_boxed_span(text: str) -> tuple[int, int] | None:
    """``[start, end)`` of the whole box :func:`last_boxed` reads (``\\boxed{``, the answer and
    the closing brace), for masking its tokens; ``None`` without a complete box."""
    box = _last_box(text)
    return None if box is None else (box[0], box[2] + 1)


def boxed_spans(text: str) -> list[tuple[int, int, str]]:
    """Every complete outermost box of ``text`` as ``(start, end, content)``, in text order.

    ``start`` is the position of ``\\boxed``, ``end`` the position after its closing brace;
    a box inside another box is part of the outer one's content. Besides ``\\boxed{}`` and
    ``\\fbox{}`` it reads the misspelled boxes of ``_LOOSE_BOX_RE`` (for grading). Linear
    time, as :func:`last_boxed` (one pass matches every brace with a stack).
    """
    if "box" not in text and "□" not in text:
        return []
    starts = {}
    for m in _LOOSE_BOX_RE.finditer(text):
        start = m.start()
        if start >= 1 and text[start - 1] == "\\":
            start -= 1
        elif start >= 6 and text.startswith("\\begin", start - 6):
            start -= 6
        elif start and (text[start - 1].isalpha() or text[start - 1] == "\\") and text[start] != "□":
            continue  # "unboxed{", "\\somethingboxed{": not a box
        starts[m.end() - 1] = start
    if not starts:
        return []
    stack: list[int] = []
    spans: list[tuple[int, int]] = []
    for m in _BRACE_RE.finditer(text):
        tok = m.group()
        if len(tok) == 2:
            continue  # escaped brace
        if tok == "{":
            stack.append(m.start())
        elif stack:
            open_pos = stack.pop()
            box_start = starts.get(open_pos)
            if box_start is not None:
                while spans and spans[-1][0] > box_start:
                    spans.pop()  # boxes nested in this one
                spans.append((box_start, m.start() + 1))
    return [(s, e, text[text.index("{", s) + 1 : e - 1]) for s, e in spans]
