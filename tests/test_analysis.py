"""obe.analysis on hand-made rollouts and evaluations with known answers, and on synthetic runs."""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from obe import analysis as A
from obe.evaluate import evaluate

NA = "<no_answer>"
FAST = A.Options(n_boot=2000, dpi=40)


# ------------------------------------------------------------------------------------------
# fixture builders (also used by tests/test_report.py)
# ------------------------------------------------------------------------------------------

# per method: (probability shift of a correct sample, wrong-answer pool size, entropy level)
PROFILES = {"base": (0.0, 6, 1.0), "grpo": (0.35, 1, 0.3), "ucb": (0.3, 3, 0.5), "ucb_mean": (0.3, 3, 0.5),
            "ucb_con": (0.4, 4, 0.6), "batch": (0.3, 6, 0.7)}


def _sample(rng: random.Random, p: float, pool: int, qid: str) -> tuple[str, bool]:
    if rng.random() < p:
        return f"gold_{qid}", True
    if rng.random() < 0.05:
        return NA, False
    return f"wrong_{qid}_{rng.randrange(pool)}", False


def _difficulty(q: int) -> float:
    return [0.0, 0.05, 0.2, 0.5, 0.8][q % 5]


def graded_rows(method: str, seed: int, num_q: int, n: int, prefix: str = "t") -> list[dict]:
    shift, pool, _ = PROFILES[method]
    rng = random.Random(f"{method}-{seed}-{prefix}")
    rows = []
    for q in range(num_q):
        qid = f"{prefix}{q}"
        base_p = _difficulty(q)
        p = 0.0 if base_p == 0.0 and method == "grpo" else min(0.98, base_p + (shift if base_p > 0 else shift / 6))
        for i in range(n):
            key, ok = _sample(rng, p, pool, qid)
            rows.append({"question_id": qid, "sample_index": i, "outcome_key": key, "correct": ok,
                         "num_tokens": 10 + i, "finish_reason": "stop"})
    return rows


def write_eval_dir(path: Path, rows: list[dict]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    per_q, summary = evaluate(rows)
    (path / "summary.json").write_text(json.dumps(summary))
    (path / "per_question.jsonl").write_text("".join(json.dumps(q) + "\n" for q in per_q))
    return path


def write_train_dir(path: Path, method: str, seed: int, num_q: int = 10, batch: int = 5, n: int = 4,
                    steps: int = 8) -> Path:
    """A fake obe.train run: per-epoch seeded shuffle, n rollouts per drawn question, metrics rows."""
    path.mkdir(parents=True, exist_ok=True)
    shift, pool, ent = PROFILES[method]
    rng = random.Random(f"train-{method}-{seed}")
    order: list[int] = []
    rollouts, metrics, solved = [], [], set()
    for step in range(1, steps + 1):
        while len(order) < batch:
            perm = list(range(num_q))
            rng.shuffle(perm)
            order += perm
        drawn, order = order[:batch], order[batch:]
        progress = step / steps
        groups = []
        for q in drawn:
            qid = f"q{q}"
            base_p = _difficulty(q)
            p = min(0.98, base_p + progress * (shift if base_p > 0 else shift / 6))
            if method == "grpo" and base_p == 0.0:
                p = 0.0
            g = [_sample(rng, p, max(1, round(pool * (1 - 0.5 * progress))) if method == "grpo" else pool, qid)
                 for _ in range(n)]
            groups.append(g)
            for i, (key, ok) in enumerate(g):
                rollouts.append({"question_id": qid, "step": step, "sample_index": i, "outcome_key": key,
                                 "correct": ok, "num_tokens": 12})
            if any(ok for _, ok in g):
                solved.add(qid)
        d = [len({k for k, _ in g if k != NA}) for g in groups]
        s = [any(ok for _, ok in g) for g in groups]
        mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
        e = ent * (1 - 0.3 * progress) + 0.01 * seed
        metrics.append({"step": step, "reward": mean([ok for g in groups for _, ok in g]), "entropy": e,
                        "entropy/correct": e * 0.8, "entropy/incorrect": e * 1.2,
                        "answers/distinct_per_group": mean(d),
                        "answers/distinct_solved": mean([x for x, y in zip(d, s) if y]),
                        "answers/distinct_unsolved": mean([x for x, y in zip(d, s) if not y]),
                        "cumulative/questions_solved": len(solved)})
    (path / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rollouts))
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics))
    (path / "config.json").write_text(json.dumps({"method": method, "seed": seed, "n": n, "batch_questions": batch}))
    return path


