"""Report stage: an ``obe.analysis`` folder (+ optional bandit simulation) -> one ``report.html``.

    python -m obe.report --analysis-dir results/X/analysis [--bandits-dir results/X/bandits] \\
        --out results/X/report.html

The HTML is self-contained: every PNG is embedded as base64, every table is inlined from the
TSV files listed in ``analysis.json``; no network, no external CSS. Sections: reading guide,
paper vs us (claims with verdicts), RL as a sampling process, test pass@k, Tables 1-2 and
training dynamics, the bandit simulation (``regret.png`` / ``regret.md`` of ``obe.bandits``
when given), definitions and notes. The report never recomputes a number: it only lays out
what ``obe.analysis`` wrote, so the HTML and ``analysis.json`` cannot disagree.
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import json
import re
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from obe.rl.methods import METHODS

SECTIONS = (
    ("guide", "How to read this report"),
    ("inputs", "Data and outputs: dropped rows, stale outputs"),
    ("claims", "Paper vs us"),
    ("sampling", "RL as a sampling process"),
    ("test", "Test pass@k"),
    ("tables", "Tables 1 and 2: entropy and answer diversity in training"),
    ("training", "Training dynamics"),
    ("bandits", "Bandit simulation"),
    ("definitions", "Definitions and notes"),
)

STATUS_CLASS = {"holds": "ok", "does not hold": "bad", "inconclusive": "unk", "not tested": "na"}

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1180px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
h3{margin-top:1.4em} nav a{margin-right:1em} .meta{color:#555;font-size:.92em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.88em} th,td{border:1px solid #ccc;padding:.3em .55em;
vertical-align:top;text-align:left} th{background:#f3f3f3} tr:nth-child(even) td{background:#fafafa}
figure{margin:1em 0 1.8em} figure img{max-width:100%;border:1px solid #eee} figcaption{font-size:.92em;color:#333}
.guide{background:#f6f8fb;border-left:4px solid #4a78b0;padding:.4em .8em;margin:.4em 0;font-size:.92em}
td.ok{background:#dff3df!important;font-weight:600} td.bad{background:#f8dcdc!important;font-weight:600}
td.unk{background:#fff3cd!important;font-weight:600} td.na{background:#eee!important;color:#666}
.note{color:#666;font-style:italic} code{background:#f2f2f2;padding:0 .2em}
"""

GUIDE = [
    "Every number is a mean over training seeds. Brackets give a 95% Student t-interval over seeds (n/a with one "
    "seed); a difference from the base model also carries the base model's own sampling error. With 3 seeds or "
    "fewer no claim is called significant.",
    "Differences between an exploration method and GRPO are paired by seed (same seed, same data order). An interval "
    "that excludes 0 means the seeds agree on the sign; one that contains 0 means we cannot tell.",
    "Colours are fixed per method in every figure (" + ", ".join(f"{m.label} {m.color_name}" for m in METHODS) + "); "
    "the base model is black.",
    "Start with 'Paper vs us': one row per claim of the paper, the number that tests it and the verdict (holds / does "
    "not hold / inconclusive / not tested). The sections below hold the figures and tables behind each verdict.",
]


def _esc(x: Any) -> str:
    return html.escape("n/a" if x is None else str(x))


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{_esc(path.name)}" src="data:image/png;base64,{data}">'


def read_tsv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows:
        return [], []
    return rows[0], rows[1:]


