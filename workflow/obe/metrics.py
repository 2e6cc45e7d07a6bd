"""Sample-based evaluation metrics: pass@k, maj@k, mean@n, answer diversity.

Conventions (every function here is pure and works on plain Python values):

- ``pass_at_k(n, c, k)`` is the unbiased estimator of Chen et al. (2021),
  ``1 - C(n-c, k) / C(n, k)``: the probability that a uniformly random k-subset of the
  n samples holds at least one correct one. Computed as a product of ratios, so it is
  exact to float precision for n up to 1024 and beyond (no huge binomials).
- ``maj_at_k(answers, k)`` is the *exact* expectation, over uniformly random k-subsets,
  of "the majority outcome of the subset is correct". Ties between outcomes are broken
  uniformly at random (so a 2-way tie with the correct outcome counts 1/2). Samples
  whose key is in ``exclude`` (no answer, grader timeout) are drawn but do not vote; a
  subset with no voting sample scores 0. Cost grows like k^2 * (number of outcomes)
  numpy vector operations: fine for n <= 256.
- Diversity metrics count *answers*: keys in ``exclude`` are not answers. Callers pass
  ``exclude=obe.grading.SENTINEL_KEYS`` (the default when left as ``None``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Sequence

import numpy as np


def _default_exclude(exclude: Collection[str] | None) -> Collection[str]:
    if exclude is not None:
        return exclude
    from obe.grading import SENTINEL_KEYS  # the grader owns the sentinel keys

    return SENTINEL_KEYS


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one question with ``c`` correct among ``n`` samples.

    1 - C(n-c, k)/C(n, k) = 1 - prod_{i=n-c+1}^{n} (1 - k/i), which stays in [0, 1]
    without forming binomials (C(1024, 512) is ~1e307).
    """
    if not (0 <= c <= n) or not (1 <= k <= n):
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def mean_pass_at_k(ns: Sequence[int], cs: Sequence[int], k: int) -> float:
    """pass@k averaged over questions (each question must have at least k samples)."""
    if len(ns) != len(cs) or not ns:
        raise ValueError("mean_pass_at_k needs equal-length, non-empty ns and cs")
    return float(np.mean([pass_at_k(n, c, k) for n, c in zip(ns, cs)]))


def pass_at_k_curve(n: int, c: int) -> list[float]:
    """pass@k for every k in 1..n for one question."""
    return [pass_at_k(n, c, k) for k in range(1, n + 1)]


def mean_at_n(correct: Sequence[bool]) -> float:
    """Fraction of correct samples (mean@n, the expected pass@1)."""
    if not correct:
        raise ValueError("mean_at_n needs at least one sample")
    return sum(bool(x) for x in correct) / len(correct)


def maj_at_k(
    keys: Sequence[str],
    correct: Sequence[bool],
    k: int,
    exclude: Collection[str] | None = None,
) -> float:
    """Exact maj@k over outcome keys for one question (see module docstring).

    ``keys[i]`` is sample i's outcome key and ``correct[i]`` whether it is correct; an
    outcome counts as correct when any of its samples is.
    """
    n = len(keys)
    if len(correct) != n or not (1 <= k <= n):
        raise ValueError(f"maj_at_k needs len(keys) == len(correct) and 1 <= k <= n, got n={n} k={k}")
    excl = set(_default_exclude(exclude))
    counts = Counter(keys)
    is_correct = {key: False for key in counts}
    for key, ok in zip(keys, correct):
        is_correct[key] = is_correct[key] or bool(ok)
    voters = [key for key in counts if key not in excl]
    n_excluded = sum(counts[key] for key in counts if key in excl)
    total = math.comb(n, k)
    win = 0.0
    for g in voters:
        if not is_correct[g]:
            continue
        others = [counts[h] for h in voters if h != g]
        for j in range(1, min(counts[g], k) + 1):
            win += math.comb(counts[g], j) * _ways_g_wins(others, n_excluded, j, k - j)
    return win / total


def _ways_g_wins(others: list[int], n_excluded: int, j: int, rest: int) -> float:
    """Weighted number of ways to pick ``rest`` more samples so an outcome with ``j`` votes wins.

    Generating function over the other voting outcomes: an outcome with count c_h
    contributes sum_{s<j} C(c_h, s) x^s (it loses) + C(c_h, j) x^j y (it ties). The
    excluded samples contribute sum_s C(n_excluded, s) x^s. The answer is
    sum_t [x^rest y^t] / (t + 1): with t tied rivals the tie-break picks ours w.p. 1/(t+1).
    """
    max_ties = rest // j
    poly = np.zeros((rest + 1, max_ties + 1))  # poly[x_degree, y_degree]
    poly[0, 0] = 1.0
    for c_h in others:
        new = np.zeros_like(poly)
        for s in range(0, min(j - 1, c_h) + 1):
            if s <= rest:
                new[s:, :] += math.comb(c_h, s) * poly[: rest + 1 - s, :]
        if c_h >= j and j <= rest and max_ties >= 1:
            new[j:, 1:] += math.comb(c_h, j) * poly[: rest + 1 - j, :-1]
        poly = new
    if n_excluded:
        new = np.zeros_like(poly)
        for s in range(0, min(n_excluded, rest) + 1):
            new[s:, :] += math.comb(n_excluded, s) * poly[: rest + 1 - s, :]
        poly = new
    weights = 1.0 / (np.arange(max_ties + 1) + 1.0)
    return float(poly[rest, :] @ weights)


def distinct_answers(keys: Sequence[str], exclude: Collection[str] | None = None) -> int:
    """Number of distinct outcome keys, not counting excluded (non-answer) keys."""
    excl = set(_default_exclude(exclude))
    return len({key for key in keys if key not in excl})


def answer_entropy(keys: Sequence[str], exclude: Collection[str] | None = None) -> float:
    """Shannon entropy (nats) of the empirical answer distribution over non-excluded keys.

    0 when every answer is the same (or there is none); log(m) for m equally frequent answers.
    """
    excl = set(_default_exclude(exclude))
    counts = Counter(key for key in keys if key not in excl)
    total = sum(counts.values())
    if total == 0:
        return 0.0
    probs = np.array(list(counts.values()), dtype=float) / total
    return float(-(probs * np.log(probs)).sum())


def powers_of_two_upto(n: int) -> list[int]:
    """The k values reported in tables: 1, 2, 4, ... up to n (and n itself)."""
    ks = [1 << i for i in range(n.bit_length()) if (1 << i) <= n]
    if ks[-1] != n:
        ks.append(n)
    return ks
