"""Results generated, never typed: README.md's results block and docs/results/ come from one
summary.json that `python -m obe.results` writes from a results folder; a number edited by hand
is caught."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest

from conftest import REPO_ROOT
from obe import results as R

DOCS = REPO_ROOT / "docs" / "results"


def test_readme_and_docs_match_the_committed_summary():
    summary = json.loads((DOCS / "summary.json").read_text())
    readme = (REPO_ROOT / "README.md").read_text()
    assert R.check_readme(readme, summary, "docs/results") == []
    assert (DOCS / "README.md").read_text() == R.summary_markdown(summary)
    for figure in summary["figures"]:
        assert (DOCS / figure["file"]).stat().st_size > 1000, figure
        assert f"](docs/results/{figure['file']})" in readme
    for claim in summary["claims"]:  # every claim's number is in the README
        assert f"| {claim['claim']} | {claim['result']} | {claim['verdict']} |" in readme.replace("\\|", "|")


def test_a_number_edited_by_hand_is_caught():
    summary = json.loads((DOCS / "summary.json").read_text())
    readme = (REPO_ROOT / "README.md").read_text()
    head, block = readme.split(R.BEGIN, 1)
    number = re.search(r"[+-]?\d+\.\d{3}", block)  # the first number of the block, e.g. in the claims table
    edited = head + R.BEGIN + block[:number.start()] + f"{float(number.group()) + 0.001:.3f}" + block[number.end():]
    problems = R.check_readme(edited, summary, "docs/results")
    assert any(number.group() in p for p in problems), problems
    assert R.check_readme(readme.replace(R.END, "| extra | row | typed |\n" + R.END), summary, "docs/results")


def _fake_results(root):
    """A results folder as the pipeline leaves it: analysis.json, a figure, benchmarks, invocation records."""
    res = root / "results" / "exp1"
    (res / "analysis").mkdir(parents=True)
    (res / "analysis" / "fig_test_passk_synthetic.png").write_bytes(b"\x89PNG fake" * 200)
    (res / "analysis" / "fig_other.png").write_bytes(b"\x89PNG other")
    analysis = {
        "claims": [{"claim": "GRPO raises pass@1", "measure": "pass@1 diff", "evidence": "+0.136 [+0.120, +0.150]",
                    "status": "holds", "why": "interval above 0", "rule": "..."},
                   {"claim": "Batch | UCB", "measure": "m", "evidence": "+0.050 [+0.010, +0.090]", "status": "holds",
                    "why": "w", "rule": "..."}],
        "tables": [{"name": "claims", "title": "Paper vs us", "caption": "c", "columns": ["claim"], "rows": [["x"]],
                    "tsv": "claims.tsv", "md": "claims.md"},
                   {"name": "test_synthetic", "title": "Test pass@k", "caption": "mean [CI]",
                    "columns": ["method", "pass@1"], "rows": [["GRPO", "0.350 [0.33, 0.37]"]], "tsv": "t", "md": "t"}],
        "figures": [{"file": "fig_test_passk_synthetic.png", "title": "Test pass@k", "caption": "cap", "guide": "g"},
                    {"file": "fig_other.png", "title": "Other", "caption": "cap", "guide": "g"}],
    }
    (res / "analysis" / "analysis.json").write_text(json.dumps(analysis))
    (res / "benchmarks" / "train").mkdir(parents=True)
    start = 1_800_000_000.0
    for i, (name, wall, cpu) in enumerate([("train/a.tsv", 100.0, 90.0), ("train/b.tsv", 200.0, 150.5), ("report.tsv", 1.0, 0.5)]):
        path = res / "benchmarks" / name
        path.write_text("s\th:m:s\tmax_rss\tcpu_time\n" + f"{wall}\t0:00:00\t10\t{cpu}\n")
        end = start + 10 + 200 * (i + 1)
        os.utime(path, (end, end))
    (res / "logs").mkdir()
    machine = {"system": "Linux", "cpus": 2, "cpu": "Test CPU", "memory_gib": 24.0}
    records = [{"event": "start", "time": start - 50, "loadavg": [9.0, 9.0, 9.0], "command": "snakemake -n", "commit": "f" * 40,
                "uncommitted_files": 0, "machine": machine},  # an earlier invocation that ran none of these jobs
               {"event": "exit", "time": start - 40, "loadavg": [9.0, 9.0, 9.0]},
               {"event": "start", "time": start, "loadavg": [0.1, 0.2, 0.3], "command": "snakemake --cores 2",
                "commit": "a" * 40, "uncommitted_files": 2, "machine": machine},
               {"event": "exit", "time": start + 700, "loadavg": [2.0, 1.5, 1.0]}]
    (res / "logs" / "invocations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return res


def test_generator_writes_the_summary_the_docs_and_the_readme_block(tmp_path):
    res = _fake_results(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"# Project\n\nprose before\n\n{R.BEGIN}\nold, typed by hand: +0.017\n{R.END}\n\nprose after\n")
    out = tmp_path / "docs" / "results"
    assert R.main([str(res), "--readme", str(readme), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    run = summary["run"]
    assert (run["jobs"], run["wall_seconds"], run["job_cpu_seconds"], run["invocations"]) == (3, 700.0, 241.0, 1)
    assert (run["commit"], run["uncommitted_files"], run["loadavg_start"]) == ("a" * 40, 2, [0.1, 0.2, 0.3])
    text = readme.read_text()
    assert text.startswith("# Project\n\nprose before\n\n") and text.endswith(f"{R.END}\n\nprose after\n")
    assert "+0.017" not in text and "| GRPO raises pass@1 | +0.136 [+0.120, +0.150] | holds |" in text
    assert "| Batch \\| UCB |" in text  # a table cell's | is escaped
    assert "![Test pass@k](docs/results/fig_test_passk_synthetic.png)" in text and "fig_other" not in text
    assert ("Run: `snakemake --cores 2` (experiment `exp1`, 3 jobs) on 2027-01-15 08:00 UTC at commit `aaaaaaaaaa` "
            "(+2 uncommitted files): 11.7 min wall (invocation records), 4.0 min of job CPU time, on 2 CPUs of Test CPU "
            "(24 GiB), load average (1/5/15 min) 0.10/0.20/0.30 at the start and 2.00/1.50/1.00 at the end.") in text
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "fig_test_passk_synthetic.png", "summary.json"]
    docs = (out / "README.md").read_text()
    assert "## Test pass@k" in docs and "| GRPO | 0.350 [0.33, 0.37] |" in docs and "![Test pass@k](fig_test_passk_synthetic.png)" in docs
    # Regenerating changes nothing; --check passes, and fails once a number is typed over.
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert R.main([str(res), "--readme", str(readme), "--out", str(out)]) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and readme.read_text() == text
    assert R.main(["--check", "--readme", str(readme), "--out", str(out)]) == 0
    readme.write_text(text.replace("+0.136 [", "+0.142 ["))
    assert R.main(["--check", "--readme", str(readme), "--out", str(out)]) == 1


def test_without_records_the_wall_time_is_the_benchmark_span(tmp_path):
    res = _fake_results(tmp_path)
    (res / "logs" / "invocations.jsonl").unlink()
    run = R.summarize(res)["run"]
    assert run["wall_from"] == "benchmark files" and run["commit"] is None
    assert run["wall_seconds"] == pytest.approx(610 - (210 - 100))  # first job's start (its end 210 - its 100 s) to the last end


def test_a_readme_without_markers_is_refused_by_name(tmp_path, capsys):
    res = _fake_results(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    assert R.main([str(res), "--readme", str(readme), "--out", str(tmp_path / "out")]) == 2
    assert f"{readme}: needs exactly one {R.BEGIN} ... {R.END} pair" in capsys.readouterr().err
    assert readme.read_text() == "# no markers\n" and not (tmp_path / "out").exists()  # nothing half-written


def test_an_invocation_records_its_start_and_exit(tmp_path):
    R.record_invocation(tmp_path, REPO_ROOT, argv=["/x/bin/snakemake", "--cores", "2", "--config", "a=b c"], at_exit=False)
    R.record_exit(tmp_path)
    (inv,) = R.invocations(tmp_path)
    start = inv["start"]
    assert start["command"] == "snakemake --cores 2 --config 'a=b c'"
    assert start["commit"] is None or re.fullmatch(r"[0-9a-f]{40}", start["commit"])
    assert start["machine"]["cpus"] >= 1 and len(start["loadavg"]) == 3
    assert inv["end"]["event"] == "exit" and inv["end"]["time"] >= start["time"]
    shutil.rmtree(tmp_path / "logs")
