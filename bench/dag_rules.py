"""Per-rule table of the benchmark files Snakemake wrote for a pipeline run.

    .venv/bin/python bench/dag_rules.py [RESULTS_DIR]     (default: results/embedded-default)

Every rule of the DAG declares ``benchmark:``, so Snakemake writes one TSV per job under
``RESULTS_DIR/benchmarks/<rule>/...`` (wall seconds ``s``, ``cpu_time``, ``max_rss`` in MB).
This prints, per rule: jobs, median and total wall seconds, median and total CPU seconds,
and the largest peak RSS. Prints; never asserts.
"""

from __future__ import annotations

import csv
import statistics
import sys
from pathlib import Path


def read_benchmarks(root: Path) -> dict[str, list[dict[str, float]]]:
    """rule -> one dict per job (the last line of its TSV: a rerun appends a line)."""
    rules: dict[str, list[dict[str, float]]] = {}
    for path in sorted(root.rglob("*.tsv")):
        rel = path.relative_to(root)
        rule = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        with path.open() as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if not rows:
            continue
        last = rows[-1]
        rules.setdefault(rule, []).append({k: float(last[k]) for k in ("s", "cpu_time", "max_rss")
                                           if last.get(k) not in (None, "", "NA")})
    return rules


def main(argv: list[str]) -> int:
    results = Path(argv[0] if argv else "results/embedded-default")
    root = results / "benchmarks"
    if not root.is_dir():
        print(f"no benchmark files under {root}: run the pipeline first", file=sys.stderr)
        return 1
    rules = read_benchmarks(root)
    print(f"# {results}: per-rule Snakemake benchmarks (seconds; RSS in MB)")
    print("| rule | jobs | wall median | wall total | CPU median | CPU total | max RSS |")
    print("|---|---|---|---|---|---|---|")
    order = sorted(rules, key=lambda r: -sum(j.get("s", 0.0) for j in rules[r]))
    for rule in order:
        jobs = rules[rule]
        wall = [j["s"] for j in jobs if "s" in j]
        cpu = [j["cpu_time"] for j in jobs if "cpu_time" in j]
        rss = [j["max_rss"] for j in jobs if "max_rss" in j]
        med = (lambda xs: f"{statistics.median(xs):.1f}" if xs else "n/a")  # noqa: E731
        tot = (lambda xs: f"{sum(xs):.0f}" if xs else "n/a")  # noqa: E731
        peak = f"{max(rss):.0f}" if rss else "n/a"
        print(f"| {rule} | {len(jobs)} | {med(wall)} | {tot(wall)} | {med(cpu)} | {tot(cpu)} | {peak} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