def html_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], status_col: Optional[int] = None) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in columns)
    body = []
    for r in rows:
        cells = []
        for i, v in enumerate(r):
            cls = f' class="{STATUS_CLASS.get(str(v), "")}"' if i == status_col else ""
            cells.append(f"<td{cls}>{_esc(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _inline_md(text: str) -> str:
    s = _esc(text)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    s = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", s)
    return s


def markdown_to_html(md: str) -> str:
    """Small Markdown subset (headings, pipe tables, bullet lists, paragraphs) for ``regret.md``."""
    out: list[str] = []
    lines = md.splitlines()
    i = 0
    para: list[str] = []

    def flush() -> None:
        if para:
            out.append("<p>" + _inline_md(" ".join(para)) + "</p>")
            para.clear()

    while i < len(lines):
        line = lines[i].rstrip()
        if not line.strip():
            flush()
            i += 1
        elif line.lstrip().startswith("|"):
            flush()
            block = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                block.append(lines[i].strip())
                i += 1
            cells = [[c.strip() for c in re.split(r"(?<!\\)\|", b.strip("|"))] for b in block]
            cells = [[c.replace("\\|", "|") for c in r] for r in cells
                     if not all(re.fullmatch(r":?-{2,}:?", c) for c in r if c)]
            if cells:
                out.append(html_table(cells[0], cells[1:]))
        elif re.match(r"#{1,6} ", line):
            flush()
            level = min(6, len(line) - len(line.lstrip("#")) + 2)
            out.append(f"<h{level}>{_inline_md(line.lstrip('#').strip())}</h{level}>")
            i += 1
        elif re.match(r"\s*[-*] ", line):
            flush()
            items = []
            while i < len(lines) and re.match(r"\s*[-*] ", lines[i]):
                items.append("<li>" + _inline_md(re.sub(r"^\s*[-*] ", "", lines[i])) + "</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
        else:
            para.append(line.strip())
            i += 1
    flush()
    return "\n".join(out)


def _section_of_figure(name: str) -> str:
    if name.startswith("fig_sampling"):
        return "sampling"
    if name.startswith(("fig_test", "fig_diff")):
        return "test"
    return "training"


def _section_of_table(name: str) -> str:
    if name == "claims":
        return "claims"
    if name == "sampling":
        return "sampling"
    if name.startswith(("test_", "diff_")):
        return "test"
    return "tables"


def parse_planned(items: Sequence[str]) -> set[tuple[str, int, str]]:
    """``RUN:STEP:DATASET`` arguments -> (run, step, dataset) triples."""
    triples = set()
    for item in items:
        run, step, dataset = item.split(":")
        triples.add((run, int(step), dataset))
    return triples


def stale_outputs(results_dir: str | Path, planned: set[tuple[str, int, str]]) -> list[str]:
    """Outputs under ``results_dir`` that the configuration no longer plans, relative to it:
    samples, graded samples and evaluations of a (run, step, dataset) outside ``planned``,
    training runs outside it and their snapshots of steps outside it (e.g. ``eval/grpo__s0/step4/x``
    after ``train.steps`` went from 4 to 6). They are left on disk (nothing computed is deleted)
    and named here so that nobody takes them for current results."""
    root = Path(results_dir)
    runs = {run for run, _, _ in planned}
    run_steps = {(run, step) for run, step, _ in planned}
    found: set[str] = set()
    for stage in ("samples", "graded", "eval"):
        for step_dir in sorted(root.glob(f"{stage}/*/step*")):
            m = re.fullmatch(r"step(\d+)", step_dir.name)
            if not m or not step_dir.is_dir():
                continue
            for item in step_dir.iterdir():
                dataset = item.name.split(".", 1)[0]  # samples/graded: DATASET.jsonl[.meta.json|.part]
                if (step_dir.parent.name, int(m.group(1)), dataset) not in planned:
                    found.add(f"{stage}/{step_dir.parent.name}/{step_dir.name}/{dataset}")
    for run_dir in sorted(p for p in root.glob("train/*") if p.is_dir()):
        if run_dir.name not in runs:
            found.add(f"train/{run_dir.name}")
            continue
        for snap in run_dir.glob("snapshots/step_*"):
            step = snap.name.removeprefix("step_")
            if step.isdigit() and (run_dir.name, int(step)) not in run_steps:
                found.add(f"train/{run_dir.name}/snapshots/{snap.name}")
    return sorted(found)


def inputs_section(manifests: dict[str, Path], stale: Optional[list[str]]) -> list[str]:
    """HTML of the "Data and outputs" section: rows each prepared dataset dropped (counts per
    reason from its manifest, and the first rows with file and line), then stale outputs."""
    from obe.data import dropped_by_kind

    out: list[str] = []
    if manifests:
        rows, details = [], []
        for name, path in manifests.items():
            if not path.is_file():
                rows.append([name, "n/a", "n/a", "n/a", "n/a", f"manifest missing: {path.name}"])
                continue
            m = json.loads(path.read_text(encoding="utf-8"))
            c = m["counts"]
            kinds = "; ".join(f"{k} x{n}" for k, n in dropped_by_kind(m).items()) or "none"
            rows.append([name, c["read"], c["excluded"], c["dropped"], c["written"], kinds])
            if m.get("dropped"):
                items = "".join(f"<li><code>{_esc(Path(d['file']).name)}</code> line {_esc(d['line'])}: "
                                f"{_esc(d['reason'])}</li>" for d in m["dropped"][:20])
                more = len(m["dropped"]) - 20
                details.append(f"<p>{_esc(name)}: dropped rows{' (first 20)' if more > 0 else ''}</p><ul>{items}</ul>"
                               + (f"<p class='note'>... and {more} more in {_esc(path.name)}</p>" if more > 0 else ""))
        out.append("<p>Rows of each prepared dataset (obe.data manifests). A dropped row is malformed, has no "
                   "problem or answer, or repeats an id; <code>data.strict: true</code> makes any of them an "
                   "error instead.</p>")
        out.append(html_table(["dataset", "read", "excluded", "dropped", "written", "dropped, by reason"], rows))
        out.extend(details)
    if stale is not None:
        out.append("<h3>Stale outputs</h3>")
        if stale:
            shown = "".join(f"<li><code>{_esc(s)}</code></li>" for s in stale[:200])
            out.append(f"<p><b>{len(stale)} output(s)</b> on disk belong to runs or steps that the configuration no "
                       "longer plans (e.g. after <code>train.steps</code> or <code>evaluation.steps</code> changed). "
                       "They are not part of this report; they are kept (nothing computed is deleted): remove them "
                       f"by hand if you do not need them.</p><ul>{shown}</ul>"
                       + (f"<p class='note'>... and {len(stale) - 200} more</p>" if len(stale) > 200 else ""))
        else:
            out.append("<p>None: every sample, grade, evaluation and training run on disk is planned by the "
                       "configuration.</p>")
    return out


def build_report(analysis_dir: str | Path, bandits_dir: str | Path | None = None,
                 title: str = "Outcome-based exploration: reproduction report",
                 manifests: Optional[dict[str, Path]] = None, stale: Optional[list[str]] = None) -> str:
    """The report as one HTML string (see module docstring). ``manifests`` (dataset name ->
    obe.data manifest) and ``stale`` (:func:`stale_outputs`) fill "Data and outputs"."""
    adir = Path(analysis_dir)
    apath = adir / "analysis.json"
    if not apath.exists():
        raise FileNotFoundError(f"{apath}: not found (run obe.analysis first)")
    a = json.loads(apath.read_text())
    parts: dict[str, list[str]] = {key: [] for key, _ in SECTIONS}
    missing: list[str] = []

    parts["guide"].append("<ul>" + "".join(f"<li>{_esc(g)}</li>" for g in GUIDE) + "</ul>")
    parts["inputs"].extend(inputs_section(manifests or {}, stale))
    figs_guide = [f"<li><b>{_esc(f['title'])}</b>: {_esc(f.get('guide', ''))}</li>" for f in a.get("figures", [])]
    if figs_guide:
        parts["guide"].append("<p>What to look for in each figure:</p><ul>" + "".join(figs_guide) + "</ul>")
    _add_figures(parts, missing, adir, a.get("figures", []))
    _add_tables(parts, missing, adir, a.get("tables", []))
    parts["bandits"].extend(bandits_section(bandits_dir))
    parts["definitions"].extend(definitions_section(a, missing))
    for key, _ in SECTIONS:
        if not parts[key]:
            parts[key].append("<p class='note'>No inputs for this section.</p>")

    head = _report_head(title, a.get("meta", {}), adir, manifests, stale)
    nav = "<nav>" + "".join(f"<a href='#{k}'>{_esc(t)}</a>" for k, t in SECTIONS) + "</nav>"
    body = "".join(f"<section id='{k}'><h2>{_esc(t)}</h2>{''.join(parts[k])}</section>" for k, t in SECTIONS)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_esc(title)}</title>"
            f"<style>{CSS}</style></head><body>{head}{nav}{body}</body></html>\n")


