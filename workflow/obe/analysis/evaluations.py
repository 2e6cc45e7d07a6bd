"""Test-set evaluations: per dataset, the base model, each method per step over seeds, and differences.

Test results use the last evaluated step of the trained runs (per dataset), at k in ``--ks``
(default 1, 4, 16, 32, those <= n) and k = n ("large k"). Differences from GRPO are paired by
seed; differences from the base model carry its sampling error (``obe.analysis.statistics``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np

from obe.analysis.inputs import parse_run_name
from obe.analysis.options import Options
from obe.analysis.statistics import distinct_se, paired_diff, pass_at_k_se, seed_stats


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
