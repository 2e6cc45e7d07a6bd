"""The Snakemake DAG: lint, dry runs, the smoke DAG end to end, and what re-runs after an edit.

Re-run checks use `snakemake -n` (the plan) after a real smoke run, as a user would.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def snakemake(*args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([SNAKEMAKE, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


def planned_jobs(out: str) -> dict[str, int]:
    """Job counts from the 'Job stats' table of a (dry) run."""
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:", 1)[1]
    counts = {}
    for line in table.splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m:
            break
        counts[m.group(1)] = int(m.group(2))
    counts.pop("total", None)
    return counts


def test_lint_is_clean():
    out = snakemake("--lint")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Congratulations, your workflow is in a good condition" in out.stdout + out.stderr


def test_default_dag_dry_run():
    out = snakemake("-n", "--cores", "2", "--config", "results_dir=/nonexistent-results")
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = planned_jobs(out.stdout)
    with open(REPO_ROOT / "config.yaml") as f:
        cfg = yaml.safe_load(f)
    runs = len(cfg["train"]["methods"]) * len(cfg["train"]["seeds"])
    assert jobs["train"] == runs
    assert jobs["base_model"] == 1 and jobs["report"] == 1 and jobs["analysis"] == 1


def test_config_typo_fails_with_key_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  stpes: 3\n")
    out = snakemake("-n", "--cores", "1", "--configfile", "config.yaml", str(bad))
    assert out.returncode != 0
    assert "config error at train: unknown key(s) ['stpes']" in out.stdout + out.stderr


def test_job_resources_come_from_the_config(tmp_path):
    """Every rule's threads, mem_mb, runtime and gpu are its config `resources` entry; a null
    threads or gpus is the top-level `threads` or `gpus_per_job`."""
    with open(REPO_ROOT / "config.yaml") as f:
        rules = list(yaml.safe_load(f)["resources"])
    # distinct values per rule, so that a rule reading another rule's entry shows
    wanted = {rule: {"mem_mb": 1000 + i, "runtime": 10 + i, "gpus": i % 2, "threads": 1 + i % 3}
              for i, rule in enumerate(rules)}
    wanted["train"].update(gpus=None, threads=None)
    override = tmp_path / "resources.yaml"
    override.write_text(yaml.safe_dump({"resources": wanted, "threads": 2, "gpus_per_job": 3}))
    out = snakemake("-n", "--cores", "8", "--configfile", "configs/smoke.yaml", str(override),
                    "--config", f"results_dir={tmp_path / 'results'}")
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    seen = set()
    for m in re.finditer(r"^rule (\w+):\n((?:[ \t]+.*\n)+)", out.stdout, flags=re.M):
        rule, body = m.group(1), m.group(2)
        if rule == "all":
            continue
        seen.add(rule)
        res = dict(kv.split("=", 1) for kv in re.search(r"resources: (.*)", body).group(1).split(", "))
        threads = int(re.search(r"threads: (\d+)", body).group(1)) if "threads:" in body else 1
        want = {**wanted[rule]}
        want["gpus"] = 3 if want["gpus"] is None else want["gpus"]
        want["threads"] = 2 if want["threads"] is None else want["threads"]
        got = {"mem_mb": int(res["mem_mb"]), "runtime": int(res["runtime"]), "gpus": int(res["gpu"]),
               "threads": threads}
        assert got == want, rule
    assert seen == set(rules)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The smoke DAG, run once for real into a temporary results folder."""
    results = tmp_path_factory.mktemp("results")
    base = ("--cores", "2", "--configfile", "configs/smoke.yaml", "--config", f"results_dir={results}")
    out = snakemake(*base)
    assert out.returncode == 0, (out.stdout + out.stderr)[-5000:]
    return results / "smoke", base


@pytest.mark.slow
def test_smoke_dag_outputs(smoke_run):
    root, _ = smoke_run
    report = (root / "report.html").read_text()
    assert "<img" in report and "base64" in report
    summary = json.loads((root / "eval" / "base" / "step0" / "synthetic" / "summary.json").read_text())
    assert summary["n"] == 4 and summary["num_questions"] == 16
    for run in ("grpo__s0", "batch__s0"):
        assert (root / "train" / run / "done.json").exists()
        assert (root / "eval" / run / "step4" / "synthetic" / "summary.json").exists()
    assert (root / "bandits" / "regret.png").exists()
    assert list((root / "benchmarks").rglob("*.tsv"))


def _plan(smoke_run, *extra: str, override: dict | None = None, tmp_path: Path | None = None) -> dict[str, int]:
    """Jobs a dry run plans, optionally with one more config file merged over the smoke preset."""
    _, base = smoke_run
    args = list(base)
    if override is not None:
        path = tmp_path / "override.yaml"
        path.write_text(yaml.safe_dump(override))
        args.insert(args.index("configs/smoke.yaml") + 1, str(path))
    out = snakemake("-n", *args, *extra)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    return planned_jobs(out.stdout)


@pytest.mark.slow
def test_nothing_to_do_after_a_run(smoke_run):
    assert _plan(smoke_run) == {}


@pytest.mark.slow
def test_editing_one_coefficient_reruns_only_that_method(smoke_run, tmp_path):
    jobs = _plan(smoke_run, override={"methods": {"batch": {"coef": 0.5}}}, tmp_path=tmp_path)
    # Only batch__s0 retrains (grpo__s0 does not), then its samples at steps 2 and 4 are
    # regraded and re-evaluated (and logged to W&B), and the analysis and report are rebuilt.
    assert jobs == {"train": 1, "sample": 2, "grade": 2, "evaluate": 2, "log_evals": 1, "analysis": 1, "report": 1, "all": 1}


@pytest.mark.slow
def test_editing_eval_sample_count_reruns_sampling_not_training(smoke_run, tmp_path):
    jobs = _plan(smoke_run, override={"evaluation": {"n": 6}}, tmp_path=tmp_path)
    assert "train" not in jobs and "base_model" not in jobs
    # test-set sampling of base (step 0) and of two runs at two steps each
    assert jobs["sample"] == 1 + 2 * 2 and jobs["evaluate"] == 5 and jobs["report"] == 1


@pytest.mark.slow
def test_forcerun_and_R(smoke_run):
    jobs = _plan(smoke_run, "--forcerun", "evaluate")
    assert jobs["evaluate"] == 5 and "sample" not in jobs and "train" not in jobs and jobs["analysis"] == 1
    jobs = _plan(smoke_run, "-R", "bandits")
    assert jobs == {"bandits": 1, "report": 1, "all": 1}


@pytest.mark.slow
def test_snakemake_report_builds(smoke_run, tmp_path):
    _, base = smoke_run
    out = snakemake("--report", str(tmp_path / "report.html"), *base)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert (tmp_path / "report.html").stat().st_size > 10_000
