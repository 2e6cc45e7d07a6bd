"""Callbacks (obe.training.callbacks) through which tests reach a moment of a training run, in
any process that trains: name them in the config (``train.callbacks``) or on the trainer's
command line (``--callback 'tests/seams.py:HoldAfterStep={"method": "grpo", "step": 3}'``).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch


class HoldAfterStep:
    """A fresh (not resumed) run of ``method`` waits after ``step`` until a signal arrives (at most
    ``timeout_s``), so that a kill or a Slurm time limit lands at a known step however fast the
    machine is. The resumed run does not wait; with ``once`` (a file path) only the first run to
    get there waits, so a run killed before its first checkpoint restarts fresh without waiting."""

    def __init__(self, method: str, step: int, timeout_s: float = 600.0, once: str | None = None):
        self.method, self.step, self.timeout_s = method, int(step), float(timeout_s)
        self.once = Path(once) if once else None

    def on_step_end(self, ctx) -> None:
        if ctx.config.method != self.method or ctx.resumed or ctx.step != self.step:
            return
        if self.once is not None:
            if self.once.exists():
                return
            self.once.touch()
        end = time.monotonic() + self.timeout_s
        while ctx.signal is None and time.monotonic() < end:
            time.sleep(0.05)


class PoisonWeightsAfterStep:
    """After ``step``, one weight of the policy becomes NaN: the next step's forward pass is
    non-finite (a diverged run, on demand)."""

    def __init__(self, step: int):
        self.step = int(step)

    def on_step_end(self, ctx) -> None:
        if ctx.step == self.step:
            with torch.no_grad():
                next(p for p in ctx.model.parameters() if p.requires_grad).view(-1)[0] = float("nan")

