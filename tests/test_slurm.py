"""`snakemake --cores all --profile slurm` on a real single-node Slurm cluster.

The cluster (tests/slurm_cluster.py) runs slurmctld, slurmd and munged from the Debian
packages with a generated configuration in a temp folder; the node is this machine with two
GRES GPUs backed by /dev/null and /dev/zero. The whole smoke DAG goes through the repository's
profile (slurm/config.yaml) with only the overrides a cluster without slurmdbd needs and a few
for speed, and its outputs must equal a local run's. One training job in it outlives its time
limit: Slurm stops it, the profile's retries resubmit it with more time, and it resumes from its
checkpoint. Without the Slurm binaries (developer
machines) the cluster test skips with the reason; CI installs them with .ci/install-slurm, so
there it runs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import yaml

from slurm_cluster import SlurmCluster, missing_slurm

REPO = Path(__file__).resolve().parents[1]
# What a run needs from the repository (a copy: a run never writes into the working tree).
TREE = ("Snakefile", "config.yaml", "configs", "rules", "workflow", "envs", "docs", "slurm")
SMOKE = ["--configfile", "configs/smoke.yaml"]
# The whole smoke DAG goes through Slurm (and, for the comparison, runs locally): every rule,
# GPU requests from sampling and training.
R = "results/smoke"
EXPECTED_RULES = {"prepare_data", "base_model", "bandits", "sample", "grade", "evaluate", "train",
                  "log_evals", "analysis", "report"}
RUN_TIMEOUT_S = 900  # both runs together (they take 5.5-6.5 minutes on 2 idle cores)
# Overrides for a cluster without slurmdbd (sacct cannot answer there) and for speed. Where a
# Slurm job's time goes besides its rules (docs/slurm.md, "Where the time goes"): Snakemake
# starts inside the job for the batch script and again for each rule's `srun` step (~2 s of
# imports, ~1 s to exit), and the plugin checks job states every 1 s while none is in flight
# (--slurm-init-seconds-before-status-checks; its default is 40) but waits 10 s longer after
# each check that sees no job end. The profile's job groups cut the smoke DAG's 25 Slurm
# jobs to 19 (on 2 otherwise idle cores this test took ~260 s without them, 215-256 s with).
TEST_CLUSTER_ARGS = [
    "--slurm-status-command", "squeue",
    "--slurm-init-seconds-before-status-checks", "1",
    "--slurm-keep-successful-logs",
    "--latency-wait", "5",
]
# The node's CPUs as Slurm sees them, i.e. how many 1-thread jobs run at once: this machine's
# 2 cores. More (slurm.conf may claim any number) made the test slower: the local run and the
# jobs then contend for the cores, and with fewer job ends the plugin polls less often.
CLUSTER_CPUS = 2
# The rules that may ask for GPUs (config gpus_per_job): sampling and training.
GPU_RULES = {"sample", "train"}
# A training job killed by its time limit. The test gives training jobs a 1-minute first attempt
# (TIME_LIMIT_CONFIG; attempt k gets k minutes, rules/common.smk) and makes the trainer of
# SLOW_RUN wait after step SLOW_HOLD_STEP of its 4 until a signal comes (tests/seams.py's HoldAfterStep,
# a training callback in TIME_LIMIT_CONFIG; a resumed run does not wait), so that attempt 1 cannot finish,
# whatever the machine's speed and Slurm's timer granularity: at the limit Slurm sends SIGTERM, the trainer saves
# a checkpoint and exits 143 (KillWait later Slurm would SIGKILL it), the job ends TIMEOUT, the
# profile's `retries` resubmit it with 2 minutes and it resumes. The batch method, because its
# bonus gives gradients even when no smoke rollout is correct (GRPO's are then all zero).
SLOW_RUN = "batch__s0"
SLOW_HOLD_STEP = 2
SEAMS = REPO / "tests" / "seams.py"  # training callbacks through which a test holds a run
TIME_LIMIT_CONFIG = json.dumps({  # JSON is YAML
    "resources": {"train": {"runtime": 1}},
    "train": {"callbacks": [f"{SEAMS}:HoldAfterStep=" + json.dumps({"method": SLOW_RUN.split("__")[0],
                                                                    "step": SLOW_HOLD_STEP})]}})


def snakemake_cmd() -> list[str]:
    return [sys.executable, "-m", "snakemake"]


def run_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a run: this interpreter's bin folder first, since rules call `python`."""
    env = dict(os.environ if base is None else base)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("WANDB_MODE", "disabled")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    return env


