"""Results generated, never typed: the README's results block and docs/results/ from a results folder.

    python -m obe.results results/embedded-default --readme README.md --out docs/results/
    python -m obe.results --check --readme README.md --out docs/results/     # what the tests run

Reads one experiment's results folder: ``analysis/analysis.json`` (claims, tables, figures),
``benchmarks/`` (one TSV per job, written by Snakemake) and ``logs/invocations.jsonl`` (one line
at the start and one at the exit of every ``snakemake`` invocation that ran jobs: time, command,
commit, machine, load average; written from the Snakefile's ``onstart`` handler by
:func:`record_invocation`). Writes into ``--out``:

- ``summary.json``: every number the texts below quote (the run's provenance, the claims, the
  analysis tables), the one source of both;
- ``README.md``: the run's summary with every analysis table and the figures;
- the figures the README shows, copied from ``analysis/``;

and replaces the README's text between ``<!-- results -->`` and ``<!-- /results -->`` by the
run's provenance line, the figures and the claims table. ``--check`` regenerates both texts from
the committed ``summary.json`` and fails on any difference, so a number edited by hand, or a
summary regenerated without its README, cannot go unnoticed.

Wall time is that of the invocations that ran this folder's jobs (end minus start, summed),
from their records; for a folder without records, the span of its benchmark files (first job's
start to last job's end). Jobs count the benchmark files (every rule but ``all`` writes one).
"""

from __future__ import annotations

import argparse
import atexit
import csv
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

BEGIN, END = "<!-- results -->", "<!-- /results -->"
INVOCATIONS = Path("logs") / "invocations.jsonl"
SHOWN_FIGURES = ("fig_test_passk_", "fig_training.png")  # the README's figures (analysis file name prefixes)


# -- recording an invocation (Snakefile handlers) --------------------------------------------


def _git(repo: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def machine() -> dict[str, Any]:
    """CPU model, CPUs this process may use, memory: what a figure's reader needs to compare."""
    info: dict[str, Any] = {"system": platform.system(), "cpus": len(os.sched_getaffinity(0))}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name"))
        kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:"))
        info["memory_gib"] = round(kib / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        info["cpu"] = platform.processor() or platform.machine()
    return info


def record_invocation(results: str | os.PathLike, repo: str | os.PathLike, argv: Sequence[str] | None = None,
                      at_exit: bool = True) -> None:
    """Append a ``start`` line to ``RESULTS/logs/invocations.jsonl`` (time, command, commit, number
    of uncommitted files, machine, load average) and, when this process exits, an ``exit`` line
    (time, load average). A killed invocation has no exit line."""
    argv = list(sys.argv if argv is None else argv)
    status = _git(Path(repo), "status", "--porcelain")
    _append(results, {"event": "start", "time": round(time.time(), 3), "loadavg": list(os.getloadavg()),
                      "command": shlex.join([Path(argv[0]).name, *argv[1:]]), "commit": _git(Path(repo), "rev-parse", "HEAD"),
                      "uncommitted_files": None if status is None else len(status.splitlines()), "machine": machine()})
    if at_exit:
        atexit.register(record_exit, results)


def record_exit(results: str | os.PathLike) -> None:
    _append(results, {"event": "exit", "time": round(time.time(), 3), "loadavg": list(os.getloadavg())})


def _append(results: str | os.PathLike, record: dict[str, Any]) -> None:
    path = Path(results) / INVOCATIONS
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


# -- reading a results folder -----------------------------------------------------------------


def job_times(results: Path) -> list[tuple[float, float, float]]:
    """(start, end, cpu seconds) of every job: end = its benchmark file's time, start = end - wall."""
    jobs = []
    for path in sorted((results / "benchmarks").rglob("*.tsv")):
        with path.open() as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if rows:
            end = path.stat().st_mtime
            cpu = rows[-1].get("cpu_time")
            jobs.append((end - float(rows[-1]["s"]), end, float(cpu) if cpu not in (None, "", "NA") else 0.0))
    return jobs


def invocations(results: Path) -> list[dict[str, Any]]:
    """The recorded invocations, in order: ``{"start": record, "end": record or None (killed)}``."""
    path = results / INVOCATIONS
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    runs: list[dict[str, Any]] = []
    for record in lines:
        if record["event"] == "start":
            runs.append({"start": record, "end": None})
        elif runs and runs[-1]["end"] is None:
            runs[-1]["end"] = record
    return runs


def provenance(results: Path) -> dict[str, Any]:
    """Date, command, commit, machine, load, wall time and jobs of the run that produced ``results``."""
    jobs = job_times(results)
    if not jobs:
        raise ValueError(f"{results}: no benchmark files under benchmarks/: run the pipeline first")
    ran = []  # invocations that ran some of the jobs; a killed one ran until its last job
    runs = invocations(results)
    for i, inv in enumerate(runs):
        t0 = inv["start"]["time"]
        before_next = runs[i + 1]["start"]["time"] if i + 1 < len(runs) else float("inf")
        ends = [e for _, e, _ in jobs if t0 <= e < before_next]
        if ends:
            ran.append((inv, t0, inv["end"]["time"] if inv["end"] else max(ends)))
    out: dict[str, Any] = {"jobs": len(jobs), "job_cpu_seconds": round(sum(c for _, _, c in jobs), 1)}
    if not ran:  # no records: the benchmark files' span
        start = min(s for s, _, _ in jobs)
        return {**out, "date": _utc(start), "wall_seconds": round(max(e for _, e, _ in jobs) - start, 1),
                "wall_from": "benchmark files", "command": None, "commit": None, "uncommitted_files": None,
                "machine": None, "loadavg_start": None, "loadavg_end": None, "invocations": 0}
    first, last = ran[0][0], ran[-1][0]
    return {**out, "date": _utc(ran[0][1]), "wall_seconds": round(sum(t1 - t0 for _, t0, t1 in ran), 1),
            "wall_from": "invocation records", "command": first["start"]["command"],
            "commit": first["start"]["commit"], "uncommitted_files": first["start"]["uncommitted_files"],
            "machine": first["start"]["machine"], "loadavg_start": first["start"]["loadavg"],
            "loadavg_end": last["end"]["loadavg"] if last["end"] else None, "invocations": len(ran)}


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))


