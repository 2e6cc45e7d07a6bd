"""The analysis tables: each written as ``name.tsv`` and ``name.md`` and listed, with its caption, in ``analysis.json``.

Tables: the claims (paper vs us), Table 1 (token entropy), Table 2 (distinct answers within a
group), per test set the pass@k table and the paired differences, and RL as sampling vs base
sampling at k*.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from obe.analysis.formatting import fmt, fmt_ci, fmt_mean_std
from obe.analysis.options import method_label
from obe.analysis.sampling_curve import SAMPLING_METRICS


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
