"""Callbacks: code of the user's that a training run calls at fixed moments, named in the
config (``train.callbacks``, flag ``--callback``) so that a job started by Snakemake or Slurm
takes them too.

A spec is ``"TARGET"`` or ``"TARGET=JSON"`` (JSON: an object of keyword arguments), or in YAML
a mapping ``{target: TARGET, kwargs: {...}}``. TARGET is ``package.module:Name`` or
``path/to/file.py:Name`` (a relative path resolves from the working directory: the repository
root under Snakemake). Every process builds ``Name(**kwargs)`` once, before training.

A callback may define (each optional):

``on_step_end(ctx)``
    on every rank, after step ``ctx.step``'s rows are written and before its snapshot and
    checkpoint are saved. ``ctx`` (:class:`StepContext`) has ``step``, ``config``,
    ``resumed`` (this process started from a checkpoint), ``rank``, ``world_size``,
    ``model`` (the policy being trained) and ``signal`` (the signal this process has
    received so far, or None; read it again in a loop).

Callbacks are not part of the run's identity: a resume does not compare them, so one may be
added or dropped between a run and its resume. A callback that changes the model changes the
run's results without the run knowing it: use that only to test failure handling.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence


def canonical_spec(spec: Any) -> str:
    """``"TARGET"`` or ``"TARGET=JSON"`` (sorted keys) for a string or ``{target, kwargs}`` mapping;
    ValueError naming what is wrong."""
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"target", "kwargs"}
        if unknown or "target" not in spec:
            raise ValueError(f"callback {dict(spec)!r}: a mapping needs `target` (and optional `kwargs`), "
                             f"got keys {sorted(spec)}")
        target, kwargs = str(spec["target"]), dict(spec.get("kwargs") or {})
    elif isinstance(spec, str):
        target, _, raw = spec.partition("=")
        try:
            kwargs = json.loads(raw) if raw else {}
        except ValueError as exc:
            raise ValueError(f"callback {spec!r}: the keyword arguments after '=' are not JSON ({exc})") from None
        if not isinstance(kwargs, dict):
            raise ValueError(f"callback {spec!r}: the keyword arguments after '=' must be a JSON object")
    else:
        raise ValueError(f"callback {spec!r}: expected 'TARGET', 'TARGET=JSON' or {{target, kwargs}}")
    module, _, name = target.rpartition(":")
    if not module or not name.isidentifier():
        raise ValueError(f"callback {target!r}: expected package.module:Name or path/to/file.py:Name")
    return target if not kwargs else f"{target}={json.dumps(kwargs, sort_keys=True)}"


def load_callbacks(specs: Iterable[str]) -> list[Any]:
    """Build one object per (canonical) spec; ValueError naming the spec that cannot be built."""
    out = []
    for spec in specs:
        target, _, raw = canonical_spec(spec).partition("=")
        module_name, _, name = target.rpartition(":")
        try:
            module = _import(module_name)
            factory = getattr(module, name)
        except (ImportError, AttributeError, OSError) as exc:
            raise ValueError(f"callback {target!r} cannot be loaded: {exc}") from None
        out.append(factory(**(json.loads(raw) if raw else {})))
    return out


def _import(module_name: str):
    if module_name.endswith(".py"):
        path = Path(module_name).resolve()
        spec = importlib.util.spec_from_file_location(f"obe_callback_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"no Python file at {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(module_name)


@dataclass
class StepContext:
    """What a callback sees at the end of a step (see the module docstring)."""

    step: int
    config: Any
    resumed: bool
    rank: int
    world_size: int
    model: Any
    _signal: Callable[[], Optional[int]]

    @property
    def signal(self) -> Optional[int]:
        return self._signal()


def call_all(callbacks: Sequence[Any], method: str, ctx: StepContext) -> None:
    for cb in callbacks:
        fn = getattr(cb, method, None)
        if fn is not None:
            fn(ctx)
