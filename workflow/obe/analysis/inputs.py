"""The analysis stage's inputs: run names, the ``--eval`` / ``--train`` arguments and the folders they name.

- ``--eval RUN:STEP:DATASET=DIR``: an ``obe.evaluate`` output folder (``summary.json`` and,
  optionally, ``per_question.jsonl``). RUN is ``base`` or ``{method}__s{seed}``.
- ``--train RUN=DIR``: an ``obe.train`` run folder (``metrics.jsonl``, ``rollouts.jsonl``,
  ``config.json``).
- ``--base-train FILE``: ``obe.grade`` rows of base-model samples on the *training* set.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

from obe.analysis.options import Options, method_label, order_methods
from obe.core.records import read_json_lines

RUN_RE = re.compile(r"^(?P<method>[A-Za-z0-9_]+?)__s(?P<seed>\d+)$")


def parse_run_name(run: str) -> tuple[str, Optional[int]]:
    """``base`` -> ("base", None); ``{method}__s{seed}`` -> (method, seed)."""
    if run == "base":
        return "base", None
    m = RUN_RE.match(run)
    if not m:
        raise ValueError(f"run name {run!r} is neither 'base' nor '{{method}}__s{{seed}}'")
    return m["method"], int(m["seed"])


def parse_eval_arg(spec: str) -> tuple[tuple[str, int, str], str]:
    """``RUN:STEP:DATASET=DIR`` -> ((run, step, dataset), dir); an argparse ``type``."""
    try:
        lhs, path = spec.split("=", 1)
        run, step, ds = lhs.split(":")
        parse_run_name(run)
        return (run, int(step), ds), path
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--eval expects RUN:STEP:DATASET=DIR, got {spec!r} ({exc})") from None


def parse_train_arg(spec: str) -> tuple[str, str]:
    """``RUN=DIR`` -> (run, dir); an argparse ``type``."""
    if "=" not in spec:
        raise argparse.ArgumentTypeError(f"--train expects RUN=DIR, got {spec!r}")
    run, path = spec.split("=", 1)
    try:
        parse_run_name(run)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return run, path


def load_eval_dir(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    summary_path = p / "summary.json" if p.is_dir() else p
    if not summary_path.exists():
        raise FileNotFoundError(f"{summary_path}: no summary.json (obe.evaluate output)")
    summary = json.loads(summary_path.read_text())
    pq = summary_path.parent / "per_question.jsonl"
    return {"summary": summary, "per_question": read_json_lines(pq) if pq.exists() else None, "path": str(p)}


def load_train_dir(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    out: dict[str, Any] = {"path": str(p), "metrics": [], "rollouts": None, "config": {}}
    if (p / "metrics.jsonl").exists():
        out["metrics"] = read_json_lines(p / "metrics.jsonl")
    if (p / "rollouts.jsonl").exists():
        out["rollouts"] = read_json_lines(p / "rollouts.jsonl")
    if (p / "config.json").exists():
        out["config"] = json.loads((p / "config.json").read_text())
    if not out["metrics"] and not out["rollouts"]:
        raise FileNotFoundError(f"{p}: neither metrics.jsonl nor rollouts.jsonl (obe.train output)")
    return out


def load_train_runs(trains: Mapping[str, str | Path]) -> dict[str, dict[int, dict[str, Any]]]:
    """Every ``--train`` folder, by method and seed."""
    runs: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for run, p in trains.items():
        method, seed = parse_run_name(run)
        if method == "base":
            raise ValueError("--train base=...: the base model has no training run")
        runs[method][seed] = load_train_dir(p)
    return runs


def load_base_train(base_train: Optional[str | Path], notes: list[str]) -> Optional[list[dict[str, Any]]]:
    """The graded base samples on the training set (None without ``--base-train``, with a note)."""
    rows = read_json_lines(base_train) if base_train else None
    if base_train and not rows:
        raise ValueError(f"{base_train}: no base train samples")
    if not base_train:
        notes.append("no --base-train: the RL-as-sampling figure has no base-model comparison")
    return rows


def methods_and_seeds(evals: Mapping[tuple[str, int, str], Any], train_runs: Mapping[str, Mapping[int, Any]],
                      opts: Options, notes: list[str]) -> tuple[list[str], dict[str, list[int]], list[str]]:
    """The methods given (in display order), each one's seeds, and the expected methods not given (noted)."""
    present = {parse_run_name(r)[0] for r, _, _ in evals} | set(train_runs)
    present.discard("base")
    missing = [m for m in opts.methods if m not in present]
    for m in missing:
        notes.append(f"method {method_label(m)} ({m}): no runs given; skipped")
    methods = order_methods(present, opts.methods)
    seeds = {m: sorted({parse_run_name(r)[1] for r, _, _ in evals if parse_run_name(r)[0] == m} | set(train_runs.get(m, {})))
             for m in methods}
    for m in methods:
        if len(seeds[m]) < 2:
            notes.append(f"{method_label(m)}: {len(seeds[m])} seed(s); intervals are n/a")
    return methods, seeds, missing
