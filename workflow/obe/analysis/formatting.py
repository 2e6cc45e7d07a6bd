"""How numbers and seed statistics are written in tables, claims and the console: ``0.512 [0.498, 0.530]``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional


def fmt(v: Optional[float], digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def fmt_ci(st: Optional[Mapping[str, Any]], digits: int = 3, signed: bool = False) -> str:
    """``0.512 [0.498, 0.530]``; ``0.512 [n/a]`` without an interval; ``n/a`` without data."""
    if not st or st.get("mean") is None:
        return "n/a"
    f = (lambda v: f"{v:+.{digits}f}") if signed else (lambda v: f"{v:.{digits}f}")
    ci = "n/a" if st.get("lo") is None else f"{f(st['lo'])}, {f(st['hi'])}"
    return f"{f(st['mean'])} [{ci}]"


def fmt_mean_std(st: Optional[Mapping[str, Any]], digits: int = 3) -> str:
    if not st or st.get("mean") is None:
        return "n/a"
    return f"{st['mean']:.{digits}f} ({fmt(st.get('std'), digits)})"
