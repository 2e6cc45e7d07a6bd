"""obe.evaluate on hand-made graded rows with known answers."""

from __future__ import annotations

import json

import pytest

from obe.evaluate import evaluate, main
from obe.grading import NO_ANSWER_KEY


def row(qid, i, key, correct, tokens=10, reason="stop"):
    return dict(question_id=qid, sample_index=i, outcome_key=key, correct=correct, num_tokens=tokens,
                finish_reason=reason)


def test_known_values():
    rows = [
        row("q1", 0, "2", True), row("q1", 1, "2", True), row("q1", 2, "3", False), row("q1", 3, NO_ANSWER_KEY, False, 20, "length"),
        row("q2", 0, "5", False), row("q2", 1, "6", False), row("q2", 2, "5", False), row("q2", 3, "7", False),
    ]
    per_q, summary = evaluate(rows)
    q1, q2 = per_q
    assert (q1["n"], q1["c"], q2["c"]) == (4, 2, 0)
    # q1: pass@2 = 1 - C(2,2)/C(4,2) = 5/6; q2: 0
    assert q1["pass_at_k"][1] == pytest.approx(5 / 6)
    assert summary["pass_at_k"]["2"] == pytest.approx(5 / 12)
    assert summary["pass_at_k"]["1"] == pytest.approx(0.25)
    assert q1["distinct_answers"] == 2 and q2["distinct_answers"] == 3  # no-answer is not an answer
    assert q1["frac_no_answer"] == 0.25 and q1["frac_truncated"] == 0.25
    assert q1["mean_length"] == pytest.approx(12.5)
    assert q1["answer_counts"] == {"2": 2, "3": 1, NO_ANSWER_KEY: 1}
    assert q1["maj_at_k"]["4"] == 1.0 and q2["maj_at_k"]["1"] == 0.0


def test_uneven_sample_counts_fail():
    rows = [row("q1", 0, "1", True), row("q1", 1, "1", True), row("q2", 0, "1", True)]
    with pytest.raises(ValueError, match="different sample counts"):
        evaluate(rows)


def test_cli_rejects_ungraded_rows(tmp_path, capsys):
    graded = tmp_path / "g.jsonl"
    bad = row("q1", 0, None, None)
    graded.write_text(json.dumps(bad) + "\n")
    rc = main(["--graded", str(graded), "--out-questions", str(tmp_path / "q.jsonl"), "--out-summary", str(tmp_path / "s.json")])
    assert rc == 2
    assert "line 1: sample is not graded" in capsys.readouterr().err


def test_cli_logs_an_offline_wandb_run(tmp_path, monkeypatch):
    import glob

    monkeypatch.setenv("WANDB_MODE", "offline")
    graded = tmp_path / "g.jsonl"
    graded.write_text("".join(json.dumps(row("q1", i, "2", i < 2)) + "\n" for i in range(4)))
    rc = main(["--graded", str(graded), "--out-questions", str(tmp_path / "q.jsonl"), "--out-summary",
               str(tmp_path / "s.json"), "--run", "grpo__s0", "--step", "10", "--dataset", "synthetic",
               "--experiment", "exp", "--wandb-dir", str(tmp_path / "wb")])
    assert rc == 0
    runs = glob.glob(str(tmp_path / "wb" / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert len(runs) == 1
    assert b"grpo__s0__step10__synthetic" in open(runs[0], "rb").read()
