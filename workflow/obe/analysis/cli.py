"""Analysis stage: evaluation and training outputs -> numbers, tables and figures.

    python -m obe.analysis \\
        --eval base:0:synthetic=results/X/eval/base/step0/synthetic \\
        --eval grpo__s0:100:synthetic=results/X/eval/grpo__s0/step100/synthetic ... \\
        --train grpo__s0=results/X/train/grpo__s0 ... \\
        --base-train results/X/graded/base/step0/train.jsonl \\
        --out-dir results/X/analysis [--wandb-dir DIR --experiment NAME]

Inputs (Snakemake owns the paths; every flag is repeatable where it makes sense) are described
in ``obe.analysis.inputs``. Outputs in ``--out-dir``: ``analysis.json`` (every number, the list
of figures and tables with captions and reading guides, the paper-vs-us claims, notes), PNG
figures, and each table as ``.tsv`` and ``.md``. ``python -m obe.report`` turns the folder into
one HTML file. The definitions of every number are written into ``analysis.json`` under
``definitions`` and explained in the docstrings of ``obe.analysis.statistics`` (seeds and
intervals), ``obe.analysis.sampling_curve`` (RL as sampling), ``obe.analysis.training``
(Tables 1-2), ``obe.analysis.evaluations`` (test sets) and ``obe.analysis.claims``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import numpy as np

from obe.analysis.claims import evaluate_claims
from obe.analysis.evaluations import test_analysis
from obe.analysis.figures import build_figures
from obe.analysis.inputs import (load_base_train, load_eval_dir, load_train_runs, methods_and_seeds, parse_eval_arg,
                                 parse_train_arg)
from obe.analysis.options import METHOD_ORDER, PAPER_KS, Options, color_map, method_label
from obe.analysis.sampling_curve import rollouts_by_run, sampling_analysis
from obe.analysis.tables import build_tables
from obe.analysis.training import TRAINING_KEYS, training_curves, training_tables


def run_analysis(evals: Mapping[tuple[str, int, str], str | Path], trains: Mapping[str, str | Path],
                 base_train: Optional[str | Path], out_dir: str | Path, opts: Options = Options(),
                 tracker: Any = None) -> dict[str, Any]:
    """Read every input, compute all numbers, write tables, figures and ``analysis.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []  # what was missing or odd, in the order it was found

    # inputs
    ev_data = {key: load_eval_dir(p) for key, p in evals.items()}
    train_runs = load_train_runs(trains)
    base_rows = load_base_train(base_train, notes)
    methods, seeds, missing = methods_and_seeds(evals, train_runs, opts, notes)

    # numbers: test sets, RL as sampling, training tables and curves
    test = test_analysis(ev_data, opts, notes)
    rl, sizes = rollouts_by_run(train_runs, notes)
    sampling = sampling_analysis(rl, sizes, base_rows, opts)
    notes.extend(sampling.pop("notes"))
    tables = training_tables(train_runs, opts)
    curves = training_curves(train_runs, TRAINING_KEYS, opts)
    analysis: dict[str, Any] = {
        "meta": {"methods": methods, "seeds": seeds, "missing_methods": missing,
                 "colors": color_map(methods), "labels": {m: method_label(m) for m in ["base", *methods]},
                 "options": {**asdict(opts), "ks": list(opts.ks), "methods": list(opts.methods)},
                 "last_frac": opts.last_frac, "n_boot": opts.n_boot, "boot_seed": opts.boot_seed, "level": opts.level,
                 "inputs": {"eval": {f"{r}:{s}:{d}": str(p) for (r, s, d), p in evals.items()},
                            "train": {r: str(p) for r, p in trains.items()},
                            "base_train": str(base_train) if base_train else None}},
        "definitions": definitions(opts),
        "test": test,
        "sampling": sampling,
        "training": {"tables": tables, "curves": curves},
        "notes": notes,
    }

    # verdicts, then what is written: tables, figures, analysis.json, the tracker
    analysis["claims"] = evaluate_claims(test, sampling, tables, opts)
    analysis["tables"] = build_tables(analysis, out)
    analysis["figures"] = build_figures(analysis, out)
    (out / "analysis.json").write_text(json.dumps(_jsonable(analysis), indent=1, allow_nan=False) + "\n")
    if tracker is not None:
        for f in analysis["figures"]:
            tracker.log_image(f"analysis/{Path(f['file']).stem}", str(out / f["file"]))
        for t in analysis["tables"]:
            tracker.log_table(f"analysis/{t['name']}", t["columns"], t["rows"])
        tracker.summary({f"claim/{i}": c["status"] for i, c in enumerate(analysis["claims"])})
    return analysis


