"""A Slurm cluster of several nodes on one machine: each node a network namespace of its own.

`NodeNetwork(names)` makes one network namespace per node, each with its own address in a
private /24 and its own hostname, joined by a Linux bridge on this host, which holds the
subnet's first address (the controller's):

    host netns:  bridge obe<tag>br 10.a.b.1 --+-- veth -- netns obe<tag>n1: 10.a.b.11 (obenode1)
                                              +-- veth -- netns obe<tag>n2: 10.a.b.12 (obenode2)

Traffic stays on this machine (nothing is routed out of the bridge). `run_in(node, argv)`
gives the argv that runs a program inside a node: `nsenter` into its network namespace, then
`unshare --uts --mount` for its hostname and a bind mount of a hosts file (every node's name and
address) over /etc/hosts in that process's own mount namespace, so that a node's name
resolves to its address there, as on a cluster (gloo picks its interface by resolving the
hostname). The host's /etc is never written. `destroy()` kills what still runs inside the
namespaces, then removes them, their links and the bridge; it is safe to call twice, and
`sweep_stale()` removes what a killed test process left behind (its pid is in the names).

`MultiNodeSlurmCluster(root, nodes=2)` is tests/slurm_cluster.py's `SlurmCluster` on such a
network: munged and slurmctld on this host at the bridge address, one slurmd per node inside
its namespace (`slurmd -N <node>`; spool, PID and log files per node through slurm.conf's %n).
Client commands (sbatch, squeue, Snakemake) run on this host as for the single-node cluster.

    with MultiNodeSlurmCluster(tmp_path / "slurm", nodes=2) as cluster:
        subprocess.run(["sbatch", "-N2", "--wrap", "srun hostname"], env=cluster.env)

`missing_netns()` says why namespaces cannot be made here (None when they can).
"""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from slurm_cluster import DAEMONS, SlurmCluster, SlurmError, missing_slurm, which

NAME = re.compile(r"^obe([0-9a-f]+)(n\d+|br)$")  # obe<pid in hex>n<k> (namespaces), obe<pid>br (bridges)
KILL_WAIT_S = 10  # how long destroy() waits for the processes of a namespace to exit


