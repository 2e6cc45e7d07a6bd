"""Weights & Biases tracking that never fails a stage.

Every stage that computes something calls ``start_run`` once and gets a ``Tracker``;
the loop never asks "is W&B on?" (a do-nothing ``NullTracker`` stands in when it is off).

Naming (stable and parseable, so dashboards group and filter; docs/wandb.md shows the panels):
``group`` = ``{experiment}/{method}`` for a run of one method (training and its evaluations), so
that W&B's default grouping (by group) averages a method's seeds and nothing else, and
``{experiment}`` for the other stages; ``job_type`` = stage; ``name`` = ``{method}__s{seed}``.
The run config is the stage's own, plus ``experiment``; a method without an exploration term
(GRPO) records ``coef: null``, since its coefficient does nothing and a filter on it would drop
the baseline (:func:`wandb_config`).

Mode comes from the environment only, never from rule params, so toggling logging
reruns nothing:
- ``WANDB_MODE=disabled`` -> ``NullTracker``;
- ``WANDB_MODE=online`` / ``offline`` -> that mode;
- unset -> ``online`` when an API key is configured (``WANDB_API_KEY`` or a netrc entry),
  else ``offline``: runs are written under the results folder. Every offline run says so in one
  line of its job's log, with its folder and the exact ``wandb sync`` command that uploads it.
Project, entity and tags: ``WANDB_PROJECT``, ``WANDB_ENTITY`` and ``WANDB_TAGS`` (comma-separated,
added to a stage's own tags); the rules export config.yaml's ``wandb`` keys into them unless the
environment already sets them (the environment wins). An online run first checks, once per
process and within ``OBE_WANDB_CONNECT_TIMEOUT`` seconds (3), that the server's port answers: on
a compute node without internet the job then says so in one line and writes the run offline
at once, instead of waiting a minute for ``wandb.init``. If ``wandb`` fails to start anyway
(bad key, missing package) the stage goes on: first retried offline, then with the
``NullTracker``, with a warning on stderr.
Results files stay the source of truth; W&B mirrors them with the same keys. The API key
is read by wandb itself from the environment and never passes through this module.

Resuming (training): a stage that resumes from a checkpoint passes ``run_id`` (kept in its
output folder by ``resumable_run_id``, random, so it carries nothing from the environment)
and W&B continues that run (``resume="allow"``). Online, the server reports where the run
stopped and rows below that step, which the resumed stage re-logs, are skipped (they are
already there, with the same values). Offline, each start writes its own
``offline-run-*-<id>`` folder. ``wandb sync`` does not merge such folders: each one's history
is uploaded from its first row over what the run held (wandb/wandb#3841, #5865; wandb-core's
sync, in its 0.28 source, builds a synced folder's settings without a resume mode, so the
branch that would start past the server's last row never runs). So the resumed stage re-logs
every kept row (``relog_rows``) first, which makes its folder the whole history, and no other
stage writes into a training run's id (evaluations have runs of their own, ``obe.log_evals``).
A killed process loses what wandb had not yet flushed to its ``.wandb`` file (up to ~15 s),
and a resumable stage never shares a parent's wandb-core (``leave_inherited_service``).
"""

from __future__ import annotations

import netrc
import os
import re
import secrets
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

RUN_ID_FILE = "wandb_run_id"
# What W&B accepts in a run id (and all ``new_run_id`` makes): no path or URL characters.
_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class NullTracker:
    """Accepts every call and does nothing."""

    mode = "disabled"

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        pass

    def log_table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], step: int | None = None) -> None:
        pass

    def log_image(self, name: str, path: str) -> None:
        pass

    def log_artifact(self, name: str, kind: str, paths: Sequence[str]) -> None:
        pass

    def define_metric(self, pattern: str, step_metric: str) -> None:
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
        try:  # > 0 only for a run resumed online: the server's last step + 1
            self._first_step = int(getattr(run, "starting_step", 0) or 0)
        except Exception:  # noqa: BLE001
            self._first_step = 0

    def _guard(self, what: str, fn, *args, **kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - logging must never stop training
            print(f"obe.core.tracking: W&B {what} failed ({exc!r}); continuing", file=sys.stderr)

    @property
    def first_step(self) -> int:
        """The first W&B step this run still accepts (> 0 only for a run resumed online)."""
        return self._first_step

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        if step is not None and step < self._first_step:
            return  # already in the resumed run (W&B would drop it with a warning)
        self._guard("log", self._run.log, dict(metrics), step=step)

    def log_table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], step: int | None = None) -> None:
        if step is not None and step < self._first_step:
            return

        def _log() -> None:
            table = self._wandb.Table(columns=list(columns), data=[list(r) for r in rows])
            self._run.log({name: table}, **({} if step is None else {"step": step}))

        self._guard("table", _log)

    def log_image(self, name: str, path: str) -> None:
        self._guard("image", lambda: self._run.log({name: self._wandb.Image(path)}))

    def log_artifact(self, name: str, kind: str, paths: Sequence[str]) -> None:
        """Files and folders as one W&B artifact (e.g. the report and the analysis folder)."""
        def _log() -> None:
            art = self._wandb.Artifact(name, type=kind)
            for path in paths:
                (art.add_dir if os.path.isdir(path) else art.add_file)(str(path), name=os.path.basename(path))
            self._run.log_artifact(art)

        self._guard("artifact", _log)

    def define_metric(self, pattern: str, step_metric: str) -> None:
        """Plot metrics matching ``pattern`` against ``step_metric`` (e.g. evaluations on the training-step axis)."""
        def _define() -> None:
            self._run.define_metric(step_metric)
            self._run.define_metric(pattern, step_metric=step_metric)

        self._guard("define_metric", _define)

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