def summarize(results: Path) -> dict[str, Any]:
    """Everything the results texts quote, from one experiment's results folder."""
    analysis = json.loads((results / "analysis" / "analysis.json").read_text())
    figures = [f for f in analysis["figures"] if f["file"].startswith(SHOWN_FIGURES)]
    return {
        "experiment": results.name,
        "run": provenance(results),
        "claims": [{"claim": c["claim"], "measure": c["measure"], "result": c["evidence"], "verdict": c["status"],
                    "why": c["why"]} for c in analysis["claims"]],
        "tables": [{k: t[k] for k in ("name", "title", "caption", "columns", "rows")} for t in analysis["tables"]],
        "figures": [{k: f[k] for k in ("file", "title", "caption")} for f in figures],
    }


# -- writing ---------------------------------------------------------------------------------


def _md_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    cell = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    return (["| " + " | ".join(map(cell, columns)) + " |", "|" + "---|" * len(columns)]
            + ["| " + " | ".join(map(cell, r)) + " |" for r in rows])


def run_line(summary: dict[str, Any]) -> str:
    """One line: what ran, when, at which commit, how long, on what, under which load."""
    r = summary["run"]
    what = f"`{r['command']}` (experiment `{summary['experiment']}`, {r['jobs']} jobs)" if r["command"] \
        else f"experiment `{summary['experiment']}` ({r['jobs']} jobs)"
    line = f"Run: {what} on {r['date']}"
    if r["commit"]:
        n = r["uncommitted_files"]
        dirty = f" (+{n} uncommitted file{'s' if n > 1 else ''})" if n else ""
        line += f" at commit `{r['commit'][:10]}`{dirty}"
    line += (f": {r['wall_seconds'] / 60:.1f} min wall ({r['wall_from']}), "
             f"{r['job_cpu_seconds'] / 60:.1f} min of job CPU time")
    m = r["machine"]
    if m:
        memory = f" ({m['memory_gib']:g} GiB)" if m.get("memory_gib") else ""
        line += f", on {m['cpus']} CPUs of {m.get('cpu')}{memory}"
    load = lambda xs: "/".join(f"{x:.2f}" for x in xs)  # noqa: E731
    if r["loadavg_start"]:
        end = f" and {load(r['loadavg_end'])} at the end" if r["loadavg_end"] else ""
        line += f", load average (1/5/15 min) {load(r['loadavg_start'])} at the start{end}"
    return line + "."


