"""Progress of a long stage where people look first: its log file, or the terminal.

A multi-hour GPU job whose log holds one line at the start and one at the end cannot be told
apart from a hung one. :class:`Progress` writes ``done/total (pct) rate ETA`` plus a few
stage-specific fields (for training: reward, distinct answers) to stderr: as a tqdm bar when
stderr is a terminal, else as plain lines at a steady cadence (every ``every_s`` seconds, and
at the first and last update), which is what a Snakemake/Slurm log file wants.

Libraries draw bars of their own (transformers' "Loading weights" and "Writing model shards",
huggingface_hub's downloads, any other tqdm): in a log file each one is left as a line of
carriage-return redraws. The pipeline's jobs always write to log files, so the Snakefile turns
those bars off for every job it starts (:func:`quiet_library_bars`); run by hand on a terminal,
a stage keeps them.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import MutableMapping
from typing import Any, TextIO

# Read when the libraries are imported: huggingface_hub's switch (transformers follows it) and
# tqdm's own default for `disable`.
LIBRARY_BAR_SWITCHES = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1"}


def quiet_library_bars(environ: MutableMapping[str, str] | None = None) -> None:
    """Turn library progress bars off in ``environ`` (default: this process's, which the jobs it
    starts inherit), leaving any of the switches a user has set."""
    env = os.environ if environ is None else environ
    for key, value in LIBRARY_BAR_SWITCHES.items():
        env.setdefault(key, value)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def progress_line(name: str, done: int, total: int, elapsed: float, start: int = 0,
                  unit: str = "step", **fields: Any) -> str:
    """``name: 12/400 steps (3%), 4.1 s/step, ETA 26m28s | reward 0.41`` (rate over this process's
    own work: ``done - start`` units in ``elapsed`` seconds)."""
    ran = done - start
    parts = [f"{name}: {done}/{total} {unit}s ({100.0 * done / max(total, 1):.0f}%)"]
    if ran > 0 and elapsed > 0:
        per = elapsed / ran
        parts.append(f"{per:.2f} s/{unit}" if per >= 1 else f"{1 / per:.1f} {unit}s/s")
        parts.append(f"ETA {_duration(per * max(total - done, 0))}")
    shown = [f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items() if v is not None]
    return ", ".join(parts) + (" | " + ", ".join(shown) if shown else "")


class Progress:
    """Reports ``update(done, **fields)`` calls; ``start`` is where a resumed run began."""

    def __init__(self, name: str, total: int, start: int = 0, unit: str = "step", every_s: float = 30.0,
                 stream: TextIO | None = None, clock=time.monotonic):
        self.name, self.total, self.start, self.unit, self.every_s = name, total, start, unit, every_s
        self.stream = stream if stream is not None else sys.stderr
        self.clock, self.t0, self.last = clock, clock(), None
        self.bar = None
        if getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit=unit, desc=name, file=self.stream, dynamic_ncols=True)

    def update(self, done: int, **fields: Any) -> None:
        now = self.clock()
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            self.bar.set_postfix({k: v for k, v in fields.items() if v is not None}, refresh=False)
            return
        if self.last is None or done >= self.total or now - self.last >= self.every_s:
            self.last = now
            print(progress_line(self.name, done, self.total, now - self.t0, self.start, self.unit, **fields),
                  file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
