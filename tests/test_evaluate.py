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


def test_cli_writes_the_summary_with_every_finish_reason(tmp_path):
    # evaluation makes no W&B run of its own: obe.log_evals puts it in the trained model's run
    graded = tmp_path / "g.jsonl"
    rows = [row("q1", i, "2", i < 2) for i in range(4)]
    rows[3]["finish_reason"] = "abort"  # vLLM may end a sequence so; it is counted, not fatal
    graded.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rc = main(["--graded", str(graded), "--out-questions", str(tmp_path / "q.jsonl"), "--out-summary",
               str(tmp_path / "s.json")])
    assert rc == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["finish_reasons"] == {"abort": 1, rows[0]["finish_reason"]: 3}
    assert summary["pass_at_k"]["1"] == 0.5
