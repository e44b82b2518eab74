"""A lab-shaped fleet for the benchmarks that run Ansible: a catalogue and N hypervisors.

Private to benchmarks/ (bench_control_plane.py, bench_end_to_end.py). Each benchmark has a fleet of
its own (its network, subnet, container names and state directory under .cache/), so they never
touch the lab's, molecule's or each other's hosts. The inventory has the shape and group_vars of
inventories/lab (with this fleet's addresses); images are published with lab/publish-samples.yml and
the hosts converged with site.yml, as `make demo` does. Ansible runs with the checkout's ansible.cfg.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import glob
import json
import os
import platform
import re
import subprocess
import time
from typing import Callable

import yaml

from benchmarks._containers import LAB_KEY, Testbed, log, prepare_host

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, ".venv", "bin")
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)",
                   re.MULTILINE)  # fmt: skip
MAX_HYPERVISORS = 16
RESULTS = os.path.join(ROOT, "benchmarks", "results")

# The demo's two images of lab/publish-samples.yml (one gzip-compressed, one targeted at subcluster sc-b), a few
# MiB each instead of the demo's hundreds: the fleet benchmarks converge with them (and the lab's approvals name
# them); the control plane's cost does not grow with image size once nothing is copied or hashed again.
SAMPLES = [
    {"file": "cernvm_demo.img.gz", "name": "cernvm_demo-img", "version": 1, "compressed": True,
     "random_mib": 4, "zero_mib": 8},
    {"file": "slc5_demo.img", "name": "slc5_demo-img", "version": 1, "compressed": False,
     "random_mib": 6, "zero_mib": 0, "targets": {"hosts": [], "subclusters": ["sc-b"], "clusters": []}},
]  # fmt: skip

# Each playbook run reports its tasks' times (profile_tasks; a timestamp per task, nothing more): what
# costs what is read from the measured runs themselves. ping runs without it (ad-hoc commands load no
# callbacks).
PROFILE = {"ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks", "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "all",
           "PROFILE_TASKS_SORT_ORDER": "descending"}  # fmt: skip


def lab_group_vars() -> dict[str, dict]:
    """inventories/lab/group_vars, group -> variables (files and directories of YAML files)."""
    found: dict[str, dict] = {}
    base = os.path.join(ROOT, "inventories", "lab", "group_vars")
    for entry in sorted(os.listdir(base)):
        path = os.path.join(base, entry)
        files = sorted(glob.glob(os.path.join(path, "*.yml"))) if os.path.isdir(path) else [path]
        group = entry.removesuffix(".yml")
        for name in files:
            with open(name) as handle:
                found.setdefault(group, {}).update(yaml.safe_load(handle) or {})
    return found


def ansible_env(extra: dict | None = None) -> dict:
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), PATH=f"{BIN}:{os.environ['PATH']}")
    env.update(extra or {})
    return env


def ansible(argv: list[str], env: dict | None = None, check: bool = True) -> tuple[float, str]:
    """Run an ansible command from the checkout; return (seconds, output)."""
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=ansible_env(env), capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if check and proc.returncode != 0:
        tail = f"{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{tail}")
    return seconds, proc.stdout + proc.stderr


def changed_hosts(output: str) -> dict[str, int]:
    """Hosts whose recap shows changed or failed tasks: host -> changed count."""
    return {m.group(1): int(m.group(3)) for m in RECAP.finditer(output) if int(m.group(3)) or int(m.group(5))}


def task_counts(output: str) -> dict[str, int]:
    """Most tasks any host ran (ok) and skipped in one run, from the recap: what the seconds cannot hide.
    Each task a host runs is one SSH round trip or more (docs/performance.md says how to count them)."""
    found = [(int(m.group(2)), int(m.group(6))) for m in RECAP.finditer(output)]
    return {"tasks_ok": max((ok for ok, _unused in found), default=0),
            "tasks_skipped": max((skipped for _unused, skipped in found), default=0)}  # fmt: skip


def add_fleet_arguments(parser: argparse.ArgumentParser, repeat: int) -> None:
    """The options every fleet benchmark takes: --n, --repeat, --tag, --keep, --down."""
    parser.add_argument("--n", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--repeat", type=int, default=repeat)
    parser.add_argument("--tag", default="", help="suffix of the result file")
    parser.add_argument("--keep", action="store_true", help="leave the containers running (next run reuses them)")
    parser.add_argument("--down", action="store_true", help="only remove the containers and the network")


def results_base(kind: str, tag: str) -> str:
    """benchmarks/results/<kind>-<date>[-<tag>]: the result is this path + .json; the directory (made here)
    holds each measured run's output."""
    base = os.path.join(RESULTS, f"{kind}-{datetime.date.today().isoformat()}{('-' + tag) if tag else ''}")
    os.makedirs(base, exist_ok=True)
    return base