def _add_figures(parts: dict[str, list[str]], missing: list[str], adir: Path, figures: list[dict]) -> None:
    """Each figure of analysis.json, embedded in its section; absent files go to ``missing``."""
    for f in figures:
        path = adir / f["file"]
        if not path.exists():
            missing.append(f["file"])
            continue
        parts[_section_of_figure(f["file"])].append(
            f"<figure><h3>{_esc(f['title'])}</h3>{_img(path)}<figcaption>{_esc(f.get('caption', ''))}"
            f"<div class='guide'><b>How to read it.</b> {_esc(f.get('guide', ''))}</div></figcaption></figure>")


def _add_tables(parts: dict[str, list[str]], missing: list[str], adir: Path, tables: list[dict]) -> None:
    """Each table of analysis.json read from its TSV into its section (claims with verdict counts)."""
    for t in tables:
        sec = _section_of_table(t["name"])
        tsv = adir / t.get("tsv", f"{t['name']}.tsv")
        if not tsv.exists():
            missing.append(tsv.name)
            continue
        cols, rows = read_tsv(tsv)
        status_col = cols.index("verdict") if "verdict" in cols else None
        block = [f"<h3>{_esc(t['title'])}</h3>", f"<p>{_esc(t.get('caption', ''))}</p>",
                 html_table(cols, rows, status_col)]
        if t["name"] == "claims":
            counts = {s: sum(r[status_col] == s for r in rows) for s in STATUS_CLASS} if status_col is not None else {}
            block.insert(1, "<p class='meta'>" + ", ".join(f"{v} {k}" for k, v in counts.items() if v) + "</p>")
        parts[sec].extend(block)


