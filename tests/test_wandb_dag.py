"""The smoke DAG run once with W&B offline, then read back as a user would: its W&B runs (one
training run per trained model, its evaluations in a run beside it, grouped per method, the
base model at step 0, few other runs, the completions table, the config's wandb keys), its job
logs (no progress-bar leftovers, final outputs named, the offline line with its sync command),
and a `--config` override's plan on the finished run."""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT
from test_tracking import FAKE_KEY, _read_records

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


@pytest.fixture(scope="module")
def offline_dag(tmp_path_factory):
    root = tmp_path_factory.mktemp("wandb_dag")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(WANDB_MODE="offline", WANDB_API_KEY=FAKE_KEY, WANDB_TAGS="from-env")  # the environment wins
    base = ["--cores", "2", "--configfile", "configs/smoke.yaml", "--config", f"results_dir={root}"]
    out = subprocess.run([SNAKEMAKE, *base], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-4000:]
    with open(REPO_ROOT / "config.yaml") as f:
        cfg = yaml.safe_load(f)
    with open(REPO_ROOT / "configs" / "smoke.yaml") as f:
        smoke = yaml.safe_load(f)
    exp = smoke.get("experiment", cfg["experiment"])
    results = root / exp
    runs: dict[str, list[list[dict]]] = defaultdict(list)  # run id -> records of each offline folder
    for d in sorted(glob.glob(str(results / "wandb" / "wandb" / "offline-run-*"))):
        (run_file,) = glob.glob(d + "/run-*.wandb")
        runs[d.rsplit("-", 1)[1]].append(_read_records(run_file))
    train = {**cfg["train"], **smoke.get("train", {})}
    return {"results": results, "runs": runs, "experiment": exp, "methods": train["methods"], "seeds": train["seeds"],
            "base": base, "env": env}


def _run_info(segments):
    run = next(r["run"] for seg in segments for r in seg if r["type"] == "run")
    history = [r["history"] for seg in segments for r in seg if r["type"] == "history"]
    return run, [{k: _decoded(v) for k, v in h["item"].items()} for h in history]


def _decoded(v):
    """History values are JSON text, except references such as a table's artifact path."""
    if not isinstance(v, str):
        return v
    try:
        return json.loads(v)
    except ValueError:
        return v


def _config(run) -> dict:
    return {k: _decoded(_value(v)) for k, v in run["config"]["update"].items() if k != "_wandb"}


def _value(v):
    return v["value"] if isinstance(v, dict) and "value" in v else v


def _runs_of(offline_dag, job_type):
    return [(run_id, *_run_info(segs)) for run_id, segs in offline_dag["runs"].items()
            if _run_info(segs)[0]["job_type"] == job_type]


@pytest.mark.slow
def test_runs_per_experiment_grouped_per_method(offline_dag):
    runs, exp = offline_dag["runs"], offline_dag["experiment"]
    trained = len(offline_dag["methods"]) * len(offline_dag["seeds"])
    assert len(runs) <= 2 * trained + 10, sorted(runs)
    by_type = defaultdict(list)
    groups = defaultdict(set)  # W&B's default grouping: the runs it averages in one line
    for segments in runs.values():
        run, _ = _run_info(segments)
        by_type[run["job_type"]].append(run)
        assert "from-env" in run.get("tags", []), run.get("tags")  # WANDB_TAGS from the environment
        config = _config(run)
        assert config["experiment"] == exp
        if run["job_type"] in ("train", "eval"):
            assert run["run_group"] == f"{exp}/{config['method']}"
            groups[run["run_group"]].add((config["method"], run["job_type"], config["seed"]))
            assert {"method", "seed", "coef"} <= set(config)
            assert (config["coef"] is None) == (config["method"] == "grpo")  # GRPO has no coefficient
        else:
            assert run["run_group"] == exp
    assert len(by_type["train"]) == len(by_type["eval"]) == trained
    assert not {"sample", "grade", "evaluate"} & set(by_type)  # their numbers live in the trained model's runs
    for group, members in groups.items():
        assert len({m for m, _, _ in members}) == 1, group  # one method per group: seeds aggregate
        assert sorted(s for _, t, s in members if t == "train") == sorted(offline_dag["seeds"])


@pytest.mark.slow
def test_no_run_id_has_two_offline_folders_from_training_and_evaluation(offline_dag):
    """`wandb sync` uploads a second folder of one id over the first one's rows: evaluations go to
    a run of their own, which names the training run it belongs to."""
    train = {run_id: run for run_id, run, _ in _runs_of(offline_dag, "train")}
    for run_id, run, _ in _runs_of(offline_dag, "eval"):
        assert len(offline_dag["runs"][run_id]) == 1 and run_id not in train
        config = _config(run)
        assert config["train_run_id"] in train
        assert train[config["train_run_id"]]["display_name"] + "__eval" == run["display_name"]
    assert all(len(offline_dag["runs"][run_id]) == 1 for run_id in train)