def write_result(base: str, result: dict) -> None:
    with open(base + ".json", "w") as handle:
        json.dump(result, handle, indent=2)
        handle.write("\n")


def machine() -> dict:
    version = subprocess.run(
        [os.path.join(BIN, "ansible"), "--version"], capture_output=True, text=True, check=False
    ).stdout
    return {
        "host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
        "kernel": platform.release(), "ansible": version.splitlines()[0] if version else None,
    }  # fmt: skip


@dataclasses.dataclass
class Fleet:
    """`<prefix>-catalogue` at .10 and `<prefix>-hvNN` at .10+NN of `net` (a /24's first three octets)."""

    prefix: str
    network: str
    net: str  # e.g. "10.89.221"
    state: str  # the lab state directory of this fleet (endorser, samples, catalogue), under .cache/
    label: str  # KEY=VALUE on every container and the network: what `down` removes

    @property
    def testbed(self) -> Testbed:
        return Testbed(self.network, f"{self.net}.0/24", f"{self.net}.1", self.label)

    @property
    def catalogue(self) -> str:
        return f"{self.prefix}-catalogue"

    @property
    def catalogue_ip(self) -> str:
        return f"{self.net}.10"

    @property
    def inventory(self) -> str:
        return os.path.join(self.state, "inventory", "hosts.yml")

    def host_name(self, i: int) -> str:
        return f"{self.prefix}-hv{i:02d}"

    def host_ip(self, i: int) -> str:
        return f"{self.net}.{10 + i}"

    def hypervisors(self, n: int) -> list[str]:
        return [self.host_name(i) for i in range(1, n + 1)]

    def limit(self, n: int) -> str:
        return ",".join(self.hypervisors(n))

    def write_inventory(self, n: int, lxcloud_vars: dict | None = None) -> None:
        """The lab inventory's shape and group_vars with this fleet's hosts, addresses and state directory.

        Hypervisors alternate between subclusters sc-a and sc-b, so the sc-b image lands on half of them.
        `lxcloud_vars` override the lab's lxcloud group_vars (e.g. the approvals).
        """
        group_vars = lab_group_vars()
        group_vars["all"].update(
            vmcloud_lab_state_dir=self.state, vmcloud_index_url=f"http://{self.catalogue_ip}/index.yaml",
            vmcloud_trust_anchors=[os.path.join(self.state, "endorser", "ca.pem")],
        )  # fmt: skip
        group_vars["lab"]["ansible_ssh_private_key_file"] = LAB_KEY
        hvs = {i: {"ansible_host": self.host_ip(i)} for i in range(1, n + 1)}
        subclusters = {
            f"sc_{tag}": {
                "vars": {"vmcloud_subcluster": f"sc-{tag}"},
                "hosts": {self.host_name(i): hvs[i] for i in hvs if (i % 2 == 1) == (tag == "a")},
            }
            for tag in ("a", "b")
        }
        lxcloud = {"vmcloud_cluster": "lxcloud", **group_vars.get("lxcloud", {}), **(lxcloud_vars or {})}
        inventory = {
            "all": {
                "vars": group_vars["all"],
                "children": {
                    "lab": {
                        "vars": group_vars["lab"],
                        "children": {
                            "catalogue": {
                                "vars": group_vars.get("catalogue", {}),
                                "hosts": {self.catalogue: {"ansible_host": self.catalogue_ip}},
                            },
                            "tracker": {"hosts": {self.catalogue: None}},
                            "lxcloud": {"vars": lxcloud, "children": subclusters},
                        },
                    }
                },
            }
        }
        os.makedirs(os.path.dirname(self.inventory), exist_ok=True)
        with open(self.inventory, "w") as handle:
            handle.write(f"# Written by benchmarks/_fleet.py for {self.prefix} (the lab's group_vars, its own hosts)\n")
            yaml.safe_dump(inventory, handle, sort_keys=False)

    def up(self, n: int) -> list[str]:
        """Start the catalogue and N hypervisors (those not running yet) and let the lab key in; the new ones."""
        if n > MAX_HYPERVISORS:
            raise ValueError(f"at most {MAX_HYPERVISORS} hypervisors")
        hosts = [(self.catalogue, self.catalogue_ip)] + [(self.host_name(i), self.host_ip(i)) for i in range(1, n + 1)]
        testbed = self.testbed
        new = [host for host in hosts if host[0] not in testbed.running()]
        testbed.up(hosts)
        testbed.authorize_ssh(new)
        return [name for name, _unused in new]

    def publish(self, images: list[dict]) -> float:
        """lab/publish-samples.yml with these images (its `lab_samples_images` form); the seconds it took."""
        extra = {"lab_samples_dir": self.state, "lab_samples_base_url": f"http://{self.catalogue_ip}",
                 "lab_samples_announce": f"http://{self.catalogue_ip}:6969/announce",
                 "lab_samples_images": images}  # fmt: skip
        argv = ["ansible-playbook", "-i", self.inventory, "lab/publish-samples.yml", "-e", json.dumps(extra)]
        return ansible(argv)[0]

    def published(self) -> bool:
        return os.path.exists(os.path.join(self.state, "catalogue", "index.yaml"))

    def site(self, env: dict | None = None) -> tuple[float, str]:
        """ansible-playbook site.yml on the whole inventory (catalogue, tracker, hypervisors); (seconds, output)."""
        return ansible(["ansible-playbook", "-i", self.inventory, "site.yml"], env=env)

    def push(self, n: int, key: str, env: dict | None = None) -> tuple[float, str]:
        """ansible-playbook playbooks/push.yml -l the first N hypervisors, with the fleet-internal key `key`
        (created by the playbook when missing); (seconds, output)."""
        argv = ["ansible-playbook", "-i", self.inventory, os.path.join("playbooks", "push.yml"), "-l", self.limit(n),
                "-e", f"vmcloud_push_private_key_file={key}"]  # fmt: skip
        os.makedirs(os.path.dirname(key), exist_ok=True)
        return ansible(argv, env=env)

    def ping(self, n: int) -> float:
        argv = ["ansible", "-i", self.inventory, "lxcloud", "-l", self.limit(n), "-m", "ansible.builtin.ping"]
        return ansible(argv)[0]

    def down(self) -> None:
        self.testbed.down()
        log(f"fleet {self.prefix} removed")

    def run_benchmark(self, parser: argparse.ArgumentParser, args: argparse.Namespace, kind: str,
                      measure: Callable[[int, str], list[dict]]) -> tuple[str, list[dict]] | None:
        """What each fleet benchmark's main does with the options of add_fleet_arguments: with --down only remove
        the fleet (None); else prepare the host, measure each N ascending (`measure(n, base)`: its rows, each run's
        output under `base`, results_base(kind, --tag)) and remove the fleet unless --keep; (base, rows)."""
        if args.down:
            self.down()
            return None
        if max(args.n) > MAX_HYPERVISORS:
            last = self.host_name(MAX_HYPERVISORS)
            parser.error(f"at most {MAX_HYPERVISORS} hypervisors ({self.host_name(1)}..{last})")
        prepare_host()
        base = results_base(kind, args.tag)
        rows: list[dict] = []
        try:
            for n in sorted(args.n):
                rows += measure(n, base)
        finally:
            if not args.keep:
                self.down()
        return base, rows
