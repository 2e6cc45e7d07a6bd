"""``python -m obe.engines.launch ARGS``: ``accelerate launch ARGS`` (its command line, unchanged)
whose exit status is the trainer's.

accelerate's launcher exits 1 whenever its processes do not all succeed, and torch's elastic agent
inside it raises on the SIGTERM a scheduler sends every process of a job. A training run stopped by
a signal checkpoints (every rank agrees on the step) and exits 143; through this launcher the job
exits 143 too, as ``obe.train`` does, so a log or ``sacct`` tells "stopped, resumable" from "failed".
"""

from __future__ import annotations

import subprocess
import sys


def exit_status(exc: BaseException) -> int | None:
    """The exit status a launcher failure stands for (None: not a stop or a rank's failure)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    if isinstance(exc, SignalException):  # the agent itself got the signal; its ranks checkpointed
        return 128 + int(exc.sigval)
    if isinstance(exc, ChildFailedError):  # a rank failed first: its status (143 after an agreed stop)
        _, failure = exc.get_first_failure()
        return failure.exitcode if failure.exitcode > 0 else 128 - failure.exitcode
    if isinstance(exc, subprocess.CalledProcessError):  # one process, started by accelerate directly
        return exc.returncode if exc.returncode > 0 else 128 - exc.returncode
    return None


def main() -> int:
    from accelerate.commands.launch import main as accelerate_launch

    try:
        accelerate_launch()  # reads sys.argv, as `accelerate launch` does
    except BaseException as exc:  # noqa: BLE001 - re-raised unless it is a stop or a rank's failure
        status = exit_status(exc)
        if status is None:
            raise
        print(f"obe.engines.launch: the training processes ended with status {status}", file=sys.stderr, flush=True)
        return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
