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

SECTIONS = (
    ("guide", "How to read this report"),
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
    "Colours are fixed per method in every figure (GRPO blue, UCB orange, UCB-Mean green, UCB-Con red, Batch purple); "
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


def build_report(analysis_dir: str | Path, bandits_dir: str | Path | None = None,
                 title: str = "Outcome-based exploration: reproduction report") -> str:
    """The report as one HTML string (see module docstring)."""
    adir = Path(analysis_dir)
    apath = adir / "analysis.json"
    if not apath.exists():
        raise FileNotFoundError(f"{apath}: not found (run obe.analysis first)")
    a = json.loads(apath.read_text())
    meta = a.get("meta", {})
    parts: dict[str, list[str]] = {key: [] for key, _ in SECTIONS}
    missing: list[str] = []

    parts["guide"].append("<ul>" + "".join(f"<li>{_esc(g)}</li>" for g in GUIDE) + "</ul>")
    figs_guide = [f"<li><b>{_esc(f['title'])}</b>: {_esc(f.get('guide', ''))}</li>" for f in a.get("figures", [])]
    if figs_guide:
        parts["guide"].append("<p>What to look for in each figure:</p><ul>" + "".join(figs_guide) + "</ul>")

    for f in a.get("figures", []):
        path = adir / f["file"]
        if not path.exists():
            missing.append(f["file"])
            continue
        parts[_section_of_figure(f["file"])].append(
            f"<figure><h3>{_esc(f['title'])}</h3>{_img(path)}<figcaption>{_esc(f.get('caption', ''))}"
            f"<div class='guide'><b>How to read it.</b> {_esc(f.get('guide', ''))}</div></figcaption></figure>")

    for t in a.get("tables", []):
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

    if bandits_dir:
        bdir = Path(bandits_dir)
        png, md = bdir / "regret.png", bdir / "regret.md"
        parts["bandits"].append("<p>Simulation of the exploration bonuses in a multi-armed bandit (obe.bandits): "
                                "cumulative regret against time; lower is better.</p>")
        if png.exists():
            parts["bandits"].append(f"<figure>{_img(png)}<figcaption>regret.png<div class='guide'><b>How to read "
                                    "it.</b> Each curve is one bonus; a curve that flattens has stopped paying for "
                                    "exploration; a straight rising line never settles on the best arm."
                                    "</div></figcaption></figure>")
        if md.exists():
            parts["bandits"].append(markdown_to_html(md.read_text(encoding="utf-8")))
        if not png.exists() and not md.exists():
            parts["bandits"].append(f"<p class='note'>{_esc(bdir)} holds neither regret.png nor regret.md.</p>")
    else:
        parts["bandits"].append("<p class='note'>Not included (no --bandits-dir given).</p>")

    defs = a.get("definitions", {})
    if defs:
        parts["definitions"].append("<dl>" + "".join(f"<dt><b>{_esc(k)}</b></dt><dd>{_esc(v)}</dd>"
                                                      for k, v in defs.items()) + "</dl>")
    notes = list(a.get("notes", [])) + [f"missing file in the analysis folder: {m}" for m in missing]
    parts["definitions"].append("<h3>Notes</h3>" + ("<ul>" + "".join(f"<li>{_esc(n)}</li>" for n in notes) + "</ul>"
                                                    if notes else "<p>None.</p>"))
    for key, _ in SECTIONS:
        if not parts[key]:
            parts[key].append("<p class='note'>No inputs for this section.</p>")

    seeds = meta.get("seeds", {})
    methods = ", ".join(f"{meta.get('labels', {}).get(m, m)} ({len(seeds.get(m, []))} seeds)"
                        for m in meta.get("methods", []))
    miss = meta.get("missing_methods") or []
    head = (f"<h1>{_esc(title)}</h1><p class='meta'>Song, Kempe &amp; Munos, <i>Outcome-based Exploration for LLM "
            f"Reasoning</i> (arXiv 2509.06941). Methods: {_esc(methods) or 'none'}"
            + (f"; not run: {_esc(', '.join(miss))}" if miss else "")
            + f". Intervals: {float(meta.get('level') or 0.95) * 100:g}% t-intervals over seeds. Generated "
            f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} from {_esc(adir)}.</p>")
    nav = "<nav>" + "".join(f"<a href='#{k}'>{_esc(t)}</a>" for k, t in SECTIONS) + "</nav>"
    body = "".join(f"<section id='{k}'><h2>{_esc(t)}</h2>{''.join(parts[k])}</section>" for k, t in SECTIONS)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_esc(title)}</title>"
            f"<style>{CSS}</style></head><body>{head}{nav}{body}</body></html>\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m obe.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("--analysis-dir", required=True, help="output folder of obe.analysis (analysis.json, PNG, TSV)")
    ap.add_argument("--bandits-dir", help="output folder of obe.bandits (regret.png, regret.md); optional")
    ap.add_argument("--out", required=True, help="report HTML file to write")
    ap.add_argument("--title", default="Outcome-based exploration: reproduction report")
    args = ap.parse_args(argv)
    try:
        text = build_report(args.analysis_dir, args.bandits_dir, args.title)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"obe.report: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    print(f"wrote {out} ({len(text) / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