def bandits_section(bandits_dir: str | Path | None) -> list[str]:
    """The bandit simulation's regret figure and table (obe.bandits), or a note why there is none."""
    if not bandits_dir:
        return ["<p class='note'>Not included (no --bandits-dir given).</p>"]
    bdir = Path(bandits_dir)
    png, md = bdir / "regret.png", bdir / "regret.md"
    out = ["<p>Simulation of the exploration bonuses in a multi-armed bandit (obe.bandits): "
           "cumulative regret against time; lower is better.</p>"]
    if png.exists():
        out.append(f"<figure>{_img(png)}<figcaption>regret.png<div class='guide'><b>How to read "
                   "it.</b> Each curve is one bonus; a curve that flattens has stopped paying for "
                   "exploration; a straight rising line never settles on the best arm."
                   "</div></figcaption></figure>")
    if md.exists():
        out.append(markdown_to_html(md.read_text(encoding="utf-8")))
    if not png.exists() and not md.exists():
        out.append(f"<p class='note'>{_esc(bdir)} holds neither regret.png nor regret.md.</p>")
    return out


def definitions_section(a: dict[str, Any], missing: list[str]) -> list[str]:
    """The analysis' metric definitions and its notes, plus a note per missing file."""
    out = []
    defs = a.get("definitions", {})
    if defs:
        out.append("<dl>" + "".join(f"<dt><b>{_esc(k)}</b></dt><dd>{_esc(v)}</dd>"
                                    for k, v in defs.items()) + "</dl>")
    notes = list(a.get("notes", [])) + [f"missing file in the analysis folder: {m}" for m in missing]
    out.append("<h3>Notes</h3>" + ("<ul>" + "".join(f"<li>{_esc(n)}</li>" for n in notes) + "</ul>"
                                   if notes else "<p>None.</p>"))
    return out


def _report_head(title: str, meta: dict[str, Any], adir: Path, manifests: Optional[dict[str, Path]],
                 stale: Optional[list[str]]) -> str:
    """Title, methods and seeds, interval level, generation time, and a warning line when data rows
    were dropped or stale outputs exist."""
    seeds = meta.get("seeds", {})
    methods = ", ".join(f"{meta.get('labels', {}).get(m, m)} ({len(seeds.get(m, []))} seeds)"
                        for m in meta.get("methods", []))
    miss = meta.get("missing_methods") or []
    dropped = sum(json.loads(p.read_text(encoding="utf-8"))["counts"]["dropped"]
                  for p in (manifests or {}).values() if p.is_file())
    warn = [f"{dropped} data row(s) dropped"] if dropped else []
    warn += [f"{len(stale)} stale output(s) on disk"] if stale else []
    return (f"<h1>{_esc(title)}</h1><p class='meta'>Song, Kempe &amp; Munos, <i>Outcome-based Exploration for LLM "
            f"Reasoning</i> (arXiv 2509.06941). Methods: {_esc(methods) or 'none'}"
            + (f"; not run: {_esc(', '.join(miss))}" if miss else "")
            + f". Intervals: {float(meta.get('level') or 0.95) * 100:g}% t-intervals over seeds. Generated "
            f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} from {_esc(adir)}.</p>"
            + (f"<p class='guide'><b>Check:</b> {_esc('; '.join(warn))}; see <a href='#inputs'>Data and "
               "outputs</a>.</p>" if warn else ""))


