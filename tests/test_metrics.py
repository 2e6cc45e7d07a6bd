"""Metrics against hand-computed values and brute-force enumeration of k-subsets."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obe.metrics import (
    answer_entropy,
    distinct_answers,
    maj_at_k,
    mean_at_n,
    mean_pass_at_k,
    pass_at_k,
    pass_at_k_curve,
    powers_of_two_upto,
)

NONE = "<no_answer>"


def brute_pass_at_k(n: int, c: int, k: int) -> float:
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


def brute_maj_at_k(keys, correct, k, exclude):
    good = {key for key, ok in zip(keys, correct) if ok}
    total = 0.0
    subsets = list(itertools.combinations(range(len(keys)), k))
    for s in subsets:
        votes = Counter(keys[i] for i in s if keys[i] not in exclude)
        if not votes:
            continue
        top = max(votes.values())
        winners = [key for key, v in votes.items() if v == top]
        total += sum(key in good for key in winners) / len(winners)
    return total / len(subsets)


def test_pass_at_k_hand_values():
    # n=4, c=1, k=2: 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    # n=5, c=2, k=1 is the fraction correct
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 3, 3) == 1.0  # only 2 wrong samples: every 3-subset has a correct one


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_matches_brute_force(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_stable_for_large_n():
    n, c = 1024, 3
    for k in (1, 2, 64, 512, 1000, 1024):
        exact = 1 - math.comb(n - c, k) / math.comb(n, k)  # Python ints: exact then rounded once
        assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-12, abs=1e-15)
    curve = pass_at_k_curve(1024, 1)
    assert all(0.0 <= v <= 1.0 for v in curve)
    assert all(a <= b + 1e-15 for a, b in zip(curve, curve[1:]))  # monotone in k
    assert curve[-1] == 1.0


def test_pass_at_k_rejects_bad_arguments():
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 0)


def test_mean_pass_at_k_and_mean_at_n():
    assert mean_pass_at_k([4, 4], [1, 0], 2) == pytest.approx(0.25)
    assert mean_at_n([True, False, False, True]) == 0.5


def test_maj_at_k_hand_values():
    keys = ["1", "1", "2", NONE]
    ok = [True, True, False, False]
    # k=1: a drawn "1" wins (2/4); "2" or no answer loses -> 0.5
    assert maj_at_k(keys, ok, 1, exclude={NONE}) == pytest.approx(0.5)
    # k=2 (6 subsets): {1,1}=1, {1,2}x2 tie=0.5 each, {1,N}x2=1 each, {2,N}=0 -> 4/6
    assert maj_at_k(keys, ok, 2, exclude={NONE}) == pytest.approx(4 / 6)
    # k=4: "1" has 2 votes vs 1 -> always correct
    assert maj_at_k(keys, ok, 4, exclude={NONE}) == pytest.approx(1.0)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b", "c", "d", NONE]), min_size=1, max_size=9),
    st.data(),
)
def test_maj_at_k_matches_brute_force(keys, data):
    good = data.draw(st.sampled_from(["a", "b", "none"]))
    ok = [key == good for key in keys]
    k = data.draw(st.integers(1, len(keys)))
    expected = brute_maj_at_k(keys, ok, k, {NONE})
    assert maj_at_k(keys, ok, k, exclude={NONE}) == pytest.approx(expected, abs=1e-12)


def test_maj_at_k_two_correct_keys():
    # If two keys are both graded correct, either winning counts.
    keys = ["a", "b", "c", "c"]
    ok = [True, True, False, False]
    for k in range(1, 5):
        assert maj_at_k(keys, ok, k, exclude=()) == pytest.approx(brute_maj_at_k(keys, ok, k, set()))


def test_maj_at_k_n32_random_against_brute_force_at_small_k():
    rng = random.Random(0)
    keys = [rng.choice("abcdefg") for _ in range(12)]
    ok = [key == "a" for key in keys]
    for k in (1, 2, 3, 5):
        assert maj_at_k(keys, ok, k, exclude=()) == pytest.approx(brute_maj_at_k(keys, ok, k, set()))


def test_diversity_metrics():
    keys = ["1", "1", "2", "3", NONE, NONE]
    assert distinct_answers(keys, exclude={NONE}) == 3
    assert distinct_answers(keys, exclude=()) == 4
    assert answer_entropy(["1", "1"], exclude={NONE}) == 0.0
    assert answer_entropy(["1", "2", "3", "4"], exclude=()) == pytest.approx(math.log(4))
    assert answer_entropy([NONE], exclude={NONE}) == 0.0
    # p = (1/2, 1/4, 1/4): H = 1/2 log 2 + 2 * 1/4 log 4 = 1.5 log 2
    assert answer_entropy(["1", "1", "2", "3"], exclude=()) == pytest.approx(1.5 * math.log(2))


def test_powers_of_two():
    assert powers_of_two_upto(32) == [1, 2, 4, 8, 16, 32]
    assert powers_of_two_upto(24) == [1, 2, 4, 8, 16, 24]
    assert powers_of_two_upto(1) == [1]