def make_inputs(root: Path, methods=("grpo", "ucb_con", "batch"), seeds=(0, 1, 2), steps=(4, 8),
                datasets=("synthetic",), n_eval: int = 16, num_test_q: int = 40):
    """Eval dirs, train dirs and base train samples for a small synthetic experiment."""
    evals, trains = {}, {}
    for ds in datasets:
        evals[("base", 0, ds)] = write_eval_dir(root / "eval" / "base" / "step0" / ds,
                                                graded_rows("base", 0, num_test_q, n_eval, prefix=ds))
        for m in methods:
            for s in seeds:
                for st in steps:
                    rows = graded_rows(m, s * 100 + st, num_test_q, n_eval, prefix=ds)
                    evals[(f"{m}__s{s}", st, ds)] = write_eval_dir(root / "eval" / f"{m}__s{s}" / f"step{st}" / ds, rows)
    for m in methods:
        for s in seeds:
            trains[f"{m}__s{s}"] = write_train_dir(root / "train" / f"{m}__s{s}", m, s)
    base_train = root / "base_train.jsonl"
    rows = graded_rows("base", 0, 10, 16, prefix="q")
    base_train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return evals, trains, base_train


# ------------------------------------------------------------------------------------------
# RL as sampling: hand-computed values
# ------------------------------------------------------------------------------------------

HAND_ROLLOUTS = [  # deliberately not in step order in the file
    {"question_id": "q1", "step": 3, "sample_index": 0, "outcome_key": "c", "correct": True},
    {"question_id": "q1", "step": 3, "sample_index": 1, "outcome_key": "a", "correct": False},
    {"question_id": "q1", "step": 1, "sample_index": 0, "outcome_key": "a", "correct": False},
    {"question_id": "q1", "step": 1, "sample_index": 1, "outcome_key": "b", "correct": False},
    {"question_id": "q2", "step": 1, "sample_index": 0, "outcome_key": "x", "correct": True},
    {"question_id": "q2", "step": 1, "sample_index": 1, "outcome_key": "x", "correct": True},
    {"question_id": "q3", "step": 1, "sample_index": 0, "outcome_key": "z", "correct": False},
    {"question_id": "q3", "step": 1, "sample_index": 1, "outcome_key": "z", "correct": False},
    {"question_id": "q2", "step": 2, "sample_index": 0, "outcome_key": NA, "correct": False},
    {"question_id": "q2", "step": 2, "sample_index": 1, "outcome_key": "y", "correct": False},
]


def test_question_sequences_orders_by_step():
    seqs = A.question_sequences(HAND_ROLLOUTS)
    assert [k for k, _ in seqs["q1"]] == ["a", "b", "c", "a"]
    assert [k for k, _ in seqs["q2"]] == ["x", "x", NA, "y"]
    assert len(seqs["q3"]) == 2


def test_first_k_stats_hand_computed():
    seqs = A.question_sequences(HAND_ROLLOUTS)
    k2 = A.first_k_stats(seqs, 2)
    # q1: {a, b} unsolved (2); q2: {x} solved (1); q3: {z} unsolved (1)
    assert k2["num_questions"] == 3 and k2["solved"] == 1
    assert k2["frac_solved"] == pytest.approx(1 / 3)
    assert k2["distinct"] == pytest.approx(4 / 3)
    assert k2["num_unsolved"] == 2 and k2["distinct_unsolved"] == pytest.approx(1.5)
    k4 = A.first_k_stats(seqs, 4)
    # q3 has only 2 samples: not eligible. q1: {a, b, c} solved; q2: {x, y} solved (no-answer not counted)
    assert k4["num_questions"] == 2 and k4["questions"] == ["q1", "q2"]
    assert k4["frac_solved"] == 1.0 and k4["distinct"] == pytest.approx(2.5)
    assert k4["distinct_unsolved"] is None
    # restricted to a question set
    assert A.first_k_stats(seqs, 2, questions=["q3"])["frac_solved"] == 0.0