@pytest.mark.slow
def test_pass_at_k_against_training_step_rebuilds_the_analysis(offline_dag):
    """From the offline runs alone: pass@k per method at each training step (mean over seeds),
    equal to analysis.json's; the base model appears as step 0 of every evaluation run."""
    per_method: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    base_seen = []
    for _, run, rows in _runs_of(offline_dag, "eval"):
        method = _config(run)["method"]
        steps = [int(r["step"]) for r in rows]
        assert steps == sorted(steps) and steps[0] == 0, steps
        base_seen.append(rows[0]["eval/synthetic/pass@1"])
        for r in rows[1:]:
            per_method[method][int(r["step"])].append(float(r["eval/synthetic/pass@1"]))
    completions = sum("completions._type" in r for _, _, rows in _runs_of(offline_dag, "train") for r in rows)
    assert completions >= len(offline_dag["methods"])  # the completions table (flattened in history), at step 1 at least
    analysis = json.loads((offline_dag["results"] / "analysis" / "analysis.json").read_text())
    test = analysis["test"]["synthetic"]
    assert len(set(base_seen)) == 1 and base_seen[0] == pytest.approx(test["base"]["pass_at_k"]["1"])
    assert set(per_method) == set(offline_dag["methods"])
    for method, steps in per_method.items():
        for step, values in steps.items():
            want = test["methods"][method][str(step)]["pass_at_k"]["1"]["mean"]
            assert sum(values) / len(values) == pytest.approx(want), (method, step)


@pytest.mark.slow
def test_the_analysis_run_holds_the_report_as_an_artifact(offline_dag):
    (analysis,) = [segs for segs in offline_dag["runs"].values() if _run_info(segs)[0]["job_type"] == "analysis"]
    assert len(analysis) == 2  # the analysis stage, then the report stage continuing the same run
    artifacts = [json.dumps(r) for seg in analysis for r in seg if r["type"] == "artifact"]
    assert any("report.html" in a and "analysis.json" in a for a in artifacts), artifacts[:1]


# -- the job logs ----------------------------------------------------------------------------

# What a tqdm bar leaves in a file: carriage-return redraws, "| 20/20 [00:00<00:00, 2.6it/s]".
BAR_LEFTOVER = re.compile(r"\r|\|[^|\n]*\d+/\d+ \[\d+:\d+<|\d it/s\]|\ds/it\]")


@pytest.mark.slow
def test_job_logs_have_no_progress_bar_leftovers_and_name_the_final_outputs(offline_dag):
    logs = sorted((offline_dag["results"] / "logs").rglob("*.log"))
    assert {p.relative_to(offline_dag["results"] / "logs").parts[0] for p in logs} >= {
        "sample", "train", "grade", "evaluate", "log_evals", "base_model.log"}
    for path in logs:
        text = path.read_text(errors="replace")
        assert not BAR_LEFTOVER.search(text), (path, BAR_LEFTOVER.search(text).group(0))
    sample_logs = offline_dag["results"] / "logs" / "sample"
    for path in sample_logs.rglob("*.log"):  # the output, not the .part file the job writes first
        text = path.read_text()
        final = offline_dag["results"] / "samples" / path.relative_to(sample_logs).with_suffix(".jsonl")
        assert f"sample {'/'.join(final.parts[-3:])}: " in text and f" of {final} (" in text, text
        assert text.count(".part") == text.count(".part until the job moves it into place"), text
    # Each training job says its run is offline, where, and the command that uploads it.
    commands = []
    for method in offline_dag["methods"]:
        for seed in offline_dag["seeds"]:
            text = (offline_dag["results"] / "logs" / "train" / f"{method}__s{seed}.log").read_text()
            m = re.search(r"W&B run \S+ \((\w+)\) is offline, in (\S+); upload it with: (wandb sync \S+)", text)
            assert m, text[-2000:]
            assert os.path.isdir(m.group(2)) and m.group(2).endswith(m.group(1)) and m.group(3) == f"wandb sync {m.group(2)}"
            commands.append(m.group(3).split())
    wandb_cli = str(Path(sys.executable).parent / "wandb")
    dry = subprocess.run([wandb_cli, *commands[0][1:], "--dry-run"], capture_output=True, text=True, timeout=120,
                         env=offline_dag["env"])
    assert dry.returncode == 0 and "Would sync 1 run(s)" in dry.stdout + dry.stderr, dry.stdout + dry.stderr


# -- a --config override on the finished run -------------------------------------------------


@pytest.mark.slow
def test_a_command_line_override_plans_only_its_method_again(offline_dag):
    """`snakemake -n --config 'methods={"batch": {"coef": 0.5}}'` on the finished smoke run plans
    what the same edit in a config file plans: batch retrains, GRPO does not."""
    from test_dag import planned_jobs

    out = subprocess.run([SNAKEMAKE, "-n", *offline_dag["base"], 'methods={"batch": {"coef": 0.5}}'], cwd=REPO_ROOT,
                         env=offline_dag["env"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert planned_jobs(out.stdout) == {"train": 1, "sample": 2, "grade": 2, "evaluate": 2, "log_evals": 1,
                                        "analysis": 1, "report": 1, "all": 1}
    trains = re.findall(r"^rule train:\n(?:[ \t]+.*\n)*?[ \t]+wildcards: (.*)$", out.stdout, flags=re.M)
    assert trains == ["method=batch, seed=0"], trains