_REACHABLE: dict[str, bool] = {}


def server_reachable(base_url: str, timeout: float) -> bool:
    """Whether the W&B server's host:port accepts a TCP connection within ``timeout`` seconds
    (asked once per process and URL)."""
    import socket
    from urllib.parse import urlsplit

    if base_url not in _REACHABLE:
        parts = urlsplit(base_url if "//" in base_url else "https://" + base_url)
        port = parts.port or (80 if parts.scheme == "http" else 443)
        try:
            with socket.create_connection((parts.hostname or "", port), timeout=timeout):
                _REACHABLE[base_url] = True
        except OSError:
            _REACHABLE[base_url] = False
    return _REACHABLE[base_url]


def env_tags(environ: Mapping[str, str] | None = None) -> list[str]:
    """The tags in ``WANDB_TAGS`` (comma-separated; the rules export config.yaml's wandb.tags)."""
    env = os.environ if environ is None else environ
    return [t.strip() for t in env.get("WANDB_TAGS", "").split(",") if t.strip()]


def run_group(experiment: str, method: str | None = None) -> str:
    """The W&B group: ``{experiment}/{method}`` for a method's runs (W&B's default grouping then
    averages its seeds), else ``{experiment}``."""
    return f"{experiment}/{method}" if method else experiment


def has_coefficient(method: str) -> bool:
    """Whether ``method`` has an exploration term that ``coef`` scales: every method of the
    registry (obe.rl.methods) but the one whose bonus is ``grpo_bonus`` (b = 0, plain GRPO)."""
    from obe.rl.methods import METHODS

    return all(m.bonus != "grpo_bonus" for m in METHODS if m.name == method)


def method_of(config: Mapping[str, Any]) -> str | None:
    """The method a run's config names (the trainers' configs have ``method``), if any."""
    method = config.get("method")
    return method if isinstance(method, str) and method else None


def wandb_config(config: Mapping[str, Any], experiment: str, method: str | None = None) -> dict[str, Any]:
    """The run's W&B config: the stage's config plus ``experiment`` (and ``method``), with
    ``coef`` null for a method without a coefficient (it would be a default that does nothing)."""
    out = dict(config)
    out.setdefault("experiment", experiment)
    method = method or method_of(config)
    if method:
        out.setdefault("method", method)
        if not has_coefficient(method):
            out["coef"] = None
    return out


def run_name(method: str, seed: int, step: int | None = None) -> str:
    """``{method}__s{seed}``, plus ``__step{N}`` for evaluations of a checkpoint."""
    name = f"{method}__s{seed}"
    return name if step is None else f"{name}__step{step}"


def new_run_id() -> str:
    """A fresh random W&B run id: 16 lowercase hex digits, nothing taken from the environment."""
    return secrets.token_hex(8)


def resumable_run_id(folder: str | os.PathLike, *, resume: bool) -> str:
    """The W&B run id of the run whose outputs (and checkpoints) live in ``folder``.

    ``resume=True`` (going on from a checkpoint) reuses the id saved in ``folder/wandb_run_id``;
    a fresh start (first start, ``--on-config-change restart``, killed before the first
    checkpoint) or a missing or malformed file gets a new id, saved atomically.
    """
    path = Path(folder) / RUN_ID_FILE
    if resume:
        try:
            saved = path.read_text().strip()
        except OSError:
            saved = ""
        if _RUN_ID.fullmatch(saved):
            return saved
    run_id = new_run_id()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(run_id + "\n")
    os.replace(tmp, path)
    return run_id


def relog_rows(tracker: NullTracker | WandbTracker, path: str | os.PathLike) -> None:
    """Log again each JSON row (with its ``step``) of a metrics file, null values left out.

    For a resumed run: online, rows W&B already has are skipped (``WandbTracker.log``);
    offline, the resumed segment then holds the whole history up to the checkpoint.
    """
    if isinstance(tracker, NullTracker) or not os.path.exists(path):
        return
    from obe.core.records import read_json_lines

    try:
        rows = read_json_lines(path)
    except (OSError, ValueError) as exc:
        print(f"obe.core.tracking: cannot re-log {path} ({exc!r}); continuing", file=sys.stderr)
        return
    for row in rows:
        tracker.log({k: v for k, v in row.items() if v is not None}, step=row.get("step"))