def copy_tree(dest: Path) -> Path:
    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in TREE:
        src = REPO / name
        if not src.exists():
            continue
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)
    return dest


def tail(path: Path, n: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return f"({path} not found)"


# --- the profile itself: no Slurm needed ----------------------------------------------------


def test_profile_is_where_snakemake_looks(monkeypatch):
    """`--profile slurm` is looked up as ./slurm/config.yaml; account/partition/GPU model live there."""
    from snakemake.cli import get_profile_dir

    monkeypatch.chdir(REPO)
    found = get_profile_dir("slurm")
    assert found is not None, "snakemake does not find ./slurm as a profile from the repo root"
    profile_dir, config_file = found
    assert Path(config_file).resolve() == (REPO / "slurm" / "config.yaml").resolve()

    profile = yaml.safe_load((REPO / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    defaults = dict(entry.split("=", 1) for entry in profile["default-resources"])
    assert {"slurm_account", "slurm_partition", "mem_mb", "runtime"} <= set(defaults)
    for rule in profile.get("set-resources", {}):
        assert rule in GPU_RULES, f"only GPU rules get per-rule cluster settings, not {rule}"
    # job groups bundle CPU rules only: a GPU job should not hold its GPU through CPU work
    for entry in profile.get("groups", []):
        rule = entry.split("=", 1)[0]
        assert rule not in GPU_RULES, f"the profile groups GPU rule {rule}"
    # cluster settings are not rule settings; the one slurm_extra a rule sets is the early SIGTERM
    # of resources.<rule>.stop_grace_s (a pipeline setting, like runtime)
    for smk in (REPO / "rules").glob("*.smk"):
        text = smk.read_text()
        for key in ("slurm_account", "slurm_partition", "gpu_model"):
            assert key not in text, f"{smk.name} sets {key}: that belongs in slurm/config.yaml"
        extras = re.findall(r'resources\["slurm_extra"\] = (.*)', text)
        assert "slurm_extra" not in text or extras == ['f"--signal=TERM@{grace}"'], (smk.name, extras)


def test_profile_dry_run_from_repo_root(tmp_path):
    """The literal command parses: every job gets the profile's resources, only sampling and
    training a GPU (with gpus_per_job=1)."""
    tree = copy_tree(tmp_path / "repo")
    res = subprocess.run(
        [*snakemake_cmd(), "-n", "--cores", "all", "--profile", "slurm", *SMOKE,
         "--config", "gpus_per_job=1"],
        cwd=tree, env=run_env(), capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    out = res.stdout + res.stderr
    jobs = planned_jobs(out)
    assert jobs, out[-3000:]
    seen = set()
    for job in jobs.values():
        rule, res_text = job["rule"], job["resources_text"]
        seen.add(rule)
        assert res_text is not None, f"{rule}: no resources line\n{job['body']}"
        assert "slurm_partition=" in res_text and "slurm_account=" in res_text, res_text
        assert re.search(r"\bmem_mb=\d+", res_text) and re.search(r"\bruntime=\d+", res_text), res_text
        gpu = int(job["resources"].get("gpu", 0) or 0)
        if rule in GPU_RULES:
            assert gpu == 1, f"{rule} should ask for gpus_per_job GPUs: {res_text}"
        else:
            assert gpu == 0, f"{rule} must not ask for a GPU: {res_text}"
    assert seen == EXPECTED_RULES, seen
    # the profile's job groups are in effect: their rules' jobs come inside group jobs
    profile = yaml.safe_load((REPO / "slurm" / "config.yaml").read_text())
    grouped = {entry.split("=", 1)[0] for entry in profile.get("groups", [])}
    assert {j["rule"] for j in jobs.values() if j["in_group"]} == grouped, out[-3000:]


# --- the real cluster ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = missing_slurm()
    if reason:
        pytest.skip(reason)
    # MinJobAge outlasts the run, so that every job of it is still in `scontrol show job` at
    # the end (the default 300 s would drop the first jobs of a long run).
    c = SlurmCluster(tmp_path_factory.mktemp("slurm-cluster"), cpus=CLUSTER_CPUS, gpus=2,
                     min_job_age=2 * RUN_TIMEOUT_S)
    try:
        c.start()
        yield c
    finally:
        c.stop()


def scontrol_jobs(cluster: SlurmCluster) -> list[dict[str, str]]:
    """Every job slurmctld still remembers (MinJobAge keeps finished ones), as key=value dicts."""
    out = cluster.run("scontrol", "--oneliner", "show", "job").stdout
    jobs = []
    for line in out.splitlines():
        if not line.startswith("JobId="):
            continue
        fields = {}
        for token in re.findall(r"(\S+?)=(\S*)", line):
            fields.setdefault(token[0], token[1])
        jobs.append(fields)
    return jobs


def result_files(results: Path, tree: Path) -> dict[str, bytes]:
    """Every output under a results folder but logs and benchmarks (they carry timings) and
    the trainer's W&B run ids (random per run by design), with the run's own folder (which
    some stages record) replaced by a placeholder."""
    root = str(tree).encode()
    return {
        str(path.relative_to(results)): path.read_bytes().replace(root, b"<TREE>")
        for path in sorted(results.rglob("*"))
        if path.is_file() and path.relative_to(results).parts[0] not in ("logs", "benchmarks")
        and path.name not in (".snakemake_timestamp", "wandb_run_id")
    }


# A failed job's logs as Snakemake prints them (show-failed-logs), each between two 80-character rules.
FAILED_LOG = re.compile(r"^Logfile .*:\n={80}\n.*?^={80}\n", flags=re.M | re.S)
# Outputs computed before anything is graded: equal even when grading timeouts differ.
BEFORE_GRADING = ("data/", "base_model/", "samples/base/")
# JSON fields that measure the run rather than compute the result.
TIMING_KEY = re.compile(r"seconds|time|duration|load_avg|hostname|date|elapsed|per_sec|perf/|metrics_bytes", re.I)
# The report's "Generated <date> <time> UTC" line (obe.report).
REPORT_TIME = re.compile(rb"Generated \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC")
# Entries of torch-saved files that are not part of the result: obe.train checkpoints
# numpy's global RNG state but never seeds numpy (it does not use it), so it is random.
IGNORED_PT_KEYS = {"numpy"}


# JSON fields that name a W&B run: random per run by design, like the wandb_run_id files; and the
# runs' callbacks (train.callbacks), which hold one of the compared runs at a step by design.
RUN_ID_KEYS = {"run_id", "callbacks"}


def without_timings(obj):
    if isinstance(obj, dict):
        return {k: without_timings(v) for k, v in obj.items() if not TIMING_KEY.search(k) and k not in RUN_ID_KEYS}
    if isinstance(obj, list):
        return [without_timings(v) for v in obj]
    return obj


def same_value(a, b) -> bool:
    import numpy as np
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype \
            and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        keys = set(a) - IGNORED_PT_KEYS
        return keys == set(b) - IGNORED_PT_KEYS and all(same_value(a[k], b[k]) for k in keys)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same_value, a, b))
    return a == b


def same_output(name: str, a: bytes, b: bytes) -> bool:
    if a == b:
        return True
    try:
        if "/checkpoints/" in name and name.endswith("/manifest.json"):
            # sizes and sha256 of the checkpoint's files, which are compared themselves (state.json
            # records log lengths that vary with timings; rng.pt holds numpy's unseeded state)
            return sorted(json.loads(a)["files"]) == sorted(json.loads(b)["files"])
        if name.endswith(".json"):
            return without_timings(json.loads(a)) == without_timings(json.loads(b))
        if name.endswith(".jsonl"):
            return without_timings(jsonl(a)) == without_timings(jsonl(b))
        if name.endswith(".html"):
            return REPORT_TIME.sub(b"", a) == REPORT_TIME.sub(b"", b)
        if name.endswith((".pt", ".pth")):
            import io

            import torch

            load = lambda data: torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)  # noqa: E731
            return same_value(load(a), load(b))
    except (ValueError, RuntimeError):
        return False
    return False


def jsonl(data: bytes) -> list:
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def timed_out(row) -> bool:
    return isinstance(row, dict) and (row.get("grade_status") == "timeout" or row.get("outcome_key") == "<timeout>")


def grading_diff_only_timeouts(a: bytes, b: bytes) -> bool:
    rows_a, rows_b = jsonl(a), jsonl(b)
    return len(rows_a) == len(rows_b) and all(
        x == y or timed_out(x) or timed_out(y) for x, y in zip(rows_a, rows_b)
    )


def grading_timeout_differences(local_files, slurm_files) -> list[str]:
    """Rows (graded samples, training rollouts) that one run graded "timeout" and the other not."""
    found = []
    for name in local_files:
        if name.endswith(".jsonl") and local_files[name] != slurm_files[name]:
            for x, y in zip(jsonl(local_files[name]), jsonl(slurm_files[name])):
                if x != y and (timed_out(x) or timed_out(y)):
                    found.append(f"{name}:{x.get('question_id')}#{x.get('sample_index', x.get('step'))}")
    return found


@pytest.mark.slow
def test_smoke_dag_through_slurm_matches_local_run(cluster, tmp_path):
    local_tree = copy_tree(tmp_path / "local")
    slurm_tree = copy_tree(tmp_path / "slurm")
    env = run_env()
    started = time.monotonic()

    # The reference: the same DAG, locally, while the Slurm run goes on (it fills the CPU
    # while Snakemake waits on Slurm; outputs are deterministic for fixed seeds and threads).
    # Not niced: a starved run hits obe.grading's wall-clock timeouts (see below).
    local_log, slurm_log = tmp_path / "local.log", tmp_path / "slurm.log"
    local_cmd = [*snakemake_cmd(), "--cores", "2", *SMOKE]
    # The literal user command plus the test cluster's overrides. gpus_per_job=1 makes the
    # sampling and training jobs ask for a GPU (a fake GRES; the code still runs on the CPU)
    # so that the request goes through sbatch and the scheduler. time_limit.yaml and the
    # HoldAfterStep callback make SLOW_RUN's training job outlive its first time limit.
    (slurm_tree / "time_limit.yaml").write_text(TIME_LIMIT_CONFIG)
    cmd = [*snakemake_cmd(), "--cores", "all", "--profile", "slurm", *SMOKE, "time_limit.yaml",
           "--config", "gpus_per_job=1", *TEST_CLUSTER_ARGS]
    slurm_env = run_env(cluster.env)
    with open(local_log, "w") as local_fh, open(slurm_log, "w") as slurm_fh:
        local = subprocess.Popen(
            local_cmd, cwd=local_tree, env=env, stdout=local_fh, stderr=subprocess.STDOUT,
        )
        slurm = subprocess.Popen(
            cmd, cwd=slurm_tree, env=slurm_env, stdout=slurm_fh, stderr=subprocess.STDOUT,
        )
        ran_out = False
        try:
            deadline = started + RUN_TIMEOUT_S
            # Wait for both; when one fails there is no point in waiting for the other.
            while (local.poll() is None or slurm.poll() is None) and time.monotonic() < deadline:
                if local.poll() not in (None, 0) or slurm.poll() not in (None, 0):
                    break
                time.sleep(1)
            ran_out = time.monotonic() >= deadline and (local.poll() is None or slurm.poll() is None)
        finally:
            for proc in (slurm, local):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)  # Snakemake cancels its Slurm jobs on SIGINT
                    try:
                        proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
    elapsed = time.monotonic() - started
    assert not ran_out, (
        f"the runs took over {RUN_TIMEOUT_S} s and were stopped (local rc {local.returncode}, Slurm rc "
        f"{slurm.returncode})\n--- local ---\n{tail(local_log, 30)}\n--- slurm ---\n{tail(slurm_log, 60)}"
        f"\n{cluster.logs(15)}"
    )
    assert local.returncode == 0, (
        f"the local reference run failed (rc {local.returncode}, {elapsed:.0f} s): the DAG itself is "
        f"broken, not Slurm\n{' '.join(local_cmd)}\n{tail(local_log, 80)}"
    )
    assert slurm.returncode == 0, (
        f"Slurm run failed (rc {slurm.returncode}, {elapsed:.0f} s): {' '.join(cmd)}\n"
        f"{tail(slurm_log, 120)}\n{cluster.logs()}"
    )

    # 1. every job went through sbatch, alone or in a group job: slurmctld knows the Slurm
    #    job, it ran on the test node, its log is where the plugin puts it and names the
    #    Snakemake jobs it ran (each planned job once per attempt), and its resources became
    #    sbatch options. A job is retried only after its time limit (the profile's retries).
    # Snakemake's own lines, without the logs of failed jobs it prints (show-failed-logs)
    full_log = slurm_log.read_text(errors="replace")
    log_text = FAILED_LOG.sub("", full_log)
    planned = planned_jobs(log_text)
    planned_rules = {j["rule"] for j in planned.values()}
    assert planned_rules == EXPECTED_RULES, (planned_rules, log_text[-3000:])
    by_target = {(j["rule"], tuple(sorted(j["wildcards"].items()))): sm_id for sm_id, j in planned.items()}
    assert len(by_target) == len(planned), "two planned jobs with the same rule and wildcards"
    # (Snakemake job or group job id, Slurm job id) of each sbatch the plugin reports
    submissions = set(re.findall(r"Job (\S+) has been submitted with SLURM jobid (\d+)", log_text))
    jobs = {j["JobId"]: j for j in scontrol_jobs(cluster) if j.get("WorkDir") == str(slurm_tree)}
    assert set(jobs) == {s for _, s in submissions} and len(jobs) == len(submissions), (sorted(jobs), submissions)
    ran_in: dict[str, list[str]] = {}  # Snakemake job id -> the Slurm jobs that ran it, in submission order
    members_of: dict[str, tuple[list[str], str | None]] = {}  # Slurm job id -> its Snakemake jobs, group id
    for slurm_id in sorted(jobs, key=int):
        job = jobs[slurm_id]
        log = Path(job["StdOut"])
        assert log.is_file() and slurm_tree / ".snakemake" / "slurm_logs" in log.parents, job
        targets, group_id, attempt = job_log_targets(log)
        sm_ids = []
        for rule, wildcards in targets:
            sm_id = by_target.get((rule, tuple(sorted(wildcards.items()))))
            assert sm_id is not None, f"Slurm job {slurm_id} ran {rule} {wildcards}, which was not planned"
            ran_in.setdefault(sm_id, []).append(slurm_id)
            assert attempt == len(ran_in[sm_id]), f"Slurm job {slurm_id} ran {rule} {wildcards} as attempt {attempt}"
            sm_ids.append(sm_id)
        assert sm_ids, f"Slurm job {slurm_id} ran no Snakemake job ({log})"
        # the plugin's sbatch for this Snakemake job, or for the group job holding its members
        assert (group_id or sm_ids[0], slurm_id) in submissions, (slurm_id, group_id, targets)
        members_of[slurm_id] = sm_ids, group_id
    assert set(ran_in) == set(planned), (
        f"Snakemake jobs that no Slurm job ran: {sorted(planned[i]['rule'] for i in set(planned) - set(ran_in))}"
    )
    gpu_rules = set()
    for slurm_id, (sm_ids, group_id) in members_of.items():
        job = jobs[slurm_id]
        members = [planned[i] for i in sm_ids]
        rules = [m["rule"] for m in members]
        attempt = ran_in[sm_ids[0]].index(slurm_id) + 1
        assert len(members) == 1 or group_id, f"Slurm job {slurm_id} ran {rules} without being a group job"
        assert job["Comment"].startswith("rule_") and all(r in job["Comment"] for r in rules), (rules, job)
        if slurm_id == ran_in[sm_ids[0]][-1]:
            assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", job
        else:  # an attempt that was retried: only a time limit may have ended it
            assert job["JobState"] == "TIMEOUT", (rules, job)
            assert "DUE TO TIME LIMIT" in Path(job["StdOut"]).read_text(errors="replace"), job["StdOut"]
        assert job["Partition"] == cluster.partition and job["NodeList"] == cluster.node, job
        # A job's resources became sbatch options (mem_mb -> --mem, runtime -> -t, threads ->
        # --cpus-per-task, gpu -> --gpus). The members of a group job (the profile's groups:
        # grade -> evaluate of one checkpoint, analysis -> report) run one after another, so it
        # asks for the most memory, threads and GPUs of any member and their summed runtime.
        # Attempt k asks for k x the configured runtime (rules/common.smk).
        mem_mb = max(int(m["resources"]["mem_mb"]) for m in members)
        runtime = attempt * sum(int(m["resources"]["runtime"]) for m in members)
        threads = max(m["threads"] for m in members)
        gpus = max(int(m["resources"].get("gpu", 0) or 0) for m in members)
        assert job["MinMemoryNode"] == f"{mem_mb}M", (rules, mem_mb, job)
        assert job["TimeLimit"] == slurm_minutes(runtime), (rules, runtime, job)
        assert job["CPUs/Task"] == str(threads), (rules, threads, job)
        tres = job.get("TresPerJob", "") + job.get("TresPerNode", "")
        assert ("gres:gpu:" in tres) == (gpus > 0), (rules, gpus, job)
        assert (gpus > 0) == bool(GPU_RULES & set(rules)), f"GPUs for {rules}: {tres!r}"
        if gpus:
            assert f"gres:gpu:{gpus}" in tres, (rules, gpus, job)
            gpu_rules |= GPU_RULES & set(rules)
    assert gpu_rules == GPU_RULES, f"GPU jobs: {gpu_rules}, expected {GPU_RULES}"
    submitted = re.findall(r"_slurm_rpc_submit_batch_job: JobId=(\d+)", cluster.slurmctld_log())
    assert set(jobs) <= set(submitted)

    # 1b. the slow training job: its first attempt was stopped by Slurm at the time limit
    #     (1 minute), the second (2 minutes) resumed from the checkpoint the first left behind.
    slow_id = by_target[("train", (("method", SLOW_RUN.split("__")[0]), ("seed", SLOW_RUN.split("__s")[1])))]
    slow_jobs = [jobs[i] for i in ran_in[slow_id]]
    assert len(slow_jobs) >= 2 and slow_jobs[0]["JobState"] == "TIMEOUT", [j["JobState"] for j in slow_jobs]
    assert [j["TimeLimit"] for j in slow_jobs[:2]] == [slurm_minutes(1), slurm_minutes(2)], slow_jobs
    train_log = (slurm_tree / R / "logs" / "train" / f"{SLOW_RUN}.log").read_text()
    resumed = re.search(r"obe\.train: resuming from (\S+)/checkpoints/step_(\d+) \(step (\d+)\)", train_log)
    assert resumed, f"the retried training job did not resume from a checkpoint:\n{train_log}"
    resume_step = int(resumed.group(3))
    # attempt 1's own log, which Snakemake printed when the job failed: the trainer got SIGTERM
    # and saved the checkpoint that attempt 2 resumed from
    saved = re.findall(r"obe\.train: signal 15 received; checkpoint saved at step (\d+), exiting", full_log)
    assert saved == [str(resume_step)] == [str(SLOW_HOLD_STEP)], (saved, resume_step, "the trainer did not save at SIGTERM before KillWait")
    metrics = jsonl((slurm_tree / R / "train" / SLOW_RUN / "metrics.jsonl").read_bytes())
    assert [row["step"] for row in metrics] == list(range(1, len(metrics) + 1)) and 0 < resume_step < len(metrics)
    # the run had gradients (the batch bonus), so its weights and AdamW moments move and equal
    # outputs below are not those of a frozen model
    assert any(row["grad_norm"] > 0 for row in metrics), metrics

    # 2. same results as the local run: every output file equal (JSON compared without its
    #    timing fields, the report without its generation time; logs and benchmarks left out).
    local_files = result_files(local_tree / R, local_tree)
    slurm_files = result_files(slurm_tree / R, slurm_tree)
    # The checkpoint the slow run resumed from may be one saved at SIGTERM between the regular
    # ones (checkpoint_every); the trainer keeps the newest 2, so it stands in for an older one.
    extra = sorted(set(slurm_files) - set(local_files))
    missing = sorted(set(local_files) - set(slurm_files))
    ck = f"train/{SLOW_RUN}/checkpoints/step_"
    assert all(n.startswith(f"{ck}{resume_step}/") for n in extra), extra
    assert all(n.startswith(ck) and int(n[len(ck):].split("/")[0]) < resume_step for n in missing), missing
    for name in extra:
        del slurm_files[name]
    for name in missing:
        del local_files[name]
    assert sorted(local_files) == sorted(slurm_files), "the runs wrote different files"
    assert "report.html" in local_files, f"the DAG's target is missing: {sorted(local_files)}"
    differing = [name for name in local_files if not same_output(name, local_files[name], slurm_files[name])]
    if differing:
        # obe.grading gives every answer a hard 5 s wall-clock limit, so on an overloaded
        # machine one run may grade an answer "timeout" that the other grades "ok". That
        # difference, and everything computed from grades (evaluation, training rewards and
        # counts, trained models), is the machine's, not Slurm's; what precedes grading must
        # still be identical.
        timeouts = grading_timeout_differences(local_files, slurm_files)
        unexplained = [n for n in differing if n.startswith(BEFORE_GRADING)] + [
            n for n in differing
            if n.startswith("graded/") and not grading_diff_only_timeouts(local_files[n], slurm_files[n])
        ]
        assert timeouts and not unexplained, (
            f"Slurm and local runs differ in {differing}"
            + (f" (grading timeouts differ: {timeouts}; unexplained: {unexplained})" if timeouts else "")
        )
        warnings.warn(
            f"outputs differ only through load-dependent grading timeouts ({timeouts}); compared "
            f"exactly: {', '.join(BEFORE_GRADING)} and every other output; differing: {differing}"
        )

    print(f"smoke DAG via Slurm + local reference: {elapsed:.0f} s, {len(jobs)} Slurm jobs; {SLOW_RUN} "
          f"stopped at {slow_jobs[0]['RunTime']} and resumed from step {resume_step} of {len(metrics)}")