def test_expected_subset_stats_hand_computed():
    samples = [("a", False), ("b", False), ("c", True), ("a", False)]
    e = A.expected_subset_stats(samples, 2)
    assert e["p_solved"] == pytest.approx(0.5)           # 1 - C(3,2)/C(4,2)
    assert e["distinct"] == pytest.approx(11 / 6)         # a: 5/6, b: 1/2, c: 1/2
    assert e["p_unsolved"] == pytest.approx(0.5)
    assert e["distinct_and_unsolved"] == pytest.approx(5 / 6)  # {a,b}:2 {a,a}:1 {b,a}:2 over 6 subsets


def test_expected_subset_stats_matches_brute_force():
    rng = random.Random(3)
    for _ in range(40):
        n = rng.randint(1, 7)
        samples = [(rng.choice(["a", "b", "c", NA, "g"]), False) for _ in range(n)]
        samples = [(key, key == "g") for key, _ in samples]
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(samples, k))
            solved = [any(ok for _, ok in s) for s in subsets]
            distinct = [len({key for key, _ in s if key != NA}) for s in subsets]
            e = A.expected_subset_stats(samples, k)
            assert e["p_solved"] == pytest.approx(np.mean(solved))
            assert e["distinct"] == pytest.approx(np.mean(distinct))
            assert e["p_unsolved"] == pytest.approx(1 - np.mean(solved))
            assert e["distinct_and_unsolved"] == pytest.approx(np.mean([d * (not s) for d, s in zip(distinct, solved)]))


def test_base_sampling_first_and_expected():
    rows = [{"question_id": "q1", "sample_index": i, "outcome_key": key, "correct": ok}
            for i, (key, ok) in reversed(list(enumerate([("a", False), ("b", False), ("c", True), ("a", False)])))]
    seqs = A.base_sequences(rows)
    assert [k for k, _ in seqs["q1"]] == ["a", "b", "c", "a"]  # sample_index order
    first = A.base_sampling_stats(seqs, 2, mode="first")
    assert first["frac_solved"] == 0.0 and first["distinct_unsolved"] == 2.0
    ex = A.base_sampling_stats(seqs, 2, mode="expected")
    assert ex["frac_solved"] == pytest.approx(0.5) and ex["distinct"] == pytest.approx(11 / 6)
    assert ex["distinct_unsolved"] == pytest.approx((5 / 6) / 0.5)
    assert A.base_sampling_stats(seqs, 5)["num_questions"] == 0


def test_sampling_analysis_pairs_base_on_same_questions():
    base_rows = [{"question_id": q, "sample_index": i, "outcome_key": "g" if (q == "q2" and i == 0) else f"w{i}",
                  "correct": q == "q2" and i == 0} for q in ("q1", "q2", "q3") for i in range(4)]
    res = A.sampling_analysis({"grpo": {0: HAND_ROLLOUTS}}, {"grpo": {0: 2}}, base_rows,
                              A.Options(n_boot=100, base_sampling="first"))
    g = res["methods"]["grpo"]
    assert g["k"] == [2, 4]
    # k=2, all three questions: base first-2 solves q2 only -> 1/3; RL solves q2 -> 1/3
    assert g["frac_solved"][0]["mean"] == pytest.approx(1 / 3)
    assert g["frac_solved_minus_base"][0]["mean"] == pytest.approx(0.0)
    # k=4, eligible {q1, q2}: RL solves both, base solves q2 -> +0.5
    assert g["frac_solved_minus_base"][1]["mean"] == pytest.approx(0.5)
    # k* = 2: the only k at which every training question (base universe) is eligible
    assert g["k_star"] == 2 and g["k_star_all_questions"]
    assert res["base"]["k"] == [1, 2, 3, 4]


# ------------------------------------------------------------------------------------------
# training tables
# ------------------------------------------------------------------------------------------


def test_window_steps():
    assert A.window_steps(range(1, 101), 0.2) == list(range(81, 101))
    assert A.window_steps([1, 2, 3, 4], 0.2) == [4]
    assert A.window_steps([], 0.5) == []


