"""Outcome count table N(x, a): updates, before/after reads, persistence, size."""

from __future__ import annotations

import json

import pytest

from obe.rl.counts import OutcomeCounts

NO_ANSWER = "<no-answer-sentinel>"  # an opaque key like obe.grading.NO_ANSWER_KEY


def test_update_and_count_by_hand():
    c = OutcomeCounts()
    assert c.count("q1", "4") == 0 and c.num_entries() == 0
    c.update("q1", ["4", "4", "5", NO_ANSWER])  # N(q1,4)=2, N(q1,5)=1, N(q1,none)=1
    c.update("q2", ["4"])  # a different question has its own counts
    assert c.count("q1", "4") == 2 and c.count("q1", "5") == 1 and c.count("q1", NO_ANSWER) == 1
    assert c.count("q2", "4") == 1 and c.count("q2", "5") == 0
    assert c.lookup("q1", ["5", "4", "7"]) == [1, 2, 0]
    assert c.num_entries() == len(c) == 4  # (q1,4) (q1,5) (q1,none) (q2,4)
    assert c.num_questions() == 2 and c.total() == 5
    assert c.question_counts("q1") == {"4": 2, "5": 1, NO_ANSWER: 1}
    assert sorted(c) == sorted([("q1", "4", 2), ("q1", "5", 1), ("q1", NO_ANSWER, 1), ("q2", "4", 1)])


def test_observe_batch_before_update():
    c = OutcomeCounts()
    c.update("q1", ["4"])  # history: N(q1,4) = 1
    # batch: q1 -> [4, 4, 5], q2 -> [1, 1, 1]; read before adding the batch
    N = c.observe_batch(["q1", "q2"], [["4", "4", "5"], ["1", "1", "1"]], before_update=True)
    assert N == [[1, 1, 0], [0, 0, 0]]  # never-seen outcomes read N = 0
    assert c.count("q1", "4") == 3 and c.count("q1", "5") == 1 and c.count("q2", "1") == 3


def test_observe_batch_after_update():
    c = OutcomeCounts()
    c.update("q1", ["4"])
    # after adding the batch: N(q1,4) = 1 + 2 = 3, N(q1,5) = 1, N(q2,1) = 3
    N = c.observe_batch(["q1", "q2"], [["4", "4", "5"], ["1", "1", "1"]], before_update=False)
    assert N == [[3, 3, 1], [3, 3, 3]]
    assert min(min(r) for r in N) >= 1  # after the update no sample reads 0


def test_duplicate_question_in_batch_sees_one_table():
    # q1 twice in the batch: before -> both groups read the pre-batch table (0);
    # after -> both read the full-batch total N(q1,7) = 2 + 1 = 3
    c = OutcomeCounts()
    assert c.observe_batch(["q1", "q1"], [["7", "7"], ["7", "8"]]) == [[0, 0], [0, 0]]
    d = OutcomeCounts()
    assert d.observe_batch(["q1", "q1"], [["7", "7"], ["7", "8"]], before_update=False) == [[3, 3], [3, 1]]


def test_counts_persist_across_epochs():
    c = OutcomeCounts()
    for _epoch in range(3):  # the same question in each of 3 epochs, 2 samples of "4" each time
        c.observe_batch(["q"], [["4", "4"]])
    assert c.count("q", "4") == 6


def test_int_question_ids_are_strings():
    c = OutcomeCounts()
    c.update(17, ["a"])
    assert c.count("17", "a") == 1 and c.count(17, "a") == 1
    assert list(c.to_dict()["counts"]) == ["17"]


def test_json_round_trip():
    c = OutcomeCounts()
    c.observe_batch(["q1", "q2", "q3"], [["\\frac{1}{2}", "0.5", NO_ANSWER], ["x", "x", "y"], ["", "é", "é"]])
    blob = json.dumps(c.to_dict())
    back = OutcomeCounts.from_dict(json.loads(blob))
    assert back == c and back.to_dict() == c.to_dict()
    assert back.count("q3", "é") == 2 and back.count("q3", "") == 1 and back.count("q1", NO_ANSWER) == 1
    back.update("q2", ["y"])  # a restored table keeps counting
    assert back.count("q2", "y") == 2 and c.count("q2", "y") == 1


def test_from_dict_rejects_garbage():
    with pytest.raises(ValueError):
        OutcomeCounts.from_dict({"counts": {}})
    good = OutcomeCounts().to_dict()
    with pytest.raises(ValueError):
        OutcomeCounts.from_dict({**good, "counts": {"q": {"a": 0}}})
    with pytest.raises(ValueError):
        OutcomeCounts.from_dict({**good, "counts": {"q": {"a": 1.5}}})


def test_non_string_keys_rejected():
    with pytest.raises(TypeError):
        OutcomeCounts().update("q", [3])
    with pytest.raises(TypeError):
        OutcomeCounts().observe_batch(["q"], ["abc"])  # a string is not a group of keys
    with pytest.raises(ValueError):
        OutcomeCounts().observe_batch(["q", "r"], [["a"]])


def test_size_after_10k_steps_of_16x8():
    # 10,000 steps x 16 questions x 8 samples = 1.28M samples over 7,500 questions, each
    # question's answers drawn from 12 distinct keys: entries <= 7,500 * 12 = 90,000.
    pool = [str(k) for k in range(12)]
    groups = [[pool[(i * 7 + j * j) % 12] for j in range(8)] for i in range(97)]
    qpool = [f"math/{q}" for q in range(7500)]
    c = OutcomeCounts()
    for step in range(10_000):
        qids = [qpool[(step * 16 + b) * 7919 % 7500] for b in range(16)]
        c.observe_batch(qids, [groups[(step + b) % 97] for b in range(16)])
    assert c.total() == 1_280_000
    assert c.num_questions() == 7500 and c.num_entries() <= 90_000
    # ~4.1 MB (tracemalloc agrees): ~45 bytes per entry plus per-question dicts
    assert c.approx_bytes() < 10e6
