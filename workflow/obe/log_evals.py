"""A trained model's evaluations as a W&B run beside its training run, on the training-step axis.

    python -m obe.log_evals --train-dir R/train/ucb_con__s0 --out R/logged_evals/ucb_con__s0.json \\
        --eval 0:math500=R/eval/base/step0/math500/summary.json \\
        --eval 100:math500=R/eval/ucb_con__s0/step100/math500/summary.json ...

Evaluations run as parallel jobs, and W&B does not take one run from several processes at once,
so each trained model (method x seed) gets this one small job after all its evaluations. It logs
them as a run of their own, ``{method}__s{seed}__eval`` (job type ``eval``), in the training
run's group (``{experiment}/{method}``, so W&B's default grouping averages the seeds) with the
training run's config and its id (``train_run_id``): one row per evaluated checkpoint, the base
model as step 0, W&B's step being the training step, so that a panel of ``eval/<dataset>/pass@<k>``
has one line per method and the base level at the left.

Why not the training run itself: on a compute node without internet both would be written
offline, as two folders of one run id, and ``wandb sync`` does not merge those: the second
folder's rows are uploaded over the first one's, so the evaluations would erase the training
curves (obe.core.tracking). The run's id is a digest of its training run and rows, so the same
evaluations logged again (a rerun that changed nothing) land in the same run, and new ones in a
new run.

Keys: ``eval/<dataset>/pass@<k>`` for every k, ``maj@<k>``, ``distinct_answers``,
``answer_entropy``, ``mean_length``, ``frac_no_answer``, ``frac_truncated`` and ``mean_at_n``,
plus ``step``. ``--out`` records exactly the rows sent, which is also what the tests rebuild
from the offline runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Sequence

SCALARS = ("distinct_answers", "answer_entropy", "mean_length", "frac_no_answer", "frac_truncated", "mean_at_n")


def eval_row(step: int, dataset: str, summary: dict[str, Any]) -> dict[str, Any]:
    """The W&B row of one evaluation summary (obe.evaluate's summary.json)."""
    row: dict[str, Any] = {"step": step}
    prefix = f"eval/{dataset}/"
    for k, v in summary["pass_at_k"].items():
        row[f"{prefix}pass@{k}"] = v
    for k, v in summary.get("maj_at_k", {}).items():
        row[f"{prefix}maj@{k}"] = v
    for key in SCALARS:
        if summary.get(key) is not None:
            row[prefix + key] = summary[key]
    return row


def step_rows(evals: Sequence[tuple[int, str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per training step (every dataset's keys), in step order: W&B's steps only go up."""
    rows: dict[int, dict[str, Any]] = {}
    for step, dataset, summary in sorted(evals, key=lambda e: (e[0], e[1])):
        rows.setdefault(step, {}).update(eval_row(step, dataset, summary))
    return [rows[s] for s in sorted(rows)]


def eval_run_id(train_run_id: str | None, name: str, rows: Sequence[dict[str, Any]]) -> str:
    """``eval_`` and 16 hex digits of (training run, name, rows): the same evaluations, the same run."""
    text = json.dumps({"train_run_id": train_run_id, "name": name, "rows": list(rows)}, sort_keys=True)
    return "eval_" + hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_eval(spec: str) -> tuple[int, str, Path]:
    """``STEP:DATASET=PATH`` -> (step, dataset, path)."""
    try:
        head, path = spec.split("=", 1)
        step, dataset = head.split(":", 1)
        return int(step), dataset, Path(path)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--eval takes STEP:DATASET=PATH, got {spec!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    from obe.core.tracking import RUN_ID_FILE, run_group, run_name, start_run

    ap = argparse.ArgumentParser(prog="python -m obe.log_evals", description=__doc__.split("\n\n")[1])
    ap.add_argument("--train-dir", required=True, type=Path, help="the training run's folder (config.json, wandb_run_id)")
    ap.add_argument("--eval", action="append", type=parse_eval, default=[], help="STEP:DATASET=summary.json (repeat)")
    ap.add_argument("--out", required=True, type=Path, help="JSON record of the rows logged")
    ap.add_argument("--experiment", required=True, help="the experiment (W&B group: EXPERIMENT/METHOD)")
    ap.add_argument("--wandb-dir", required=True, help="where offline W&B runs are written")
    args = ap.parse_args(argv)

    cfg = json.loads((args.train_dir / "config.json").read_text())
    summaries = [(step, ds, json.loads(path.read_text())) for step, ds, path in args.eval]
    rows = step_rows(summaries)
    id_file = args.train_dir / RUN_ID_FILE
    train_run_id = id_file.read_text().strip() if id_file.exists() else None
    name = run_name(cfg["method"], cfg["seed"]) + "__eval"
    run_id = eval_run_id(train_run_id, name, rows)
    evaluation = {"datasets": sorted({ds for _, ds, _ in summaries}), "steps": [r["step"] for r in rows],
                  "n": {ds: s.get("n") for _, ds, s in sorted(summaries, key=lambda e: e[1])}}
    tracker = start_run(stage="eval", name=name, config={**cfg, "train_run_id": train_run_id, "evaluation": evaluation},
                        experiment=args.experiment, wandb_dir=args.wandb_dir, tags=[cfg["method"]], run_id=run_id)
    tracker.define_metric("eval/*", step_metric="step")
    for row in rows:
        tracker.log(row, step=row["step"])  # W&B's step is the training step (base model: 0)
    tracker.finish()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    record = {"run": name, "run_id": run_id, "group": run_group(args.experiment, cfg["method"]),
              "training_run": {"name": run_name(cfg["method"], cfg["seed"]), "run_id": train_run_id}, "rows": rows}
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(args.out)
    print(f"obe.log_evals: {len(rows)} evaluation rows of {run_name(cfg['method'], cfg['seed'])} "
          f"(training run {train_run_id or 'not logged'}) logged as W&B run {name} ({run_id}); wrote {args.out}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