def test_rollout_groups_split_repeated_question_in_one_step():
    rows = [{"question_id": "q", "step": 1, "sample_index": i % 2, "outcome_key": k, "correct": False}
            for i, k in enumerate(["a", "b", "c", "c"])]
    groups = A.rollout_groups(rows)
    assert [g["keys"] for g in groups] == [["a", "b"], ["c", "c"]]
    gd = A.group_diversity(groups)
    assert gd == {"all": 1.5, "solved": None, "unsolved": 1.5, "num_groups": 2, "num_solved": 0, "num_unsolved": 2}


def test_group_diversity_hand_computed():
    groups = A.rollout_groups(HAND_ROLLOUTS)
    # groups: q1@3 {c,a} solved 2; q1@1 {a,b} unsolved 2; q2@1 {x} solved 1; q3@1 {z} unsolved 1; q2@2 {y} unsolved 1
    gd = A.group_diversity(groups)
    assert gd["num_groups"] == 5
    assert gd["solved"] == pytest.approx(1.5) and gd["unsolved"] == pytest.approx(4 / 3)
    assert gd["all"] == pytest.approx(7 / 5)
    assert A.group_diversity(groups, steps=[3])["all"] == 2


def test_training_tables_window_and_paired_diff():
    def run(vals):
        return {"metrics": [{"step": i + 1, "entropy": v, "entropy/correct": None, "entropy/incorrect": v}
                            for i, v in enumerate(vals)], "rollouts": None}
    train = {"grpo": {0: run([9, 9, 1, 1]), 1: run([9, 9, 2, 2])}, "batch": {0: run([0, 0, 3, 3]), 1: run([0, 0, 3, 5])}}
    t = A.training_tables(train, A.Options(n_boot=500, last_frac=0.5))
    assert t["methods"]["grpo"]["entropy/all"]["mean"] == pytest.approx(1.5)
    assert t["methods"]["grpo"]["entropy/all"]["std"] == pytest.approx(math.sqrt(0.5))
    assert t["methods"]["grpo"]["entropy/correct"]["mean"] is None
    d = t["methods"]["batch"]["entropy/all_minus_grpo"]
    assert d["per_seed"] == {"0": 2.0, "1": 2.0} and d["lo"] == d["hi"] == 2.0


# ------------------------------------------------------------------------------------------
# statistics
# ------------------------------------------------------------------------------------------


def test_bootstrap_known_values():
    # two values: resample means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4
    lo, hi = A.bootstrap_ci([0.0, 1.0], n_boot=20000, seed=1)
    assert (lo, hi) == (0.0, 1.0)
    assert A.bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)
    assert A.bootstrap_ci([1.0]) == (None, None)
    assert A.bootstrap_ci([]) == (None, None)
    x = [0.1, 0.4, 0.35, 0.8, 0.5]
    assert A.bootstrap_ci(x, 5000, seed=7) == A.bootstrap_ci(x, 5000, seed=7)  # seeded
    lo, hi = A.bootstrap_ci(x, 20000, seed=7)
    assert lo < np.mean(x) < hi
    # against a direct re-implementation of the percentile bootstrap
    rng = np.random.default_rng(7)
    means = np.asarray(x)[rng.integers(0, 5, size=(20000, 5))].mean(axis=1)
    assert (lo, hi) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])))


def test_seed_stats_one_seed_is_na():
    st = A.seed_stats({0: 0.4})
    assert st["mean"] == 0.4 and st["std"] is None and st["lo"] is None and st["n"] == 1
    assert A.fmt_ci(st) == "0.400 [n/a]"
    assert A.seed_stats({0: None})["mean"] is None
    assert A.fmt_ci(A.seed_stats({})) == "n/a"


def test_paired_differences():
    a = {0: 1.0, 1: 2.0, 2: 3.0}
    b = {0: 0.5, 1: 1.0, 2: 3.5, 3: 9.0}
    d = A.paired_diff(a, b, FAST)
    assert d["n"] == 3 and d["per_seed"] == {"0": 0.5, "1": 1.0, "2": -0.5}
    assert d["mean"] == pytest.approx(1 / 3)
    const = A.paired_diff(a, 1.0, FAST)
    assert const["mean"] == pytest.approx(1.0) and const["per_seed"]["2"] == 2.0
    # pairing removes a shared seed effect: unpaired spread is large, paired differences are constant
    a2, b2 = {0: 0.1, 1: 0.5, 2: 0.9}, {0: 0.0, 1: 0.4, 2: 0.8}
    p = A.paired_diff(a2, b2, FAST)
    assert p["lo"] == pytest.approx(0.1) and p["hi"] == pytest.approx(0.1)


