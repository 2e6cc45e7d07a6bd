"""Analysis stage: evaluation and training outputs -> numbers, tables and figures.

    python -m obe.analysis \\
        --eval base:0:synthetic=results/X/eval/base/step0/synthetic \\
        --eval grpo__s0:100:synthetic=results/X/eval/grpo__s0/step100/synthetic ... \\
        --train grpo__s0=results/X/train/grpo__s0 ... \\
        --base-train results/X/graded/base/step0/train.jsonl \\
        --out-dir results/X/analysis [--wandb-dir DIR --experiment NAME]

Inputs (Snakemake owns the paths; every flag is repeatable where it makes sense):

- ``--eval RUN:STEP:DATASET=DIR``: an ``obe.evaluate`` output folder (``summary.json`` and,
  optionally, ``per_question.jsonl``). RUN is ``base`` or ``{method}__s{seed}``.
- ``--train RUN=DIR``: an ``obe.train`` run folder (``metrics.jsonl``, ``rollouts.jsonl``,
  ``config.json``).
- ``--base-train FILE``: ``obe.grade`` rows of base-model samples on the *training* set.

Outputs in ``--out-dir``: ``analysis.json`` (every number, the list of figures and tables
with captions and reading guides, the paper-vs-us claims, notes), PNG figures, and each
table as ``.tsv`` and ``.md``. ``python -m obe.report`` turns the folder into one HTML file.

Definitions (also written into ``analysis.json`` under ``definitions``):

- Seeds. Every headline number is the mean over seeds with a 95% Student t-interval over
  seeds (``mean +- t(m-1) * s / sqrt(m)``, m seeds; :func:`t_interval`). A method's
  difference from GRPO is *paired by seed* (seed s of the method minus seed s of GRPO,
  seeds present in both), t-interval of the differences. A difference from the base model
  (one model, evaluated once) is method seed s minus the base value, and its interval adds
  the base value's sampling error: ``se^2 = s^2/m + se_base^2`` with Welch-Satterthwaite
  degrees of freedom, se_base from re-drawing the base model's n samples per question
  (pass@k: :func:`pass_at_k_se`; distinct answers: :func:`distinct_se`; RL-as-sampling
  solved fraction: :func:`base_solved_se`; the other base numbers are treated as exact).
  Questions are held fixed: the intervals are about this test set, not about other
  questions. With one seed (or one common seed) the interval is ``None`` (shown as n/a).
  A percentile bootstrap over 3 seeds was too narrow (false positives 4-5x nominal);
  ``tests/test_statistics.py`` checks the t-interval's false-positive rate on simulated
  data with no effect.
- RL as a sampling process (paper Fig. 2). Every rollout of a training question is a
  sample of it. A question's rollouts are ordered by training step (then sample index), so
  after it has been drawn t times it has k = n*t samples (n = group size; with several
  epochs a question's k grows by n every time it is drawn). At each k on the grid
  n, 2n, ... the *eligible* questions are those with at least k rollouts in that run (all
  of them once every question has been drawn k/n times; a random subset in a partial
  epoch, because the per-epoch order is a seeded shuffle). Over the eligible questions:
  fraction solved (>= 1 correct among its first k rollouts), mean distinct answers among
  the first k, and mean distinct answers over the eligible questions not yet solved.
  Distinct answers never count the sentinel keys (no answer, timeout, error). The base
  model is compared on the *same* eligible questions with k of its samples: by default the
  exact expectation over uniformly random k-subsets of its samples
  (``--base-sampling expected``: solved = the unbiased pass@k, distinct = the sum over
  answers of P(answer in subset); on unsolved questions the ratio
  E[sum_q distinct_q * 1{q unsolved}] / E[#unsolved]), or its first k samples in
  sample_index order (``--base-sampling first``). k is capped at the number of base
  samples per question. The headline comparison uses k* = the largest grid k at which every
  training question is eligible in every GRPO seed (else the largest k with eligible
  questions in all seeds and base samples).
- Table 1 (token entropy) averages ``entropy``, ``entropy/correct``, ``entropy/incorrect``
  of ``metrics.jsonl`` over the last ``--last-frac`` of the logged steps (at least one step)
  per run; then mean (std over seeds, ddof 1).
- Table 2 (distinct answers within a group of n samples) uses the groups of
  ``rollouts.jsonl`` (one group = one question drawn at one step) in the same window: mean
  distinct answers over all groups, over solved groups (>= 1 correct) and unsolved groups,
  group-weighted (falls back to the per-step ``answers/*`` metrics when rollouts are absent).
- Test results use the last evaluated step of the trained runs (per dataset), at k in
  ``--ks`` (default 1, 4, 16, 32, those <= n) and k = n ("large k").

Claims (paper vs us): each claim is a signed difference with its interval. "holds" when
the interval lies strictly on the side the paper claims, "does not hold" when it lies
strictly on the other side, "inconclusive" when it contains 0, when there is one seed
(no interval; the point estimate's sign is reported) or when there are 3 seeds or fewer
(``MAX_FEW_SEEDS``: labelled "only m seeds", with the side the interval lies on, never
called significant), "not tested" when the inputs needed are missing. Multi-part claims
(every k; beats every method) combine parts as written in each claim's ``rule``; "some
exploration method is above GRPO" tests each method at level 1 - 0.05/m (Bonferroni over
the m methods).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np

from obe.rl.methods import METHODS
from obe.core.records import read_json_lines
from obe.grading import SENTINEL_KEYS
from obe.metrics import pass_at_k

# order, labels and colours from the method registry (obe.rl.bonuses.METHODS), plus the base model
METHOD_ORDER = tuple(m.name for m in METHODS)
METHOD_LABELS = {"base": "Base", **{m.name: m.label for m in METHODS}}
METHOD_COLORS = {"base": "#000000", **{m.name: m.color for m in METHODS}}
EXTRA_COLORS = ("#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
PAPER_KS = (1, 4, 16, 32)
RUN_RE = re.compile(r"^(?P<method>[A-Za-z0-9_]+?)__s(?P<seed>\d+)$")
STATUSES = ("holds", "does not hold", "inconclusive", "not tested")
# Results from this many seeds or fewer are labelled and never called significant: the
# t-interval is valid there only if the seed values are close to normal, which 3 values
# cannot show.
MAX_FEW_SEEDS = 3


# ---------------------------------------------------------------------------------------------
# options, names, colours
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    n_boot: int = 10000  # unused by the intervals (t-intervals since issue 13); kept for old callers
    boot_seed: int = 0  # idem
    level: float = 0.95
    last_frac: float = 0.2
    base_sampling: str = "expected"  # expected | first
    ks: tuple[int, ...] = PAPER_KS
    methods: tuple[str, ...] = METHOD_ORDER
    dpi: int = 120

    def __post_init__(self) -> None:
        if self.base_sampling not in ("expected", "first"):
            raise ValueError(f"base_sampling must be expected or first, got {self.base_sampling!r}")
        if not 0 < self.last_frac <= 1:
            raise ValueError(f"last_frac must be in (0, 1], got {self.last_frac}")
        if not 0 < self.level < 1:
            raise ValueError(f"level must be in (0, 1), got {self.level}")
        if self.n_boot < 1:
            raise ValueError(f"n_boot must be >= 1, got {self.n_boot}")


def parse_run_name(run: str) -> tuple[str, Optional[int]]:
    """``base`` -> ("base", None); ``{method}__s{seed}`` -> (method, seed)."""
    if run == "base":
        return "base", None
    m = RUN_RE.match(run)
    if not m:
        raise ValueError(f"run name {run!r} is neither 'base' nor '{{method}}__s{{seed}}'")
    return m["method"], int(m["seed"])


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def color_map(methods: Iterable[str]) -> dict[str, str]:
    """One fixed colour per method: the paper's five and base are fixed; others by sorted name."""
    colors = dict(METHOD_COLORS)
    extra = sorted(m for m in set(methods) if m not in colors)
    for i, m in enumerate(extra):
        colors[m] = EXTRA_COLORS[i % len(EXTRA_COLORS)]
    return colors


def order_methods(methods: Iterable[str], preferred: Sequence[str] = METHOD_ORDER) -> list[str]:
    ms = set(methods) - {"base"}
    return [m for m in preferred if m in ms] + sorted(ms - set(preferred))


# ---------------------------------------------------------------------------------------------
# statistics over seeds
# ---------------------------------------------------------------------------------------------


def _finite(v: Any) -> bool:
    return v is not None and isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(float(v))


def bootstrap_ci(values: Sequence[float], n_boot: int = 10000, seed: int = 0,
                 level: float = 0.95) -> tuple[Optional[float], Optional[float]]:
    """Percentile bootstrap interval of the mean; (None, None) with fewer than two values.

    Not used for the headline intervals any more: with 3-5 seeds it returns about the min-max
    range and is too narrow (``tests/test_statistics.py`` measures its false-positive rate).
    Kept as the reference the t-interval is compared with.
    """
    x = np.asarray([float(v) for v in values if _finite(v)], dtype=float)
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
    x = np.asarray([float(v) for v in values if _finite(v)], dtype=float)
    m = x.size
    if m < 2:
        return None, None, None
    var_seed = float(x.var(ddof=1)) / m
    var_extra = float(extra_se) ** 2 if _finite(extra_se) else 0.0
    var = var_seed + var_extra
    if var <= 0.0:  # every seed the same value and nothing else uncertain
        return float(x.mean()), float(x.mean()), float(m - 1)
    df = (m - 1) * var * var / (var_seed * var_seed) if var_seed > 0 else math.inf
    half = student_t_quantile(0.5 + level / 2.0, df) * math.sqrt(var)
    return float(x.mean() - half), float(x.mean() + half), float(df)