def _jsonable(x: Any) -> Any:
    """Plain JSON: string keys, lists for tuples, Python numbers, None for nan and inf."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def definitions(opts: Options) -> dict[str, str]:
    """The definitions written into ``analysis.json`` (the report shows them beside the numbers)."""
    pct = f"{opts.last_frac * 100:.0f}%"
    return {
        "seeds": f"Mean over seeds; {opts.level * 100:.0f}% Student t-interval over seeds. Differences from GRPO "
                 "are paired by seed. Differences from the base model subtract its single value and add its sampling "
                 "standard error (re-drawing its n samples per question; pass@k, distinct answers and the "
                 "RL-as-sampling solved fraction) to the seeds' spread, with Welch-Satterthwaite degrees of freedom. "
                 "Test questions are held fixed. One seed: interval n/a. With 3 seeds or fewer no claim is called "
                 "significant (labelled 'only m seeds').",
        "sampling": "k = samples per training question: a question's rollouts in step order; each time it is drawn "
                    "its k grows by the group size n. At each k the questions with >= k rollouts are compared with "
                    "the base model on the same questions. Base: "
                    + ("exact expectation over random k-subsets of its samples (solved = unbiased pass@k; distinct = "
                       "sum of P(answer in subset); unsolved = ratio of expectations)." if opts.base_sampling == "expected"
                       else "its first k samples in sample_index order."),
        "table1": f"Token entropy from metrics.jsonl (entropy, entropy/correct, entropy/incorrect), mean over the "
                  f"last {pct} of logged steps of each run, then mean (std) over seeds.",
        "table2": f"Distinct answers (sentinel keys excluded) among the n samples of each group in the last {pct} of "
                  "steps, from rollouts.jsonl, group-weighted; solved = group with >= 1 correct sample.",
        "test": "Test pass@k: unbiased estimator from obe.evaluate; last evaluated step; large k = n.",
        "claims": "holds / does not hold: the 95% interval of the claimed difference excludes 0 on the paper's / "
                  "the other side; inconclusive: it contains 0, or one seed (no interval); not tested: inputs missing.",
    }


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m obe.analysis", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eval", action="append", default=[], type=parse_eval_arg, metavar="RUN:STEP:DATASET=DIR",
                    help="an obe.evaluate output folder (summary.json, per_question.jsonl); repeatable")
    ap.add_argument("--train", action="append", default=[], type=parse_train_arg, metavar="RUN=DIR",
                    help="an obe.train run folder (metrics.jsonl, rollouts.jsonl, config.json); repeatable")
    ap.add_argument("--base-train", help="graded base-model samples on the training set (obe.grade JSONL)")
    ap.add_argument("--out-dir", required=True, help="folder for analysis.json, tables (TSV, MD) and figures (PNG)")
    ap.add_argument("--methods", default=",".join(METHOD_ORDER), help="expected methods, in display order")
    ap.add_argument("--ks", default=",".join(map(str, PAPER_KS)), help="k values of the headline tables")
    ap.add_argument("--bootstrap", type=int, default=10000,
                    help="unused since intervals are t-intervals; accepted so old command lines run")
    ap.add_argument("--bootstrap-seed", type=int, default=0, help="unused (see --bootstrap)")
    ap.add_argument("--level", type=float, default=0.95, help="interval level")
    ap.add_argument("--last-frac", type=float, default=0.2, help="Tables 1-2: fraction of final training steps averaged")
    ap.add_argument("--base-sampling", choices=["expected", "first"], default="expected",
                    help="base curve of the RL-as-sampling figure: expectation over random k-subsets or first k")
    ap.add_argument("--dpi", type=int, default=120, help="resolution of the PNG figures")
    ap.add_argument("--experiment", default="default", help="W&B group")
    ap.add_argument("--wandb-dir", default=None, help="W&B directory (default: --out-dir)")
    return ap


def options_from_args(args: argparse.Namespace) -> Options:
    return Options(n_boot=args.bootstrap, boot_seed=args.bootstrap_seed, level=args.level,
                   last_frac=args.last_frac, base_sampling=args.base_sampling,
                   ks=tuple(int(k) for k in args.ks.split(",") if k.strip()),
                   methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()), dpi=args.dpi)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.eval and not args.train:
        print("obe.analysis: nothing to analyse (give --eval and/or --train)", file=sys.stderr)
        return 2
    evals = dict(args.eval)
    trains = dict(args.train)
    try:
        opts = options_from_args(args)
    except ValueError as exc:
        print(f"obe.analysis: {exc}", file=sys.stderr)
        return 2

    # tracking: one W&B run, or a tracker that does nothing when W&B is disabled
    from obe.core.tracking import resolve_mode, resumable_run_id, start_run

    # the report stage adds report.html and this folder, as an artifact, to the same run
    run_id = resumable_run_id(args.out_dir, resume=False) if args.experiment and resolve_mode() != "disabled" else None
    tracker = start_run(stage="analysis", name="analysis", config={**asdict(opts), "inputs": len(evals) + len(trains)},
                        experiment=args.experiment, wandb_dir=args.wandb_dir or args.out_dir, run_id=run_id)

    # the analysis
    try:
        a = run_analysis(evals, trains, args.base_train, args.out_dir, opts, tracker)
    except (ValueError, FileNotFoundError) as exc:
        print(f"obe.analysis: {exc}", file=sys.stderr)
        tracker.finish()
        return 2
    tracker.finish()

    # what the DAG log shows
    for c in a["claims"]:
        print(f"[{c['status']:>13}] {c['claim']}: {c['evidence']}")
    for n in a["notes"]:
        print(f"note: {n}")
    print(f"wrote {args.out_dir}/analysis.json, {len(a['figures'])} figures, {len(a['tables'])} tables")
    return 0
