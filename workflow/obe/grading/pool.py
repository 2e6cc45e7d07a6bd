"""The Math-Verify worker pool, seen from the grader: persistent subprocesses, time bounds, caches.

The sympy work runs in ``WORKERS`` persistent subprocesses (:mod:`obe.grading.worker`; default
``min(2, cpus)``, env ``OBE_GRADING_WORKERS``), started lazily or by :func:`warm_up`.
:func:`slow` sends one request to an idle worker and answers ``(response, cacheable)``.

A call is bounded by CPU time in the worker (``DEFAULT_TIMEOUT_S`` = 5 CPU seconds unless the
caller says otherwise), so a busy machine never changes a grade. Wall-clock time is only the
far-away last guard :func:`wall_guard`; its timeouts are "not cacheable", being the machine's
fault, not the input's. :class:`LRU` is the bounded cache the grader keeps worker answers in.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

DEFAULT_TIMEOUT_S = 5.0  # CPU seconds per worker call (see wall_guard for the wall clock)
WALL_GUARD_S = 60.0
WALL_GUARD_FACTOR = 20.0
CACHE_SIZE = 1 << 16
_now = time.monotonic  # deadlines (the wall guard) are on the monotonic clock


class LRU:
    """Small thread-safe bounded LRU mapping."""

    def __init__(self, size: int) -> None:
        self._d: OrderedDict[Any, Any] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, k: Any) -> Any:
        with self._lock:
            v = self._d.get(k)
            if v is not None:
                self._d.move_to_end(k)
            return v

    def put(self, k: Any, v: Any) -> None:
        with self._lock:
            self._d[k] = v
            self._d.move_to_end(k)
            if len(self._d) > self._size:
                self._d.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()


class _Timeout(Exception):
    pass


def wall_guard(cpu_s: float) -> float:
    """The wall-clock last resort for a call with a ``cpu_s`` CPU budget: far enough that no
    plausible machine load reaches it (a 5 s budget: 160 s), so grades depend on CPU time only."""
    return WALL_GUARD_S + WALL_GUARD_FACTOR * cpu_s


class Worker:
    """A persistent subprocess (:mod:`obe.grading.worker`) doing the sympy work.

    A call is bounded by CPU time in the worker (its ``timeout`` is sent as the budget; over
    it the worker answers "timeout", or is ended by ``RLIMIT_CPU``, read here as a timeout).
    Wall-clock time is only the far-away :func:`wall_guard`: past it the worker is killed and
    restarted and the timeout is not cached, being the machine's fault, not the input's.
    Calls are serialized with a lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid = os.getpid()
        self._buf = b""
        self._ready = False
        self.calls = 0  # requests sent, for tests of the fast path

    def _start(self) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
        pkg_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = pkg_root + os.pathsep + env.get("PYTHONPATH", "")
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from obe.grading.worker import main; main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
        )
        self._buf, self._ready, self._pid = b"", False, os.getpid()

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and self._pid == os.getpid():
            proc.kill()
            proc.wait()

    def _readline(self, deadline: float) -> bytes:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - _now()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise _Timeout
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise EOFError("grading worker died")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def ensure_started(self, timeout: float) -> bool:
        deadline = _now() + timeout
        if not self._lock.acquire(timeout=max(timeout, 0)):
            return False
        try:
            return self._wait_ready(deadline)
        except (_Timeout, EOFError, OSError):
            return False
        finally:
            self._lock.release()

    def _wait_ready(self, deadline: float) -> bool:
        if self._proc is None or self._pid != os.getpid() or self._proc.poll() is not None:
            self._start()
        if not self._ready:
            self._readline(deadline)  # the worker prints one line once its imports are done
            self._ready = True
        return True

    def request(self, req: dict[str, Any], timeout: float,
                deadline: float | None = None) -> tuple[dict[str, Any] | None, bool]:
        """(response, cacheable); response is None on timeout. ``timeout``: CPU seconds."""
        if deadline is None:
            deadline = _now() + wall_guard(timeout)
        if not self._lock.acquire(timeout=max(deadline - _now(), 0)):
            return None, False
        try:
            try:
                self._wait_ready(deadline)
            except _Timeout:
                return None, False  # still importing: not the input's fault, do not cache
            assert self._proc is not None and self._proc.stdin is not None
            self.calls += 1
            self._proc.stdin.write(json.dumps(dict(req, cpu=timeout)).encode() + b"\n")
            self._proc.stdin.flush()
            try:
                resp = json.loads(self._readline(deadline))
            except _Timeout:  # the wall-clock last resort: the machine's fault, not cached
                self.stop()
                self._start()  # warm up the replacement in the background
                return None, False
            except EOFError:  # ended by RLIMIT_CPU: over its CPU budget in C code
                self.stop()
                self._start()
                return None, True
            return (None, True) if resp.get("timeout") else (resp, True)
        except (OSError, ValueError):
            self.stop()
            raise
        finally:
            self._lock.release()


