"""Benchmark testbeds: containers from the lab image on a benchmark's own Podman network.

Private to benchmarks/ (bench_distribution.py, _fleet.py, bench_control_plane.py, bench_end_to_end.py).
A testbed owns exactly what carries its label (containers and network), so `down` removes nothing else:
never the lab's (`lab/lab`) or molecule's containers. The steps are those of `lab/lab up`: an internal
network (nothing leaves it), containers with systemd as PID 1 booted side by side, then, when SSH is
wanted, the lab's key (.lab/ssh/id_ed25519, made by lab/setup) let in for root. Also what the
benchmarks read of the collection's roles: role_defaults, and STORE from it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import shlex
import subprocess
import time
from typing import Callable, Iterable

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = os.environ.get("VMCLOUD_LAB_IMAGE", "localhost/vmcloud-lab:bookworm")
LAB_KEY = os.path.join(ROOT, ".lab", "ssh", "id_ed25519")
SSH_OPTIONS = [
    "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=3",
    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
]  # fmt: skip


def role_defaults(role: str) -> dict:
    """roles/<role>/defaults/main.yml as written (expressions in it are left unrendered)."""
    with open(os.path.join(ROOT, "roles", role, "defaults", "main.yml")) as handle:
        return yaml.safe_load(handle)


# A hypervisor's image store: the collection's site-wide default (roles/vmcloud), where the roles put it.
STORE = role_defaults("vmcloud")["vmcloud_store_dir"]


def run(cmd: list[str], check: bool = True, input: bytes | None = None) -> str:
    proc = subprocess.run(cmd, input=input, capture_output=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode(errors="replace")


def pexec(name: str, script: str, check: bool = True) -> str:
    return run(["podman", "exec", name, "sh", "-c", script], check=check)


def parallel(fn: Callable, items: list) -> list:
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(items))) as pool:
        return list(pool.map(fn, items))


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def prepare_host() -> None:
    """lab/setup (Podman configuration, the lab key) and lab/build-image (cached): what `lab/lab up` runs."""
    subprocess.run([os.path.join(ROOT, "lab", "setup")], check=True)
    subprocess.run([os.path.join(ROOT, "lab", "build-image")], check=True)


def ensure_inotify(containers: int) -> None:
    """Each container's systemd holds about 8 inotify instances, all counted against root.

    With the kernel's default of 128 a few dozen containers on the machine leave the next ones
    hanging in boot ("initializing", .path units failed); the limit is raised when short.
    """
    path = "/proc/sys/fs/inotify/max_user_instances"
    with open(path) as handle:
        limit = int(handle.read())
    used = int(run(["sh", "-c", "find /proc/[0-9]*/fd -lname 'anon_inode:inotify' 2>/dev/null | wc -l"]).strip())
    needed = used + 10 * containers
    if needed > limit:
        with open(path, "w") as handle:
            handle.write(str(needed))
        log(f"raised {path} from {limit} to {needed} ({used} in use, {containers} containers to start)")


def wait_booted(name: str) -> None:
    state = ""
    for _unused in range(120):
        state = pexec(name, "timeout 5 systemctl is-system-running --wait 2>/dev/null; true").strip()
        if state in ("running", "degraded"):
            return
    raise RuntimeError(f"{name}: systemd says {state!r} after boot, not running")


def mac_for(ip: str) -> str:
    """lab/lab's MAC from the address: a restarted container keeps it, so the host's ARP entry stays right."""
    return "02:76:" + ":".join(f"{int(part):02x}" for part in ip.split("."))


@dataclasses.dataclass
class Testbed:
    """Containers from the lab image on a network of their own; everything carries `label`."""

    network: str
    subnet: str
    gateway: str
    label: str  # KEY=VALUE
    image: str = IMAGE

    def running(self) -> set[str]:
        return set(run(["podman", "ps", "--filter", f"label={self.label}", "--format", "{{.Names}}"]).split())

    def ensure_network(self) -> None:
        if subprocess.run(["podman", "network", "exists", self.network], check=False).returncode == 0:
            have = run(["podman", "network", "inspect", "--format", "{{range .Subnets}}{{.Subnet}}{{end}}",
                        self.network]).strip()  # fmt: skip
            if have != self.subnet:
                raise RuntimeError(f"network {self.network} has subnet {have}, not {self.subnet}; remove it first")
            return
        run(["podman", "network", "create", "--internal", "--subnet", self.subnet, "--gateway", self.gateway,
             "--label", self.label, self.network])  # fmt: skip

    def up(self, hosts: Iterable[tuple[str, str]]) -> list[str]:
        """Start the (name, ip) containers that do not run yet, all first, then wait for each to boot."""
        wanted = list(hosts)
        self.ensure_network()
        ensure_inotify(len(wanted))
        existing = set(run(["podman", "ps", "-a", "--filter", f"label={self.label}", "--format", "{{.Names}}"]).split())
        for name, ip in wanted:
            if name in existing:
                run(["podman", "start", name])
                continue
            run(["podman", "run", "-d", "--name", name, "--hostname", name, "--network", self.network,
                 "--ip", ip, "--mac-address", mac_for(ip), "--systemd=always", "--label", self.label,
                 self.image, "/sbin/init"])  # fmt: skip
        names = [name for name, _unused in wanted]
        parallel(wait_booted, names)
        return names

    def authorize_ssh(self, hosts: Iterable[tuple[str, str]], key: str = LAB_KEY) -> None:
        """Let `key` in for root on each (name, ip), as `lab/lab up` does, and wait until ssh answers."""
        with open(key + ".pub") as handle:
            public = handle.read().strip()

        def one(host: tuple[str, str]) -> None:
            name, ip = host
            run(["podman", "exec", name, "sh", "-c",
                 'umask 077; mkdir -p /root/.ssh; touch /root/.ssh/authorized_keys; '
                 'grep -qxF "$1" /root/.ssh/authorized_keys || echo "$1" >>/root/.ssh/authorized_keys',
                 "sh", public])  # fmt: skip
            for _unused in range(60):
                probe = ["ssh", "-n", "-i", key, *SSH_OPTIONS, f"root@{ip}", "true"]
                if subprocess.run(probe, capture_output=True, check=False).returncode == 0:
                    return
                time.sleep(0.5)
            raise RuntimeError(f"{name}: ssh root@{ip} does not answer")

        parallel(one, list(hosts))

    def down(self) -> None:
        ids = run(["podman", "ps", "-a", "-q", "--filter", f"label={self.label}"]).split()
        if ids:
            run(["podman", "rm", "-f", "-t", "0", *ids])
        if subprocess.run(["podman", "network", "exists", self.network], check=False).returncode == 0:
            run(["podman", "network", "rm", self.network])


def container_pid(name: str) -> int:
    return int(run(["podman", "inspect", "-f", "{{.State.Pid}}", name]).strip())


def shape_upload(pid: int, bits_per_s: int, burst: str = "") -> None:
    """Shape what the container of `pid` sends (eth0 egress) to `bits_per_s` with tbf.

    The burst defaults to 10 ms of the rate, at least 64 KiB: big enough that tbf keeps the rate on a
    busy machine, small enough that it is not a head start of many packets."""
    burst = burst or f"{max(64 * 1024, bits_per_s // 8 // 100)}b"
    tbf = ["tbf", "rate", f"{bits_per_s}bit", "burst", burst, "latency", "50ms"]
    run(["nsenter", "-t", str(pid), "-n", "tc", "qdisc", "replace", "dev", "eth0", "root", *tbf])


def unshape_upload(pid: int) -> None:
    """Back to the kernel's default qdisc (deleting the root qdisc; nothing to delete is fine)."""
    run(["nsenter", "-t", str(pid), "-n", "tc", "qdisc", "del", "dev", "eth0", "root"], check=False)