def readme_block(summary: dict[str, Any], figures_dir: str) -> str:
    """The README's results: the run line, the figures, the claims table (claim, result, verdict)."""
    lines = [run_line(summary), ""]
    for f in summary["figures"]:
        lines += [f"![{f['title']}]({figures_dir}/{f['file']})", ""]
    lines += _md_table(["claim", "our result", "verdict"], [(c["claim"], c["result"], c["verdict"]) for c in summary["claims"]])
    return "\n".join(lines)


def summary_markdown(summary: dict[str, Any]) -> str:
    """docs/results/README.md: the run line, every figure with its caption, every analysis table."""
    lines = [f"# Results of `{summary['experiment']}`", "",
             "Generated by `python -m obe.results` from the run's results folder; do not edit by hand.", "",
             run_line(summary), ""]
    for f in summary["figures"]:
        lines += [f"![{f['title']}]({f['file']})", "", f"*{f['title']}.* {f['caption']}", ""]
    lines += ["## Claims", ""]
    lines += _md_table(["claim", "measured as", "our result", "verdict", "why"],
                       [(c["claim"], c["measure"], c["result"], c["verdict"], c["why"]) for c in summary["claims"]])
    for t in summary["tables"]:
        if t["name"] != "claims":
            lines += ["", f"## {t['title']}", "", t["caption"], ""] + _md_table(t["columns"], t["rows"])
    return "\n".join(lines) + "\n"


def replace_block(text: str, block: str, where: str = "README") -> str:
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"{where}: needs exactly one {BEGIN} ... {END} pair")
    head, rest = text.split(BEGIN, 1)
    return head + BEGIN + "\n" + block + "\n" + END + rest.split(END, 1)[1]


def check_readme(readme_text: str, summary: dict[str, Any], figures_dir: str) -> list[str]:
    """Differences between the README's results block and the one ``summary`` gives (empty: none)."""
    want = replace_block(readme_text, readme_block(summary, figures_dir))
    if want == readme_text:
        return []
    have_lines, want_lines = readme_text.splitlines(), want.splitlines()
    return [f"README line {i + 1}: {h!r} is not {w!r}" for i, (h, w) in enumerate(zip(have_lines, want_lines)) if h != w][:5] \
        or ["README's results block has other lines than the summary gives"]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m obe.results", description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="?", type=Path, help="one experiment's results folder (RESULTS_DIR/EXPERIMENT)")
    ap.add_argument("--readme", type=Path, default=Path("README.md"), help="README with the results markers")
    ap.add_argument("--out", type=Path, default=Path("docs/results"), help="summary.json, README.md and figures")
    ap.add_argument("--check", action="store_true", help="compare the README and OUT/README.md with OUT/summary.json")
    args = ap.parse_args(argv)
    figures_dir = os.path.relpath(args.out.resolve(), args.readme.resolve().parent)
    try:
        if args.check:
            summary = json.loads((args.out / "summary.json").read_text())
            problems = check_readme(args.readme.read_text(), summary, figures_dir)
            if (args.out / "README.md").read_text() != summary_markdown(summary):
                problems.append(f"{args.out / 'README.md'} differs from what {args.out / 'summary.json'} gives")
            problems += [f"missing figure {args.out / f['file']}" for f in summary["figures"] if not (args.out / f["file"]).exists()]
            for p in problems:
                print(f"obe.results: {p}", file=sys.stderr)
            return 1 if problems else 0
        if args.results is None:
            ap.error("give a results folder (or --check)")
        summary = summarize(args.results)
        readme = replace_block(args.readme.read_text(), readme_block(summary, figures_dir), str(args.readme))
    except (OSError, ValueError, KeyError) as exc:
        print(f"obe.results: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for f in summary["figures"]:
        shutil.copyfile(args.results / "analysis" / f["file"], args.out / f["file"])
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    (args.out / "README.md").write_text(summary_markdown(summary))
    args.readme.write_text(readme)
    print(f"obe.results: wrote {args.out}/summary.json, README.md and {len(summary['figures'])} figure(s); "
          f"updated {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
