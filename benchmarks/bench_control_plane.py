"""Control-plane benchmark: a no-op converge as a ratio to `ansible -m ping` on the same hosts.

Part of `make bench` (issue 9). Starts its own Podman containers from the lab image (`cp-catalogue`
and `cp-hv01`.., network `vmcloud-cp`, 10.89.221.0/24; never the lab's or molecule's), lets the lab's
SSH key in, writes an inventory shaped like inventories/lab (the lab's group_vars, with this
network's addresses and a state directory of its own under .cache/), publishes a small image set with
lab/publish-samples.yml (as `make demo` does, smaller images) and converges once with site.yml.

Then, for each N (default 4 and 16; N hypervisors running, the catalogue besides), one ping to open
the SSH masters and `--repeat` rounds of, in turn:
  ansible <hypervisors> -m ping
  ansible-playbook site.yml -l <hypervisors>          (no-op: nothing changed since the converge)
  ansible-playbook playbooks/reconcile.yml -l <hypervisors>
The medians go to benchmarks/results/control-plane-<date>.json as
{"machine", "rows": [{"playbook", "n", "seconds", "ping_seconds", "ratio", "tasks_ok", "tasks_skipped"}]}; ratio is
seconds / ping_seconds of the same N in the same run, and the task counts (the most any host ran and skipped, from
the last run's recap) are what a loaded machine cannot blur. Every measured playbook run should report
changed=0 on every host (a no-op); one that does not is listed under "not_noop" in the result.

Ansible runs with the checkout's ansible.cfg, as a user's does (pipelining, forks, the SSH
ControlPersist). The playbook runs carry the profile_tasks callback; each run's output, with its tasks'
times, is kept in benchmarks/results/control-plane-<date>/ (not committed).
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT]

from benchmarks._containers import LAB_KEY, Testbed, log, prepare_host  # noqa: E402

NETWORK = "vmcloud-cp"
SUBNET = "10.89.221.0/24"
GATEWAY = "10.89.221.1"
LABEL = "vmcloud.bench.control-plane=1"
CATALOGUE = "cp-catalogue"
CATALOGUE_IP = "10.89.221.10"
STATE = os.path.join(ROOT, ".cache", "control-plane")
INVENTORY = os.path.join(STATE, "inventory", "hosts.yml")
RESULTS = os.path.join(ROOT, "benchmarks", "results")
BIN = os.path.join(ROOT, ".venv", "bin")
# The demo's two images (one gzip-compressed, one targeted at subcluster sc-b), a few MiB each:
# the control plane's cost does not grow with image size once nothing is copied or hashed again.
SAMPLES = [
    {"file": "cernvm_demo.img.gz", "name": "cernvm_demo-img", "version": 1, "compressed": True,
     "random_mib": 4, "zero_mib": 8},
    {"file": "slc5_demo.img", "name": "slc5_demo-img", "version": 1, "compressed": False,
     "random_mib": 6, "zero_mib": 0, "targets": {"hosts": [], "subclusters": ["sc-b"], "clusters": []}},
]  # fmt: skip
PLAYBOOKS = {"site.yml": "site.yml", "reconcile.yml": os.path.join("playbooks", "reconcile.yml")}


def host_name(i: int) -> str:
    return f"cp-hv{i:02d}"


def host_ip(i: int) -> str:
    return f"10.89.221.{10 + i}"


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


def write_inventory(n: int) -> None:
    """The lab inventory's shape and group_vars with this testbed's hosts, addresses and state directory.

    Hypervisors alternate between subclusters sc-a and sc-b, so the sc-b image lands on half of them.
    """
    group_vars = lab_group_vars()
    group_vars["all"].update(
        vmcloud_lab_state_dir=STATE, vmcloud_index_url=f"http://{CATALOGUE_IP}/index.yaml",
        vmcloud_trust_anchors=[os.path.join(STATE, "endorser", "ca.pem")],
    )  # fmt: skip
    group_vars["lab"]["ansible_ssh_private_key_file"] = LAB_KEY
    hvs = {i: {"ansible_host": host_ip(i)} for i in range(1, n + 1)}
    subclusters = {
        f"sc_{tag}": {
            "vars": {"vmcloud_subcluster": f"sc-{tag}"},
            "hosts": {host_name(i): hvs[i] for i in hvs if (i % 2 == 1) == (tag == "a")},
        }
        for tag in ("a", "b")
    }
    lxcloud = {"vars": {"vmcloud_cluster": "lxcloud", **group_vars.get("lxcloud", {})}, "children": subclusters}
    inventory = {
        "all": {
            "vars": group_vars["all"],
            "children": {
                "lab": {
                    "vars": group_vars["lab"],
                    "children": {
                        "catalogue": {
                            "vars": group_vars.get("catalogue", {}),
                            "hosts": {CATALOGUE: {"ansible_host": CATALOGUE_IP}},
                        },
                        "tracker": {"hosts": {CATALOGUE: None}},
                        "lxcloud": lxcloud,
                    },
                }
            },
        }
    }
    os.makedirs(os.path.dirname(INVENTORY), exist_ok=True)
    with open(INVENTORY, "w") as handle:
        handle.write("# Written by benchmarks/bench_control_plane.py (the lab's group_vars, its own hosts)\n")
        yaml.safe_dump(inventory, handle, sort_keys=False)


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


RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)",
                   re.MULTILINE)


def changed_hosts(output: str) -> dict[str, int]:
    return {m.group(1): int(m.group(3)) for m in RECAP.finditer(output) if int(m.group(3)) or int(m.group(5))}


NOT_NOOP: dict[str, list] = {}


def task_counts(output: str) -> dict[str, int]:
    """Most tasks any host ran (ok) and skipped in one run, from the recap: what the seconds cannot hide.
    Each task a host runs is one SSH round trip or more (docs/performance.md says how to count them)."""
    found = [(int(m.group(2)), int(m.group(6))) for m in RECAP.finditer(output)]
    return {"tasks_ok": max((ok for ok, _unused in found), default=0),
            "tasks_skipped": max((skipped for _unused, skipped in found), default=0)}


def limit(n: int) -> str:
    return ",".join(host_name(i) for i in range(1, n + 1))


def ping(n: int) -> float:
    return ansible(["ansible", "-i", INVENTORY, "lxcloud", "-l", limit(n), "-m", "ansible.builtin.ping"])[0]


def playbook(name: str, n: int, env: dict | None = None) -> tuple[float, str]:
    seconds, output = ansible(["ansible-playbook", "-i", INVENTORY, PLAYBOOKS[name], "-l", limit(n)], env=env)
    changed = changed_hosts(output)
    if changed:  # recorded with the row: a figure that is not a no-op's must not pass for one
        log(f"WARNING: {name} at N={n} was not a no-op (changed or failed: {changed})")
        NOT_NOOP.setdefault(f"{name} N={n}", []).append(changed)
    return seconds, output


def converge(testbed: Testbed, n: int, again: bool = True) -> None:
    hosts = [(CATALOGUE, CATALOGUE_IP)] + [(host_name(i), host_ip(i)) for i in range(1, n + 1)]
    new = [host for host in hosts if host[0] not in testbed.running()]
    testbed.up(hosts)
    testbed.authorize_ssh(new)
    write_inventory(n)
    published = os.path.exists(os.path.join(STATE, "catalogue", "index.yaml"))
    if any(name == CATALOGUE for name, _unused in new) or not published:
        extra = {"lab_samples_dir": STATE, "lab_samples_base_url": f"http://{CATALOGUE_IP}",
                 "lab_samples_announce": f"http://{CATALOGUE_IP}:6969/announce",
                 "lab_samples_images": SAMPLES}  # fmt: skip
        log("publishing the sample images (lab/publish-samples.yml)")
        ansible(["ansible-playbook", "-i", INVENTORY, "lab/publish-samples.yml", "-e", json.dumps(extra)])
    if not new and not again:
        log(f"N={n}: all hosts ran before (--keep); not converged again (--no-converge)")
        return
    log(f"converging: site.yml, N={n}")
    seconds, _output = ansible(["ansible-playbook", "-i", INVENTORY, "site.yml"])
    log(f"converged in {seconds:.1f} s")


# Each playbook run reports its tasks' times (profile_tasks; a timestamp per task, nothing more): what
# costs what is read from the measured runs themselves. ping runs without it (ad-hoc commands load no
# callbacks).
PROFILE = {"ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks", "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "all",
           "PROFILE_TASKS_SORT_ORDER": "descending"}  # fmt: skip


def measure(n: int, repeat: int, out_dir: str) -> list[dict]:
    """`repeat` rounds of ping, site.yml, reconcile.yml; the first ping opens the SSH masters."""
    ping(n)  # as any earlier command of a user would have (ControlPersist)
    times: dict[str, list[float]] = {"ping": [], **{name: [] for name in PLAYBOOKS}}
    counts: dict[str, dict[str, int]] = {}
    for rep in range(repeat):
        times["ping"].append(ping(n))
        for name in PLAYBOOKS:
            seconds, output = playbook(name, n, env=PROFILE)
            times[name].append(seconds)
            counts[name] = task_counts(output)
            with open(os.path.join(out_dir, f"{name.removesuffix('.yml')}-n{n}-run{rep + 1}.txt"), "w") as handle:
                handle.write(output)
        log(f"N={n} round {rep + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()))
    ping_seconds = statistics.median(times["ping"])
    return [
        {"playbook": name, "n": n, "seconds": round(statistics.median(times[name]), 3),
         "ping_seconds": round(ping_seconds, 3), "ratio": round(statistics.median(times[name]) / ping_seconds, 2),
         "runs": [round(t, 3) for t in times[name]], "ping_runs": [round(t, 3) for t in times["ping"]],
         **counts.get(name, {})}
        for name in PLAYBOOKS
    ]  # fmt: skip


def machine() -> dict:
    version = subprocess.run(
        [os.path.join(BIN, "ansible"), "--version"], capture_output=True, text=True, check=False
    ).stdout
    return {
        "host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
        "kernel": platform.release(), "ansible": version.splitlines()[0] if version else None,
    }  # fmt: skip


def table(rows: list[dict]) -> str:
    lines = ["| playbook | N | seconds | ping seconds | ratio | tasks run / skipped a host |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['playbook']} | {r['n']} | {r['seconds']:.2f} | {r['ping_seconds']:.2f} | {r['ratio']:.1f}× "
              f"| {r.get('tasks_ok')} / {r.get('tasks_skipped')} |" for r in rows]  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tag", default="", help="suffix of the result file (e.g. before)")
    parser.add_argument("--no-converge", action="store_true",
                        help="do not converge hosts kept from an earlier run with the same tree again")
    parser.add_argument("--keep", action="store_true", help="leave the containers running (next run reuses them)")
    parser.add_argument("--down", action="store_true", help="only remove the containers and the network")
    args = parser.parse_args()
    testbed = Testbed(NETWORK, SUBNET, GATEWAY, LABEL)
    if args.down:
        testbed.down()
        return 0
    if max(args.n) > 16:
        parser.error("at most 16 hypervisors (cp-hv01..cp-hv16)")
    prepare_host()
    os.makedirs(RESULTS, exist_ok=True)
    stamp = datetime.date.today().isoformat()
    base = os.path.join(RESULTS, f"control-plane-{stamp}{('-' + args.tag) if args.tag else ''}")
    rows: list[dict] = []
    os.makedirs(base, exist_ok=True)  # each measured run's output, with its task times
    try:
        for n in sorted(args.n):
            converge(testbed, n, again=not args.no_converge)
            rows += measure(n, args.repeat, base)
    finally:
        if not args.keep:
            testbed.down()
            log("testbed removed")
    result = {"machine": machine(), "repeat": args.repeat, "rows": rows, "not_noop": NOT_NOOP}
    with open(base + ".json", "w") as handle:
        json.dump(result, handle, indent=2)
        handle.write("\n")
    print(table(rows))
    log(f"wrote {base}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
