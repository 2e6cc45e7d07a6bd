"""Progress lines of long stages (obe.core.progress): cadence, rate and ETA, terminal vs log file."""

from __future__ import annotations

import io

from obe.core.progress import Progress, progress_line


def test_progress_line_rate_and_eta():
    line = progress_line("train grpo__s0", 12, 400, elapsed=49.2, reward=0.4125, distinct=5.0)
    assert line.startswith("train grpo__s0: 12/400 steps (3%), 4.10 s/step, ETA 26m31s")
    assert line.endswith("| reward 0.412, distinct 5")
    # a resumed run's rate counts only the steps this process ran
    assert "2.00 s/step" in progress_line("t", 110, 200, elapsed=20.0, start=100)
    assert "ETA" not in progress_line("t", 100, 200, elapsed=0.0, start=100)
    assert "250.0 samples/s" in progress_line("sample", 500, 1000, elapsed=2.0, unit="sample")


def test_plain_lines_at_a_steady_cadence_in_a_log_file():
    now = [0.0]
    log = io.StringIO()  # not a terminal: plain lines
    p = Progress("train", 10, every_s=30.0, stream=log, clock=lambda: now[0])
    for step in range(1, 11):
        now[0] += 10.0
        p.update(step, reward=0.5)
    p.close()
    lines = log.getvalue().splitlines()
    # the first update, then one every 30 s (steps 4 and 7), and the last
    assert [l.split(":")[1].split("/")[0].strip() for l in lines] == ["1", "4", "7", "10"]
    assert all("reward 0.5" in l for l in lines) and "ETA 0s" in lines[-1]


def test_a_terminal_gets_a_bar():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    p = Progress("train", 5, stream=out)
    for step in range(1, 6):
        p.update(step, reward=1.0)
    p.close()
    assert "5/5" in out.getvalue() and "reward=1" in out.getvalue()
