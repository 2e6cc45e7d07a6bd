"""Statistics over seeds, and the base model's sampling error.

Seeds. Every headline number is the mean over seeds with a 95% Student t-interval over seeds
(``mean +- t(m-1) * s / sqrt(m)``, m seeds; :func:`t_interval`). A method's difference from
GRPO is *paired by seed* (seed s of the method minus seed s of GRPO, seeds present in both),
t-interval of the differences (:func:`paired_diff`). A difference from the base model (one
model, evaluated once) is method seed s minus the base value, and its interval adds the base
value's sampling error: ``se^2 = s^2/m + se_base^2`` with Welch-Satterthwaite degrees of
freedom, se_base from re-drawing the base model's n samples per question (pass@k:
:func:`pass_at_k_se`; distinct answers: :func:`distinct_se`; RL-as-sampling solved fraction:
``obe.analysis.sampling_curve.base_solved_se``; the other base numbers are treated as exact).
Questions are held fixed: the intervals are about this test set, not about other questions.
With one seed (or one common seed) the interval is ``None`` (shown as n/a). A percentile
bootstrap over 3 seeds was too narrow (false positives 4-5x nominal); ``tests/test_statistics.py``
checks the t-interval's false-positive rate on simulated data with no effect.

No scipy: the Student t quantiles come from the regularised incomplete beta function.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np

from obe.analysis.options import Options
from obe.grading import SENTINEL_KEYS
from obe.metrics import pass_at_k


def is_finite(v: Any) -> bool:
    """A real number that is not nan or inf (None and strings are not)."""
    return v is not None and isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(float(v))


def bootstrap_ci(values: Sequence[float], n_boot: int = 10000, seed: int = 0,
                 level: float = 0.95) -> tuple[Optional[float], Optional[float]]:
    """Percentile bootstrap interval of the mean; (None, None) with fewer than two values.

    Not used for the headline intervals any more: with 3-5 seeds it returns about the min-max
    range and is too narrow (``tests/test_statistics.py`` measures its false-positive rate).
    Kept as the reference the t-interval is compared with.
    """
    x = np.asarray([float(v) for v in values if is_finite(v)], dtype=float)
    if x.size < 2:
        return None, None
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(means, [alpha, 100.0 - alpha])
    return float(lo), float(hi)


# Student t quantiles without scipy: the t CDF through the regularised incomplete beta function
# (continued fraction, modified Lentz; Numerical Recipes 6.4), inverted by bisection.


def _betacf(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` (> 0, not necessarily whole) degrees of freedom."""
    if not df > 0:
        raise ValueError(f"df must be > 0, got {df}")
    if math.isinf(df):
        return 0.5 * math.erfc(-t / math.sqrt(2.0))
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def student_t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p (bisection on :func:`student_t_cdf`, to ~1e-10)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p < 0.5:
        return -student_t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while student_t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if student_t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-10 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def t_interval(values: Sequence[float], level: float = 0.95,
               extra_se: Optional[float] = None) -> tuple[Optional[float], Optional[float], Optional[float]]:
    """Interval of the mean of per-seed values: ``mean +- t(df) * se``; returns (lo, hi, df).

    ``se^2 = s^2 / m`` (s: std over the m seeds, ddof 1) plus ``extra_se^2``, the squared
    standard error of a constant that was subtracted from every value (the base model's
    estimate: one model, one evaluation, so its sampling error is not in the seed spread).
    df: m - 1, or the Welch-Satterthwaite value ``se^4 / ((s^2/m)^2 / (m - 1))`` when
    ``extra_se`` is given (its own df taken as infinite: it comes from >= 100 questions).
    (None, None, None) with fewer than two values.
    """
    x = np.asarray([float(v) for v in values if is_finite(v)], dtype=float)
    m = x.size
    if m < 2:
        return None, None, None
    var_seed = float(x.var(ddof=1)) / m
    var_extra = float(extra_se) ** 2 if is_finite(extra_se) else 0.0
    var = var_seed + var_extra
    if var <= 0.0:  # every seed the same value and nothing else uncertain
        return float(x.mean()), float(x.mean()), float(m - 1)
    df = (m - 1) * var * var / (var_seed * var_seed) if var_seed > 0 else math.inf
    half = student_t_quantile(0.5 + level / 2.0, df) * math.sqrt(var)
    return float(x.mean() - half), float(x.mean() + half), float(df)


