"""The stage CLIs chained on a real dataset file: prepare -> sample -> grade -> evaluate.

The tiny random model answers nonsense on MATH-500, which is fine: the point is that the
path from a shared JSONL file to graded samples and pass@k is exercised end to end.
"""

from __future__ import annotations

import json
import subprocess
import sys

from obe.sampling import ROW_FIELDS
from tiny_model import build_tiny_model


def run(*args: str) -> None:
    out = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]


def test_math500_prepare_sample_grade_evaluate(shared_data, tmp_path):
    data = tmp_path / "math500.jsonl"
    run("obe.data", "--source", "math500", "--split", "test", "--path", str(shared_data / "math500" / "test.jsonl"),
        "--limit", "3", "--seed", "0", "--out", str(data))
    manifest = json.loads((tmp_path / "math500.manifest.json").read_text())
    assert manifest["counts"]["written"] == 3

    model = build_tiny_model(tmp_path / "model", eos_bias=4.0)
    samples, graded = tmp_path / "samples.jsonl", tmp_path / "graded.jsonl"
    run("obe.sampling", "--model", model, "--data", str(data), "--n", "4", "--seed", "0", "--max-new-tokens", "16",
        "--threads", "1", "--no-progress", "--out", str(samples))
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len(rows) == 12 and all(set(ROW_FIELDS) <= set(r) for r in rows)
    assert all(r["outcome_key"] is None and r["correct"] is None for r in rows)  # sampling never grades

    run("obe.grade", "--samples", str(samples), "--data", str(data), "--out", str(graded))
    graded_rows = [json.loads(line) for line in graded.read_text().splitlines()]
    assert len(graded_rows) == 12
    assert all(isinstance(r["outcome_key"], str) and isinstance(r["correct"], bool) for r in graded_rows)
    ids = {json.loads(line)["id"] for line in data.read_text().splitlines()}
    assert {r["question_id"] for r in graded_rows} == ids

    per_q, summary = tmp_path / "per_question.jsonl", tmp_path / "summary.json"
    run("obe.evaluate", "--graded", str(graded), "--out-questions", str(per_q), "--out-summary", str(summary))
    result = json.loads(summary.read_text())
    assert result["num_questions"] == 3 and result["n"] == 4
    assert set(result["pass_at_k"]) == {"1", "2", "3", "4"}
    assert 0.0 <= result["pass_at_k"]["1"] <= result["pass_at_k"]["4"] <= 1.0
