"""What the analysis is asked for (:class:`Options`) and how methods are named, ordered and coloured.

Method order, labels and colours come from the method registry (:data:`obe.rl.methods.METHODS`);
the base model is added here, in black. A method the registry does not know keeps its name and
gets one of :data:`EXTRA_COLORS`, by sorted name, so its colour is the same in every figure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from obe.rl.methods import METHODS

# order, labels and colours from the method registry (obe.rl.methods.METHODS), plus the base model
METHOD_ORDER = tuple(m.name for m in METHODS)
METHOD_LABELS = {"base": "Base", **{m.name: m.label for m in METHODS}}
METHOD_COLORS = {"base": "#000000", **{m.name: m.color for m in METHODS}}
EXTRA_COLORS = ("#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
PAPER_KS = (1, 4, 16, 32)


@dataclass(frozen=True)
class Options:
    n_boot: int = 10000  # unused by the intervals (t-intervals over seeds); kept for old callers
    boot_seed: int = 0  # idem
    level: float = 0.95
    last_frac: float = 0.2
    base_sampling: str = "expected"  # expected | first
    ks: tuple[int, ...] = PAPER_KS
    methods: tuple[str, ...] = METHOD_ORDER
    dpi: int = 120

    def __post_init__(self) -> None:
        if self.base_sampling not in ("expected", "first"):
            raise ValueError(f"base_sampling must be expected or first, got {self.base_sampling!r}")
        if not 0 < self.last_frac <= 1:
            raise ValueError(f"last_frac must be in (0, 1], got {self.last_frac}")
        if not 0 < self.level < 1:
            raise ValueError(f"level must be in (0, 1), got {self.level}")
        if self.n_boot < 1:
            raise ValueError(f"n_boot must be >= 1, got {self.n_boot}")


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def color_map(methods: Iterable[str]) -> dict[str, str]:
    """One fixed colour per method: the registry's methods and base are fixed; others by sorted name."""
    colors = dict(METHOD_COLORS)
    extra = sorted(m for m in set(methods) if m not in colors)
    for i, m in enumerate(extra):
        colors[m] = EXTRA_COLORS[i % len(EXTRA_COLORS)]
    return colors


def order_methods(methods: Iterable[str], preferred: Sequence[str] = METHOD_ORDER) -> list[str]:
    ms = set(methods) - {"base"}
    return [m for m in preferred if m in ms] + sorted(ms - set(preferred))