def seed_stats(per_seed: Mapping[Any, Optional[float]], opts: Options = Options(),
               extra_se: Optional[float] = None) -> dict[str, Any]:
    """Mean, std (ddof 1), t-interval and per-seed values of one quantity (see :func:`t_interval`)."""
    vals = {str(s): float(v) for s, v in sorted(per_seed.items(), key=lambda t: str(t[0])) if _finite(v)}
    x = np.array(list(vals.values()), dtype=float)
    if x.size == 0:
        return {"mean": None, "std": None, "lo": None, "hi": None, "df": None, "n": 0, "per_seed": {}}
    lo, hi, df = t_interval(x, opts.level, extra_se)
    out = {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if x.size > 1 else None,
           "lo": lo, "hi": hi, "df": df, "n": int(x.size), "per_seed": vals}
    if _finite(extra_se):
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
        d = {s: a[s] - b[s] for s in a if s in b and _finite(a[s]) and _finite(b[s])}
        return seed_stats(d, opts)
    d = {s: a[s] - b for s in a if _finite(a[s]) and _finite(b)}
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


def fmt(v: Optional[float], digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def fmt_ci(st: Optional[Mapping[str, Any]], digits: int = 3, signed: bool = False) -> str:
    """``0.512 [0.498, 0.530]``; ``0.512 [n/a]`` without an interval; ``n/a`` without data."""
    if not st or st.get("mean") is None:
        return "n/a"
    f = (lambda v: f"{v:+.{digits}f}") if signed else (lambda v: f"{v:.{digits}f}")
    ci = "n/a" if st.get("lo") is None else f"{f(st['lo'])}, {f(st['hi'])}"
    return f"{f(st['mean'])} [{ci}]"


def fmt_mean_std(st: Optional[Mapping[str, Any]], digits: int = 3) -> str:
    if not st or st.get("mean") is None:
        return "n/a"
    return f"{st['mean']:.{digits}f} ({fmt(st.get('std'), digits)})"


# ---------------------------------------------------------------------------------------------
# reading inputs
# ---------------------------------------------------------------------------------------------


def load_eval_dir(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    summary_path = p / "summary.json" if p.is_dir() else p
    if not summary_path.exists():
        raise FileNotFoundError(f"{summary_path}: no summary.json (obe.evaluate output)")
    summary = json.loads(summary_path.read_text())
    pq = summary_path.parent / "per_question.jsonl"
    return {"summary": summary, "per_question": read_json_lines(pq) if pq.exists() else None, "path": str(p)}


def load_train_dir(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    out: dict[str, Any] = {"path": str(p), "metrics": [], "rollouts": None, "config": {}}
    if (p / "metrics.jsonl").exists():
        out["metrics"] = read_json_lines(p / "metrics.jsonl")
    if (p / "rollouts.jsonl").exists():
        out["rollouts"] = read_json_lines(p / "rollouts.jsonl")
    if (p / "config.json").exists():
        out["config"] = json.loads((p / "config.json").read_text())
    if not out["metrics"] and not out["rollouts"]:
        raise FileNotFoundError(f"{p}: neither metrics.jsonl nor rollouts.jsonl (obe.train output)")
    return out


# ---------------------------------------------------------------------------------------------
# RL as a sampling process (Figure 2)
# ---------------------------------------------------------------------------------------------


def question_sequences(rollouts: Iterable[Mapping[str, Any]]) -> dict[str, list[tuple[str, bool]]]:
    """Per question, its rollouts as (outcome_key, correct) in sampling order (step, then file order)."""
    indexed = sorted(enumerate(rollouts), key=lambda t: (int(t[1]["step"]), t[0]))
    seqs: dict[str, list[tuple[str, bool]]] = defaultdict(list)
    for _, r in indexed:
        seqs[str(r["question_id"])].append((str(r["outcome_key"]), bool(r["correct"])))
    return dict(seqs)


def first_k_stats(seqs: Mapping[str, Sequence[tuple[str, bool]]], k: int,
                  questions: Optional[Iterable[str]] = None,
                  exclude: frozenset[str] = SENTINEL_KEYS) -> dict[str, Any]:
    """Solved / distinct answers over each eligible question's first k samples.

    Eligible: questions (of ``questions`` if given) with at least k samples.
    """
    pool = seqs.keys() if questions is None else [q for q in questions if q in seqs]
    eligible = sorted(q for q in pool if len(seqs[q]) >= k)
    solved, distinct, distinct_unsolved = 0, [], []
    for q in eligible:
        first = seqs[q][:k]
        ok = any(c for _, c in first)
        d = len({key for key, _ in first if key not in exclude})
        solved += ok
        distinct.append(d)
        if not ok:
            distinct_unsolved.append(d)
    m = len(eligible)
    return {"k": k, "num_questions": m, "solved": solved, "frac_solved": solved / m if m else None,
            "distinct": float(np.mean(distinct)) if distinct else None,
            "num_unsolved": len(distinct_unsolved),
            "distinct_unsolved": float(np.mean(distinct_unsolved)) if distinct_unsolved else None,
            "questions": eligible}


def _miss(n: int, m: int, k: int) -> float:
    """P(a uniformly random k-subset of n items avoids m given items) = C(n-m, k) / C(n, k)."""
    if m <= 0:
        return 1.0
    if n - m < k:
        return 0.0
    p = 1.0
    for i in range(m):
        p *= (n - k - i) / (n - i)
    return p


def expected_subset_stats(samples: Sequence[tuple[str, bool]], k: int,
                          exclude: frozenset[str] = SENTINEL_KEYS) -> dict[str, float]:
    """Exact expectations over uniformly random k-subsets of one question's samples.

    ``p_solved`` (= unbiased pass@k), ``distinct`` (E[#distinct answers]), ``p_unsolved`` and
    ``distinct_and_unsolved`` (E[#distinct * 1{no correct sample}]).
    """
    n = len(samples)
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k} n={n}")
    c = sum(ok for _, ok in samples)
    all_counts = Counter(key for key, _ in samples if key not in exclude)
    wrong_counts = Counter(key for key, ok in samples if key not in exclude and not ok)
    p_unsolved = _miss(n, c, k)
    return {
        "p_solved": pass_at_k(n, c, k),
        "distinct": sum(1.0 - _miss(n, m, k) for m in all_counts.values()),
        "p_unsolved": p_unsolved,
        "distinct_and_unsolved": sum(p_unsolved - _miss(n, c + m, k) for m in wrong_counts.values()),
    }


def base_sampling_stats(base_seqs: Mapping[str, Sequence[tuple[str, bool]]], k: int,
                        questions: Optional[Iterable[str]] = None, mode: str = "expected",
                        exclude: frozenset[str] = SENTINEL_KEYS) -> dict[str, Any]:
    """The base model's k-sample numbers over ``questions`` (default: all with >= k samples).

    ``mode="first"``: its first k samples (sample_index order), as :func:`first_k_stats`.
    ``mode="expected"``: exact expectation over random k-subsets (see module docstring).
    """
    pool = base_seqs.keys() if questions is None else [q for q in questions if q in base_seqs]
    qs = sorted(q for q in pool if len(base_seqs[q]) >= k)
    if mode == "first":
        return first_k_stats(base_seqs, k, qs, exclude)
    if mode != "expected":
        raise ValueError(f"mode must be expected or first, got {mode!r}")
    if not qs:
        return {"k": k, "num_questions": 0, "solved": None, "frac_solved": None, "distinct": None,
                "num_unsolved": None, "distinct_unsolved": None, "questions": []}
    ex = [expected_subset_stats(base_seqs[q], k, exclude) for q in qs]
    solved = sum(e["p_solved"] for e in ex)
    unsolved = sum(e["p_unsolved"] for e in ex)
    return {"k": k, "num_questions": len(qs), "solved": solved, "frac_solved": solved / len(qs),
            "distinct": float(np.mean([e["distinct"] for e in ex])), "num_unsolved": unsolved,
            "distinct_unsolved": (sum(e["distinct_and_unsolved"] for e in ex) / unsolved) if unsolved > 1e-12 else None,
            "questions": qs}


def base_solved_se(base_seqs: Mapping[str, Sequence[tuple[str, bool]]], k: int, questions: Iterable[str],
                   mode: str = "expected") -> Optional[float]:
    """Sampling standard error of the base model's fraction solved at k over ``questions``.

    ``expected``: of the mean unbiased pass@k (:func:`pass_at_k_se`); ``first``: of the mean
    of 1{a correct sample among the first k}, Bernoulli(1 - (1 - p~)^k) per question.
    """
    qs = [q for q in questions if q in base_seqs]
    if not qs:
        return None
    counts = [(len(base_seqs[q]), sum(ok for _, ok in base_seqs[q])) for q in qs]
    if mode == "expected":
        return pass_at_k_se(counts, k)
    var = 0.0
    for n, c in counts:
        solved = 1.0 - (1.0 - (c + 0.5) / (n + 1.0)) ** k
        var += solved * (1.0 - solved)
    return math.sqrt(var) / len(counts)


def base_sequences(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[tuple[str, bool]]]:
    """Graded base samples per question in sample_index order."""
    by_q: dict[str, list[tuple[int, str, bool]]] = defaultdict(list)
    for r in rows:
        if r.get("outcome_key") is None or r.get("correct") is None:
            raise ValueError(f"base train sample of question {r.get('question_id')!r} is not graded")
        by_q[str(r["question_id"])].append((int(r["sample_index"]), str(r["outcome_key"]), bool(r["correct"])))
    return {q: [(k, c) for _, k, c in sorted(v)] for q, v in by_q.items()}


SAMPLING_METRICS = ("frac_solved", "distinct", "distinct_unsolved")


def sampling_analysis(rl_runs: Mapping[str, Mapping[int, list[Mapping[str, Any]]]],
                      group_sizes: Mapping[str, Mapping[int, int]],
                      base_rows: Optional[list[Mapping[str, Any]]], opts: Options) -> dict[str, Any]:
    """Figure 2 numbers: per method and seed the cumulative curves, the base curve, paired diffs."""
    base_seqs = base_sequences(base_rows) if base_rows else None
    base_n = min((len(v) for v in base_seqs.values()), default=0) if base_seqs else 0
    universe = sorted(base_seqs) if base_seqs else None
    out: dict[str, Any] = {"base_n": base_n, "base_mode": opts.base_sampling, "methods": {}, "notes": [],
                           "num_train_questions": len(universe) if universe else None}
    all_ks: set[int] = set()
    for method, seeds in rl_runs.items():
        per_seed: dict[int, dict[int, dict[str, Any]]] = {}
        for seed, rows in seeds.items():
            seqs = question_sequences(rows)
            if universe is not None:
                outside = set(seqs) - set(universe)
                if outside:
                    out["notes"].append(f"{method} seed {seed}: {len(outside)} rollout questions are not in the "
                                        f"base train samples; they are left out of the RL-as-sampling curves")
            n = group_sizes[method][seed]
            kmax = max((len(s) for s in seqs.values()), default=0)
            curve = {}
            for k in range(n, kmax + 1, n):
                st = first_k_stats(seqs, k, universe)
                if not st["num_questions"]:
                    break
                full = st["num_questions"] == (len(universe) if universe else len(seqs))
                entry = {m: st[m] for m in ("num_questions", "solved", "frac_solved", "distinct", "num_unsolved",
                                             "distinct_unsolved")}
                entry["all_questions"] = full
                if base_seqs and k <= base_n:
                    b = base_sampling_stats(base_seqs, k, st["questions"], opts.base_sampling)
                    entry["base"] = {m: b[m] for m in SAMPLING_METRICS}
                    entry["base_se"] = {"frac_solved": base_solved_se(base_seqs, k, st["questions"], opts.base_sampling)}
                curve[k] = entry
            per_seed[seed] = curve
            all_ks.update(curve)
        ks = sorted(set.intersection(*(set(c) for c in per_seed.values()))) if per_seed else []
        res: dict[str, Any] = {"k": ks, "seeds": sorted(per_seed), "per_seed": {str(s): {str(k): v for k, v in c.items()}
                                                                               for s, c in per_seed.items()}}
        for m in SAMPLING_METRICS:
            res[m] = [seed_stats({s: per_seed[s][k][m] for s in per_seed}, opts) for k in ks]
            # the base model's sampling error (frac_solved only; seeds may see different questions
            # in a partial epoch, so the largest of their base standard errors is used)
            res[f"{m}_minus_base"] = [
                seed_stats({s: (per_seed[s][k][m] - per_seed[s][k]["base"][m])
                            for s in per_seed if "base" in per_seed[s][k]
                            and _finite(per_seed[s][k][m]) and _finite(per_seed[s][k]["base"][m])}, opts,
                           extra_se=max((per_seed[s][k].get("base_se", {}).get(m) or 0.0 for s in per_seed),
                                        default=0.0) or None)
                for k in ks]
        full_ks = [k for k in ks if all(per_seed[s][k]["all_questions"] for s in per_seed)]
        base_ks = [k for k in ks if all("base" in per_seed[s][k] for s in per_seed)]
        cand = [k for k in full_ks if k in base_ks] or base_ks
        res["k_star"] = max(cand) if cand else None
        res["k_star_all_questions"] = bool(cand) and cand[-1] in full_ks
        out["methods"][method] = res
    if base_seqs:
        grid = list(range(1, base_n + 1))
        out["base"] = {"k": grid, **{m: [base_sampling_stats(base_seqs, k, None, opts.base_sampling)[m] for k in grid]
                                     for m in SAMPLING_METRICS}}
    return out


# ---------------------------------------------------------------------------------------------
# training tables (Table 1 entropy, Table 2 distinct answers per group)
# ---------------------------------------------------------------------------------------------


def window_steps(steps: Iterable[int], last_frac: float) -> list[int]:
    """The last ``ceil(last_frac * #steps)`` distinct steps (at least one)."""
    s = sorted(set(int(x) for x in steps))
    if not s:
        return []
    return s[-max(1, math.ceil(last_frac * len(s))):]


def rollout_groups(rollouts: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Groups = runs of consecutive rows with the same (step, question) and increasing sample_index."""
    groups: list[dict[str, Any]] = []
    prev = None
    for r in rollouts:
        key = (int(r["step"]), str(r["question_id"]))
        idx = int(r.get("sample_index", 0))
        if prev is None or key != prev[0] or idx <= prev[1]:
            groups.append({"step": key[0], "question_id": key[1], "keys": [], "correct": []})
        groups[-1]["keys"].append(str(r["outcome_key"]))
        groups[-1]["correct"].append(bool(r["correct"]))
        prev = (key, idx)
    return groups


def group_diversity(groups: Sequence[Mapping[str, Any]], steps: Optional[Iterable[int]] = None,
                    exclude: frozenset[str] = SENTINEL_KEYS) -> dict[str, Any]:
    """Mean distinct answers per group over all / solved / unsolved groups (optionally some steps)."""
    keep = None if steps is None else set(steps)
    allv, sol, uns = [], [], []
    for g in groups:
        if keep is not None and g["step"] not in keep:
            continue
        d = len({k for k in g["keys"] if k not in exclude})
        allv.append(d)
        (sol if any(g["correct"]) else uns).append(d)
    mean = lambda xs: float(np.mean(xs)) if xs else None  # noqa: E731
    return {"all": mean(allv), "solved": mean(sol), "unsolved": mean(uns),
            "num_groups": len(allv), "num_solved": len(sol), "num_unsolved": len(uns)}


def metrics_window_mean(metrics: Sequence[Mapping[str, Any]], key: str, steps: Iterable[int]) -> Optional[float]:
    keep = set(steps)
    xs = [float(r[key]) for r in metrics if int(r["step"]) in keep and _finite(r.get(key))]
    return float(np.mean(xs)) if xs else None


TABLE1_KEYS = (("all", "entropy"), ("correct", "entropy/correct"), ("incorrect", "entropy/incorrect"))
TABLE2_KEYS = (("all", "answers/distinct_per_group"), ("solved", "answers/distinct_solved"),
               ("unsolved", "answers/distinct_unsolved"))


def training_tables(train: Mapping[str, Mapping[int, Mapping[str, Any]]], opts: Options) -> dict[str, Any]:
    """Per method: Table 1 and Table 2 values per seed, their stats, and paired diffs vs GRPO."""
    per: dict[str, dict[str, dict[int, Optional[float]]]] = {}
    sources: dict[str, set[str]] = defaultdict(set)
    windows: dict[str, dict[str, list[int]]] = defaultdict(dict)
    for method, seeds in train.items():
        vals: dict[str, dict[int, Optional[float]]] = defaultdict(dict)
        for seed, run in seeds.items():
            metrics = run.get("metrics") or []
            steps = [int(r["step"]) for r in metrics] or [int(r["step"]) for r in (run.get("rollouts") or [])]
            win = window_steps(steps, opts.last_frac)
            windows[method][str(seed)] = [win[0], win[-1]] if win else []
            for col, key in TABLE1_KEYS:
                vals[f"entropy/{col}"][seed] = metrics_window_mean(metrics, key, win)
            if run.get("rollouts"):
                gd = group_diversity(rollout_groups(run["rollouts"]), win)
                for col, _ in TABLE2_KEYS:
                    vals[f"distinct/{col}"][seed] = gd[col]
                sources[method].add("rollouts")
            else:
                for col, key in TABLE2_KEYS:
                    vals[f"distinct/{col}"][seed] = metrics_window_mean(metrics, key, win)
                sources[method].add("metrics")
        per[method] = vals
    out: dict[str, Any] = {"last_frac": opts.last_frac, "windows": windows, "methods": {}}
    for method, vals in per.items():
        row: dict[str, Any] = {"source_table2": sorted(sources[method])}
        for key, pv in vals.items():
            row[key] = seed_stats(pv, opts)
            if method != "grpo" and "grpo" in per:
                row[f"{key}_minus_grpo"] = paired_diff(pv, per["grpo"].get(key, {}), opts)
        out["methods"][method] = row
    out["_per_seed"] = {m: {k: {str(s): v for s, v in pv.items()} for k, pv in vals.items()} for m, vals in per.items()}
    return out


def training_curves(train: Mapping[str, Mapping[int, Mapping[str, Any]]], keys: Sequence[str],
                    opts: Options) -> dict[str, Any]:
    """Per method and metric key: steps and per-step seed stats (for the training-dynamics figure)."""
    out: dict[str, Any] = {}
    for method, seeds in train.items():
        res: dict[str, Any] = {}
        for key in keys:
            by_step: dict[int, dict[int, float]] = defaultdict(dict)
            for seed, run in seeds.items():
                for r in run.get("metrics") or []:
                    if _finite(r.get(key)):
                        by_step[int(r["step"])][seed] = float(r[key])
            steps = sorted(by_step)
            res[key] = {"step": steps, "stats": [seed_stats(by_step[s], opts) for s in steps]}
        out[method] = res
    return out


# ---------------------------------------------------------------------------------------------
# test evaluations
# ---------------------------------------------------------------------------------------------


def _per_question_split(per_q: Optional[Sequence[Mapping[str, Any]]]) -> dict[str, Optional[float]]:
    if not per_q:
        return {"distinct_solved": None, "distinct_unsolved": None}
    sol = [q["distinct_answers"] for q in per_q if q.get("c", 0) > 0]
    uns = [q["distinct_answers"] for q in per_q if q.get("c", 0) == 0]
    return {"distinct_solved": float(np.mean(sol)) if sol else None,
            "distinct_unsolved": float(np.mean(uns)) if uns else None}


def eval_values(ev: Mapping[str, Any]) -> dict[str, Any]:
    """Flat numbers of one evaluation: pass@k for every k, and the scalar summaries."""
    s = ev["summary"]
    vals: dict[str, Any] = {"n": int(s["n"]), "num_questions": s.get("num_questions"),
                            "pass_at_k": {int(k): float(v) for k, v in s["pass_at_k"].items()}}
    for key in ("mean_at_n", "distinct_answers", "answer_entropy", "mean_length", "frac_truncated", "frac_no_answer"):
        vals[key] = s.get(key)
    vals.update(_per_question_split(ev.get("per_question")))
    vals["per_question"] = ev.get("per_question")
    return vals


TEST_SCALARS = ("distinct_answers", "distinct_solved", "distinct_unsolved", "answer_entropy", "mean_length",
                "frac_no_answer")


def test_analysis(evals: Mapping[tuple[str, int, str], Mapping[str, Any]], opts: Options,
                  notes: list[str]) -> dict[str, Any]:
    """Per dataset: base values, per-method per-step stats, paired diffs vs GRPO and vs base."""
    by_ds: dict[str, dict[str, dict[int, dict[int, dict[str, Any]]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    base: dict[str, dict[str, Any]] = {}
    for (run, step, ds), ev in sorted(evals.items()):
        method, seed = parse_run_name(run)
        vals = eval_values(ev)
        if method == "base":
            if ds in base:
                notes.append(f"{ds}: several base evaluations; using step {min(base[ds]['step'], step)}")
                if step > base[ds]["step"]:
                    continue
            base[ds] = {"step": step, **vals}
        else:
            by_ds[ds][method][step][seed] = vals
    out: dict[str, Any] = {}
    for ds in sorted(set(by_ds) | set(base)):
        methods = by_ds.get(ds, {})
        steps = sorted({st for m in methods.values() for st in m})
        ns = [v["n"] for m in methods.values() for st in m.values() for v in st.values()]
        if ds in base:
            ns.append(base[ds]["n"])
        n = min(ns) if ns else 0
        if len(set(ns)) > 1:
            notes.append(f"{ds}: evaluations use different n {sorted(set(ns))}; pass@k is compared up to k={n}")
        ks_all = list(range(1, n + 1))
        headline_ks = sorted({k for k in opts.ks if k <= n} | ({n} if n else set()))
        res: dict[str, Any] = {"n": n, "steps": steps, "final_step": steps[-1] if steps else None,
                               "ks": headline_ks, "base": None, "methods": {}}
        b = base.get(ds)
        if b:
            res["base"] = {"step": b["step"], "pass_at_k": {str(k): b["pass_at_k"].get(k) for k in ks_all},
                           **{key: b.get(key) for key in TEST_SCALARS}}
            # sampling standard errors of the base model's numbers (None without per_question.jsonl)
            pq = b.get("per_question")
            counts = [(int(q["n"]), int(q["c"])) for q in pq] if pq else []
            b["pass_se"] = {k: pass_at_k_se(counts, k) for k in ks_all} if counts else {}
            b["distinct_se"] = distinct_se(pq) if pq else None
            res["base"]["pass_at_k_se"] = {str(k): v for k, v in b["pass_se"].items()}
            res["base"]["distinct_answers_se"] = b["distinct_se"]
            if not pq:
                notes.append(f"{ds}: base evaluation without per_question.jsonl; its sampling error is left out "
                             "of the intervals (treated as exact)")
        else:
            notes.append(f"{ds}: no base-model evaluation; differences from base are not available")
        grpo = methods.get("grpo", {})
        for method, per_step in methods.items():
            mres: dict[str, Any] = {}
            for step, seeds in sorted(per_step.items()):
                st: dict[str, Any] = {"seeds": sorted(seeds), "pass_at_k": {}, "pass_minus_grpo": {}, "pass_minus_base": {}}
                for k in ks_all:
                    pv = {s: v["pass_at_k"].get(k) for s, v in seeds.items()}
                    st["pass_at_k"][str(k)] = seed_stats(pv, opts)
                    if method != "grpo" and step in grpo:
                        st["pass_minus_grpo"][str(k)] = paired_diff(pv, {s: v["pass_at_k"].get(k) for s, v in grpo[step].items()}, opts)
                    if b:
                        st["pass_minus_base"][str(k)] = paired_diff(pv, b["pass_at_k"].get(k), opts,
                                                                    b_se=b["pass_se"].get(k))
                for key in TEST_SCALARS:
                    pv = {s: v.get(key) for s, v in seeds.items()}
                    st[key] = seed_stats(pv, opts)
                    if method != "grpo" and step in grpo:
                        st[f"{key}_minus_grpo"] = paired_diff(pv, {s: v.get(key) for s, v in grpo[step].items()}, opts)
                    if b:
                        st[f"{key}_minus_base"] = paired_diff(
                            pv, b.get(key), opts, b_se=b["distinct_se"] if key == "distinct_answers" else None)
                mres[str(step)] = st
            res["methods"][method] = mres
        out[ds] = res
    return out


# ---------------------------------------------------------------------------------------------
# claims (paper vs us)
# ---------------------------------------------------------------------------------------------


def judge(st: Optional[Mapping[str, Any]], direction: int) -> tuple[str, str]:
    """Status of "the difference is > 0" (direction +1) or "< 0" (-1) given its seed stats."""
    if not st or st.get("mean") is None:
        return "not tested", "no data"
    mean, lo, hi = st["mean"], st.get("lo"), st.get("hi")
    if lo is None:
        agrees = direction * mean > 0
        return "inconclusive", (f"{st.get('n', 1)} seed: no interval; point estimate "
                                f"{'agrees with' if agrees else 'goes against'} the paper")
    n = int(st.get("n") or 0)
    side = ("paper's" if direction * lo > 0 and direction * hi > 0 else
            "opposite" if direction * lo < 0 and direction * hi < 0 else None)
    if side and n <= MAX_FEW_SEEDS:
        return "inconclusive", (f"only {n} seeds (<= {MAX_FEW_SEEDS}): not called significant; the interval lies on "
                                f"the {side} side")
    if side == "paper's":
        return "holds", "interval excludes 0 on the paper's side"
    if side == "opposite":
        return "does not hold", "interval excludes 0 on the opposite side"
    return "inconclusive", "interval contains 0"


def _few_or(n: int, why: str) -> str:
    """The reason a multi-part claim is inconclusive: few seeds if so, else ``why``."""
    if 1 < n <= MAX_FEW_SEEDS:
        return f"only {n} seeds (<= {MAX_FEW_SEEDS}): not called significant"
    return why


def _evid(label: str, st: Optional[Mapping[str, Any]]) -> str:
    n = (st or {}).get("n", 0)
    return f"{label} = {fmt_ci(st, signed=True)} ({n} seed{'s' if n != 1 else ''})"


def _claim(claim: str, measure: str, evidence: str, status: str, why: str, rule: str, **extra: Any) -> dict[str, Any]:
    return {"claim": claim, "measure": measure, "evidence": evidence, "status": status, "why": why,
            "rule": rule, **extra}


TEST_CLAIMS = ("GRPO raises pass@1 over the base model", "GRPO lowers the number of distinct answers per question",
               "At large k, GRPO's pass@k falls below the base model's",
               "At large k, some exploration method is above GRPO", "UCB-Con beats GRPO at every k",
               "Batch gives the highest large-k pass@k late in training")


def evaluate_claims(test: Mapping[str, Any], sampling: Mapping[str, Any], tables: Mapping[str, Any],
                    opts: Options = Options()) -> list[dict[str, Any]]:
    """The paper's claims, each with the difference that tests it and a verdict (module docstring)."""
    claims: list[dict[str, Any]] = []
    multi = len(test) > 1
    simple_rule = "holds if the 95% interval of the difference excludes 0 on the claimed side"
    if not test:
        claims += [_claim(c, "test-set evaluation", "no data", "not tested", "no --eval inputs", "") for c in TEST_CLAIMS]
    for ds, res in test.items():
        tag = f" [{ds}]" if multi else ""
        fs = res.get("final_step")
        g = res["methods"].get("grpo", {}).get(str(fs)) if fs is not None else None
        n = res["n"]
        where = f"test set {ds}, step {fs}"
        # 1. GRPO raises pass@1 over base
        st = g["pass_minus_base"].get("1") if g else None
        s, why = judge(st, +1)
        claims.append(_claim(f"GRPO raises pass@1 over the base model{tag}", f"pass@1(GRPO) - pass@1(base), {where}",
                             _evid("diff", st), s, why, simple_rule))
        # 2. GRPO lowers distinct answers
        st = g.get("distinct_answers_minus_base") if g else None
        s, why = judge(st, -1)
        claims.append(_claim(f"GRPO lowers the number of distinct answers per question{tag}",
                             f"distinct answers in {n} samples, GRPO - base, {where}", _evid("diff", st), s, why,
                             simple_rule + " (< 0)"))
        # 3. large k: GRPO falls below base
        st = g["pass_minus_base"].get(str(n)) if g else None
        s, why = judge(st, -1)
        g1 = (g["pass_minus_base"].get("1") or {}).get("mean") if g else None
        extra_note = f"; for scale, the pass@1 gain is {fmt(g1, 3)}" if g1 is not None else ""
        claims.append(_claim(f"At large k, GRPO's pass@k falls below the base model's{tag}",
                             f"pass@{n}(GRPO) - pass@{n}(base), {where}", _evid("diff", st) + extra_note, s, why,
                             "holds if the interval lies below 0; does not hold if above 0; "
                             "inconclusive if it contains 0 (GRPO level with base)"))
        # 4. some exploration method is above GRPO at large k (Bonferroni over the methods tried:
        # "at least one of m" at level 95% needs each interval at 1 - 0.05/m)
        explorers = [m for m in res["methods"] if m != "grpo" and str(fs) in res["methods"][m]
                     and (res["methods"][m][str(fs)]["pass_minus_grpo"].get(str(n)) or {}).get("mean") is not None]
        if not explorers:
            claims.append(_claim(f"At large k, some exploration method is above GRPO{tag}",
                                 f"pass@{n}(method) - pass@{n}(GRPO), {where}", "no data", "not tested",
                                 "GRPO or the exploration methods not evaluated", ""))
        else:
            bonf = replace(opts, level=1.0 - (1.0 - opts.level) / len(explorers))
            parts, verdicts = [], {}
            for m in explorers:
                per = res["methods"][m][str(fs)]["pass_minus_grpo"][str(n)]["per_seed"]
                d = seed_stats(per, bonf)
                verdicts[m] = judge(d, +1)
                parts.append(f"{method_label(m)} {fmt_ci(d, signed=True)}")
            winners = [m for m, (x, _) in verdicts.items() if x == "holds"]
            if winners:
                s, why = "holds", f"{', '.join(method_label(m) for m in winners)} above GRPO, interval > 0"
            elif all(x == "does not hold" for x, _ in verdicts.values()):
                s, why = "does not hold", "every exploration method significantly below GRPO"
            else:
                few = [w for x, w in verdicts.values() if "not called significant" in w]
                s, why = "inconclusive", (few[0] if few else "every interval contains 0 or lies below it")
            claims.append(_claim(
                f"At large k, some exploration method is above GRPO{tag}",
                f"pass@{n}(method) - pass@{n}(GRPO), paired by seed, {where}; intervals at "
                f"{bonf.level * 100:.2f}% (Bonferroni over {len(explorers)} methods)", "; ".join(parts), s, why,
                "holds if some method's Bonferroni-adjusted interval is > 0; does not hold if every method's is < 0"))
        # 6. UCB-Con beats GRPO at every k
        uc = res["methods"].get("ucb_con", {}).get(str(fs)) if fs is not None else None
        diffs = [(int(k), v) for k, v in (uc or {}).get("pass_minus_grpo", {}).items() if v and v.get("mean") is not None]
        if not diffs:
            claims.append(_claim(f"UCB-Con beats GRPO at every k{tag}", f"pass@k(UCB-Con) - pass@k(GRPO), k = 1..{n}, {where}",
                                 "no data", "not tested", "UCB-Con or GRPO not evaluated", ""))
        else:
            stats = [judge(v, +1)[0] for _, v in diffs]
            lo_k = min(diffs, key=lambda t: t[1]["mean"])
            hi_k = max(diffs, key=lambda t: t[1]["mean"])
            n_pos = sum(v["mean"] > 0 for _, v in diffs)
            n_sig = sum(x == "holds" for x in stats)
            if all(x == "holds" for x in stats):
                s, why = "holds", "interval > 0 at every k"
            elif any(x == "does not hold" for x in stats):
                bad = [k for (k, _), x in zip(diffs, stats) if x == "does not hold"]
                s, why = "does not hold", f"UCB-Con significantly below GRPO at k = {bad[:6]}"
            else:
                s, why = "inconclusive", (f"only {uc['pass_at_k']['1']['n']} seeds (<= {MAX_FEW_SEEDS}): not "
                                          "called significant" if 1 < uc["pass_at_k"]["1"]["n"] <= MAX_FEW_SEEDS
                                          else "some intervals contain 0 (or one seed)")
            claims.append(_claim(
                f"UCB-Con beats GRPO at every k{tag}", f"pass@k(UCB-Con) - pass@k(GRPO), paired by seed, k = 1..{n}, {where}",
                f"diff from {fmt_ci(lo_k[1], signed=True)} (k={lo_k[0]}) to {fmt_ci(hi_k[1], signed=True)} (k={hi_k[0]}); "
                f"> 0 at {n_pos}/{len(diffs)} k, significantly at {n_sig}/{len(diffs)}", s, why,
                "holds if the interval is > 0 at every k; does not hold if it is < 0 at some k; else inconclusive"))
        # 7. batch highest large-k pass@k late in training
        bt = res["methods"].get("batch", {}).get(str(fs)) if fs is not None else None
        others = [m for m in res["methods"] if m != "batch" and str(fs) in res["methods"][m]]
        if not bt or not others:
            claims.append(_claim(f"Batch gives the highest large-k pass@k late in training{tag}",
                                 f"pass@{n}, batch vs every other method, {where}", "no data", "not tested",
                                 "batch or the other methods not evaluated", ""))
        else:
            parts = []
            statuses = []
            for m in others:
                o = res["methods"][m][str(fs)]["pass_at_k"].get(str(n))
                d = paired_diff({int(s_): v for s_, v in bt["pass_at_k"][str(n)]["per_seed"].items()},
                                {int(s_): v for s_, v in o["per_seed"].items()}, opts)
                statuses.append(judge(d, +1)[0])
                parts.append(f"vs {method_label(m)} {fmt_ci(d, signed=True)}")
            means = {m: res["methods"][m][str(fs)]["pass_at_k"][str(n)]["mean"] for m in others + ["batch"]}
            top = max(means, key=lambda m: means[m] if means[m] is not None else -1)
            if all(x == "holds" for x in statuses):
                s, why = "holds", "batch above every other method with intervals > 0"
            elif any(x == "does not hold" for x in statuses):
                s, why = "does not hold", "some method is significantly above batch"
            else:
                s, why = "inconclusive", f"highest mean: {method_label(top)}; " + _few_or(
                    bt["pass_at_k"][str(n)]["n"], "some intervals contain 0 (or one seed)")
            claims.append(_claim(f"Batch gives the highest large-k pass@k late in training{tag}",
                                 f"pass@{n}(batch) - pass@{n}(other), paired by seed, {where}",
                                 f"batch pass@{n} = {fmt_ci(bt['pass_at_k'][str(n)])}; " + "; ".join(parts), s, why,
                                 "holds if batch minus every other method is > 0; does not hold if some method is "
                                 "significantly above batch; else inconclusive"))
    # 4/5. RL as sampling vs base sampling
    gs = sampling.get("methods", {}).get("grpo")
    ks = gs.get("k_star") if gs else None
    for metric, claim in (("frac_solved", "RL as sampling solves fewer training questions than sampling the base model at equal k"),
                          ("distinct_unsolved", "RL as sampling finds fewer distinct answers on still-unsolved training "
                                                "questions than base sampling at equal k")):
        if not gs or ks is None:
            claims.append(_claim(claim, f"{metric}, GRPO rollouts - base samples", "no data", "not tested",
                                 "GRPO rollouts or base train samples missing", ""))
            continue
        i = gs["k"].index(ks)
        st = gs[f"{metric}_minus_base"][i]
        s, why = judge(st, -1)
        scope = "all training questions" if gs.get("k_star_all_questions") else "the questions drawn >= k/n times"
        claims.append(_claim(claim, f"{metric} at k = {ks} samples per question ({scope}), GRPO - base "
                                    f"({sampling.get('base_mode')} base subsets)",
                             _evid("diff", st) + f"; GRPO {fmt_ci(gs[metric][i])}", s, why, simple_rule + " (< 0)"))
    # 8. Table 2: batch's extra diversity is on unsolved questions
    tm = tables.get("_per_seed", {})
    if "batch" in tm and "grpo" in tm:
        o = opts
        ps = lambda m, c: {int(s_): v for s_, v in tm[m].get(f"distinct/{c}", {}).items()}  # noqa: E731
        du = paired_diff(ps("batch", "unsolved"), ps("grpo", "unsolved"), o)
        dsol = paired_diff(ps("batch", "solved"), ps("grpo", "solved"), o)
        did = paired_diff({int(k): x for k, x in du["per_seed"].items()},
                          {int(k): x for k, x in dsol["per_seed"].items()}, o)
        s1, _ = judge(du, +1)
        s2, _ = judge(did, +1)
        if s1 == "holds" and s2 == "holds":
            s, why = "holds", "batch adds distinct answers on unsolved groups, more than on solved ones"
        elif "does not hold" in (s1, s2):
            s, why = "does not hold", "batch's gain on unsolved groups is negative or smaller than on solved ones"
        elif "not tested" in (s1, s2):
            s, why = "not tested", "no unsolved or solved groups in the window"
        else:
            s, why = "inconclusive", _few_or(du["n"], "an interval contains 0 (or one seed)")
        claims.append(_claim("Batch's extra diversity sits on unsolved questions (Table 2)",
                             "distinct answers per group of n, batch - GRPO, on unsolved vs solved groups, last "
                             f"{tables.get('last_frac', 0) * 100:.0f}% of training steps",
                             f"{_evid('unsolved diff', du)}; {_evid('solved diff', dsol)}; "
                             f"{_evid('unsolved - solved', did)}", s, why,
                             "holds if (batch - GRPO) on unsolved groups > 0 and exceeds (batch - GRPO) on solved "
                             "groups (both intervals > 0); does not hold if either is < 0"))
    else:
        claims.append(_claim("Batch's extra diversity sits on unsolved questions (Table 2)",
                             "distinct answers per group, batch - GRPO", "no data", "not tested",
                             "batch or GRPO training runs missing", ""))
    return claims


# ---------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------


def write_table(out_dir: Path, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[str, str]:
    """``name.tsv`` and ``name.md``; returns their file names."""
    clean = lambda v: ("n/a" if v is None else str(v)).replace("\t", " ").replace("\n", " ")  # noqa: E731
    (out_dir / f"{name}.tsv").write_text("\t".join(columns) + "\n" + "".join(
        "\t".join(clean(v) for v in r) + "\n" for r in rows), encoding="utf-8")
    md = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    md += ["| " + " | ".join(clean(v).replace("|", "\\|") for v in r) + " |" for r in rows]
    (out_dir / f"{name}.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    return {"tsv": f"{name}.tsv", "md": f"{name}.md"}


def build_tables(a: Mapping[str, Any], out_dir: Path) -> list[dict[str, Any]]:
    tables: list[dict[str, Any]] = []
    methods = a["meta"]["methods"]

    def add(name: str, title: str, caption: str, columns: list[str], rows: list[list[Any]]) -> None:
        files = write_table(out_dir, name, columns, rows)
        tables.append({"name": name, "title": title, "caption": caption, "columns": columns,
                       "rows": [["n/a" if v is None else str(v) for v in r] for r in rows], **files})

    # claims
    add("claims", "Paper vs us", "Each claim of the paper, the number that tests it (mean over seeds [95% t-interval "
        "interval]) and the verdict. Rule: holds / does not hold when the interval excludes 0 on the paper's / the "
        "other side; inconclusive when it contains 0 or there is one seed; not tested when inputs are missing.",
        ["claim", "measured as", "our result", "verdict", "why"],
        [[c["claim"], c["measure"], c["evidence"], c["status"], c["why"]] for c in a["claims"]])
    # Table 1 and 2
    tt = a["training"]["tables"]["methods"]
    pct = f"{a['meta']['last_frac'] * 100:.0f}%"
    if tt:
        rows1, rows2 = [], []
        for m in methods:
            if m not in tt:
                continue
            r = tt[m]
            nseed = max((r[k]["n"] for k in r if isinstance(r[k], dict) and "n" in r[k]), default=0)
            cols1 = ("correct", "incorrect", "all")
            rows1.append([method_label(m), nseed] + [fmt_mean_std(r.get(f"entropy/{c}")) for c in cols1]
                         + [fmt_ci(r.get(f"entropy/{c}_minus_grpo"), signed=True) if m != "grpo" else "-" for c in cols1])
            rows2.append([method_label(m), nseed] + [fmt_mean_std(r.get(f"distinct/{c}"), 2) for c in ("solved", "unsolved", "all")]
                         + [fmt_ci(r.get(f"distinct/{c}_minus_grpo"), 2, signed=True) if m != "grpo" else "-"
                            for c in ("solved", "unsolved", "all")])
        add("table1_entropy", "Table 1: token entropy of generations",
            f"Mean per-token policy entropy (nats) of training rollouts, averaged over the last {pct} of steps of each "
            "run; mean (std over seeds). The diff columns are the paired difference from GRPO with its 95% interval.",
            ["method", "seeds", "correct", "incorrect", "all", "correct - GRPO", "incorrect - GRPO", "all - GRPO"], rows1)
        add("table2_distinct", "Table 2: distinct answers within a group",
            f"Distinct final answers among the n samples of a group (one question at one step), over groups with >= 1 "
            f"correct sample (solved), none (unsolved), and all, in the last {pct} of steps; mean (std over seeds); "
            "diff columns: paired difference from GRPO [95% interval].",
            ["method", "seeds", "solved", "unsolved", "all", "solved - GRPO", "unsolved - GRPO", "all - GRPO"], rows2)
    # test tables
    for ds, res in a["test"].items():
        fs, ks = res["final_step"], res["ks"]
        rows = []
        if res["base"]:
            b = res["base"]
            rows.append(["Base", "-", 0] + [fmt(b["pass_at_k"].get(str(k))) for k in ks]
                        + [fmt(b.get("distinct_answers"), 2)])
        for m in methods:
            st = res["methods"].get(m, {}).get(str(fs))
            if not st:
                continue
            rows.append([method_label(m), len(st["seeds"]), fs] + [fmt_ci(st["pass_at_k"][str(k)]) for k in ks]
                        + [fmt_ci(st["distinct_answers"], 2)])
        add(f"test_{ds}", f"Test pass@k on {ds} (step {fs})",
            f"pass@k on the {ds} test set at the last evaluated step, mean over seeds [95% t-interval over seeds], and "
            f"distinct answers per question among n = {res['n']} samples.",
            ["method", "seeds", "step"] + [f"pass@{k}" for k in ks] + ["distinct answers"], rows)
        rows = []
        for m in methods:
            st = res["methods"].get(m, {}).get(str(fs))
            if not st:
                continue
            ref = st["pass_minus_base"] if m == "grpo" else st["pass_minus_grpo"]
            if not ref:
                continue
            dk = st["distinct_answers_minus_base"] if m == "grpo" else st.get("distinct_answers_minus_grpo")
            rows.append([method_label(m), "base" if m == "grpo" else "GRPO"]
                        + [fmt_ci(ref.get(str(k)), signed=True) for k in ks] + [fmt_ci(dk, 2, signed=True)])
        add(f"diff_{ds}", f"Paired differences on {ds} (step {fs})",
            "Each method minus GRPO, paired by seed (GRPO's row: GRPO minus the base model), mean [95% t-interval; "
            "GRPO - base includes the base model's sampling error]. An interval that excludes 0 is a difference the seeds support.",
            ["method", "minus"] + [f"pass@{k}" for k in ks] + ["distinct answers"], rows)
    # sampling table
    sm = a["sampling"]
    if sm.get("methods"):
        rows = []
        for m in methods:
            r = sm["methods"].get(m)
            if not r or r.get("k_star") is None:
                continue
            i = r["k"].index(r["k_star"])
            per = r["per_seed"]
            nq = sorted({per[s][str(r["k_star"])]["num_questions"] for s in per})
            rows.append([method_label(m), len(r["seeds"]), r["k_star"], "/".join(map(str, nq))]
                        + [x for met in SAMPLING_METRICS
                           for x in (fmt_ci(r[met][i], 3 if met == "frac_solved" else 2),
                                     fmt_ci(r[f"{met}_minus_base"][i], 3 if met == "frac_solved" else 2, signed=True))])
        add("sampling", "RL as sampling vs base sampling",
            "At k* samples per question (see definitions): fraction of training questions solved at least once, mean "
            "distinct answers per question, and mean distinct answers on questions not solved so far; RL rollouts of "
            "each run vs the base model on the same questions (difference per seed, then mean [95% interval]).",
            ["method", "seeds", "k*", "questions", "solved", "solved - base", "distinct", "distinct - base",
             "distinct (unsolved)", "distinct (unsolved) - base"], rows)
    return tables


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.grid": True, "grid.alpha": 0.3, "legend.fontsize": 9})
    return plt


def _band(ax, x, stats, color, label, marker="o", ls="-"):
    xs = [xi for xi, s in zip(x, stats) if s and s.get("mean") is not None]
    ys = [s["mean"] for s in stats if s and s.get("mean") is not None]
    if not xs:
        return
    ax.plot(xs, ys, ls, color=color, label=label, marker=marker, ms=3, lw=1.6)
    ci = [(xi, s["lo"], s["hi"]) for xi, s in zip(x, stats) if s and s.get("lo") is not None]
    if ci:
        ax.fill_between([c[0] for c in ci], [c[1] for c in ci], [c[2] for c in ci], color=color, alpha=0.18, lw=0)


def _log2_axis(ax, n: int) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator([2 ** i for i in range(max(1, n).bit_length()) if 2 ** i <= n]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(ScalarFormatter())


def _const(v: Optional[float]) -> dict[str, Any]:
    return {"mean": v, "lo": None, "hi": None}


TRAINING_TITLES = {"reward": "mean reward (fraction correct)", "entropy": "token entropy (nats)",
                   "answers/distinct_per_group": "distinct answers per group of n",
                   "cumulative/questions_solved": "training questions solved so far",
                   "convention/read_plus": "reads '?' as '+' (right on ~70%)"}
# Per-step training metrics drawn in the training-dynamics figure (a key no run logs is left out).
TRAINING_KEYS = ("reward", "entropy", "answers/distinct_per_group", "cumulative/questions_solved",
                 "convention/read_plus")


def build_figures(a: Mapping[str, Any], out_dir: Path) -> list[dict[str, Any]]:
    plt = _plt()
    figs: list[dict[str, Any]] = []
    colors, methods = a["meta"]["colors"], a["meta"]["methods"]
    band_note = ("Lines: mean over seeds; shaded band: 95% t-interval over seeds (absent with one "
                 "seed). Colours are fixed per method in every figure; the base model is black.")

    def save(fig, name, title, caption, guide):
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=a["meta"]["options"].get("dpi", 120))
        plt.close(fig)
        figs.append({"file": name, "title": title, "caption": caption, "guide": guide})

    # Figure 2: RL as sampling
    sm = a["sampling"]
    if sm.get("methods"):
        fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
        titles = {"frac_solved": "training questions solved at least once", "distinct": "distinct answers per question",
                  "distinct_unsolved": "distinct answers, questions not yet solved"}
        kmax = max((max(r["k"]) for r in sm["methods"].values() if r["k"]), default=0)
        for ax, met in zip(axes, SAMPLING_METRICS):
            if sm.get("base"):
                bk = [k for k in sm["base"]["k"] if not kmax or k <= kmax]
                ax.plot(bk, sm["base"][met][:len(bk)], "-", color=colors["base"], lw=1.8,
                        label=f"Base ({sm['base_mode']} k-subsets)")
            for m in methods:
                r = sm["methods"].get(m)
                if r and r["k"]:
                    _band(ax, r["k"], r[met], colors[m], method_label(m))
            ax.set_xlabel("k = samples per question")
            ax.set_ylabel("fraction of questions" if met == "frac_solved" else "mean distinct answers")
            ax.set_title(titles[met])
        axes[0].legend(loc="lower right")
        save(fig, "fig_sampling.png", "RL as a sampling process (paper Fig. 2)",
             "Training rollouts seen as samples: after a question has been drawn t times it has k = n*t samples. Left: "
             "fraction of training questions solved at least once within k samples; middle: distinct final answers "
             "among them; right: the same on questions still unsolved. Black: the base model sampled k times per "
             "question on the same questions. " + band_note,
             "If RL only sharpened the base distribution, its curves would sit below black: fewer questions ever "
             "solved and fewer distinct answers at equal k. Exploration bonuses should move the coloured curves up, "
             "most visibly on the right panel.")
    # test pass@k curves per dataset
    for ds, res in a["test"].items():
        steps = res["steps"]
        if not steps and not res["base"]:
            continue
        ks_all = list(range(1, res["n"] + 1))
        show = steps[-3:] if steps else []
        fig, axes = plt.subplots(1, max(1, len(show)), figsize=(5.2 * max(1, len(show)), 4.2), squeeze=False)
        for ax, step in zip(axes[0], show or [None]):
            if res["base"]:
                ax.plot(ks_all, [res["base"]["pass_at_k"][str(k)] for k in ks_all], "-", color=colors["base"],
                        lw=1.8, label="Base")
            for m in methods:
                st = res["methods"].get(m, {}).get(str(step))
                if st:
                    _band(ax, ks_all, [st["pass_at_k"][str(k)] for k in ks_all], colors[m], method_label(m), marker="")
            _log2_axis(ax, res["n"])
            ax.set_xlabel("k (samples per question)")
            ax.set_ylabel("pass@k")
            ax.set_title(f"{ds}: step {step}" if step is not None else f"{ds}: base model")
            ax.legend(loc="lower right")
        save(fig, f"fig_test_passk_{ds}.png", f"Test pass@k curves on {ds} (paper Figs. 1, 4, 6)",
             f"pass@k (unbiased estimator from n = {res['n']} samples per test question) against k on a log2 axis, one "
             "panel per evaluated training step (last three), each method and the base model. " + band_note,
             "A method that only sharpens raises the left end (k = 1) and falls toward or below black at the right "
             "end (large k). Diversity-preserving methods keep the right end at or above black.")
        # pass@k at chosen k over steps
        ks = res["ks"]
        if steps:
            fig, axes = plt.subplots(1, len(ks), figsize=(3.8 * len(ks), 3.8), squeeze=False)
            for ax, k in zip(axes[0], ks):
                bval = res["base"]["pass_at_k"][str(k)] if res["base"] else None
                if bval is not None:
                    ax.axhline(bval, color=colors["base"], ls="--", lw=1.2, label="Base")
                for m in methods:
                    per = res["methods"].get(m, {})
                    xs = [st for st in steps if str(st) in per]
                    stats = [per[str(st)]["pass_at_k"][str(k)] for st in xs]
                    if bval is not None:
                        xs, stats = [0] + xs, [_const(bval)] + stats
                    _band(ax, xs, stats, colors[m], method_label(m))
                ax.set_xlabel("training step")
                ax.set_ylabel(f"pass@{k}")
                ax.set_title(f"{ds}: pass@{k}")
            axes[0][0].legend(loc="best")
            save(fig, f"fig_test_steps_{ds}.png", f"Test pass@k over training on {ds}",
                 f"pass@k at k in {ks} against the training step; every method starts from the base model at step 0 "
                 "(dashed black line). " + band_note,
                 "Read each panel left to right: pass@1 should rise for every method; at the largest k, GRPO's line "
                 "drifting down to the dashed line is the diversity collapse the paper reports.")
            # paired difference vs GRPO at the final step
            fs = res["final_step"]
            others = [m for m in methods if m != "grpo" and res["methods"].get(m, {}).get(str(fs), {}).get("pass_minus_grpo")]
            if others:
                fig, ax = plt.subplots(figsize=(6.4, 4.2))
                ax.axhline(0, color="grey", lw=1)
                for m in others:
                    d = res["methods"][m][str(fs)]["pass_minus_grpo"]
                    _band(ax, ks_all, [d.get(str(k)) for k in ks_all], colors[m], method_label(m), marker="")
                _log2_axis(ax, res["n"])
                ax.set_xlabel("k (samples per question)")
                ax.set_ylabel("pass@k(method) - pass@k(GRPO)")
                ax.set_title(f"{ds}: paired difference from GRPO, step {fs}")
                ax.legend(loc="best")
                save(fig, f"fig_diff_grpo_{ds}.png", f"Difference from GRPO on {ds}",
                     "Each exploration method's pass@k minus GRPO's, paired by seed, at the last evaluated step; band: "
                     "95% t-interval of the paired difference.",
                     "Above the grey zero line: better than GRPO at that k. Where the band clears 0 the seeds agree; "
                     "where it straddles 0 the difference is within seed noise.")
    # training dynamics
    tc = a["training"].get("curves", {})
    keys = [k for k in TRAINING_KEYS
            if any(tc.get(m, {}).get(k, {}).get("step") for m in tc)]
    if keys:
        fig, axes = plt.subplots(1, len(keys), figsize=(3.9 * len(keys), 3.7), squeeze=False)
        for ax, key in zip(axes[0], keys):
            for m in methods:
                c = tc.get(m, {}).get(key)
                if c and c["step"]:
                    _band(ax, c["step"], c["stats"], colors[m], method_label(m), marker="")
            ax.set_xlabel("training step")
            ax.set_title(TRAINING_TITLES.get(key, key))
        axes[0][0].legend(loc="best")
        save(fig, "fig_training.png", "Training dynamics",
             "Per-step training metrics from metrics.jsonl: mean reward of the batch, mean token entropy, distinct "
             "answers per group of n, training questions solved so far and, on the synthetic task, the share of "
             "rollouts reading its convention symbol '?' as '+' (right on ~70% of questions). " + band_note,
             "GRPO's entropy and distinct answers per group typically fall as reward rises; exploration bonuses "
             "should slow that fall without costing reward.")
    return figs


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------


def run_analysis(evals: Mapping[tuple[str, int, str], str | Path], trains: Mapping[str, str | Path],
                 base_train: Optional[str | Path], out_dir: str | Path, opts: Options = Options(),
                 tracker: Any = None) -> dict[str, Any]:
    """Read every input, compute all numbers, write tables, figures and ``analysis.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    ev_data = {key: load_eval_dir(p) for key, p in evals.items()}
    train_runs: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for run, p in trains.items():
        method, seed = parse_run_name(run)
        if method == "base":
            raise ValueError("--train base=...: the base model has no training run")
        train_runs[method][seed] = load_train_dir(p)
    base_rows = read_json_lines(base_train) if base_train else None
    if base_train and not base_rows:
        raise ValueError(f"{base_train}: no base train samples")
    if not base_train:
        notes.append("no --base-train: the RL-as-sampling figure has no base-model comparison")

    present = {parse_run_name(r)[0] for r, _, _ in evals} | set(train_runs)
    present.discard("base")
    missing = [m for m in opts.methods if m not in present]
    for m in missing:
        notes.append(f"method {method_label(m)} ({m}): no runs given; skipped")
    methods = order_methods(present, opts.methods)
    seeds = {m: sorted({parse_run_name(r)[1] for r, _, _ in evals if parse_run_name(r)[0] == m} | set(train_runs.get(m, {})))
             for m in methods}
    for m in methods:
        if len(seeds[m]) < 2:
            notes.append(f"{method_label(m)}: {len(seeds[m])} seed(s); intervals are n/a")

    test = test_analysis(ev_data, opts, notes)
    rl = {m: {s: r["rollouts"] for s, r in runs.items() if r.get("rollouts")} for m, runs in train_runs.items()}
    rl = {m: v for m, v in rl.items() if v}
    for m, runs in train_runs.items():
        for s, r in runs.items():
            if not r.get("rollouts"):
                notes.append(f"{m}__s{s}: no rollouts.jsonl; left out of the RL-as-sampling curves")
    sizes = {m: {s: int(train_runs[m][s]["config"].get("n") or _infer_group_size(rows)) for s, rows in v.items()}
             for m, v in rl.items()}
    for m, runs in rl.items():  # the rollout-based count must match the trainer's own counter
        for s, rows in runs.items():
            logged = [r.get("cumulative/questions_solved") for r in train_runs[m][s]["metrics"]]
            ours = len({str(r["question_id"]) for r in rows if r["correct"]})
            if logged and logged[-1] is not None and int(logged[-1]) != ours:
                notes.append(f"{m}__s{s}: rollouts.jsonl solves {ours} questions but metrics.jsonl's last "
                             f"cumulative/questions_solved is {logged[-1]} (truncated or mismatched files?)")
    sampling = sampling_analysis(rl, sizes, base_rows, opts)
    notes.extend(sampling.pop("notes"))
    tables = training_tables(train_runs, opts)
    curves = training_curves(train_runs, TRAINING_KEYS, opts)
    analysis: dict[str, Any] = {
        "meta": {"methods": methods, "seeds": seeds, "missing_methods": missing,
                 "colors": color_map(methods), "labels": {m: method_label(m) for m in ["base", *methods]},
                 "options": {**asdict(opts), "ks": list(opts.ks), "methods": list(opts.methods)},
                 "last_frac": opts.last_frac, "n_boot": opts.n_boot, "boot_seed": opts.boot_seed, "level": opts.level,
                 "inputs": {"eval": {f"{r}:{s}:{d}": str(p) for (r, s, d), p in evals.items()},
                            "train": {r: str(p) for r, p in trains.items()},
                            "base_train": str(base_train) if base_train else None}},
        "definitions": _definitions(opts),
        "test": test,
        "sampling": sampling,
        "training": {"tables": tables, "curves": curves},
        "notes": notes,
    }
    analysis["claims"] = evaluate_claims(test, sampling, tables, opts)
    analysis["tables"] = build_tables(analysis, out)
    analysis["figures"] = build_figures(analysis, out)
    (out / "analysis.json").write_text(json.dumps(_jsonable(analysis), indent=1, allow_nan=False) + "\n")
    if tracker is not None:
        for f in analysis["figures"]:
            tracker.log_image(f"analysis/{Path(f['file']).stem}", str(out / f["file"]))
        for t in analysis["tables"]:
            tracker.log_table(f"analysis/{t['name']}", t["columns"], t["rows"])
        tracker.summary({f"claim/{i}": c["status"] for i, c in enumerate(analysis["claims"])})
    return analysis


def _infer_group_size(rows: Sequence[Mapping[str, Any]]) -> int:
    return max(len(g["keys"]) for g in rollout_groups(rows))


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def _definitions(opts: Options) -> dict[str, str]:
    pct = f"{opts.last_frac * 100:.0f}%"
    return {
        "seeds": f"Mean over seeds; {opts.level * 100:.0f}% Student t-interval over seeds. Differences from GRPO "
                 "are paired by seed. Differences from the base model subtract its single value and add its sampling "
                 "standard error (re-drawing its n samples per question; pass@k, distinct answers and the "
                 "RL-as-sampling solved fraction) to the seeds' spread, with Welch-Satterthwaite degrees of freedom. "
                 "Test questions are held fixed. One seed: interval n/a. With 3 seeds or fewer no claim is called "
                 "significant (labelled 'only m seeds').",
        "sampling": "k = samples per training question: a question's rollouts in step order; each time it is drawn "
                    "its k grows by the group size n. At each k the questions with >= k rollouts are compared with "
                    "the base model on the same questions. Base: "
                    + ("exact expectation over random k-subsets of its samples (solved = unbiased pass@k; distinct = "
                       "sum of P(answer in subset); unsolved = ratio of expectations)." if opts.base_sampling == "expected"
                       else "its first k samples in sample_index order."),
        "table1": f"Token entropy from metrics.jsonl (entropy, entropy/correct, entropy/incorrect), mean over the "
                  f"last {pct} of logged steps of each run, then mean (std) over seeds.",
        "table2": f"Distinct answers (sentinel keys excluded) among the n samples of each group in the last {pct} of "
                  "steps, from rollouts.jsonl, group-weighted; solved = group with >= 1 correct sample.",
        "test": "Test pass@k: unbiased estimator from obe.evaluate; last evaluated step; large k = n.",
        "claims": "holds / does not hold: the 95% interval of the claimed difference excludes 0 on the paper's / "
                  "the other side; inconclusive: it contains 0, or one seed (no interval); not tested: inputs missing.",
    }


def _parse_eval(spec: str) -> tuple[tuple[str, int, str], str]:
    try:
        lhs, path = spec.split("=", 1)
        run, step, ds = lhs.split(":")
        parse_run_name(run)
        return (run, int(step), ds), path
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--eval expects RUN:STEP:DATASET=DIR, got {spec!r} ({exc})") from None


def _parse_train(spec: str) -> tuple[str, str]:
    if "=" not in spec:
        raise argparse.ArgumentTypeError(f"--train expects RUN=DIR, got {spec!r}")
    run, path = spec.split("=", 1)
    try:
        parse_run_name(run)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return run, path


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m obe.analysis", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eval", action="append", default=[], type=_parse_eval, metavar="RUN:STEP:DATASET=DIR",
                    help="an obe.evaluate output folder (summary.json, per_question.jsonl); repeatable")
    ap.add_argument("--train", action="append", default=[], type=_parse_train, metavar="RUN=DIR",
                    help="an obe.train run folder (metrics.jsonl, rollouts.jsonl, config.json); repeatable")
    ap.add_argument("--base-train", help="graded base-model samples on the training set (obe.grade JSONL)")
    ap.add_argument("--out-dir", required=True, help="folder for analysis.json, tables (TSV, MD) and figures (PNG)")
    ap.add_argument("--methods", default=",".join(METHOD_ORDER), help="expected methods, in display order")
    ap.add_argument("--ks", default=",".join(map(str, PAPER_KS)), help="k values of the headline tables")
    ap.add_argument("--bootstrap", type=int, default=10000,
                    help="unused since intervals are t-intervals; accepted so old command lines run")
    ap.add_argument("--bootstrap-seed", type=int, default=0, help="unused (see --bootstrap)")
    ap.add_argument("--level", type=float, default=0.95, help="interval level")
    ap.add_argument("--last-frac", type=float, default=0.2, help="Tables 1-2: fraction of final training steps averaged")
    ap.add_argument("--base-sampling", choices=["expected", "first"], default="expected",
                    help="base curve of the RL-as-sampling figure: expectation over random k-subsets or first k")
    ap.add_argument("--dpi", type=int, default=120, help="resolution of the PNG figures")
    ap.add_argument("--experiment", default="default", help="W&B group")
    ap.add_argument("--wandb-dir", default=None, help="W&B directory (default: --out-dir)")
    return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.eval and not args.train:
        print("obe.analysis: nothing to analyse (give --eval and/or --train)", file=sys.stderr)
        return 2
    evals = dict(args.eval)
    trains = dict(args.train)
    try:
        opts = Options(n_boot=args.bootstrap, boot_seed=args.bootstrap_seed, level=args.level,
                       last_frac=args.last_frac, base_sampling=args.base_sampling,
                       ks=tuple(int(k) for k in args.ks.split(",") if k.strip()),
                       methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()), dpi=args.dpi)
    except ValueError as exc:
        print(f"obe.analysis: {exc}", file=sys.stderr)
        return 2
    from obe.core.tracking import resolve_mode, resumable_run_id, start_run

    # the report stage adds report.html and this folder, as an artifact, to the same run
    run_id = resumable_run_id(args.out_dir, resume=False) if args.experiment and resolve_mode() != "disabled" else None
    tracker = start_run(stage="analysis", name="analysis", config={**asdict(opts), "inputs": len(evals) + len(trains)},
                        experiment=args.experiment, wandb_dir=args.wandb_dir or args.out_dir, run_id=run_id)
    try:
        a = run_analysis(evals, trains, args.base_train, args.out_dir, opts, tracker)
    except (ValueError, FileNotFoundError) as exc:
        print(f"obe.analysis: {exc}", file=sys.stderr)
        tracker.finish()
        return 2
    tracker.finish()
    for c in a["claims"]:
        print(f"[{c['status']:>13}] {c['claim']}: {c['evidence']}")
    for n in a["notes"]:
        print(f"note: {n}")
    print(f"wrote {args.out_dir}/analysis.json, {len(a['figures'])} figures, {len(a['tables'])} tables")
    return 0


if __name__ == "__main__":
    sys.exit(main())