def planned_jobs(log_text: str) -> dict[str, dict]:
    """Snakemake's job blocks from a run log (those of group jobs are indented): jobid -> rule,
    wildcards, resources and threads (rule all left out)."""
    jobs = {}
    pattern = r"^([ \t]*)(?:local)?rule (\w+):\n((?:\1[ \t]+.*\n)+)"
    for m in re.finditer(pattern, log_text, flags=re.M):
        indent, rule, body = m.group(1), m.group(2), m.group(3)
        jobid = re.search(r"^\s+jobid: (\d+)", body, flags=re.M)
        if rule == "all" or not jobid or jobid.group(1) in jobs:
            continue  # a retried job is printed again, with its attempt's runtime: keep attempt 1
        resources = re.search(r"^\s+resources: (.*)$", body, flags=re.M)
        res_text = resources.group(1) if resources else None
        wildcards = re.search(r"^\s+wildcards: (.*)$", body, flags=re.M)
        threads = re.search(r"^\s+threads: (\d+)", body, flags=re.M)
        jobs[jobid.group(1)] = {
            "rule": rule,
            "wildcards": key_values(wildcards.group(1)) if wildcards else {},
            "resources": key_values(res_text or ""),
            "resources_text": res_text,
            "threads": int(threads.group(1)) if threads else 1,
            "in_group": bool(indent),
            "body": body,
        }
    return jobs


