"""Weights & Biases tracking that never fails a stage.

Every stage that computes something calls ``start_run`` once and gets a ``Tracker``;
the loop never asks "is W&B on?" (a do-nothing ``NullTracker`` stands in when it is off).

Naming (stable and parseable, so dashboards group and filter): ``group`` = experiment,
``job_type`` = stage, ``name`` = ``{method}__s{seed}`` (plus ``__step{N}`` for evals).

Mode comes from the environment only, never from rule params, so toggling logging
reruns nothing:
- ``WANDB_MODE=disabled`` -> ``NullTracker``;
- ``WANDB_MODE=online`` / ``offline`` -> that mode;
- unset -> ``online`` when an API key is configured (``WANDB_API_KEY`` or a netrc entry),
  else ``offline``: runs are written under the results folder and can be uploaded later
  with ``wandb sync <dir>/wandb/offline-run-*``.
If ``wandb`` fails to start (unreachable server, bad key, missing package) the stage goes
on: first retried offline, then with the ``NullTracker``, with a warning on stderr.
Results files stay the source of truth; W&B mirrors them with the same keys. The API key
is read by wandb itself from the environment and never passes through this module.
"""

from __future__ import annotations

import netrc
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any


class NullTracker:
    """Accepts every call and does nothing."""

    mode = "disabled"

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        pass

    def log_table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        pass

    def log_image(self, name: str, path: str) -> None:
        pass

    def summary(self, values: Mapping[str, Any]) -> None:
        pass

    def finish(self) -> None:
        pass


class WandbTracker:
    """Thin wrapper over a ``wandb`` run; every call is guarded so logging cannot kill a stage."""

    def __init__(self, run: Any, wandb_module: Any, mode: str) -> None:
        self._run = run
        self._wandb = wandb_module
        self.mode = mode

    def _guard(self, what: str, fn, *args, **kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - logging must never stop training
            print(f"obe.tracking: W&B {what} failed ({exc!r}); continuing", file=sys.stderr)

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        self._guard("log", self._run.log, dict(metrics), step=step)

    def log_table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        def _log() -> None:
            self._run.log({name: self._wandb.Table(columns=list(columns), data=[list(r) for r in rows])})

        self._guard("table", _log)

    def log_image(self, name: str, path: str) -> None:
        self._guard("image", lambda: self._run.log({name: self._wandb.Image(path)}))

    def summary(self, values: Mapping[str, Any]) -> None:
        self._guard("summary", self._run.summary.update, dict(values))

    def finish(self) -> None:
        self._guard("finish", self._run.finish)


def has_api_key() -> bool:
    """True when wandb could authenticate without asking: env var or a netrc entry."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("//")[-1].split("/")[0]
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_mode(environ: Mapping[str, str] | None = None, api_key: bool | None = None) -> str:
    """The W&B mode from the environment: disabled, offline or online (see module docstring)."""
    env = os.environ if environ is None else environ
    mode = env.get("WANDB_MODE", "").strip().lower()
    if mode in ("disabled", "offline", "online"):
        return mode
    if mode == "dryrun":
        return "offline"
    if mode:
        raise ValueError(f"WANDB_MODE={mode!r} is not one of disabled, offline, online")
    return "online" if (has_api_key() if api_key is None else api_key) else "offline"


def run_name(method: str, seed: int, step: int | None = None) -> str:
    """``{method}__s{seed}``, plus ``__step{N}`` for evaluations of a checkpoint."""
    name = f"{method}__s{seed}"
    return name if step is None else f"{name}__step{step}"


def start_run(
    *,
    stage: str,
    name: str,
    config: Mapping[str, Any],
    experiment: str,
    wandb_dir: str,
    project: str | None = None,
    entity: str | None = None,
    tags: Sequence[str] = (),
) -> NullTracker | WandbTracker:
    """Start a W&B run for one stage, or a ``NullTracker`` when W&B is off or unavailable.

    ``project``/``entity`` fall back to ``WANDB_PROJECT``/``WANDB_ENTITY`` and then to
    ``obe``/the account default. ``wandb_dir`` is where offline runs are written.
    """
    mode = resolve_mode()
    if mode == "disabled":
        return NullTracker()
    try:
        import wandb
    except ImportError:
        print("obe.tracking: wandb is not installed; logging disabled", file=sys.stderr)
        return NullTracker()
    os.makedirs(wandb_dir, exist_ok=True)
    if os.environ.get("WANDB_MODE", None) == "":
        del os.environ["WANDB_MODE"]  # wandb rejects an empty mode; ours is passed explicitly
    kwargs = dict(
        project=project or os.environ.get("WANDB_PROJECT") or "obe",
        entity=entity or os.environ.get("WANDB_ENTITY") or None,
        group=experiment,
        job_type=stage,
        name=name,
        config=dict(config),
        tags=list(tags),
        dir=wandb_dir,
        reinit="finish_previous",
    )
    for attempt_mode in ([mode, "offline"] if mode == "online" else [mode]):
        try:
            # How long to wait for the server before falling back to offline.
            timeout = float(os.environ.get("OBE_WANDB_INIT_TIMEOUT", "60"))
            settings = wandb.Settings(init_timeout=timeout, silent=True)
            run = wandb.init(mode=attempt_mode, settings=settings, **kwargs)
            return WandbTracker(run, wandb, attempt_mode)
        except Exception as exc:  # noqa: BLE001 - an unreachable server must not fail the stage
            print(f"obe.tracking: wandb.init({attempt_mode}) failed ({exc!r})", file=sys.stderr)
    print("obe.tracking: continuing without W&B logging", file=sys.stderr)
    return NullTracker()


def add_wandb_args(parser: Any) -> None:
    """The W&B flags every stage CLI shares (a stage logs a run only when --experiment is given)."""
    parser.add_argument("--experiment", default=None, help="W&B group (the experiment); no W&B run without it")
    parser.add_argument("--wandb-dir", default=None, help="where offline W&B runs are written (default: ./wandb)")
    parser.add_argument("--wandb-name", default=None, help="W&B run name (default: the stage's own)")


def log_stage_summary(args: Any, *, stage: str, name: str, config: Mapping[str, Any], summary: Mapping[str, Any]) -> None:
    """One W&B run holding a stage's resolved config and its summary numbers (no-op without --experiment)."""
    if not getattr(args, "experiment", None):
        return
    tracker = start_run(stage=stage, name=getattr(args, "wandb_name", None) or name, config=config,
                        experiment=args.experiment, wandb_dir=getattr(args, "wandb_dir", None) or "wandb")
    tracker.summary(summary)
    tracker.finish()
