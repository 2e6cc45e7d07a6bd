"""The analysis intervals on simulated data with no effect: false positives at most nominal.

Each check simulates R experiments in which the claimed difference is exactly zero and
counts how often the 95% interval excludes 0 on one side (nominal: 2.5% per side). With
R = 2000 the Monte Carlo standard error of a rate near 2.5% is 0.35 points; the checks allow
3 of them. The same data also show why the old intervals were replaced: the percentile
bootstrap over 3 seeds, and a t-interval that treats the base model as exact, both exceed
the nominal rate by far (so the checks can tell right from wrong).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from obe import analysis as A
from obe.metrics import pass_at_k

R = 2000
NOMINAL = 0.025
TOL = 3 * math.sqrt(NOMINAL * (1 - NOMINAL) / R)
Q, N = 128, 32  # test questions, samples per question (the embedded default's evaluation)


def _questions(rng: np.random.Generator) -> np.ndarray:
    """True p(correct) per question: many near 0 (what makes pass@32 noisy), some near 1."""
    return np.concatenate([rng.beta(0.3, 3.0, Q // 2), rng.beta(1.0, 1.0, Q // 2)])


def _tables(k: int) -> tuple[np.ndarray, np.ndarray]:
    f = np.array([pass_at_k(N, c, k) for c in range(N + 1)])
    v = np.array([A.pass_at_k_draw_var(N, c, k) for c in range(N + 1)])
    return f, v


def _rates(lo: np.ndarray, hi: np.ndarray) -> tuple[float, float]:
    return float(np.mean(lo > 0)), float(np.mean(hi < 0))


@pytest.mark.parametrize("seeds", [3, 5])
@pytest.mark.parametrize("k", [1, 32])
def test_difference_from_base_false_positive_rate(seeds, k):
    """Trained model = base model (no effect): pass@k(method) - pass@k(base), base sampled once."""
    rng = np.random.default_rng(1000 * seeds + k)
    f, v = _tables(k)
    lo_t, hi_t, lo_exact = [], [], []
    for _ in range(R):
        p = _questions(rng)
        base_c = rng.binomial(N, p)
        base = f[base_c].mean()
        base_se = math.sqrt(v[base_c].sum()) / Q
        vals = [f[rng.binomial(N, p)].mean() - base for _ in range(seeds)]
        lo, hi, _ = A.t_interval(vals, 0.95, extra_se=base_se)
        lo_t.append(lo)
        hi_t.append(hi)
        lo_exact.append(A.t_interval(vals, 0.95)[0])
    up, down = _rates(np.array(lo_t), np.array(hi_t))
    assert up <= NOMINAL + TOL and down <= NOMINAL + TOL, (up, down)
    # treating the base model as exact: far too many false positives
    assert float(np.mean(np.array(lo_exact) > 0)) > 2 * NOMINAL


@pytest.mark.parametrize("seeds", [3, 5])
def test_paired_difference_false_positive_rate(seeds):
    """Two identical methods, each seed with its own model effect and a shared seed effect."""
    rng = np.random.default_rng(seeds)
    f, _ = _tables(1)
    lo_t, hi_t, lo_boot = [], [], []
    for r in range(R):
        p = _questions(rng)
        logit = np.log(p / (1 - p))
        diffs = []
        for _ in range(seeds):
            shared = rng.normal(0, 0.3)  # same data order for both methods
            a, b = (1 / (1 + np.exp(-(logit + shared + rng.normal(0, 0.4)))) for _ in range(2))
            diffs.append(f[rng.binomial(N, a)].mean() - f[rng.binomial(N, b)].mean())
        lo, hi, _ = A.t_interval(diffs, 0.95)
        lo_t.append(lo)
        hi_t.append(hi)
        if seeds == 3 and r < 400:  # the old interval, on a subset (the bootstrap is the slow part)
            lo_boot.append(A.bootstrap_ci(diffs, 2000, seed=r)[0])
    up, down = _rates(np.array(lo_t), np.array(hi_t))
    assert up <= NOMINAL + TOL and down <= NOMINAL + TOL, (up, down)
    if lo_boot:
        assert float(np.mean(np.array(lo_boot) > 0)) > 2 * NOMINAL


def test_t_quantiles_and_interval_hand_computed():
    # tabulated Student t quantiles
    for df, q in ((1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (math.inf, 1.95996)):
        assert A.student_t_quantile(0.975, df) == pytest.approx(q, abs=1e-4)
    assert A.student_t_cdf(0.0, 3) == pytest.approx(0.5)
    assert A.student_t_quantile(0.025, 4) == pytest.approx(-2.7764, abs=1e-4)
    # values 1, 2, 3: mean 2, s = 1, se = 1/sqrt(3), df 2
    lo, hi, df = A.t_interval([1.0, 2.0, 3.0])
    assert df == 2 and (lo, hi) == pytest.approx((2 - 4.302653 / math.sqrt(3), 2 + 4.302653 / math.sqrt(3)), abs=1e-5)
    # with a base standard error of 1/sqrt(3): se^2 doubles, Welch df = 2 * (2/3)^2 / (1/3)^2 = 8
    lo, hi, df = A.t_interval([1.0, 2.0, 3.0], extra_se=1 / math.sqrt(3))
    assert df == pytest.approx(8.0)
    half = A.student_t_quantile(0.975, 8.0) * math.sqrt(2 / 3)
    assert (lo, hi) == pytest.approx((2 - half, 2 + half))
    assert A.t_interval([1.0]) == (None, None, None)


def test_base_sampling_error_hand_computed():
    # pass@1 of one question, c = 1 of n = 1: p~ = 0.75, variance 0.75 * 0.25
    assert A.pass_at_k_draw_var(1, 1, 1) == pytest.approx(0.1875)
    # pass@2 with n = 2 is 1{c > 0}: Bernoulli(1 - (1 - p~)^2) with p~ = 0.5 / 3 for c = 0
    q = 1 - (1 - 0.5 / 3) ** 2
    assert A.pass_at_k_draw_var(2, 0, 2) == pytest.approx(q * (1 - q))
    assert A.pass_at_k_se([(2, 0), (2, 0)], 2) == pytest.approx(math.sqrt(2 * q * (1 - q)) / 2)
    # distinct answers of {a: 1, b: 1} re-drawn twice: 1 or 2 distinct with probability 1/2 each
    assert A.distinct_draw_var({"a": 1, "b": 1}) == pytest.approx(0.25)
    # sentinel keys are drawn but not counted: {a: 1, <no_answer>: 1} -> 0 or 1 distinct, p(1) = 3/4
    assert A.distinct_draw_var({"a": 1, "<no_answer>": 1}) == pytest.approx(0.75 * 0.25)
    assert A.distinct_draw_var({"a": 5}) == 0.0
    # against a brute-force simulation
    rng = np.random.default_rng(0)
    counts = {"a": 5, "b": 2, "c": 1}
    draws = rng.multinomial(8, np.array([5, 2, 1]) / 8, size=200_000)
    assert A.distinct_draw_var(counts) == pytest.approx(float((draws > 0).sum(axis=1).var()), rel=0.02)