def test_judge_rules():
    assert A.judge({"mean": 0.2, "lo": 0.1, "hi": 0.3, "n": 4}, +1)[0] == "holds"
    assert A.judge({"mean": 0.2, "lo": 0.1, "hi": 0.3, "n": 5}, -1)[0] == "does not hold"
    assert A.judge({"mean": 0.1, "lo": -0.1, "hi": 0.3, "n": 5}, +1)[0] == "inconclusive"
    # 3 seeds or fewer: labelled, never significant, whichever side the interval is on
    for direction, side in ((+1, "paper's"), (-1, "opposite")):
        status, why = A.judge({"mean": 0.2, "lo": 0.1, "hi": 0.3, "n": 3}, direction)
        assert status == "inconclusive" and "only 3 seeds" in why and f"the {side} side" in why
    status, why = A.judge({"mean": 0.1, "lo": None, "hi": None, "n": 1}, +1)
    assert status == "inconclusive" and "agrees" in why
    assert A.judge(None, +1)[0] == "not tested"


def test_colors_fixed_and_distinct():
    c = A.color_map(["grpo", "batch", "zeta", "alpha"])
    assert c["grpo"] == A.METHOD_COLORS["grpo"] and c["base"] == "#000000"
    assert c["alpha"] != c["zeta"] and len(set(c.values())) == len(c)
    assert A.parse_run_name("ucb_con__s12") == ("ucb_con", 12)
    assert A.parse_run_name("base") == ("base", None)
    with pytest.raises(ValueError):
        A.parse_run_name("grpo-s1")


# ------------------------------------------------------------------------------------------
# whole stage on synthetic runs
# ------------------------------------------------------------------------------------------


