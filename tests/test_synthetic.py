"""The synthetic reasoning task: determinism, disjoint splits, solutions, outcome space."""

from __future__ import annotations

import random
import statistics

import pytest

from obe import synthetic
from obe.latex import last_boxed
from obe.records import Record


def test_make_split_is_deterministic_and_seeded():
    a = synthetic.make_split("train", 50, seed=0, difficulty=3)
    b = synthetic.make_split("train", 50, seed=0, difficulty=3)
    c = synthetic.make_split("train", 50, seed=1, difficulty=3)
    assert a == b
    assert [r.id for r in a] != [r.id for r in c]


def test_records_shape():
    recs = synthetic.make_split("test", 30, seed=0, difficulty=3)
    assert len(recs) == 30
    for r in recs:
        assert isinstance(r, Record)
        assert r.source == "synthetic"
        assert isinstance(r.answer, str) and r.answer.lstrip("-").isdigit()
        assert r.id == synthetic.record_id(r.problem)
        assert r.level == "3"
        q = synthetic.parse_problem(r.problem)
        assert q.problem == r.problem and str(q.answer) == r.answer
        assert all(0 <= v <= synthetic.MAX_VALUE for v in q.true_values())
    assert len({r.id for r in recs}) == len(recs)  # deduplicated, ids stable per problem


def test_splits_are_disjoint_and_hash_assigned():
    train = synthetic.make_split("train", 400, seed=0, difficulty=2)
    test = synthetic.make_split("test", 200, seed=0, difficulty=2)
    assert not {r.problem for r in train} & {r.problem for r in test}
    assert all(synthetic.split_of(r.problem) == "train" for r in train)
    assert all(synthetic.split_of(r.problem) == "test" for r in test)
    # another seed draws another sample of the same (disjoint) split
    other = synthetic.make_split("test", 200, seed=5, difficulty=2)
    assert not {r.problem for r in train} & {r.problem for r in other}


def test_bad_arguments():
    with pytest.raises(ValueError):
        synthetic.make_split("valid", 3, seed=0)
    with pytest.raises(ValueError):
        synthetic.make_split("train", 3, seed=0, difficulty=0)
    with pytest.raises(ValueError):
        synthetic.parse_problem("What is 2+2?")


def test_correct_solution_ends_with_answer():
    for r in synthetic.make_split("train", 100, seed=3, difficulty=4):
        sol = synthetic.worked_solution(r.problem)
        assert last_boxed(sol) == r.answer
        assert sol.endswith("\\boxed{" + r.answer + "}")
        assert len(sol) < 80  # short: tens of tokens


def test_example_format():
    q = synthetic.Question(7, 3, (("+", 5), ("-", 2)))
    assert q.problem == "Q: 7*3+5-2 ="
    assert synthetic.worked_solution(q.problem) == "7*3=21 21+5=26 26-2=24 \\boxed{24}"


def test_demonstrations_with_mistakes_are_consistent_chains():
    rng = random.Random(0)
    recs = synthetic.make_split("train", 200, seed=0, difficulty=3)
    wrong = 0
    for r in recs:
        sol = synthetic.worked_solution(r.problem, rng, synthetic.DEFAULT_MISTAKES)
        ans = last_boxed(sol)
        assert ans is not None
        steps = sol.split(" ")[:-1]
        # each step starts from the value the previous step wrote
        for prev, cur in zip(steps[:-1], steps[1:]):
            assert cur.startswith(prev.split("=")[1])
        assert steps[-1].split("=")[1] == ans
        wrong += ans != r.answer
    assert 0.3 * len(recs) < wrong < 0.9 * len(recs)


def test_answer_distribution_sums_to_one_and_matches_sampling():
    r = synthetic.make_split("test", 1, seed=7, difficulty=3)[0]
    dist = synthetic.answer_distribution(r.problem)
    assert abs(sum(dist.values()) - 1.0) < 1e-9
    rng = random.Random(1)
    n = 4000
    hits = sum(
        last_boxed(synthetic.worked_solution(r.problem, rng, synthetic.DEFAULT_MISTAKES)) == r.answer
        for _ in range(n)
    )
    assert abs(hits / n - dist.get(r.answer, 0.0)) < 0.03


def test_no_mistakes_model_is_always_correct():
    for r in synthetic.make_split("test", 20, seed=0, difficulty=3):
        assert synthetic.answer_distribution(r.problem, synthetic.NO_MISTAKES) == {r.answer: 1.0}


def test_outcome_space_is_small_and_modes_are_sometimes_wrong():
    recs = synthetic.make_split("test", 150, seed=0, difficulty=3)
    sizes = [len(synthetic.plausible_answers(r.problem)) for r in recs]
    assert min(sizes) >= 3
    assert max(sizes) <= 60
    assert 5 <= statistics.mean(sizes) <= 30
    stats = synthetic.demo_stats(recs)
    assert 0.1 < stats["mode_is_correct"] < 0.8  # the correct answer is often not the mode
    assert stats["pass@32"] < 0.97  # some questions' correct answer is rare


def test_mistakes_are_shared_facts():
    mm = synthetic.DEFAULT_MISTAKES
    facts = [("*", a, b) for a in range(2, 10) for b in range(2, 10)]
    facts += [(op, u, d) for op in "+-" for u in range(10) for d in range(1, 10)]
    classes = [mm.fact_class(f) for f in facts]
    share = classes.count("systematic") / len(facts)
    assert 0.15 < share < 0.35
    assert classes.count("reliable") > len(facts) / 2
    # the same fact gives the same systematic wrong value in any question (units digit only)
    sys_fact = next(f for f in facts if f[0] == "+" and mm.fact_class(f) == "systematic")
    _, u, d = sys_fact
    w1 = max(synthetic.step_outcomes("+", 10 + u, d), key=lambda kv: kv[1])[0] - 10
    w2 = max(synthetic.step_outcomes("+", 40 + u, d), key=lambda kv: kv[1])[0] - 40
    assert w1 == w2 != u + d


def test_difficulty_knob():
    easy = synthetic.make_split("test", 150, seed=0, difficulty=1)
    hard = synthetic.make_split("test", 150, seed=0, difficulty=5)
    assert all(synthetic.parse_problem(r.problem).difficulty == 1 for r in easy)
    assert all(synthetic.parse_problem(r.problem).difficulty == 5 for r in hard)
    e, h = synthetic.demo_stats(easy), synthetic.demo_stats(hard)
    assert e["pass@1"] > h["pass@1"] + 0.1
    assert e["plausible_answers"] < h["plausible_answers"]


def test_iter_demonstrations_is_seeded():
    recs = synthetic.make_split("train", 20, seed=0, difficulty=3)
    a = synthetic.iter_demonstrations(recs, seed=3)
    b = synthetic.iter_demonstrations(recs, seed=3)
    first = [next(a) for _ in range(30)]
    assert first == [next(b) for _ in range(30)]
    assert {p for p, _ in first} <= {r.problem for r in recs}
