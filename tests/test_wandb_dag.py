"""W&B out of the box, read back from the smoke DAG's offline runs: one run per trained model
holding its training curves and its evaluations on the training-step axis (base = step 0), few
other runs, the completions table, and the config's wandb keys."""

from __future__ import annotations

import glob
import json
import os
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
    out = subprocess.run([SNAKEMAKE, "--cores", "2", "--configfile", "configs/smoke.yaml",
                          "--config", f"results_dir={root}"], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-4000:]
    with open(REPO_ROOT / "config.yaml") as f:
        cfg = yaml.safe_load(f)
    with open(REPO_ROOT / "configs" / "smoke.yaml") as f:
        smoke = yaml.safe_load(f)
    exp = smoke.get("experiment", cfg["experiment"])
    results = root / exp
    runs: dict[str, list[list[dict]]] = defaultdict(list)  # run id -> records of each offline segment
    for d in sorted(glob.glob(str(results / "wandb" / "wandb" / "offline-run-*"))):
        (run_file,) = glob.glob(d + "/run-*.wandb")
        runs[d.rsplit("-", 1)[1]].append(_read_records(run_file))
    train = {**cfg["train"], **smoke.get("train", {})}
    return {"results": results, "runs": runs, "experiment": exp, "methods": train["methods"], "seeds": train["seeds"]}


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


@pytest.mark.slow
def test_runs_per_experiment_and_their_config(offline_dag):
    runs = offline_dag["runs"]
    trained = len(offline_dag["methods"]) * len(offline_dag["seeds"])
    assert len(runs) <= trained + 10, sorted(runs)
    by_type = defaultdict(list)
    for segments in runs.values():
        run, _ = _run_info(segments)
        assert run["run_group"] == offline_dag["experiment"]
        by_type[run["job_type"]].append(run)
        assert "from-env" in run.get("tags", []), run.get("tags")  # WANDB_TAGS from the environment
    assert len(by_type["train"]) == trained
    assert not {"sample", "grade", "evaluate"} & set(by_type)  # their numbers live in the trained model's run
    for run in by_type["train"]:
        config = {k: _decoded(_value(v)) for k, v in run["config"]["update"].items()}
        assert {"method", "seed", "coef", "experiment"} <= set(config)


def _value(v):
    return v["value"] if isinstance(v, dict) and "value" in v else v


@pytest.mark.slow
def test_pass_at_k_against_training_step_rebuilds_the_analysis(offline_dag):
    """From the offline runs alone: pass@k per method at each training step (mean over seeds),
    equal to analysis.json's; the base model appears as step 0 of every run."""
    per_method: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    base_seen = []
    completions = 0
    for segments in offline_dag["runs"].values():
        run, rows = _run_info(segments)
        if run["job_type"] != "train":
            continue
        method = run["display_name"].split("__s")[0]
        evals = [r for r in rows if any(k.startswith("eval/synthetic/pass@") for k in r)]
        steps = sorted(int(r["step"]) for r in evals)
        assert steps[0] == 0, steps
        base_seen.append(next(r["eval/synthetic/pass@1"] for r in evals if int(r["step"]) == 0))
        for r in evals:
            if int(r["step"]) > 0:
                per_method[method][int(r["step"])].append(float(r["eval/synthetic/pass@1"]))
        completions += sum("completions._type" in r for r in rows)  # a W&B table, flattened in history
    assert completions >= len(offline_dag["methods"])  # the completions table, at step 1 at least
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