def test_run_analysis_synthetic(tmp_path):
    evals, trains, base_train = make_inputs(tmp_path / "in", seeds=(0, 1, 2, 3))
    out = tmp_path / "out"
    logged = []

    class Tracker:
        def log_image(self, name, path):
            logged.append(("image", name, Path(path).exists()))

        def log_table(self, name, columns, rows):
            logged.append(("table", name, all(len(r) == len(columns) for r in rows)))

        def summary(self, values):
            logged.append(("summary", len(values), True))

    a = A.run_analysis(evals, trains, base_train, out, FAST, tracker=Tracker())
    assert all(ok for _, _, ok in logged)
    assert sum(k == "image" for k, _, _ in logged) == len(a["figures"])
    assert ("table", "analysis/claims", True) in logged
    assert not any("cumulative/questions_solved" in n for n in a["notes"])  # rollouts agree with metrics
    saved = json.loads((out / "analysis.json").read_text())
    assert saved["meta"]["methods"] == ["grpo", "ucb_con", "batch"]
    assert set(saved["meta"]["missing_methods"]) == {"ucb", "ucb_mean"}
    assert any("UCB-Mean" in n and "skipped" in n for n in saved["notes"])
    for f in a["figures"]:
        assert (out / f["file"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    names = {f["file"] for f in a["figures"]}
    assert {"fig_sampling.png", "fig_test_passk_synthetic.png", "fig_test_steps_synthetic.png",
            "fig_diff_grpo_synthetic.png", "fig_training.png"} <= names
    for t in a["tables"]:
        assert (out / t["tsv"]).exists() and (out / t["md"]).exists()
    assert {"claims", "table1_entropy", "table2_distinct", "test_synthetic", "diff_synthetic", "sampling"} <= {
        t["name"] for t in a["tables"]}
    claims = {c["claim"]: c for c in a["claims"]}
    assert len(claims) == 9 and all(c["status"] in A.STATUSES for c in a["claims"])
    # strong built-in effects: GRPO raises pass@1, lowers distinct answers
    assert claims["GRPO raises pass@1 over the base model"]["status"] == "holds"
    assert claims["GRPO lowers the number of distinct answers per question"]["status"] == "holds"
    # test numbers equal the evaluation summaries
    t = saved["test"]["synthetic"]
    s0 = json.loads((evals[("grpo__s0", 8, "synthetic")] / "summary.json").read_text())
    assert t["methods"]["grpo"]["8"]["pass_at_k"]["1"]["per_seed"]["0"] == pytest.approx(s0["pass_at_k"]["1"])
    assert t["final_step"] == 8 and t["ks"] == [1, 4, 16]
    # the sampling curve at the last k agrees with the run's own cumulative counter when all questions were drawn
    g = saved["sampling"]["methods"]["grpo"]
    assert g["k"] and g["k_star"] is not None
    md = (out / "table1_entropy.md").read_text()
    assert md.startswith("| method |") and "GRPO" in md
    # Table 1 columns are correct / incorrect / all (the fixture logs correct = 0.8 x all, incorrect = 1.2 x all)
    head, *rows = [line.split("\t") for line in (out / "table1_entropy.tsv").read_text().splitlines()]
    assert head[2:5] == ["correct", "incorrect", "all"]
    corr, inc, al = (float(rows[0][i].split(" ")[0]) for i in (2, 3, 4))
    assert corr == pytest.approx(0.8 * al, abs=2e-3) and inc == pytest.approx(1.2 * al, abs=2e-3)
    t1 = saved["training"]["tables"]["methods"]["grpo"]["entropy/all"]
    assert t1["n"] == 4 and t1["std"] is not None
    # the base model's sampling error is in every difference from it, and widens the interval
    base = t["base"]
    assert base["pass_at_k_se"]["16"] > 0 and base["distinct_answers_se"] > 0
    d1 = t["methods"]["grpo"]["8"]["pass_minus_base"]["1"]
    assert d1["base_se"] == pytest.approx(base["pass_at_k_se"]["1"])
    exact = A.seed_stats({int(s): v for s, v in d1["per_seed"].items()}, FAST)
    assert d1["hi"] - d1["lo"] > exact["hi"] - exact["lo"]
    # the Bonferroni claim names its adjusted level
    some = claims["At large k, some exploration method is above GRPO"]
    assert "Bonferroni over 2 methods" in some["measure"] and "97.50%" in some["measure"]


def test_run_analysis_one_seed_and_missing_parts(tmp_path):
    evals, trains, _ = make_inputs(tmp_path / "in", methods=("grpo",), seeds=(0,), steps=(8,))
    a = A.run_analysis(evals, trains, None, tmp_path / "out", FAST)
    claims = {c["claim"]: c for c in a["claims"]}
    assert claims["GRPO raises pass@1 over the base model"]["status"] == "inconclusive"
    assert "1 seed" in claims["GRPO raises pass@1 over the base model"]["why"]
    assert claims["UCB-Con beats GRPO at every k"]["status"] == "not tested"
    assert any("intervals are n/a" in n for n in a["notes"])
    assert any("--base-train" in n for n in a["notes"])
    assert "[n/a]" in (tmp_path / "out" / "test_synthetic.tsv").read_text()


def test_cli(tmp_path, capsys):
    evals, trains, base_train = make_inputs(tmp_path / "in", methods=("grpo", "batch"), seeds=(0, 1), steps=(8,))
    argv = [f"--eval={r}:{s}:{d}={p}" for (r, s, d), p in evals.items()]
    argv += [f"--train={r}={p}" for r, p in trains.items()]
    argv += ["--base-train", str(base_train), "--out-dir", str(tmp_path / "out"), "--bootstrap", "500",
             "--base-sampling", "first", "--dpi", "40"]
    assert A.main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    a = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert a["meta"]["options"]["base_sampling"] == "first" and a["meta"]["n_boot"] == 500
    # two seeds: whatever the intervals say, no claim is called significant
    assert all(c["status"] in ("inconclusive", "not tested") for c in a["claims"])
    assert any("only 2 seeds" in c["why"] for c in a["claims"])
    with pytest.raises(SystemExit):
        A.main(["--eval", "nonsense", "--out-dir", str(tmp_path)])
