"""Evaluations into the trained model's W&B run, on the training-step axis.

    python -m obe.log_evals --train-dir R/train/ucb_con__s0 --out R/logged_evals/ucb_con__s0.json \\
        --eval 0:math500=R/eval/base/step0/math500/summary.json \\
        --eval 100:math500=R/eval/ucb_con__s0/step100/math500/summary.json ...

Evaluations run as parallel jobs, and W&B does not take one run from several processes at once,
so each trained model (method x seed) gets this one small job after all its evaluations: it
continues the training run (its id is in ``TRAIN_DIR/wandb_run_id``, so the run's config already
holds method, seed, coefficient and experiment, and its group is the experiment) and logs one row
per evaluated checkpoint and test set, with the base model as step 0, so that a panel of
``eval/<dataset>/pass@<k>`` against ``step`` has one line per run and the base level at the
left. Keys: ``eval/<dataset>/pass@<k>`` for every k, ``maj@<k>``, ``distinct_answers``,
``answer_entropy``, ``mean_length``, ``frac_no_answer`` and ``frac_truncated``, all plotted
against ``step`` (``define_metric``). ``--out`` records exactly the rows sent, which is also
what the tests rebuild from the offline runs.
"""

from __future__ import annotations

import argparse
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


def parse_eval(spec: str) -> tuple[int, str, Path]:
    """``STEP:DATASET=PATH`` -> (step, dataset, path)."""
    try:
        head, path = spec.split("=", 1)
        step, dataset = head.split(":", 1)
        return int(step), dataset, Path(path)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--eval takes STEP:DATASET=PATH, got {spec!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    from obe.core.tracking import RUN_ID_FILE, start_run

    ap = argparse.ArgumentParser(prog="python -m obe.log_evals", description=__doc__.split("\n\n")[1])
    ap.add_argument("--train-dir", required=True, type=Path, help="the training run's folder (config.json, wandb_run_id)")
    ap.add_argument("--eval", action="append", type=parse_eval, default=[], help="STEP:DATASET=summary.json (repeat)")
    ap.add_argument("--out", required=True, type=Path, help="JSON record of the rows logged")
    ap.add_argument("--experiment", required=True, help="W&B group")
    ap.add_argument("--wandb-dir", required=True, help="where offline W&B runs are written")
    args = ap.parse_args(argv)

    cfg = json.loads((args.train_dir / "config.json").read_text())
    rows = [eval_row(step, ds, json.loads(path.read_text())) for step, ds, path in sorted(args.eval)]
    id_file = args.train_dir / RUN_ID_FILE
    run_id = id_file.read_text().strip() if id_file.exists() else None
    name = f"{cfg['method']}__s{cfg['seed']}"
    tracker = start_run(stage="train", name=name, config=cfg, experiment=args.experiment, wandb_dir=args.wandb_dir,
                        tags=[cfg["method"]], run_id=run_id)
    tracker.define_metric("eval/*", step_metric="step")
    # W&B's own step counter must move past the training rows (steps 1..N), also when an offline
    # segment is synced into the run later; `step` (the training step) is the x axis.
    first = max(int(cfg["steps"]) + 1, getattr(tracker, "first_step", 0))
    for i, row in enumerate(rows):
        tracker.log(row, step=first + i)
    tracker.finish()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps({"run": name, "run_id": run_id, "rows": rows}, indent=1) + "\n")
    tmp.replace(args.out)
    print(f"obe.log_evals: {len(rows)} evaluation rows of {name} logged to W&B run {run_id or '(new)'}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