def _ip(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([which("ip") or "ip", *argv], capture_output=True, text=True, check=check, timeout=30)


def missing_netns() -> str | None:
    """Why per-node network namespaces cannot be made on this machine, or None when they can."""
    for tool in ("ip", "nsenter", "unshare", "mount"):
        if which(tool) is None:
            return f"{tool} not installed (.ci/install-slurm installs iproute2 and util-linux)"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"obe{os.getpid():x}probe"
    res = _ip("netns", "add", probe, check=False)
    if res.returncode != 0:
        return f"cannot create a network namespace here (ip netns add: {res.stderr.strip()})"
    try:  # what run_in does: enter it, own hostname, a bind mount in a private mount namespace
        res = subprocess.run([which("nsenter"), f"--net=/run/netns/{probe}", which("unshare"), "--uts", "--mount", "--",
                              "sh", "-c", "mount --bind /etc/hosts /etc/hosts && hostname obeprobe"],
                             capture_output=True, text=True, timeout=30)
    finally:
        _ip("netns", "del", probe, check=False)
    if res.returncode != 0:
        return f"cannot enter a network namespace with its own hostname and mounts here: {res.stderr.strip()}"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _free_subnet(tag: int) -> ipaddress.IPv4Network:
    """A /24 in 10.200.0.0/13 that no address or route of this host overlaps (chosen from the pid)."""
    used = []
    for line in _ip("-4", "-o", "addr").stdout.splitlines() + _ip("-4", "route").stdout.splitlines():
        for word in line.split():
            try:
                used.append(ipaddress.ip_network(word, strict=False))
            except ValueError:
                continue
    pool = list(ipaddress.ip_network("10.200.0.0/13").subnets(new_prefix=24))
    for i in range(len(pool)):
        net = pool[(tag + i) % len(pool)]
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return net
    raise SlurmError("no free /24 in 10.200.0.0/13 for the test nodes")


class NodeNetwork:
    """One network namespace per node on a bridge of this host (see the module docstring)."""

    def __init__(self, nodes: list[str], root: Path):
        self.nodes = list(nodes)
        self.root = Path(root)
        self.tag = f"{os.getpid():x}"
        self.bridge = f"obe{self.tag}br"
        self.netns = {node: f"obe{self.tag}n{k}" for k, node in enumerate(self.nodes, 1)}
        self.subnet = _free_subnet(os.getpid())
        hosts = list(self.subnet.hosts())
        self.host_addr = str(hosts[0])
        self.addr = {node: str(hosts[9 + k]) for k, node in enumerate(self.nodes, 1)}  # .11, .12, ...
        self.hosts_file = self.root / "hosts"
        for name in (self.bridge, *self.netns.values()):
            assert len(name) <= 15, f"interface name {name} longer than Linux's 15 characters"

    def create(self) -> NodeNetwork:
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.host_addr}/{self.subnet.prefixlen}", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for k, (node, ns) in enumerate(self.netns.items(), 1):
                outside, inside = f"obe{self.tag}h{k}", f"obe{self.tag}c{k}"
                _ip("netns", "add", ns)
                _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
                _ip("link", "set", outside, "master", self.bridge, "up")
                _ip("link", "set", inside, "netns", ns)
                _ip("-n", ns, "addr", "add", f"{self.addr[node]}/{self.subnet.prefixlen}", "dev", inside)
                _ip("-n", ns, "link", "set", inside, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", ns, "route", "add", "default", "via", self.host_addr)
        except BaseException:
            self.destroy()
            raise
        self.root.mkdir(parents=True, exist_ok=True)
        self.hosts_file.write_text(
            "127.0.0.1 localhost\n::1 localhost\n"
            + "".join(f"{self.addr[node]} {node}\n" for node in self.nodes)
        )
        return self

    def run_in(self, node: str, argv: list[str]) -> list[str]:
        """argv, run inside `node`: its network namespace, hostname and /etc/hosts."""
        # nsenter rather than `ip netns exec`, which mounts a fresh /sys without the cgroup
        # file system that slurmd reads; unshare's new mount namespace is private, so the
        # bind mount stays inside it.
        setup = 'mount --bind "$1" /etc/hosts && hostname "$2" && shift 2 && exec "$@"'
        return [which("nsenter"), f"--net=/run/netns/{self.netns[node]}", which("unshare"), "--uts", "--mount",
                "--", "sh", "-c", setup, "sh", str(self.hosts_file), node, *argv]

    def pids(self, node: str) -> list[int]:
        """Processes running inside `node`'s namespace."""
        res = _ip("netns", "pids", self.netns[node], check=False)
        return [int(p) for p in res.stdout.split()] if res.returncode == 0 else []

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to every process inside the nodes, and wait (bounded) until they are gone."""
        deadline = time.monotonic() + KILL_WAIT_S
        for node in self.nodes:
            for pid in self.pids(node):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        while any(_alive(p) for n in self.nodes for p in self.pids(n)) and time.monotonic() < deadline:
            time.sleep(0.2)

    def destroy(self) -> None:
        """Kill the namespaces' processes, delete the namespaces, their veths and the bridge."""
        existing = set(_ip("netns", "list", check=False).stdout.split())
        if any(ns in existing for ns in self.netns.values()):
            self.kill_all()
        for ns in self.netns.values():
            if ns in existing:
                _ip("netns", "del", ns, check=False)
        for k in range(1, len(self.nodes) + 1):
            _ip("link", "del", f"obe{self.tag}h{k}", check=False)  # gone with its peer's namespace
        _ip("link", "del", self.bridge, check=False)

    @staticmethod
    def sweep_stale() -> list[str]:
        """Remove the namespaces and bridges of test processes that no longer run (killed -9)."""
        removed = []
        names = _ip("netns", "list", check=False).stdout.split()
        names += [line.split(":")[1].strip().split("@")[0] for line in _ip("-o", "link", check=False).stdout.splitlines()
                  if line.count(":") >= 2]
        for name in names:
            m = NAME.match(name)
            if not m or _alive(int(m.group(1), 16)):
                continue
            if m.group(2) == "br":
                _ip("link", "del", name, check=False)
            else:
                for pid in _ip("netns", "pids", name, check=False).stdout.split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                _ip("netns", "del", name, check=False)
            removed.append(name)
        return removed


class MultiNodeSlurmCluster(SlurmCluster):
    """munged + slurmctld on this host, one slurmd per node in its own network namespace."""

    slurmd_file = "slurmd-%n"

    def __init__(self, root: Path, *, nodes: int = 2, **kwargs):
        super().__init__(root, **kwargs)
        self.node_names = [f"obenode{k}" for k in range(1, nodes + 1)]
        self.network = NodeNetwork(self.node_names, self.root / "net")

    @property
    def nodes(self) -> list[str]:
        return self.node_names

    @property
    def controller_addr(self) -> str:
        return self.network.host_addr

    def node_addresses(self) -> dict[str, tuple[str, str]]:
        return {node: (node, self.network.addr[node]) for node in self.nodes}

    def start(self, timeout: float = 60) -> MultiNodeSlurmCluster:
        reason = missing_slurm() or missing_netns()
        if reason:
            raise SlurmError(reason)
        NodeNetwork.sweep_stale()
        try:
            self.network.create()
        except subprocess.CalledProcessError as e:
            raise SlurmError(f"could not make the node network: {' '.join(e.cmd)}: {e.stderr}") from e
        super().start(timeout)
        return self

    def start_nodes(self, timeout: float) -> None:
        for node in self.nodes:
            (self.root / "spool" / f"slurmd-{node}").mkdir(parents=True, exist_ok=True)
            self._spawn(f"slurmd-{node}", self.network.run_in(node, [which("slurmd"), "-D", "-N", node, "-f", str(self.conf)]))
        daemons = (*DAEMONS[:2], *(f"slurmd-{n}" for n in self.nodes))
        self._wait(f"nodes {', '.join(self.nodes)} to be idle", self._nodes_idle, timeout, daemons)

    def stop(self, timeout: float = 20) -> None:
        try:
            super().stop(timeout)
        finally:
            self.network.destroy()
