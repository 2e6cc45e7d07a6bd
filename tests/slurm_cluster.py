"""A real single-node Slurm cluster for tests, started from the distribution's packages.

`SlurmCluster(root)` writes slurm.conf, gres.conf and a munge key under `root` (a fresh temp
folder), then starts munged, slurmctld and slurmd in the foreground as child processes of
this one: /etc/slurm, /etc/munge, /run and /var are neither read nor written, and the
cluster has its own ports, munge socket and state. The only node is this host, with `cpus`
CPUs and `gpus` GPUs of a GRES `gpu` backed by /dev/null, /dev/zero, ... (no GPU needed), so
`--gpus=N` requests are accepted and scheduled. Jobs run as the calling user (root: slurmd
has to run as root).

Client commands (sbatch, squeue, scontrol, and Snakemake's Slurm executor) reach the cluster
through `cluster.env`: SLURM_CONF, and a PATH with the sbin folders and an `srun` wrapper
that restores SLURM_CONF for the `srun` that Snakemake runs inside each job. There is no
slurmdbd, so `sacct` does not work: Snakemake must use `--slurm-status-command squeue`, and
MinJobAge (`min_job_age`, 300 s unless given; Snakemake's squeue status needs >= 120 s) keeps
finished jobs visible to squeue and `scontrol show job`.

    with SlurmCluster(tmp_path / "slurm") as cluster:
        subprocess.run(["sbatch", "--wrap", "true"], env=cluster.env)

`missing_slurm()` says why such a cluster cannot start here (None when it can).

The nodes are what `nodes`, `controller_addr`, `node_addresses` and `start_nodes` say (this
host alone here); tests/node_network.py's `MultiNodeSlurmCluster` overrides them for several
nodes, each in its own network namespace.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
DAEMONS = ("munged", "slurmctld", "slurmd")
# Stand-ins for /dev/nvidia0, /dev/nvidia1, ... (one distinct existing file per GPU).
FAKE_GPU_FILES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
CLIENTS = ("sbatch", "srun", "squeue", "scontrol", "sinfo", "scancel", "munge")


def which(name: str) -> str | None:
    """A binary on PATH or in an sbin folder (root's PATH may lack /usr/sbin)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), *SBIN_DIRS])
    return shutil.which(name, path=path)


def missing_slurm() -> str | None:
    """Why a test cluster cannot start on this machine, or None when it can."""
    missing = [name for name in (*DAEMONS, *CLIENTS, "mungekey") if which(name) is None]
    if missing:
        return (
            f"Slurm/munge binaries not installed ({', '.join(missing)} missing); "
            "run .ci/install-slurm as root (apt-get install slurmctld slurmd slurm-client munge)"
        )
    if os.geteuid() != 0:
        return "a test Slurm cluster needs root (slurmd runs jobs as their user and must be root)"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SlurmError(RuntimeError):
    """The cluster did not start (the message carries the daemons' log tails)."""


class SlurmCluster:
    """munged + slurmctld + slurmd for one node, all state under `root`."""

    node = "obenode"

    def __init__(
        self,
        root: Path,
        *,
        cpus: int = 2,
        gpus: int = 1,
        real_memory_mb: int = 64000,
        partition: str = "obetest",
        min_job_age: int = 300,
    ):
        self.root = Path(root).resolve()
        if not 0 <= gpus <= len(FAKE_GPU_FILES):
            raise ValueError(f"gpus must be between 0 and {len(FAKE_GPU_FILES)}")
        self.cpus, self.gpus, self.real_memory_mb = cpus, gpus, real_memory_mb
        self.partition = partition
        self.min_job_age = min_job_age
        self.hostname = socket.gethostname().split(".")[0]
        self.conf = self.root / "etc" / "slurm.conf"
        self.log_dir = self.root / "log"
        self.munge_socket = self.root / "run" / "munge.socket"
        self.procs: dict[str, subprocess.Popen] = {}
        self._stderr: dict[str, Path] = {}
        self.bin_dir = self.root / "bin"
        sbin = os.pathsep.join(d for d in SBIN_DIRS if Path(d).is_dir())
        self.env = {
            **os.environ,
            "SLURM_CONF": str(self.conf),
            "PATH": os.pathsep.join([str(self.bin_dir), os.environ.get("PATH", ""), sbin]),
        }
        # A job submitted from inside another Slurm job would inherit the outer job's
        # settings; this cluster's clients must only see SLURM_CONF.
        for key in list(self.env):
            if key.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_")) and key != "SLURM_CONF":
                del self.env[key]

    # configuration -------------------------------------------------------------------------
    def write_config(self) -> None:
        for sub in ("etc", "run", "log", "state", "spool", "bin"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        os.chmod(self.root / "run", 0o755)  # munged wants its socket folder world-executable
        key_dir = self.root / "munge"
        key_dir.mkdir(mode=0o700, exist_ok=True)
        self.munge_key = key_dir / "munge.key"
        if not self.munge_key.exists():
            subprocess.run(
                [which("mungekey"), "--create", f"--keyfile={self.munge_key}"],
                check=True, capture_output=True, env=self.env,
            )
        ctld_port, slurmd_port = _free_port(), _free_port()
        r = self.root
        gres = f" Gres=gpu:{self.gpus}" if self.gpus else ""
        self.conf.write_text(
            "# Written by tests/slurm_cluster.py: a throw-away test cluster.\n"
            "ClusterName=obetest\n"
            f"SlurmctldHost={self.hostname}({self.controller_addr})\n"
            f"SlurmctldPort={ctld_port}\n"
            f"SlurmdPort={slurmd_port}\n"
            "SlurmUser=root\n"
            "SlurmdUser=root\n"
            "AuthType=auth/munge\n"
            "CredType=cred/munge\n"
            f"AuthInfo=socket={self.munge_socket}\n"
            f"StateSaveLocation={r / 'state'}\n"
            f"SlurmctldPidFile={r / 'run' / 'slurmctld.pid'}\n"
            f"SlurmctldLogFile={self.log_dir / 'slurmctld.log'}\n"
            # %n: the node's name, so that every slurmd of a multi-node cluster has its own
            f"SlurmdSpoolDir={r / 'spool' / self.slurmd_file}\n"
            f"SlurmdPidFile={r / 'run' / self.slurmd_file}.pid\n"
            f"SlurmdLogFile={self.log_dir / self.slurmd_file}.log\n"
            "SlurmctldDebug=info\n"
            "SlurmdDebug=info\n"
            # no systemd, no cgroups in a container: plain process tracking, no task binding
            "ProctrackType=proctrack/linuxproc\n"
            "TaskPlugin=task/none\n"
            "JobAcctGatherType=jobacct_gather/none\n"
            "AccountingStorageType=accounting_storage/none\n"
            "JobCompType=jobcomp/none\n"
            "MpiDefault=none\n"
            "SwitchType=switch/none\n"
            "SchedulerType=sched/backfill\n"
            # Start a submitted job at the scheduler's next pass (about once a second) rather
            # than batching submissions for up to 3 s (the default batch_sched_delay=3): a
            # DAG's jobs come one after another, and the test waits for each.
            "SchedulerParameters=batch_sched_delay=0\n"
            "SelectType=select/cons_tres\n"
            "SelectTypeParameters=CR_Core\n"
            # the node's CPUs, memory and GPUs are taken from this file, not the hardware
            "SlurmdParameters=config_overrides\n"
            # finished jobs stay visible to squeue/scontrol (no slurmdbd, so no sacct)
            f"MinJobAge={self.min_job_age}\n"
            "ReturnToService=2\n"
            "SlurmdTimeout=60\n"
            "InactiveLimit=0\n"
            # Time limits are enforced as on a real cluster: at the limit (no grace minutes,
            # OverTimeLimit=0) every process of the job gets SIGTERM, and SIGKILL KillWait
            # seconds later (the trainer saves a checkpoint in between; tests/test_slurm.py).
            "OverTimeLimit=0\n"
            "KillWait=5\n"
            "GresTypes=gpu\n"
            + "".join(
                f"NodeName={name} NodeHostname={host} NodeAddr={addr} CPUs={self.cpus}"
                f" RealMemory={self.real_memory_mb}{gres} State=UNKNOWN\n"
                for name, (host, addr) in self.node_addresses().items()
            )
            + f"PartitionName={self.partition} Nodes={','.join(self.nodes)} Default=YES"
            " MaxTime=INFINITE State=UP\n"
        )
        # Harmless character devices stand in for GPU device files on a machine without GPUs
        # (slurmd wants one existing file per GPU; jobs see CUDA_VISIBLE_DEVICES=0,1,...).
        (self.conf.parent / "gres.conf").write_text(
            "".join(f"NodeName={name} Name=gpu File={dev}\n"
                    for name in self.nodes for dev in FAKE_GPU_FILES[: self.gpus])
        )
        # Not used by linuxproc/task-none (no cgroups, no systemd in a container); written so
        # that no daemon falls back to /etc/slurm/cgroup.conf.
        (self.conf.parent / "cgroup.conf").write_text("CgroupPlugin=autodetect\nIgnoreSystemd=yes\n")
        # Inside a job, Snakemake's slurm-jobstep executor runs the rule (with `srun`, or
        # directly for an `mpi` job) after dropping every SLURM_* variable, SLURM_CONF
        # included. A real cluster's clients then read /etc/slurm/slurm.conf (or a configless
        # slurmd's copy); this cluster lives outside /etc, so the clients a job calls (srun,
        # and scontrol in slurm/trl_multinode.sh) are reached through shims that put
        # SLURM_CONF back.
        for name in ("srun", "scontrol"):
            real = which(name)
            if real:
                shim = self.bin_dir / name
                shim.write_text(
                    f"#!/bin/sh\n# tests/slurm_cluster.py: {name} for the test cluster (see write_config)\n"
                    f"SLURM_CONF={shlex.quote(str(self.conf))}\nexport SLURM_CONF\n"
                    f"exec {shlex.quote(real)} \"$@\"\n"
                )
                shim.chmod(0o755)

    # the nodes: one on this host here; tests/node_network.py's cluster overrides these --------
    @property
    def nodes(self) -> list[str]:
        return [self.node]

    @property
    def controller_addr(self) -> str:
        """The address slurmctld is reached at (by the nodes and the client commands)."""
        return "127.0.0.1"

    # slurmd's spool folder, PID file and log file name (the single node's: no %n needed)
    slurmd_file = "slurmd"

    def node_addresses(self) -> dict[str, tuple[str, str]]:
        """Node name -> (NodeHostname, NodeAddr)."""
        return {self.node: (self.hostname, "127.0.0.1")}

    def start_nodes(self, timeout: float) -> None:
        """Start the slurmd of every node and wait until each is idle."""
        self._spawn("slurmd", [which("slurmd"), "-D", "-N", self.node, "-f", str(self.conf)])
        self._wait(f"node {self.node} to be idle", self._nodes_idle, timeout, DAEMONS)

    # processes -----------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str]) -> None:
        err = self.log_dir / f"{name}.stderr"
        self._stderr[name] = err
        with open(err, "wb") as fh:
            self.procs[name] = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                env=self.env, cwd=self.root, start_new_session=True,
            )

    def _check_running(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is not None:
            raise SlurmError(f"{name} exited with status {proc.returncode}\n{self.logs()}")

    def _wait(self, what: str, ready, timeout: float, names: tuple[str, ...]) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for name in names:
                self._check_running(name)
            if ready():
                return
            if time.monotonic() > deadline:
                raise SlurmError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.logs()}")
            time.sleep(0.3)

    def run(self, *argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """A Slurm client command against this cluster (text output)."""
        return subprocess.run(
            [which(argv[0]) or argv[0], *argv[1:]], env=self.env, capture_output=True,
            text=True, check=check, timeout=timeout,
        )

    def _ok(self, *argv: str) -> str | None:
        try:
            res = self.run(*argv, check=False, timeout=10)
        except subprocess.TimeoutExpired:
            return None
        return res.stdout if res.returncode == 0 else None

    def start(self, timeout: float = 60) -> SlurmCluster:
        reason = missing_slurm()
        if reason:
            raise SlurmError(reason)
        self.write_config()
        try:
            self._spawn("munged", [
                which("munged"), "--foreground", "--force",
                f"--socket={self.munge_socket}", f"--key-file={self.munge_key}",
                f"--pid-file={self.root / 'run' / 'munged.pid'}",
                f"--log-file={self.log_dir / 'munged.log'}",
                f"--seed-file={self.root / 'munge' / 'munged.seed'}",
            ])
            self._wait("munged", lambda: self.munge_socket.exists()
                       and self._ok("munge", "-S", str(self.munge_socket), "-n") is not None,
                       timeout, ("munged",))
            self._spawn("slurmctld", [which("slurmctld"), "-D", "-i", "-f", str(self.conf)])
            self._wait("slurmctld", lambda: self._ok("scontrol", "ping") is not None
                       and "UP" in (self._ok("scontrol", "ping") or ""), timeout, ("munged", "slurmctld"))
            self.start_nodes(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _nodes_idle(self) -> bool:
        out = self._ok("sinfo", "--noheader", "--Node", "--nodes", ",".join(self.nodes), "--format=%N %T")
        if out is None:
            return False
        states = dict(line.split() for line in out.splitlines() if line.strip())
        return all(states.get(node, "").rstrip("*~#$@+") == "idle" for node in self.nodes)

    def stop(self, timeout: float = 20) -> None:
        """Cancel every job of this cluster, then stop slurmd, slurmctld and munged."""
        self.cancel_jobs(timeout)
        slurmds = [name for name in self.procs if name.startswith("slurmd")]
        for name in (*slurmds, "slurmctld", "munged"):
            self._stop_daemon(name, timeout)

    def cancel_jobs(self, timeout: float = 20) -> None:
        """Cancel every job of this cluster and wait (up to `timeout`) until none is left."""
        if self.procs.get("slurmctld") and self.procs["slurmctld"].poll() is None:
            if self._ok("scancel", "--partition", self.partition) is not None:
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    out = self._ok("squeue", "--noheader", "--states=PENDING,RUNNING,COMPLETING",
                                   "--format=%i")
                    if not out or not out.strip():
                        break
                    time.sleep(0.5)

    def _stop_daemon(self, name: str, timeout: float) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=timeout)
        # slurmd/slurmctld write PID files: make sure no daemon of ours outlives stop()
        pid_file = self.root / "run" / f"{name}.pid"
        try:
            pid = int(pid_file.read_text().strip() or 0)
        except (OSError, ValueError):
            pid = 0
        if pid and (proc is None or pid != proc.pid) and _alive(pid):
            cmdline = Path(f"/proc/{pid}/cmdline")
            if cmdline.exists() and str(self.conf) in cmdline.read_bytes().decode(errors="replace"):
                os.kill(pid, signal.SIGKILL)

    def running(self) -> bool:
        return bool(self.procs) and all(p.poll() is None for p in self.procs.values())

    def logs(self, tail: int = 40) -> str:
        """The last lines of every daemon log (for failure messages)."""
        parts = []
        for path in sorted(self.log_dir.glob("*")):
            try:
                lines = path.read_text(errors="replace").splitlines()[-tail:]
            except OSError:
                continue
            parts.append(f"--- {path.name} ---\n" + "\n".join(lines))
        return "\n".join(parts)

    def slurmctld_log(self) -> str:
        path = self.log_dir / "slurmctld.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