def key_values(text: str) -> dict[str, str]:
    """`a=1, b=x` as printed in Snakemake's job blocks."""
    return dict(item.split("=", 1) for item in text.split(", ") if "=" in item)


def job_log_targets(log: Path) -> tuple[list[tuple[str, dict[str, str]]], str | None, int]:
    """What one Slurm job ran, from its log: the Snakemake command of the batch script (printed
    first) names each rule and wildcards it runs (--target-jobs), for a group job the group
    job's id (--local-groupid), and the attempt (--attempt)."""
    command = re.search(r"^\s*Command: (.*)$", log.read_text(errors="replace"), flags=re.M)
    assert command, f"no Snakemake command in {log}"
    argv = shlex.split(command.group(1))
    targets, group_id, attempt = [], None, 1
    for i, arg in enumerate(argv):
        if arg == "--local-groupid":
            group_id = argv[i + 1]
        if arg == "--attempt":
            attempt = int(argv[i + 1])
        if arg == "--target-jobs":
            for spec in argv[i + 1:]:
                if spec.startswith("--"):
                    break
                rule, _, wildcards = spec.partition(":")
                targets.append((rule, dict(w.split("=", 1) for w in wildcards.split(",") if w)))
    return targets, group_id, attempt


def slurm_minutes(minutes: int) -> str:
    """A time limit in minutes as scontrol prints it ([D-]HH:MM:SS)."""
    days, rest = divmod(minutes, 24 * 60)
    text = f"{rest // 60:02d}:{rest % 60:02d}:00"
    return f"{days}-{text}" if days else text

