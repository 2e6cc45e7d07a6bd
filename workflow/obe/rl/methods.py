"""The method registry: one row per exploration method, everything the pipeline knows about it.

The trainers' choices and bonus functions (:data:`obe.rl.bonuses.BONUSES`), the config schema's
method list (tied by tests/test_methods.py), the analysis' order, labels and colours and the
report's legend all derive from :data:`METHODS`. A new method is one bonus function in
:mod:`obe.rl.bonuses`, one row here, its keys in the schema and its test. Kept free of torch so the
analysis and report stages import it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    name: str
    bonus: str  # the name of its bonus function in obe.rl.bonuses (fn(keys_Bn, counts_Bn, cfg) -> [B, n])
    label: str  # in figures, tables and the report
    color: str  # one fixed colour in every figure ...
    color_name: str  # ... and its name in the report's reading guide
    uses_counts: bool  # reads the historical counts N(x, a)


METHODS: tuple[Method, ...] = (
    Method("grpo", "grpo_bonus", "GRPO", "#1f77b4", "blue", uses_counts=False),
    Method("ucb", "ucb_bonus", "UCB", "#ff7f0e", "orange", uses_counts=True),
    Method("ucb_mean", "ucb_mean_bonus", "UCB-Mean", "#2ca02c", "green", uses_counts=True),
    Method("ucb_con", "ucb_con_bonus", "UCB-Con", "#d62728", "red", uses_counts=True),
    Method("batch", "batch_bonus", "Batch", "#9467bd", "purple", uses_counts=False),
)
METHOD_NAMES: tuple[str, ...] = tuple(m.name for m in METHODS)
