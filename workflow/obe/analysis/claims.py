"""The paper's claims, paper vs us: a table with one row per claim, evaluated by one loop.

Each claim is a signed difference with its interval. "holds" when the interval lies strictly
on the side the paper claims, "does not hold" when it lies strictly on the other side,
"inconclusive" when it contains 0, when there is one seed (no interval; the point estimate's
sign is reported) or when there are 3 seeds or fewer (``MAX_FEW_SEEDS``: labelled "only m
seeds", with the side the interval lies on, never called significant), "not tested" when the
inputs needed are missing. Multi-part claims (every k; beats every method) combine parts as
written in each claim's ``rule``; "some exploration method is above GRPO" tests each method at
level 1 - 0.05/m (Bonferroni over the m methods).

A row (:class:`ClaimRow`) names the claim once, says where it is tested (once per test set, on
the RL-as-sampling numbers, or on the training tables), which statistic tests it (a function
of those numbers returning a :class:`Measurement`), the side the paper claims, how several
parts combine, and the texts of the verdict. :func:`evaluate_claims` runs every row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Optional

from obe.analysis.formatting import fmt, fmt_ci
from obe.analysis.options import Options, method_label
from obe.analysis.statistics import paired_diff, seed_stats

STATUSES = ("holds", "does not hold", "inconclusive", "not tested")
# Results from this many seeds or fewer are labelled and never called significant: the
# t-interval is valid there only if the seed values are close to normal, which 3 values
# cannot show.
MAX_FEW_SEEDS = 3

Stats = Optional[Mapping[str, Any]]  # one seed_stats / paired_diff result


def judge(st: Stats, direction: int) -> tuple[str, str]:
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


def few_seeds_or(n: int, why: str) -> str:
    """The reason a multi-part claim is inconclusive: few seeds if so, else ``why``."""
    if 1 < n <= MAX_FEW_SEEDS:
        return f"only {n} seeds (<= {MAX_FEW_SEEDS}): not called significant"
    return why


def evidence_text(label: str, st: Stats) -> str:
    """``diff = +0.062 [0.010, 0.114] (4 seeds)``."""
    n = (st or {}).get("n", 0)
    return f"{label} = {fmt_ci(st, signed=True)} ({n} seed{'s' if n != 1 else ''})"


# ---------------------------------------------------------------------------------------------
# the table's vocabulary
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """The differences that test one claim, and how they read."""

    parts: list[tuple[Any, Stats]]  # (label, stats) each judged against the claimed side
    evidence: str  # the numbers, as the claims table shows them
    fields: dict[str, Any] = field(default_factory=dict)  # filled into the row's measure text
    seeds: int = 0  # seeds behind a multi-part claim (the few-seeds rule)
    why_lead: str = ""  # put before the reason an "every" claim is inconclusive


@dataclass(frozen=True)
class Context:
    """What the claims of one scope are read from, and the texts every claim of it shares."""

    scope: str  # "test" (one test set) | "sampling" (RL as sampling) | "training" (Tables 1-2)
    data: Mapping[str, Any]
    fields: dict[str, Any] = field(default_factory=dict)  # filled into measure texts
    tag: str = ""  # appended to the titles: " [dataset]" when there are several test sets


@dataclass(frozen=True)
class ClaimRow:
    """One claim of the paper and how it is tested."""

    title: str
    scope: str  # the Context it is read from
    measure: str  # what the number is (a template over the context's and the measurement's fields)
    statistic: Callable[[Mapping[str, Any], Options], Optional[Measurement]]  # None: inputs missing
    direction: int  # +1: the paper claims the difference is > 0; -1: < 0
    combine: str  # "one" difference | "some" part holds (Bonferroni) | "every" part holds
    rule: str
    missing: tuple[str, str] = ("", "")  # (measure template, why) when the statistic has no inputs
    holds: str = ""  # why, for multi-part claims ({winners}: the labels of the parts that hold)
    fails: str = ""  # ({failing}: the first six labels of the parts that do not hold)
    unclear: str = ""  # why an inconclusive multi-part claim is inconclusive (unless few seeds)
    untested: Optional[str] = None  # "every": a part without data makes the claim "not tested"


# ---------------------------------------------------------------------------------------------
# the statistics that test the claims
# ---------------------------------------------------------------------------------------------


def _at_final_step(res: Mapping[str, Any], method: str) -> Optional[Mapping[str, Any]]:
    fs = res.get("final_step")
    return res["methods"].get(method, {}).get(str(fs)) if fs is not None else None


def _one(st: Stats, extra: str = "") -> Measurement:
    return Measurement([("diff", st)], evidence_text("diff", st) + extra)


def grpo_pass1_minus_base(res: Mapping[str, Any], opts: Options) -> Measurement:
    g = _at_final_step(res, "grpo")
    return _one(g["pass_minus_base"].get("1") if g else None)


def grpo_distinct_minus_base(res: Mapping[str, Any], opts: Options) -> Measurement:
    g = _at_final_step(res, "grpo")
    return _one(g.get("distinct_answers_minus_base") if g else None)


def grpo_large_k_minus_base(res: Mapping[str, Any], opts: Options) -> Measurement:
    g = _at_final_step(res, "grpo")
    gain = (g["pass_minus_base"].get("1") or {}).get("mean") if g else None
    scale = f"; for scale, the pass@1 gain is {fmt(gain, 3)}" if gain is not None else ""
    return _one(g["pass_minus_base"].get(str(res["n"])) if g else None, scale)


def explorers_minus_grpo_large_k(res: Mapping[str, Any], opts: Options) -> Optional[Measurement]:
    fs, n, methods = str(res.get("final_step")), str(res["n"]), res["methods"]
    explorers = [m for m in methods if m != "grpo" and fs in methods[m]
                 and (methods[m][fs]["pass_minus_grpo"].get(n) or {}).get("mean") is not None]
    if not explorers:
        return None
    # "at least one of m" at level 95% needs each interval at 1 - 0.05/m (Bonferroni)
    bonf = replace(opts, level=1.0 - (1.0 - opts.level) / len(explorers))
    parts = [(method_label(m), seed_stats(methods[m][fs]["pass_minus_grpo"][n]["per_seed"], bonf)) for m in explorers]
    return Measurement(parts, "; ".join(f"{label} {fmt_ci(d, signed=True)}" for label, d in parts),
                       fields={"level": f"{bonf.level * 100:.2f}", "methods": len(explorers)})


def ucb_con_minus_grpo_every_k(res: Mapping[str, Any], opts: Options) -> Optional[Measurement]:
    uc = _at_final_step(res, "ucb_con")
    diffs = [(int(k), v) for k, v in (uc or {}).get("pass_minus_grpo", {}).items() if v and v.get("mean") is not None]
    if not diffs:
        return None
    lo_k = min(diffs, key=lambda t: t[1]["mean"])
    hi_k = max(diffs, key=lambda t: t[1]["mean"])
    n_pos = sum(v["mean"] > 0 for _, v in diffs)
    n_sig = sum(judge(v, +1)[0] == "holds" for _, v in diffs)  # significantly > 0, as the claim's row judges
    return Measurement(
        diffs, f"diff from {fmt_ci(lo_k[1], signed=True)} (k={lo_k[0]}) to {fmt_ci(hi_k[1], signed=True)} "
               f"(k={hi_k[0]}); > 0 at {n_pos}/{len(diffs)} k, significantly at {n_sig}/{len(diffs)}",
        seeds=uc["pass_at_k"]["1"]["n"])


def batch_minus_others_large_k(res: Mapping[str, Any], opts: Options) -> Optional[Measurement]:
    fs, n, methods = str(res.get("final_step")), str(res["n"]), res["methods"]
    bt = _at_final_step(res, "batch")
    others = [m for m in methods if m != "batch" and fs in methods[m]]
    if not bt or not others:
        return None
    batch = bt["pass_at_k"][n]
    parts = []
    for m in others:
        other = methods[m][fs]["pass_at_k"].get(n)
        parts.append((method_label(m), paired_diff({int(s): v for s, v in batch["per_seed"].items()},
                                                   {int(s): v for s, v in other["per_seed"].items()}, opts)))
    means = {m: methods[m][fs]["pass_at_k"][n]["mean"] for m in others + ["batch"]}
    top = max(means, key=lambda m: means[m] if means[m] is not None else -1)
    return Measurement(parts, f"batch pass@{n} = {fmt_ci(batch)}; "
                       + "; ".join(f"vs {label} {fmt_ci(d, signed=True)}" for label, d in parts),
                       seeds=batch["n"], why_lead=f"highest mean: {method_label(top)}; ")


def grpo_rollouts_minus_base(metric: str, sampling: Mapping[str, Any], opts: Options) -> Optional[Measurement]:
    gs = sampling.get("methods", {}).get("grpo")
    k = gs.get("k_star") if gs else None
    if not gs or k is None:
        return None
    i = gs["k"].index(k)
    scope = "all training questions" if gs.get("k_star_all_questions") else "the questions drawn >= k/n times"
    st = gs[f"{metric}_minus_base"][i]
    return Measurement([("diff", st)], evidence_text("diff", st) + f"; GRPO {fmt_ci(gs[metric][i])}",
                       fields={"k": k, "scope": scope, "base_mode": sampling.get("base_mode")})


def batch_diversity_unsolved(tables: Mapping[str, Any], opts: Options) -> Optional[Measurement]:
    per_seed = tables.get("_per_seed", {})
    if "batch" not in per_seed or "grpo" not in per_seed:
        return None

    def seeds_of(method: str, col: str) -> dict[int, Any]:
        return {int(s): v for s, v in per_seed[method].get(f"distinct/{col}", {}).items()}

    du = paired_diff(seeds_of("batch", "unsolved"), seeds_of("grpo", "unsolved"), opts)
    dsol = paired_diff(seeds_of("batch", "solved"), seeds_of("grpo", "solved"), opts)
    did = paired_diff({int(k): x for k, x in du["per_seed"].items()},
                      {int(k): x for k, x in dsol["per_seed"].items()}, opts)
    return Measurement([("unsolved diff", du), ("unsolved - solved", did)],
                       f"{evidence_text('unsolved diff', du)}; {evidence_text('solved diff', dsol)}; "
                       f"{evidence_text('unsolved - solved', did)}",
                       fields={"pct": f"{tables.get('last_frac', 0) * 100:.0f}%"}, seeds=du["n"])


# ---------------------------------------------------------------------------------------------
# the claims
# ---------------------------------------------------------------------------------------------

SIMPLE_RULE = "holds if the 95% interval of the difference excludes 0 on the claimed side"

CLAIMS = (
    ClaimRow("GRPO raises pass@1 over the base model", "test",
             "pass@1(GRPO) - pass@1(base), {where}", grpo_pass1_minus_base, +1, "one", SIMPLE_RULE),
    ClaimRow("GRPO lowers the number of distinct answers per question", "test",
             "distinct answers in {n} samples, GRPO - base, {where}", grpo_distinct_minus_base, -1, "one",
             SIMPLE_RULE + " (< 0)"),
    ClaimRow("At large k, GRPO's pass@k falls below the base model's", "test",
             "pass@{n}(GRPO) - pass@{n}(base), {where}", grpo_large_k_minus_base, -1, "one",
             "holds if the interval lies below 0; does not hold if above 0; "
             "inconclusive if it contains 0 (GRPO level with base)"),
    ClaimRow("At large k, some exploration method is above GRPO", "test",
             "pass@{n}(method) - pass@{n}(GRPO), paired by seed, {where}; intervals at {level}% "
             "(Bonferroni over {methods} methods)", explorers_minus_grpo_large_k, +1, "some",
             "holds if some method's Bonferroni-adjusted interval is > 0; does not hold if every method's is < 0",
             missing=("pass@{n}(method) - pass@{n}(GRPO), {where}", "GRPO or the exploration methods not evaluated"),
             holds="{winners} above GRPO, interval > 0", fails="every exploration method significantly below GRPO",
             unclear="every interval contains 0 or lies below it"),
    ClaimRow("UCB-Con beats GRPO at every k", "test",
             "pass@k(UCB-Con) - pass@k(GRPO), paired by seed, k = 1..{n}, {where}", ucb_con_minus_grpo_every_k, +1,
             "every", "holds if the interval is > 0 at every k; does not hold if it is < 0 at some k; else inconclusive",
             missing=("pass@k(UCB-Con) - pass@k(GRPO), k = 1..{n}, {where}", "UCB-Con or GRPO not evaluated"),
             holds="interval > 0 at every k", fails="UCB-Con significantly below GRPO at k = {failing}",
             unclear="some intervals contain 0 (or one seed)"),
    ClaimRow("Batch gives the highest large-k pass@k late in training", "test",
             "pass@{n}(batch) - pass@{n}(other), paired by seed, {where}", batch_minus_others_large_k, +1, "every",
             "holds if batch minus every other method is > 0; does not hold if some method is "
             "significantly above batch; else inconclusive",
             missing=("pass@{n}, batch vs every other method, {where}", "batch or the other methods not evaluated"),
             holds="batch above every other method with intervals > 0", fails="some method is significantly above batch",
             unclear="some intervals contain 0 (or one seed)"),
    ClaimRow("RL as sampling solves fewer training questions than sampling the base model at equal k", "sampling",
             "frac_solved at k = {k} samples per question ({scope}), GRPO - base ({base_mode} base subsets)",
             partial(grpo_rollouts_minus_base, "frac_solved"), -1, "one", SIMPLE_RULE + " (< 0)",
             missing=("frac_solved, GRPO rollouts - base samples", "GRPO rollouts or base train samples missing")),
    ClaimRow("RL as sampling finds fewer distinct answers on still-unsolved training questions than base sampling "
             "at equal k", "sampling",
             "distinct_unsolved at k = {k} samples per question ({scope}), GRPO - base ({base_mode} base subsets)",
             partial(grpo_rollouts_minus_base, "distinct_unsolved"), -1, "one", SIMPLE_RULE + " (< 0)",
             missing=("distinct_unsolved, GRPO rollouts - base samples", "GRPO rollouts or base train samples missing")),
    ClaimRow("Batch's extra diversity sits on unsolved questions (Table 2)", "training",
             "distinct answers per group of n, batch - GRPO, on unsolved vs solved groups, last {pct} of training steps",
             batch_diversity_unsolved, +1, "every",
             "holds if (batch - GRPO) on unsolved groups > 0 and exceeds (batch - GRPO) on solved "
             "groups (both intervals > 0); does not hold if either is < 0",
             missing=("distinct answers per group, batch - GRPO", "batch or GRPO training runs missing"),
             holds="batch adds distinct answers on unsolved groups, more than on solved ones",
             fails="batch's gain on unsolved groups is negative or smaller than on solved ones",
             unclear="an interval contains 0 (or one seed)", untested="no unsolved or solved groups in the window"),
)


# ---------------------------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------------------------


def _claim(claim: str, measure: str, evidence: str, status: str, why: str, rule: str) -> dict[str, Any]:
    return {"claim": claim, "measure": measure, "evidence": evidence, "status": status, "why": why, "rule": rule}


def verdict(row: ClaimRow, m: Measurement) -> tuple[str, str]:
    """Status and why of one claim from the judged parts of its measurement."""
    if row.combine == "one":
        return judge(m.parts[0][1], row.direction)
    judged = [(label, *judge(st, row.direction)) for label, st in m.parts]
    statuses = [s for _, s, _ in judged]
    if row.combine == "some":
        winners = [label for label, s, _ in judged if s == "holds"]
        if winners:
            return "holds", row.holds.format(winners=", ".join(winners))
        if all(s == "does not hold" for s in statuses):
            return "does not hold", row.fails
        few = [why for _, _, why in judged if "not called significant" in why]
        return "inconclusive", few[0] if few else row.unclear
    if all(s == "holds" for s in statuses):
        return "holds", row.holds
    if "does not hold" in statuses:
        return "does not hold", row.fails.format(failing=[label for label, s, _ in judged if s == "does not hold"][:6])
    if row.untested and "not tested" in statuses:
        return "not tested", row.untested
    return "inconclusive", m.why_lead + few_seeds_or(m.seeds, row.unclear)


def evaluate_claim(row: ClaimRow, ctx: Context, opts: Options) -> dict[str, Any]:
    m = row.statistic(ctx.data, opts)
    if m is None:
        measure, why = row.missing
        return _claim(row.title + ctx.tag, measure.format(**ctx.fields), "no data", "not tested", why, "")
    status, why = verdict(row, m)
    return _claim(row.title + ctx.tag, row.measure.format(**ctx.fields, **m.fields), m.evidence, status, why, row.rule)


def evaluate_claims(test: Mapping[str, Any], sampling: Mapping[str, Any], tables: Mapping[str, Any],
                    opts: Options = Options()) -> list[dict[str, Any]]:
    """Every row of :data:`CLAIMS`: once per test set, then on RL as sampling, then on the training tables."""
    claims = [_claim(row.title, "test-set evaluation", "no data", "not tested", "no --eval inputs", "")
              for row in CLAIMS if row.scope == "test" and not test]
    contexts = [Context("test", res, {"n": res["n"], "where": f"test set {ds}, step {res.get('final_step')}"},
                        f" [{ds}]" if len(test) > 1 else "") for ds, res in test.items()]
    contexts += [Context("sampling", sampling), Context("training", tables)]
    for ctx in contexts:
        claims += [evaluate_claim(row, ctx, opts) for row in CLAIMS if row.scope == ctx.scope]
    return claims