def seed_stats(per_seed: Mapping[Any, Optional[float]], opts: Options = Options(),
               extra_se: Optional[float] = None) -> dict[str, Any]:
    """Mean, std (ddof 1), t-interval and per-seed values of one quantity (see :func:`t_interval`)."""
    vals = {str(s): float(v) for s, v in sorted(per_seed.items(), key=lambda t: str(t[0])) if is_finite(v)}
    x = np.array(list(vals.values()), dtype=float)
    if x.size == 0:
        return {"mean": None, "std": None, "lo": None, "hi": None, "df": None, "n": 0, "per_seed": {}}
    lo, hi, df = t_interval(x, opts.level, extra_se)
    out = {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if x.size > 1 else None,
           "lo": lo, "hi": hi, "df": df, "n": int(x.size), "per_seed": vals}
    if is_finite(extra_se):
        out["base_se"] = float(extra_se)
    return out


def paired_diff(a: Mapping[Any, Optional[float]], b: Mapping[Any, Optional[float]] | float | None,
                opts: Options = Options(), b_se: Optional[float] = None) -> dict[str, Any]:
    """a - b paired by seed (b a mapping) or a - b for a constant b (the base model).

    ``b_se``: the sampling standard error of a constant ``b``; it widens the interval.
    """
    if b is None:
        return seed_stats({}, opts)
    if isinstance(b, Mapping):
        d = {s: a[s] - b[s] for s in a if s in b and is_finite(a[s]) and is_finite(b[s])}
        return seed_stats(d, opts)
    d = {s: a[s] - b for s in a if is_finite(a[s]) and is_finite(b)}
    return seed_stats(d, opts, extra_se=b_se)


# The base model's sampling error. One evaluation of it draws n samples per question; had
# it drawn others, its mean would differ. Per question the variance is that of a
# re-draw of the n samples (a parametric bootstrap, computed exactly): correct counts are
# Binomial(n, p~) with p~ = (c + 1/2) / (n + 1), a Jeffreys-style estimate that keeps
# questions with c = 0 or c = n uncertain (the plug-in c/n would call them exact and
# understate the error of pass@k at large k); answers are Multinomial(n, counts / n).
# The mean over Q questions has variance sum_q var_q / Q^2 (questions fixed, samples drawn
# independently).


def pass_at_k_draw_var(n: int, c: int, k: int) -> float:
    """Variance of the unbiased pass@k of a question re-drawn as c* ~ Binomial(n, p~)."""
    p = (c + 0.5) / (n + 1.0)
    cs = np.arange(n + 1)
    logpmf = np.array([math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) for j in cs]) \
        + cs * math.log(p) + (n - cs) * math.log1p(-p)
    pmf = np.exp(logpmf)
    f = np.array([pass_at_k(n, int(j), k) for j in cs])
    mean = float(pmf @ f)
    return float(pmf @ (f - mean) ** 2)


def pass_at_k_se(counts: Sequence[tuple[int, int]], k: int) -> Optional[float]:
    """Standard error of the mean pass@k over questions given each question's (n, c)."""
    if not counts:
        return None
    cache: dict[tuple[int, int], float] = {}
    total = 0.0
    for n, c in counts:
        if (n, c) not in cache:
            cache[(n, c)] = pass_at_k_draw_var(int(n), int(c), k) if k <= n else 0.0
        total += cache[(n, c)]
    return math.sqrt(total) / len(counts)


def distinct_draw_var(counts: Mapping[str, int], exclude: frozenset[str] = SENTINEL_KEYS) -> float:
    """Variance of the number of distinct answers when the n samples are re-drawn from counts/n.

    With J_a = 1{answer a absent}: Var(sum_a (1 - J_a)) = sum_{a,b} Cov(J_a, J_b), where
    P(J_a) = (1 - p_a)^n and P(J_a J_b) = (1 - p_a - p_b)^n for a != b (sentinel keys are
    drawn but never counted).
    """
    n = sum(counts.values())
    if n == 0:
        return 0.0
    p = np.array([v / n for key, v in counts.items() if key not in exclude], dtype=float)
    if p.size == 0:
        return 0.0
    absent = (1.0 - p) ** n
    both = np.clip(1.0 - p[:, None] - p[None, :], 0.0, None) ** n
    cov = both - absent[:, None] * absent[None, :]
    np.fill_diagonal(cov, absent * (1.0 - absent))
    return float(max(0.0, cov.sum()))


def distinct_se(per_question: Sequence[Mapping[str, Any]]) -> Optional[float]:
    """Standard error of the mean distinct answers over questions (``answer_counts`` per question)."""
    rows = [q.get("answer_counts") for q in per_question]
    if not rows or any(r is None for r in rows):
        return None
    return math.sqrt(sum(distinct_draw_var(r) for r in rows)) / len(rows)