def console_summary(results_dir: str | Path, datasets: Sequence[str], planned: Sequence[tuple[str, int, str]],
                    failed: bool = False) -> None:
    """What the DAG prints at its end (rules/analysis.smk): rows each dataset dropped, outputs the
    configuration no longer plans, and after a failure why prepare_data refused a dataset under
    ``data.strict``. Paths follow the rules' layout (data/, logs/prepare_data/)."""
    from obe.data import dropped_rows_line

    root = Path(results_dir)
    lines = []
    for d in datasets:
        manifest, log = root / "data" / f"{d}.manifest.json", root / "logs" / "prepare_data" / f"{d}.log"
        text = log.read_text(errors="replace") if failed and log.is_file() else ""
        if "(--strict)" in text:
            errors = [line for line in text.splitlines() if line.startswith("error:")]
            lines += [f"data {d}: {e}" for e in errors[:10]] + ([f"data {d}: ... see {log}"] if len(errors) > 10 else [])
        elif manifest.is_file():
            line = dropped_rows_line(d, json.loads(manifest.read_text(encoding="utf-8")), str(manifest))
            lines += [line] if line else []
    stale = stale_outputs(root, set(planned))
    if stale:
        lines.append(f"{len(stale)} output(s) under {root} belong to runs or steps the configuration no longer plans "
                     f"(kept; listed in report.html): {', '.join(stale[:4])}{', ...' if len(stale) > 4 else ''}")
    for line in lines:
        print(f"obe: {line}", file=sys.stderr, flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m obe.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("--analysis-dir", required=True, help="output folder of obe.analysis (analysis.json, PNG, TSV)")
    ap.add_argument("--bandits-dir", help="output folder of obe.bandits (regret.png, regret.md); optional")
    ap.add_argument("--out", required=True, help="report HTML file to write")
    ap.add_argument("--title", default="Outcome-based exploration: reproduction report")
    ap.add_argument("--manifest", action="append", default=[], metavar="NAME=PATH",
                    help="obe.data manifest of a prepared dataset (repeatable): its dropped rows are reported")
    ap.add_argument("--results-dir", help="the experiment's results folder: outputs there that --planned does not "
                                          "name are listed as stale")
    ap.add_argument("--planned", nargs="*", default=[], metavar="RUN:STEP:DATASET",
                    help="every (run, step, dataset) the configuration plans (with --results-dir)")
    ap.add_argument("--experiment", help="W&B group: add the report and the analysis folder to the analysis run")
    ap.add_argument("--wandb-dir", help="where offline W&B runs are written")
    args = ap.parse_args(argv)
    try:
        manifests = {name: Path(path) for name, _, path in (m.partition("=") for m in args.manifest)}
        stale = stale_outputs(args.results_dir, parse_planned(args.planned)) if args.results_dir else None
        text = build_report(args.analysis_dir, args.bandits_dir, args.title, manifests=manifests, stale=stale)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"obe.report: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    print(f"wrote {out} ({len(text) / 1e6:.2f} MB)")
    if args.experiment:
        log_report_artifact(out, Path(args.analysis_dir), args.experiment, args.wandb_dir or str(out.parent))
    return 0


def log_report_artifact(report: Path, analysis_dir: Path, experiment: str, wandb_dir: str) -> None:
    """report.html and the analysis folder as one artifact of the analysis stage's W&B run (its id
    is in the folder; without it, as when W&B was off for the analysis, nothing is logged)."""
    from obe.core.tracking import RUN_ID_FILE, start_run

    id_file = analysis_dir / RUN_ID_FILE
    if not id_file.exists():
        return
    tracker = start_run(stage="analysis", name="analysis", config={}, experiment=experiment, wandb_dir=wandb_dir,
                        run_id=id_file.read_text().strip())
    tracker.log_artifact(f"report-{experiment}", "report", [str(report), str(analysis_dir)])
    tracker.finish()


if __name__ == "__main__":
    sys.exit(main())
