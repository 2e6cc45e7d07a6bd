"""The run folder of both trainers (``--out``): what a resume checks against the checkpoint
(:func:`config_mismatch`: options, the initial model's identity, the training questions), where
an outdated run is set aside (:data:`RUN_OUTPUTS`, ``superseded/``), and done.json
(:func:`finished_record`). Nothing here deletes a file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional, Sequence

from obe.core import checkpoint as ckpt
from obe.core.records import read_json_lines
from obe.training.config import TrainConfig
from obe.training.metrics import TIMING_KEYS

# Keys that may change between a run and its resume (they do not change the result).
RESUME_FREE = frozenset({"out", "threads", "experiment", "wandb_dir", "checkpoint_every", "keep_checkpoints",
                         "save_steps", "steps", "callbacks", "max_grading_error_frac", "device", "micro_batch", "gradient_checkpointing",
                         "log_completions_every", "on_config_change"})
# Paths of the inputs: a resume compares what they hold (model_identity, the data digest), not
# where they are, so a project copied or moved to another folder resumes.
INPUT_PATHS = frozenset({"model", "train_data"})
# Files that define an HF model folder (weights by suffix); reports or logs beside them do not.
MODEL_FILES = frozenset({"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                         "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt",
                         "tokenizer.model", "chat_template.jinja"})
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json")
# What a restart with another config sets aside (into OUT/superseded/<time>/) before starting over.
RUN_OUTPUTS = ("checkpoints", "snapshots", "final", "metrics.jsonl", "rollouts.jsonl", "config.json")


def model_identity(model: str) -> str:
    """The initial policy, wherever it lives: for a local folder, a sha256 over the files that define
    the model (config, tokenizer, weights: an 8B model is read once, ~16 GB); else the hub name."""
    path = Path(model)
    if not path.is_dir():
        return f"hub:{model}"
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.is_file() and (f.name in MODEL_FILES or f.name.endswith(WEIGHT_SUFFIXES)):
            h.update(f"{f.name}\0{ckpt.file_sha256(f)}\n".encode())
    return "sha256:" + h.hexdigest()


def config_mismatch(cfg: TrainConfig, state: dict[str, Any], data_digest: str, model_id: Optional[str] = None,
                    engine_settings: Optional[dict[str, Any]] = None) -> Optional[str]:
    """Why the checkpoint ``state`` cannot be resumed with ``cfg`` (None if it can).

    Compared: every option that changes the result (not RESUME_FREE), the engine's own settings
    (e.g. the TRL backend's vLLM and LoRA settings), the initial model's identity and the
    training questions. A key that the checkpoint's config lacks (an option added since) counts
    as its default. Checkpoints made before model identities were recorded compare the model's
    path instead."""
    old, new = state["config"], cfg.to_dict()
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not dataclasses.MISSING}
    ignored = RESUME_FREE | (INPUT_PATHS if "model_identity" in state else INPUT_PATHS - {"model"})
    diff = sorted(k for k in set(old) | set(new)
                  if k not in ignored and _as_saved(old.get(k, defaults.get(k))) != _as_saved(new.get(k)))
    if cfg.lr_schedule == "cosine" and old.get("steps") != cfg.steps:
        diff.append("steps")
    if diff:
        return f"was made with a different config ({', '.join(diff)})"
    if (state.get("engine_settings") or {}) != (engine_settings or {}):
        return "was made with other engine settings"
    if model_id is not None and state.get("model_identity", model_id) != model_id:
        return f"was made from another initial model than {cfg.model} (its config, tokenizer or weights differ)"
    if state.get("data_digest") != data_digest:
        return f"was trained on other questions than {cfg.train_data}"
    return None


def _as_saved(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def resume_point(cfg: TrainConfig, out: Path, data_digest: str, model_id: str, layout: ckpt.Layout = ckpt.OBE_LAYOUT,
                 engine_settings: Optional[dict[str, Any]] = None, say=None) -> Optional[Path]:
    """The checkpoint this run goes on from, or None for a fresh start. Nothing is deleted:

    * a checkpoint that fails verification (obe.core.checkpoint.verify names the file) is moved to
      ``checkpoints/corrupt/`` and the next older one is tried;
    * checkpoints past ``cfg.steps`` (the run was made shorter) go to ``superseded/`` with a
      copy of the logs;
    * a checkpoint made with another config is refused (SystemExit), or with
      ``--on-config-change restart`` the whole run (RUN_OUTPUTS) goes to ``superseded/`` and
      training starts over.

    Call it on one process only (it moves folders); ``say`` prints a line (stderr by default)."""
    ck_root = out / "checkpoints"
    say = say or (lambda msg: print(f"obe.train: {msg}", file=sys.stderr, flush=True))
    last = ckpt.newest_verified(ck_root, on_skip=say, layout=layout)
    if last is None:
        return None
    state = ckpt.read_state(last, layout)
    why = config_mismatch(cfg, state, data_digest, model_id, engine_settings)
    if why is not None:
        if cfg.on_config_change != "restart":
            raise SystemExit(f"{out}: checkpoint {last.name} {why}; use another --out, the same options, "
                             f"or --on-config-change restart (which sets this run aside in {out / 'superseded'})")
        aside = ckpt.supersede(out, f"checkpoint {last.name} {why}", move=[out / name for name in RUN_OUTPUTS])
        say(f"checkpoint {last.name} {why}; starting over (the previous run is kept in {aside})")
        return None
    beyond = [p for p in ckpt.list_checkpoints(ck_root, layout) if ckpt.read_state(p, layout)["step"] > cfg.steps]
    if beyond:
        aside = ckpt.supersede(out, f"the run was shortened to {cfg.steps} steps", move=beyond,
                               copy=[out / "metrics.jsonl", out / "rollouts.jsonl"])
        say(f"{', '.join(p.name for p in beyond)} lie past --steps {cfg.steps}; moved to {aside}")
        last = ckpt.newest_verified(ck_root, on_skip=say, layout=layout)
    return last


def done_record(out: str | Path, layout: ckpt.Layout = ckpt.OBE_LAYOUT) -> dict[str, Any]:
    """The done.json of a finished run in ``out``; raises SystemExit if it is not finished.

    ``snapshots`` lists the snapshots of the run's planned ``save_steps``; others left from an
    earlier plan (e.g. before ``steps`` grew) are listed as ``unplanned_snapshots``."""
    out = Path(out).resolve()
    cfg = read_run_config(out)
    last = next((p for p in reversed(ckpt.list_checkpoints(out / "checkpoints", layout))
                 if ckpt.verify(p, deep=False, layout=layout) is None), None)
    return finished_record(out, cfg, ckpt.read_state(last, layout)["step"] if last else 0)


def read_run_config(out: Path) -> dict[str, Any]:
    """The resolved config.json of the run in ``out`` (SystemExit naming the file if unreadable)."""
    try:
        return json.loads((out / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"{out}: run not started or its config.json is unreadable ({exc})") from None


def finished_record(out: Path, cfg: dict[str, Any], step: int) -> dict[str, Any]:
    """done.json of the run in ``out`` whose newest good checkpoint is at ``step`` (both backends);
    SystemExit if it is not finished."""
    if step != cfg["steps"] or not (out / "final" / "config.json").is_file():
        raise SystemExit(f"{out}: run not finished (checkpoint step {step} of {cfg['steps']})")
    rows = read_json_lines(out / "metrics.jsonl")
    planned = set(cfg.get("save_steps", []))
    snaps = sorted((out / "snapshots").glob("step_*"), key=lambda p: p.name)
    is_planned = lambda p: p.name.removeprefix("step_").isdigit() and int(p.name[5:]) in planned  # noqa: E731
    return {"steps": step, "method": cfg["method"], "seed": cfg["seed"], "final": str(out / "final"),
            "snapshots": [str(p) for p in snaps if is_planned(p)],
            "unplanned_snapshots": [str(p) for p in snaps if not is_planned(p)], "metrics_rows": len(rows),
            "last_metrics": {k: v for k, v in rows[-1].items() if k not in TIMING_KEYS} if rows else {}}


def data_digest(records: Sequence[Any]) -> str:
    """The training questions, wherever their file lives: a sha256 over the record ids in order."""
    return hashlib.sha256("\n".join(r.id for r in records).encode()).hexdigest()
