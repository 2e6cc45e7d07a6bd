"""Small LaTeX string helpers shared by data loading and grading."""

from __future__ import annotations

import re

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` or ``\\fbox{...}`` in ``text``, braces balanced.

    Returns ``None`` when there is no complete box (e.g. an unclosed brace at the end of a
    truncated generation). Runs in linear time, so 100,000 nested braces are cheap.
    """
    starts = [m.end() for m in _BOX_RE.finditer(text)]
    for start in reversed(starts):
        depth = 1
        i = start
        n = len(text)
        while i < n:
            ch = text[i]
            if ch == "\\" and i + 1 < n and text[i + 1] in "{}":
                i += 2  # escaped brace \{ or \} does not change depth
                continue
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return text[start:i]
            i += 1
    return None
