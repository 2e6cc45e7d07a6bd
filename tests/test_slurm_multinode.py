"""Training across nodes: hardware.nodes, slurm/trl_multinode.sh and a real two-node Slurm cluster.

Without Slurm (fast): validation refuses process layouts that cannot launch, naming the keys;
the train rule asks Slurm for the nodes (sbatch --nodes/--ntasks, --gres=gpu:G per node) and
starts slurm/trl_multinode.sh; the launcher picks a rendezvous port free on the head from the
job id, orders the nodes head first, and a node that cannot reach the head fails within
OBE_RDZV_TIMEOUT with a message naming both (stub scontrol/srun/python on PATH).

On a real cluster (tests/node_network.py: slurmctld and munged on this host, two slurmd, each
in its own network namespace with its own hostname and address; skipped, with the reason, where
Slurm or namespaces are not available), the smoke config's training job of the trl backend
(4 steps of the batch method, world size 2) goes through `snakemake --profile slurm` three
times at once, each in a copy of the repository whose data and base model were made once,
locally:

  one    1 node  x 2 CPU processes      hardware.cpu_processes: 2 (one_gpu.yaml + --multi_gpu: DDP over gloo)
  two    2 nodes x 1 process per GPU    gpus_per_job: 1, hardware.nodes: 2: --gres=gpu:1 per node
                                        (the cluster's GPUs are /dev/null stand-ins; device: cpu)
  kill   2 nodes x 1 CPU process        hardware.nodes: 2; tests/seams.py's HoldAfterStep holds the
                                        fresh run after step 2 until the test sends SIGTERM to the
                                        job's steps on both nodes (scancel --signal=TERM): the ranks
                                        checkpoint step 2 and exit, the job fails, the profile's
                                        retries resubmit it, and attempt 2 resumes from step 2.

All three must end with the same metrics, rollouts, count tables and weights, exactly (max
|difference| 0). Why exactly: every run has world size 2 and rank r gets the same seed and the
same rows in each layout, so its local gradients are bitwise equal; gloo's all-reduce then adds
two numbers, a + b == b + a in floating point, and the division by the world size is the same.
More ranks would sum in an order set by the ring, and the last bits could differ between layouts
of different world sizes; none is compared here.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from node_network import MultiNodeSlurmCluster, NodeNetwork, missing_netns
from slurm_cluster import missing_slurm
from test_slurm import TEST_CLUSTER_ARGS, copy_tree, run_env, scontrol_jobs, snakemake_cmd, tail

from obe.core.config import ConfigError, deep_merge, validate_config

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "slurm" / "trl_multinode.sh"
SMOKE = ["--configfile", "configs/smoke.yaml", "multinode.yaml"]
RUN = "batch__s0"  # the batch bonus gives gradients even when no smoke rollout is correct
TARGET = f"results/smoke/train/{RUN}/done.json"
RUN_TIMEOUT_S = 900  # the three runs together, the retried one included
HOLD_STEP = 2
# Every run's config over the smoke preset. The smoke base model's full pre-training stays: after
# 400 steps instead of 2000 its answers earned no reward and no batch bonus, so no weight moved.
COMMON = {"train": {"backend": "trl"}}


def merged(*overlays: dict) -> dict:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    for overlay in (yaml.safe_load((REPO / "configs" / "smoke.yaml").read_text()), *overlays):
        cfg = deep_merge(cfg, overlay)
    return copy.deepcopy(cfg)


# --- validation: layouts that cannot launch ---------------------------------------------------

TRL = {"train": {"backend": "trl"}}


@pytest.mark.parametrize("overlay,error", [
    ({"hardware": {"nodes": 2}}, r"hardware\.nodes: 2 needs train\.backend: trl"),
    ({"hardware": {"cpu_processes": 2}}, r"hardware\.cpu_processes: 2 needs train\.backend: trl"),
    # smoke: 4 questions x 4 samples = 16 rollouts per step
    ({**TRL, "hardware": {"nodes": 3}}, r"hardware\.nodes: the world size 3 = 3 node\(s\) \(hardware\.nodes\) x 1 CPU "
                                        r"process\(es\) per node \(hardware\.cpu_processes\) does not divide the 16 rollouts"),
    # CPU processes are capped by hardware.gpus, the GPUs per node they stand in for: 4 -> 1
    ({**TRL, "hardware": {"nodes": 3, "cpu_processes": 4, "gpus": 1}}, r"the world size 3 = 3 node\(s\)"),
    ({**TRL, "hardware": {"nodes": 2}, "resources": {"train": {"gpus": 3}}},
     r"world size 6 = 2 node\(s\) \(hardware\.nodes\) x 3 GPU\(s\) per node \(resources\.train\.gpus / gpus_per_job\)"),
    ({"train": {"backend": "trl", "micro_batch": 3}, "hardware": {"nodes": 2}},
     r"train\.micro_batch: 3 does not divide the 8 rollouts of each of the 2 ranks"),
    ({**TRL, "gpus_per_job": 2, "hardware": {"colocate_vllm": 0.3}, "sampling": {"tensor_parallel_size": 4}},
     r"sampling\.tensor_parallel_size: 4 does not divide the 2 GPUs per node .*hardware\.colocate_vllm"),
    ({**TRL, "gpus_per_job": 1, "hardware": {"cpu_processes": 2}},
     r"hardware\.cpu_processes: 2 applies to training without GPUs, but the train job has 1 GPU"),
])
def test_layouts_that_cannot_launch_are_refused_with_the_keys(overlay, error):
    with pytest.raises(ConfigError, match=error):
        validate_config(merged(overlay))


def test_layouts_that_launch_are_accepted():
    validate_config(merged({"hardware": {"cpu_processes": None, "nodes": 1}}))  # unset, as for obe.train
    validate_config(merged(TRL, {"hardware": {"nodes": 2, "cpu_processes": 2}}))
    validate_config(merged(TRL, {"hardware": {"nodes": 4}, "gpus_per_job": 2}))
    validate_config(merged(TRL, {"hardware": {"nodes": 2, "colocate_vllm": 0.3}, "gpus_per_job": 4,
                                 "sampling": {"tensor_parallel_size": 2}}))


# --- the train rule: what it asks Slurm for, what it runs ----------------------------------


def train_job(tmp_path: Path, overlay: dict) -> tuple[dict[str, str], str]:
    """The train job of a dry run: (its resources as Snakemake prints them, its shell command)."""
    (tmp_path / "o.yaml").write_text(yaml.safe_dump(overlay))
    out = subprocess.run(
        [*snakemake_cmd(), "-n", "-p", "--cores", "1", f"{tmp_path}/smoke/train/{RUN}/done.json", "--configfile",
         "configs/smoke.yaml", str(tmp_path / "o.yaml"), "--config", f"results_dir={tmp_path}"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=run_env())
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    block = out.stdout[out.stdout.index("rule train:"):]
    resources = re.search(r"^\s+resources: (.*)$", block, flags=re.M).group(1)
    command = re.search(r"^Shell command: (.*?) > \S+\.log 2>&1", block, flags=re.M | re.S).group(1)
    return dict(kv.split("=", 1) for kv in resources.split(", ")), command


def test_train_rule_asks_for_the_nodes_and_the_gpus_of_each(tmp_path):
    res, command = train_job(tmp_path, {**TRL, "hardware": {"nodes": 2, "sharding": "fsdp"},
                                        "resources": {"train": {"gpus": 4, "threads": 8}}})
    # sbatch --nodes=2 --ntasks=2 --gres=gpu:4 (per node; --gpus would count the job's), and the
    # rule's command runs in the batch step (mpi), whose srun spans both nodes
    assert (res["nodes"], res["tasks"], res["mpi"], res["gres"], res["gpu"], res["tasks_per_gpu"]) == \
        ("2", "2", "srun", "gpu:4", "0", "0")
    argv = command.split()
    assert argv[:3] == [str(SCRIPT), "4", "--config_file"] and argv[3].endswith("configs/accelerate/fsdp.yaml")
    assert argv[4] == "--" and "--multi_gpu" not in argv  # the flag would override FSDP's distributed type


def test_cpu_processes_on_one_node_launch_ddp_on_a_free_port(tmp_path):
    """CPU processes stand in for GPUs under the accelerate config of hardware.sharding (none:
    one_gpu.yaml, which starts several processes only with --multi_gpu), on a port the OS picks."""
    res, command = train_job(tmp_path, {**TRL, "hardware": {"cpu_processes": 2}})
    assert "nodes" not in res and res["gpu"] == "0"
    assert "configs/accelerate/one_gpu.yaml --multi_gpu --num_processes 2 --main_process_port 0 " \
           "-m obe.engines.trl_backend" in command
    # at most hardware.gpus of them (the GPUs they stand in for), and one process needs no torchrun
    _, command = train_job(tmp_path, {**TRL, "hardware": {"cpu_processes": 2, "gpus": 1}})
    assert "one_gpu.yaml -m obe.engines.trl_backend" in command  # the config's own num_processes: 1


# --- the launcher, with stub Slurm commands --------------------------------------------------


def stub(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / name).write_text("#!/bin/bash\n" + body)
    (bin_dir / name).chmod(0o755)


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", port))
        except OSError:
            return False
    return True


@pytest.mark.parametrize("here,order", [("nd1", ["nd1", "nd2", "nd3"]), ("nd2", ["nd2", "nd1", "nd3"])])
def test_launcher_takes_a_free_port_from_the_job_id_and_puts_the_head_first(tmp_path, here, order):
    """The head is the node the batch script runs on; the port is the first free one among
    29500 + (job id + i) % 2000: the job's own (here held by another listener) is skipped."""
    bin_dir, argv_file = tmp_path / "bin", tmp_path / "srun.argv"
    stub(bin_dir, "scontrol", """case "$*" in
  "show -o job 1234") echo "JobId=1234 JobName=t ReqNodeList=(null) NodeList=nd[1-3] NumNodes=3 CPUs/Task=3";;
  "show hostnames nd[1-3]") printf 'nd1\\nnd2\\nnd3\\n';;
  "show -o node $SLURMD_NODENAME") echo "NodeName=$SLURMD_NODENAME Arch=x86_64 NodeAddr=10.9.9.${SLURMD_NODENAME#nd} NodeHostName=x";;
  *) echo "unexpected scontrol $*" >&2; exit 2;;
esac
""")
    stub(bin_dir, "srun", f'printf "%s\\n" "$@" > {argv_file}\n')
    own = 29500 + 1234 % 2000
    expected = next(p for p in range(own + 1, own + 50) if port_is_free(p))
    env = {**run_env(), "PATH": f"{bin_dir}:{run_env()['PATH']}", "SLURM_JOB_ID": "1234", "SLURMD_NODENAME": here}
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            busy.bind(("", own))
        except OSError:
            pass  # already taken on this machine: skipped all the same
        busy.listen()
        res = subprocess.run(["bash", str(SCRIPT), "2", "--config_file", "c.yaml", "--", "--steps", "4"],
                             env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    argv = argv_file.read_text().splitlines()
    assert argv == ["--nodes=3", "--ntasks=3", "--ntasks-per-node=1", "--kill-on-bad-exit=1", "--cpus-per-task=3",
                    "bash", str(SCRIPT), "--node", here, f"10.9.9.{here[2:]}", str(expected), *order,
                    "--", "2", "--config_file", "c.yaml", "--", "--steps", "4"]


def test_node_rank_rendezvous_and_unreachable_head(tmp_path):
    """Every node but the head waits for the head's port, then starts its launcher with its
    machine rank; one that cannot reach the head within OBE_RDZV_TIMEOUT fails and says why."""
    bin_dir = tmp_path / "bin"
    stub(bin_dir, "python", 'printf "%s\\n" "$@"\n')  # stands in for accelerate launch: prints its argv
    env = {**run_env(), "PATH": f"{bin_dir}:{run_env()['PATH']}", "SLURMD_NODENAME": "nd3", "OBE_RDZV_TIMEOUT": "2"}
    with socket.socket() as head:
        head.bind(("127.0.0.1", 0))
        head.listen()
        port = head.getsockname()[1]
        node = ["bash", str(SCRIPT), "--node", "nd1", "127.0.0.1", str(port), "nd1", "nd2", "nd3", "--",
                "2", "--config_file", "c.yaml", "--multi_gpu", "--", "--steps", "4"]
        res = subprocess.run(node, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [
        "-m", "obe.engines.launch", "--config_file", "c.yaml", "--multi_gpu", "--num_machines", "3",
        "--num_processes", "6", "--machine_rank", "2", "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
        "--rdzv_backend", "static", "--same_network", "--rdzv_conf", "timeout=2", "-m", "obe.engines.trl_backend",
        "--steps", "4"]
    # the head's port is closed now: nothing answers
    started = time.monotonic()
    res = subprocess.run(node, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and res.stdout == "", res
    assert f"node nd3 cannot reach the head node nd1 at 127.0.0.1:{port} within 2 s" in res.stderr
    assert time.monotonic() - started < 20


# --- the real two-node cluster -----------------------------------------------------------------


def test_what_a_killed_test_left_behind_is_swept():
    """A test process killed with SIGKILL cannot clean up: the next cluster start removes the
    namespaces and bridges whose names carry a pid that no longer runs, and only those."""
    reason = missing_netns()
    if reason:
        pytest.skip(reason)
    dead = subprocess.Popen(["true"])
    dead.wait()
    mine = NodeNetwork(["obenode1"], Path("/nonexistent"))  # this process's names: alive, kept
    stale = [f"obe{dead.pid:x}n1", f"obe{dead.pid:x}br"]
    try:
        subprocess.run(["ip", "netns", "add", stale[0]], check=True)
        subprocess.run(["ip", "link", "add", stale[1], "type", "bridge"], check=True)
        subprocess.run(["ip", "link", "add", mine.bridge, "type", "bridge"], check=True)
        assert sorted(NodeNetwork.sweep_stale()) == sorted(stale)
        assert not set(stale) & set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())
        assert subprocess.run(["ip", "link", "show", stale[1]], capture_output=True).returncode != 0
        assert subprocess.run(["ip", "link", "show", mine.bridge], capture_output=True).returncode == 0
    finally:
        subprocess.run(["ip", "netns", "del", stale[0]], capture_output=True)
        for link in (stale[1], mine.bridge):
            subprocess.run(["ip", "link", "del", link], capture_output=True)


# Each run's config over COMMON.
VARIANTS = {
    "one": {"hardware": {"cpu_processes": 2}},
    "two": {"hardware": {"nodes": 2}, "gpus_per_job": 1},
    "kill": {"hardware": {"nodes": 2}, "train": {"callbacks": [
        {"target": "tests/seams.py:HoldAfterStep", "kwargs": {"method": "batch", "step": HOLD_STEP, "timeout_s": 600}}]}},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The cluster, and the three runs' trees after `snakemake --profile slurm` (see the docstring)."""
    reason = missing_slurm() or missing_netns()
    if reason:
        pytest.skip(reason)
    seam = (REPO / "tests" / "seams.py").is_file()
    root = tmp_path_factory.mktemp("multinode")
    started = time.monotonic()
    # The data and the base model, once, locally; each run gets a copy (mtimes and Snakemake's
    # records kept, so only the train job is left to run).
    prep = copy_tree(root / "prep")
    (prep / "multinode.yaml").write_text(yaml.safe_dump(COMMON))
    out = subprocess.run([*snakemake_cmd(), "--cores", "2", "results/smoke/base_model", "results/smoke/data/train.jsonl",
                          *SMOKE], cwd=prep, env=run_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    prepared = time.monotonic() - started
    names = [n for n in VARIANTS if n != "kill" or seam]
    trees = {}
    for name in names:
        tree = trees[name] = root / name
        shutil.copytree(prep, tree, symlinks=True, ignore=shutil.ignore_patterns("locks", "incomplete"))
        overlay = deep_merge(COMMON, VARIANTS[name])
        (tree / "multinode.yaml").write_text(yaml.safe_dump(overlay))
    if seam:
        (trees["kill"] / "tests").mkdir()
        shutil.copy2(REPO / "tests" / "seams.py", trees["kill"] / "tests" / "seams.py")

    # 4 CPUs per node in slurm.conf, so that the three jobs run at once (1 + 2 x 1 CPUs on one
    # node, 2 x 1 on the other; the machine's cores are shared by all of them anyway).
    cluster = MultiNodeSlurmCluster(root / "slurm", nodes=2, cpus=4, gpus=1, min_job_age=2 * RUN_TIMEOUT_S)
    procs, logs, killed = {}, {}, {}
    try:
        cluster.start()
        env = run_env(cluster.env)
        try:
            for name, tree in trees.items():
                logs[name] = root / f"{name}.log"
                with open(logs[name], "w") as fh:
                    procs[name] = subprocess.Popen(
                        [*snakemake_cmd(), "--cores", "all", "--profile", "slurm", TARGET, *SMOKE, *TEST_CLUSTER_ARGS],
                        cwd=tree, env=env, stdout=fh, stderr=subprocess.STDOUT)
            killed = watch(cluster, procs, trees, started + RUN_TIMEOUT_S, started)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)  # Snakemake cancels its Slurm jobs on SIGINT
                    try:
                        proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
        elapsed = time.monotonic() - started
        report = "\n".join(f"--- {n} (rc {p.returncode}) ---\n{tail(logs[n], 40)}\n--- {n}: the train rule's log ---\n"
                           f"{tail(trees[n] / 'results' / 'smoke' / 'logs' / 'train' / f'{RUN}.log', 60)}"
                           for n, p in procs.items())
        assert killed is not None, f"the runs took over {RUN_TIMEOUT_S} s and were stopped\n{report}\n{cluster.logs(15)}"
        assert all(p.returncode == 0 for p in procs.values()), f"{report}\n{cluster.logs(20)}"
        jobs = scontrol_jobs(cluster)
        yield {"cluster": cluster, "trees": trees, "killed": killed, "elapsed": elapsed, "prepared": prepared,
               "jobs": {n: sorted((j for j in jobs if j.get("WorkDir") == str(t)), key=lambda j: int(j["JobId"]))
                        for n, t in trees.items()}}
    finally:
        cluster.stop()


def watch(cluster, procs: dict, trees: dict, deadline: float, started: float) -> dict | None:
    """Wait for the runs (None when the deadline passes first); when the `kill` run holds after
    step HOLD_STEP, send SIGTERM to every process of its job's steps, on both nodes, as a time
    limit or a preemption would. Returns {"job": its Slurm id, "at": seconds in} ({} if no kill run)."""
    killed: dict = {}
    metrics = trees["kill"] / "results" / "smoke" / "train" / RUN / "metrics.jsonl" if "kill" in trees else None
    while any(p.poll() is None for p in procs.values()):
        if time.monotonic() > deadline:
            return None
        if any(p.poll() not in (None, 0) for p in procs.values()):
            break  # one failed: no point in waiting for the others
        if metrics and not killed and metrics.is_file() and len(metrics.read_text().splitlines()) >= HOLD_STEP:
            job = [j for j in scontrol_jobs(cluster) if j.get("WorkDir") == str(trees["kill"]) and j["JobState"] == "RUNNING"]
            assert len(job) == 1, job
            cluster.run("scancel", "--signal=TERM", job[0]["JobId"])
            killed = {"job": job[0]["JobId"], "at": time.monotonic() - started}
        time.sleep(1)
    return killed


def outputs(tree: Path) -> dict:
    """A run's results: metrics without timings, rollouts, the last checkpoint's count table, weights."""
    from safetensors.torch import load_file

    from obe.training.metrics import TIMING_KEYS

    folder = tree / "results" / "smoke" / "train" / RUN
    rows = lambda name: [json.loads(x) for x in (folder / name).read_text().splitlines()]  # noqa: E731
    # the last checkpoint of a finished run (the trl backend's checkpoints/checkpoint-N/obe_state.json)
    done = [p for p in (folder / "checkpoints").glob("checkpoint-*") if p.name.split("-")[1].isdigit()]
    state = json.loads((max(done, key=lambda p: int(p.name.split("-")[1])) / "obe_state.json").read_text())
    return {
        "metrics": [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows("metrics.jsonl")],
        "rollouts": rows("rollouts.jsonl"),
        "counts": state["counts"],
        "digests": state.get("counts_digest_by_rank"),
        "weights": {sub: load_file(str(folder / sub / "model.safetensors"))
                    for sub in ("final", "snapshots/step_2", "snapshots/step_4")},
    }


def max_weight_difference(a: dict, b: dict) -> float:
    diffs = []
    for sub in a["weights"]:
        wa, wb = a["weights"][sub], b["weights"][sub]
        assert set(wa) == set(wb), sub
        diffs += [float((wa[k].double() - wb[k].double()).abs().max()) for k in wa]
    return max(diffs)


def assert_same_run(a: dict, b: dict, what: str) -> float:
    assert a["metrics"] == b["metrics"], f"{what}: metrics differ"
    assert a["rollouts"] == b["rollouts"], f"{what}: rollouts differ"
    assert a["counts"] == b["counts"], f"{what}: count tables differ"
    assert a["digests"] == b["digests"], f"{what}: per-rank count digests differ"
    diff = max_weight_difference(a, b)
    assert diff == 0.0, f"{what}: weights differ by up to {diff}"
    return diff


def train_log(tree: Path) -> str:
    return (tree / "results" / "smoke" / "logs" / "train" / f"{RUN}.log").read_text(errors="replace")


@pytest.mark.slow
def test_one_node_and_two_nodes_train_the_same(runs):
    cluster, trees, jobs = runs["cluster"], runs["trees"], runs["jobs"]
    one, two = jobs["one"], jobs["two"]
    # only the train job went through Slurm; what it asked for became its allocation
    assert len(one) == len(two) == 1 and all(j["Comment"].startswith("rule_train") for j in one + two), (one, two)
    assert (one[0]["NumNodes"], one[0]["NumTasks"]) == ("1", "1"), one
    assert (two[0]["NumNodes"], two[0]["NumTasks"], two[0]["NodeList"]) == ("2", "2", "obenode[1-2]"), two
    assert "gres:gpu:1" in two[0].get("TresPerNode", ""), two  # one GPU on each node
    assert all(j["JobState"] == "COMPLETED" for j in one + two)
    # one launcher per node; the rendezvous is the head's address in Slurm, not a loopback one
    log = train_log(trees["two"])
    head = re.search(r"trl_multinode\.sh: job \d+, 2 nodes x 1 processes, head (\S+) \((\S+):(\d+)\)", log)
    assert head and head.group(1) == "obenode1" and head.group(2) == cluster.network.addr["obenode1"], log[-2000:]
    for rank, node in enumerate(("obenode1", "obenode2")):
        assert f"node {node}, machine rank {rank} of 2, rendezvous {head.group(2)}:{head.group(3)}" in log
    a, b = outputs(trees["one"]), outputs(trees["two"])
    assert len(a["metrics"]) == 4 and any(r["grad_norm"] > 0 for r in a["metrics"])  # the weights moved
    diff = assert_same_run(a, b, "1 node x 2 processes vs 2 nodes x 1 process")
    print(f"one node vs two nodes: max |weight difference| {diff}, metrics and count tables identical; "
          f"{runs['elapsed']:.0f} s in all, of which {runs['prepared']:.0f} s for the local data and base model")


@pytest.mark.slow
def test_a_two_node_run_killed_and_retried_resumes_to_the_same_result(runs):
    if "kill" not in runs["trees"]:
        pytest.skip("tests/seams.py (HoldAfterStep, the training seam) is not in this checkout")
    killed, jobs, tree = runs["killed"], runs["jobs"]["kill"], runs["trees"]["kill"]
    assert killed, "the held run never reached step 2, so it was never signalled"
    # attempt 1 was signalled and failed; the profile's retry (attempt 2, twice the runtime) completed
    assert [j["JobState"] for j in jobs] == ["FAILED", "COMPLETED"], [(j["JobId"], j["JobState"]) for j in jobs]
    assert jobs[0]["JobId"] == killed["job"] and jobs[0]["NumNodes"] == jobs[1]["NumNodes"] == "2"
    assert jobs[1]["TimeLimit"] != jobs[0]["TimeLimit"]
    resumed = re.findall(r"resuming from (\S+) \(step (\d+)\)", train_log(tree))
    assert resumed and resumed[0][1] == str(HOLD_STEP), train_log(tree)[-3000:]
    diff = assert_same_run(outputs(tree), outputs(runs["trees"]["two"]), "killed and resumed vs uninterrupted, 2 nodes")
    print(f"killed at step {HOLD_STEP} ({killed['at']:.0f} s in), retried and resumed: max |weight difference| {diff}")
