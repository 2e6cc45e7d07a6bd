"""obe.grade: the grading stage fills answer / outcome_key / correct of sample rows."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from obe import grade as grade_stage
from obe.core.records import Record, write_jsonl
from obe.sampling import ROW_FIELDS


def sample(qid, i, text, reason="stop"):
    row = dict.fromkeys(ROW_FIELDS)
    row.update(question_id=qid, sample_index=i, prompt=f"{qid}?\n", text=text, num_tokens=len(text) + 1,
               finish_reason=reason)
    return row


@pytest.fixture
def files(tmp_path):
    data = tmp_path / "data.jsonl"
    write_jsonl(str(data), [
        Record(id="a", problem="1+1?", answer="2", source="t"),
        Record(id="b", problem="half?", answer="\\frac{1}{2}", source="t"),
    ])
    samples = tmp_path / "samples.jsonl"
    rows = [
        sample("a", 0, "so \\boxed{2}"),
        sample("a", 1, "I think \\boxed{3}"),
        sample("b", 0, "\\boxed{0.5}"),
        sample("b", 1, "no idea", "length"),
    ]
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data, samples, rows


@dataclass(frozen=True)
class FakeResult:
    answer: str | None
    outcome_key: str
    correct: bool
    status: str


def fake_grade(response, gold):
    """A stand-in with obe.grading.grade's interface: last token after 'boxed'."""
    if "boxed{" not in response:
        return FakeResult(None, "<none>", False, "no_answer")
    ans = response.split("boxed{")[-1].rstrip("}")
    return FakeResult(ans, f"k:{ans}", ans == gold, "ok")


def read(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_grade_stage_fills_fields_with_stand_in(files, tmp_path, monkeypatch):
    data, samples, rows = files
    monkeypatch.setattr(grade_stage, "_default_grade_fn", lambda: fake_grade)
    out = tmp_path / "graded.jsonl"
    assert grade_stage.main(["--samples", str(samples), "--data", str(data), "--out", str(out)]) == 0
    graded = read(out)
    assert len(graded) == len(rows)
    for g, r in zip(graded, rows):
        assert list(g) == [*ROW_FIELDS, "grade_status"]
        for k in ("question_id", "sample_index", "prompt", "text", "num_tokens", "finish_reason"):
            assert g[k] == r[k]
    assert [g["answer"] for g in graded] == ["2", "3", "0.5", None]
    assert [g["correct"] for g in graded] == [True, False, False, False]
    assert [g["outcome_key"] for g in graded] == ["k:2", "k:3", "k:0.5", "<none>"]
    assert [g["grade_status"] for g in graded] == ["ok", "ok", "ok", "no_answer"]


def test_grade_stage_with_real_grader(files, tmp_path):
    from obe import grading

    data, samples, _ = files
    out = tmp_path / "graded.jsonl"
    assert grade_stage.grade_file(samples, data, out) == 4
    graded = read(out)
    assert [g["correct"] for g in graded] == [True, False, True, False]
    assert graded[0]["answer"] == "2" and graded[3]["answer"] is None
    assert graded[3]["grade_status"] == "no_answer"
    # 0.5 and \frac{1}{2} are the same outcome
    assert graded[2]["outcome_key"] == grading.grade("\\boxed{\\frac12}", "\\frac12").outcome_key
    assert all(isinstance(g["outcome_key"], str) for g in graded)


def test_unknown_question_id_is_a_clear_error(files, tmp_path, capsys, monkeypatch):
    data, samples, rows = files
    monkeypatch.setattr(grade_stage, "_default_grade_fn", lambda: fake_grade)
    with open(samples, "a") as f:
        f.write(json.dumps(sample("zzz", 0, "\\boxed{1}")) + "\n")
    out = tmp_path / "graded.jsonl"
    assert grade_stage.main(["--samples", str(samples), "--data", str(data), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "'zzz'" in err and "not in the data file" in err and "row 5" in err
    assert not out.exists() and not (tmp_path / "graded.jsonl.tmp").exists()


def test_truncated_samples_refused(files, tmp_path, monkeypatch):
    data, samples, _ = files
    monkeypatch.setattr(grade_stage, "_default_grade_fn", lambda: fake_grade)
    samples.write_bytes(samples.read_bytes()[:-10])
    with pytest.raises(grade_stage.GradeStageError, match="truncated"):
        grade_stage.grade_file(samples, data, tmp_path / "o.jsonl")


def test_grade_cli_help():
    proc = subprocess.run([sys.executable, "-m", "obe.grade", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert "--samples" in proc.stdout and "--data" in proc.stdout and "--out" in proc.stdout
