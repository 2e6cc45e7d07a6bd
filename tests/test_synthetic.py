"""The synthetic reasoning task: determinism, disjoint splits, solutions, outcome space."""

from __future__ import annotations

import random
import statistics

import pytest

from obe.tasks import synthetic
from obe.grading.latex import last_boxed
from obe.core.records import Record


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
    assert 0.08 < share < 0.25
    assert classes.count("reliable") > len(facts) / 2
    # the same fact gives the same systematic wrong value in any question (units digit only)
    sys_fact = next(f for f in facts if f[0] == "+" and mm.fact_class(f) == "systematic")
    _, u, d = sys_fact
    w1 = max(synthetic.step_outcomes("+", 10 + u, d), key=lambda kv: kv[1])[0] - 10
    w2 = max(synthetic.step_outcomes("+", 40 + u, d), key=lambda kv: kv[1])[0] - 40
    assert w1 == w2 != u + d


def test_difficulty_knob():
    easy = synthetic.make_split("test", 80, seed=0, difficulty=1)
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


# ------------------------------------------------------------------ the convention symbol


def test_every_question_has_one_convention_step_with_both_readings_in_range():
    for r in synthetic.make_split("train", 300, seed=2, difficulty=3):
        q = synthetic.parse_problem(r.problem)
        at = [i for i, (op, _) in enumerate(q.steps) if op == synthetic.CONVENTION]
        assert len(at) == 1
        i = at[0]
        before = q.true_values()[i]  # the value the ? step starts from
        d = q.steps[i][1]
        assert 0 <= before - d and before + d <= synthetic.MAX_VALUE
        assert q.convention == q.meanings()[i] in "+-"


def test_convention_is_mostly_plus_and_fixed_per_question():
    recs = synthetic.make_split("train", 2000, seed=0, difficulty=3)
    plus = [synthetic.parse_problem(r.problem).convention == "+" for r in recs]
    assert abs(sum(plus) / len(plus) - synthetic.CONVENTION_PLUS_SHARE) < 0.04
    # a pure function of the text: the same question reads the same way in any split or seed
    q = synthetic.parse_problem(recs[0].problem)
    assert synthetic.parse_problem(q.problem).convention == q.convention


def test_correct_solution_writes_the_meaning_and_student_reads_plus_everywhere():
    q = synthetic.Question(7, 3, (("+", 5), ("?", 2)))
    sign = q.meanings()[1]
    assert synthetic.worked_solution(q.problem) == f"7*3=21 21+5=26 26{sign}2={26 + 2 if sign == '+' else 26 - 2} " \
        f"\\boxed{{{q.answer}}}"
    assert synthetic.read_convention(q.problem, synthetic.worked_solution(q.problem)) == sign
    rng = random.Random(0)
    recs = synthetic.make_split("test", 60, seed=0, difficulty=3)
    for meaning in "+-":
        sub = [r for r in recs if synthetic.parse_problem(r.problem).convention == meaning]
        reads = [synthetic.read_convention(r.problem, synthetic.worked_solution(r.problem, rng, synthetic.DEFAULT_MISTAKES))
                 for r in sub for _ in range(100)]
        assert None not in reads
        # the student does not know the convention: the same rate on both kinds of question
        assert abs(reads.count("+") / len(reads) - synthetic.DEFAULT_MISTAKES.read_plus) < 0.05


def test_reading_on_minority_questions_is_what_limits_them():
    recs = synthetic.make_split("test", 400, seed=0, difficulty=3)
    minor = [r for r in recs if synthetic.parse_problem(r.problem).convention == "-"]
    major = [r for r in recs if synthetic.parse_problem(r.problem).convention == "+"]
    assert 0.2 < len(minor) / len(recs) < 0.4
    base = synthetic.DEFAULT_MISTAKES
    collapsed = synthetic.MistakeModel(read_plus=0.97)
    # reading "+" more often helps most questions and hurts the minority, at pass@1 and pass@32
    assert synthetic.demo_stats(major, collapsed)["pass@1"] > synthetic.demo_stats(major, base)["pass@1"]
    assert synthetic.demo_stats(minor, collapsed)["pass@32"] < synthetic.demo_stats(minor, base)["pass@32"] - 0.2


def test_read_convention_and_rollout_metrics():
    q = synthetic.Question(7, 3, (("+", 5), ("?", 2)))
    p = q.problem
    assert synthetic.read_convention(p, "7*3=21 21+5=26 26-2=24 \\boxed{24}") == "-"
    assert synthetic.read_convention(p, "7*3=21 21+5=26 26+2=29 \\boxed{29}") == "+"  # slips do not matter
    assert synthetic.read_convention(p, "7*3=21 21+5=26 26+3=29") is None  # not the question's digit
    assert synthetic.read_convention(p, "7*3=21") is None
    assert synthetic.read_convention("What is 2+2?", "4") is None
    right, wrong = q.meanings()[1], "+" if q.meanings()[1] == "-" else "-"
    texts = [f"7*3=21 21+5=26 26{right}2=0", f"7*3=21 21+5=26 26{wrong}2=0", "garbage", f"7*3=21 21+5=26 26+2=0"]
    m = synthetic.rollout_metrics([p] * 4, texts)
    assert m["convention/unreadable"] == 0.25
    assert m["convention/read_plus"] == pytest.approx(2 / 3 if right == "+" else 2 / 3)
    key = "convention/right_majority" if right == "+" else "convention/right_minority"
    other = "convention/right_minority" if right == "+" else "convention/right_majority"
    assert m[key] == pytest.approx((1 + (right == "+")) / 3) and m[other] is None
    assert synthetic.rollout_metrics(["What is 2+2?"], ["4"]) == dict.fromkeys(synthetic.ROLLOUT_METRICS)
    assert set(m) == set(synthetic.ROLLOUT_METRICS)