class Pool:
    """``WORKERS`` workers (default ``min(2, cpus)``, env ``OBE_GRADING_WORKERS``), started lazily.

    A call takes its preferred worker when idle (index 0, or the lane of a ``grade_many``
    thread, so one gold's parse stays in one worker's cache), else any idle one, else waits;
    the wait counts against the call's wall guard only. A worker still restarting after
    a timeout is passed over while another idle one is ready.
    """

    def __init__(self, n: int) -> None:
        self.workers = [Worker() for _ in range(max(1, n))]
        self._busy = [False] * len(self.workers)
        self._cond = threading.Condition()
        self._local = threading.local()

    @property
    def calls(self) -> int:
        return sum(w.calls for w in self.workers)

    def prefer(self, index: int) -> None:
        """Make this thread's calls go to worker ``index`` when it is idle."""
        self._local.prefer = index % len(self.workers)

    def _acquire(self, deadline: float) -> int | None:
        prefer = getattr(self._local, "prefer", 0)
        with self._cond:
            while True:
                idle = [i for i, b in enumerate(self._busy) if not b]
                # the preferred worker, unless it is (re)starting and another is ready
                ready = [i for i in idle if self.workers[i]._ready]
                idx = prefer if prefer in (ready or idle) else next(iter(ready or idle), None)
                if idx is not None:
                    self._busy[idx] = True
                    return idx
                left = deadline - _now()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def _release(self, idx: int) -> None:
        with self._cond:
            self._busy[idx] = False
            self._cond.notify()

    def request(self, req: dict[str, Any], timeout: float) -> tuple[dict[str, Any] | None, bool]:
        deadline = _now() + wall_guard(timeout)
        idx = self._acquire(deadline)
        if idx is None:
            return None, False  # every worker busy past the wall guard: not the input's fault
        try:
            return self.workers[idx].request(req, timeout, deadline)
        finally:
            self._release(idx)

    def ensure_started(self, timeout: float) -> bool:
        deadline = _now() + timeout
        for w in self.workers:  # spawn all first, so their imports overlap
            if w._lock.acquire(timeout=max(deadline - _now(), 0)):
                try:
                    if w._proc is None or w._pid != os.getpid() or w._proc.poll() is not None:
                        w._start()
                finally:
                    w._lock.release()
        return all([w.ensure_started(max(deadline - _now(), 0)) for w in self.workers])

    def stop(self) -> None:
        for w in self.workers:
            with w._lock:
                w.stop()


WORKERS = int(os.environ.get("OBE_GRADING_WORKERS") or min(2, os.cpu_count() or 1))
POOL = Pool(WORKERS)
atexit.register(POOL.stop)


def warm_up(timeout: float = 60.0) -> bool:
    """Start the workers and wait for their imports (~2 s), so the first graded call is not slow."""
    return POOL.ensure_started(timeout)


class WorkerError(RuntimeError):
    """The grading worker raised on a request (its exception's type in the message)."""


def slow(req: dict[str, Any], timeout: float) -> tuple[dict[str, Any] | None, bool]:
    """One request to the workers (callers look it up as ``pool.slow``, so tests can replace it
    to prove the fast path is taken)."""
    return POOL.request(req, timeout)