# ---------------------------------------------------------------------------- CPU accounting
# What limits a transfer on this 2-core machine is often the CPU, not the shaped links: these
# readings let a result say so from a measurement (the machine's busy share during the transfer,
# and how much of it the testbed's containers used).


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores, from /proc/stat."""
    with open("/proc/stat") as handle:
        fields = [int(value) for value in handle.readline().split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return (total - idle) / ticks, total / ticks


def container_cpu_seconds(name: str) -> float:
    """CPU seconds the container's cgroup has used since it started, read inside it.

    cgroup v2 (cpu.stat usage_usec) where the machine has it, else v1's cpuacct.usage (ns), as here.
    """
    out = pexec(name, "cat /sys/fs/cgroup/cpu.stat 2>/dev/null || cat /sys/fs/cgroup/cpuacct/cpuacct.usage")
    for line in out.splitlines():
        key, _sep, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) / 1e6
        if key.isdigit() and not value:
            return int(key) / 1e9
    raise RuntimeError(f"{name}: no CPU usage in its cgroup (cpu.stat or cpuacct.usage): {out!r}")


@dataclasses.dataclass
class CpuReading:
    """The machine's and the containers' CPU counters at one instant; `since` gives the shares between two."""

    machine_busy: float
    machine_total: float
    containers: dict[str, float]

    @classmethod
    def take(cls, names: Iterable[str]) -> CpuReading:
        busy, total = machine_cpu_seconds()
        names = list(names)
        return cls(busy, total, dict(zip(names, parallel(container_cpu_seconds, names), strict=True)))

    def since(self, earlier: CpuReading) -> dict:
        """busy_share: the machine's cores busy (1.0 = all of them, all the time); testbed_share: the part
        of the machine's capacity the testbed's containers used; per-container CPU seconds."""
        total = max(self.machine_total - earlier.machine_total, 1e-9)
        used = {name: round(self.containers[name] - earlier.containers.get(name, 0.0), 3) for name in self.containers}
        return {
            "busy_share": round((self.machine_busy - earlier.machine_busy) / total, 3),
            "testbed_share": round(sum(used.values()) / total, 3),
            "container_cpu_seconds": used,
        }