def leave_inherited_service(environ: dict[str, str] | None = None) -> None:
    """Forget a wandb-core service inherited from a parent process (``WANDB_SERVICE``, which
    wandb sets in a process that used it, so children share its core).

    A resumable stage needs its own core, one that dies with it: a shared core keeps a killed
    stage's run id "in use", and the resumed stage could then not log to that run at all.
    """
    env = os.environ if environ is None else environ
    token = env.get("WANDB_SERVICE", "")  # "<version>-<pid that started the core>-unix|tcp-..."
    if token and token.split("-")[1:2] != [str(os.getpid())]:
        del env["WANDB_SERVICE"]


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
    run_id: str | None = None,
    method: str | None = None,
) -> NullTracker | WandbTracker:
    """Start a W&B run for one stage, or a ``NullTracker`` when W&B is off or unavailable.

    ``project``/``entity`` fall back to ``WANDB_PROJECT``/``WANDB_ENTITY`` and then to
    ``obe``/the account default. ``wandb_dir`` is where offline runs are written.
    ``run_id`` (see ``resumable_run_id``) continues the run with that id if it exists
    (``resume="allow"``); without it wandb makes a new id, as for every other stage.
    ``method`` (default: ``config["method"]``, as in the trainers' configs) puts the run in its
    method's group (:func:`run_group`) and sets its config's ``coef`` (:func:`wandb_config`).
    """
    if run_id is not None and not _RUN_ID.fullmatch(run_id):
        raise ValueError(f"W&B run id must be 1-64 letters, digits, '_' or '-', got {run_id!r}")
    mode = resolve_mode()
    if mode == "disabled":
        return NullTracker()
    try:
        import wandb
    except ImportError:
        print("obe.core.tracking: wandb is not installed; logging disabled", file=sys.stderr)
        return NullTracker()
    os.makedirs(wandb_dir, exist_ok=True)
    if os.environ.get("WANDB_MODE", None) == "":
        del os.environ["WANDB_MODE"]  # wandb rejects an empty mode; ours is passed explicitly
    method = method or method_of(config)
    kwargs = dict(
        project=project or os.environ.get("WANDB_PROJECT") or "obe",
        entity=entity or os.environ.get("WANDB_ENTITY") or None,
        group=run_group(experiment, method),
        job_type=stage,
        name=name,
        config=wandb_config(config, experiment, method),
        tags=list(dict.fromkeys([*env_tags(), *tags])),
        dir=wandb_dir,
        reinit="finish_previous",
    )
    if run_id is not None:
        kwargs.update(id=run_id, resume="allow")
        leave_inherited_service()
    if mode == "online":
        base_url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
        wait = float(os.environ.get("OBE_WANDB_CONNECT_TIMEOUT", "3"))
        if not server_reachable(base_url, wait):
            print(f"obe.core.tracking: W&B server {base_url} unreachable within {wait:g} s; writing this run offline",
                  file=sys.stderr, flush=True)
            mode = "offline"
    for attempt_mode in ([mode, "offline"] if mode == "online" else [mode]):
        try:
            # How long to wait for the server before falling back to offline.
            timeout = float(os.environ.get("OBE_WANDB_INIT_TIMEOUT", "60"))
            settings = wandb.Settings(init_timeout=timeout, silent=True)
            run = wandb.init(mode=attempt_mode, settings=settings, **kwargs)
        except Exception as exc:  # noqa: BLE001 - an unreachable server must not fail the stage
            print(f"obe.core.tracking: wandb.init({attempt_mode}) failed ({exc!r})", file=sys.stderr)
            continue
        try:
            print(run_location(run, name, attempt_mode), file=sys.stderr, flush=True)
        except Exception:  # noqa: BLE001 - a run that hides its folder or URL still logs
            pass
        return WandbTracker(run, wandb, attempt_mode)
    print("obe.core.tracking: continuing without W&B logging", file=sys.stderr)
    return NullTracker()


def sync_command(folder: str | os.PathLike) -> str:
    """The command that uploads one offline run folder."""
    import shlex

    return f"wandb sync {shlex.quote(str(folder))}"


def run_location(run: Any, name: str, mode: str) -> str:
    """One log line saying where a run went: its URL, or (offline) its folder and how to upload it."""
    if mode != "offline":
        return f"obe.core.tracking: W&B run {name} ({run.id}): {getattr(run, 'url', None) or mode}"
    folder = getattr(run, "sync_dir", None) or run.settings.sync_dir
    return (f"obe.core.tracking: W&B run {name} ({run.id}) is offline, in {folder}; "
            f"upload it with: {sync_command(folder)}")


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
