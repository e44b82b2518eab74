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
import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT]

from benchmarks._containers import log  # noqa: E402
from benchmarks._fleet import (  # noqa: E402
    PROFILE,
    SAMPLES,
    Fleet,
    add_fleet_arguments,
    ansible,
    changed_hosts,
    machine,
    task_counts,
    write_result,
)

FLEET = Fleet(prefix="cp", network="vmcloud-cp", net="10.89.221", state=os.path.join(ROOT, ".cache", "control-plane"),
              label="vmcloud.bench.control-plane=1")
PLAYBOOKS = {"site.yml": "site.yml", "reconcile.yml": os.path.join("playbooks", "reconcile.yml")}
NOT_NOOP: dict[str, list] = {}


def playbook(name: str, n: int, env: dict | None = None) -> tuple[float, str]:
    argv = ["ansible-playbook", "-i", FLEET.inventory, PLAYBOOKS[name], "-l", FLEET.limit(n)]
    seconds, output = ansible(argv, env=env)
    changed = changed_hosts(output)
    if changed:  # recorded with the row: a figure that is not a no-op's must not pass for one
        log(f"WARNING: {name} at N={n} was not a no-op (changed or failed: {changed})")
        NOT_NOOP.setdefault(f"{name} N={n}", []).append(changed)
    return seconds, output


def converge(n: int, again: bool = True) -> None:
    new = FLEET.up(n)
    FLEET.write_inventory(n)
    if FLEET.catalogue in new or not FLEET.published():
        log("publishing the sample images (lab/publish-samples.yml)")
        FLEET.publish(SAMPLES)
    if not new and not again:
        log(f"N={n}: all hosts ran before (--keep); not converged again (--no-converge)")
        return
    log(f"converging: site.yml, N={n}")
    seconds, _output = FLEET.site()
    log(f"converged in {seconds:.1f} s")


def measure(n: int, repeat: int, out_dir: str) -> list[dict]:
    """`repeat` rounds of ping, site.yml, reconcile.yml; the first ping opens the SSH masters."""
    FLEET.ping(n)  # as any earlier command of a user would have (ControlPersist)
    times: dict[str, list[float]] = {"ping": [], **{name: [] for name in PLAYBOOKS}}
    counts: dict[str, dict[str, int]] = {}
    for rep in range(repeat):
        times["ping"].append(FLEET.ping(n))
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


def table(rows: list[dict]) -> str:
    lines = ["| playbook | N | seconds | ping seconds | ratio | tasks run / skipped a host |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['playbook']} | {r['n']} | {r['seconds']:.2f} | {r['ping_seconds']:.2f} | {r['ratio']:.1f}× "
              f"| {r.get('tasks_ok')} / {r.get('tasks_skipped')} |" for r in rows]  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_fleet_arguments(parser, repeat=3)
    parser.add_argument("--no-converge", action="store_true",
                        help="do not converge hosts kept from an earlier run with the same tree again")
    args = parser.parse_args()

    def converge_and_measure(n: int, base: str) -> list[dict]:
        converge(n, again=not args.no_converge)
        return measure(n, args.repeat, base)

    ran = FLEET.run_benchmark(parser, args, "control-plane", converge_and_measure)
    if ran is None:  # --down
        return 0
    base, rows = ran
    result = {"machine": machine(), "repeat": args.repeat, "rows": rows, "not_noop": NOT_NOOP}
    write_result(base, result)
    print(table(rows))
    log(f"wrote {base}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
