"""End-to-end distribution benchmark: from `ansible-playbook site.yml` to the last verified copy.

Part of `make bench-distribution` (issue 8: "the end to end, from the start of ansible-playbook site.yml
-l lxcloud ... to the last verified copy"). What bench_distribution.py's transfer leaves out is here:
Ansible, the index's verification, selection, the catalogue's copy of the new image and the seeding.

A fleet of its own (`e2e-catalogue` and `e2e-hv01`.., network `vmcloud-e2e`, 10.89.222.0/24; never the
lab's, molecule's or the other benchmarks'), shaped like the lab (benchmarks/_fleet.py). For each N:
the fleet is converged with two small images, then, per repetition, a new version of one image of F
random bytes is published (lab/publish-samples.yml, as an endorser would) and approved, every
container's upload, the catalogue's included, is shaped to U with tbf (benchmarks/_containers.py), and
the clock starts with `ansible-playbook site.yml` (whole: its catalogue play carries the new image to
nginx and the tracker's whitelist; with `-l lxcloud` the image would not reach the catalogue). For
scp_wave and scp_tsunami it runs on through `playbooks/push.yml -l lxcloud`, which sends the image once
site.yml has readied the receivers.
A host's time is when its store's copy of the new version was renamed into place (the store file's
ctime: promotion writes a temporary file, verifies its SHA-256 and renames; the containers share this
machine's clock).

Results (median of the repetitions) go to benchmarks/results/end-to-end-<date>.json:
{"machine", "file_bytes", "upload_bits_per_s", "rows": [{"method", "engine", "n", "end_to_end_seconds",
"playbook_seconds", "bound_seconds", "ratio_to_bound", "runs": [...]}]}. `bench_distribution.py
--end-to-end ROW..` runs this after its own transfer rows and fills their `end_to_end_seconds`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT]

from benchmarks._containers import (  # noqa: E402
    STORE,
    container_pid,
    log,
    parallel,
    pexec,
    shape_upload,
    unshape_upload,
)
from benchmarks._fleet import (  # noqa: E402
    PROFILE,
    SAMPLES,
    Fleet,
    add_fleet_arguments,
    changed_hosts,
    lab_group_vars,
    machine,
    write_result,
)

FLEET = Fleet(prefix="e2e", network="vmcloud-e2e", net="10.89.222", state=os.path.join(ROOT, ".cache", "end-to-end"),
              label="vmcloud.bench.end-to-end=1")  # fmt: skip
PUBLISHED = os.path.join(ROOT, "benchmarks", "published")
BENCH_IMAGE = "e2e_bench-img"
METHODS = ("bittorrent", "scp_wave", "scp_tsunami", "http")
PUSHED = ("scp_wave", "scp_tsunami")


def bench_image(version: int, file_mib: int) -> dict:
    """Version `version` of the benchmark's image: F MiB of random bytes (nothing for gzip to win)."""
    return {"file": f"e2e_bench-v{version}.img", "name": BENCH_IMAGE, "version": version, "compressed": False,
            "random_mib": file_mib, "zero_mib": 0}  # fmt: skip


def lxcloud_vars(method: str, engine: str) -> dict:
    """The lab's approvals (inventories/lab/group_vars/lxcloud) plus the benchmark's image (latest version), and
    the method and engine measured."""
    approved = [*lab_group_vars()["lxcloud"]["vmcloud_approved_images"], {"name": BENCH_IMAGE, "version": "latest"}]
    return {"vmcloud_approved_images": approved, "vmcloud_distribution_method": method, "vmcloud_engine": engine}


def promoted_at(host: str, file: str) -> float | None:
    """When `host`'s store copy of `file` was renamed into place (its ctime), or None when it has none."""
    script = (f"python3 -c \"import glob, os; found = glob.glob('{STORE}/*{file}*'); "
              f"print(max(os.stat(p).st_ctime for p in found) if found else '')\"")  # fmt: skip
    out = pexec(host, script).strip()
    return float(out) if out else None


def shape_all(n: int, bits_per_s: int) -> None:
    names = [FLEET.catalogue, *FLEET.hypervisors(n)]
    parallel(lambda name: shape_upload(container_pid(name), bits_per_s), names)


def unshape_all(n: int) -> None:
    names = [FLEET.catalogue, *FLEET.hypervisors(n)]
    parallel(lambda name: unshape_upload(container_pid(name)), names)


def measure(n: int, repeat: int, file_mib: int, bits_per_s: int, method: str, engine: str, out_dir: str) -> dict:
    bound = file_mib * (1 << 20) * 8 / bits_per_s
    new = FLEET.up(n)
    FLEET.write_inventory(n, lxcloud_vars(method, engine))
    unshape_all(n)  # converge and publish at full speed: only the measured run is shaped
    if FLEET.catalogue in new or not FLEET.published():
        log("publishing the small sample images (lab/publish-samples.yml)")
        FLEET.publish(SAMPLES)
    log(f"N={n}: converging with the small images ({method}, {engine})")
    seconds, _output = FLEET.site()
    log(f"converged in {seconds:.1f} s")
    version = int(time.time())  # a new version each run: kept fleets (--keep) never hold it yet
    runs = []
    for rep in range(repeat):
        image = bench_image(version + rep, file_mib)
        log(f"N={n} run {rep + 1}: publishing {image['file']} ({file_mib} MiB)")
        FLEET.publish([*SAMPLES, image])
        shape_all(n, bits_per_s)
        try:
            started = time.time()
            seconds, output = FLEET.site(env=PROFILE)  # the inventory holds the N hypervisors and the catalogue
            if method in PUSHED:  # site.yml readies the receivers; playbooks/push.yml sends, round by round
                push_seconds, push_output = FLEET.push(n, os.path.join(FLEET.state, "push", "id_ed25519"), env=PROFILE)
                seconds, output = seconds + push_seconds, output + push_output
        finally:
            unshape_all(n)
        with open(os.path.join(out_dir, f"site-n{n}-{method}-{engine}-run{rep + 1}.txt"), "w") as handle:
            handle.write(output)
        hosts = {host: promoted_at(host, image["file"]) for host in FLEET.hypervisors(n)}
        missing = [host for host, at in hosts.items() if at is None]
        if missing:
            raise RuntimeError(f"N={n}: {missing} hold no verified {image['file']} after site.yml")
        per_host = {host: round(at - started, 3) for host, at in hosts.items()}
        last = max(per_host.values())
        runs.append({"end_to_end_seconds": last, "playbook_seconds": round(seconds, 3), "hosts": per_host,
                     "changed": changed_hosts(output)})  # fmt: skip
        log(f"N={n} run {rep + 1}: last verified copy after {last:.1f} s = {last / bound:.2f} T* "
            f"(site.yml {seconds:.1f} s)")  # fmt: skip
    end = statistics.median(r["end_to_end_seconds"] for r in runs)
    return {"method": method, "engine": engine if method == "bittorrent" else None, "n": n,
            "end_to_end_seconds": round(end, 3),
            "playbook_seconds": round(statistics.median(r["playbook_seconds"] for r in runs), 3),
            "bound_seconds": round(bound, 3), "ratio_to_bound": round(end / bound, 3), "runs": runs}  # fmt: skip


def table(rows: list[dict]) -> str:
    lines = ["| method | engine | N | end to end s | × T* | site.yml s |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['engine'] or '-'} | {r['n']} | {r['end_to_end_seconds']:.1f} "
              f"| {r['ratio_to_bound']:.2f} | {r['playbook_seconds']:.1f} |" for r in rows]  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_fleet_arguments(parser, repeat=1)
    parser.add_argument("--methods", nargs="+", default=["bittorrent"], choices=METHODS)
    parser.add_argument("--engine", default="libtorrent", choices=["libtorrent", "rtorrent"])
    parser.add_argument("--file-mib", type=int, default=256)
    parser.add_argument("--upload-mbit", type=int, default=100)
    parser.add_argument("--publish", action="store_true", help="also copy the result to benchmarks/published/")
    args = parser.parse_args()
    bits_per_s = args.upload_mbit * 1_000_000

    def each_method(n: int, base: str) -> list[dict]:
        return [measure(n, args.repeat, args.file_mib, bits_per_s, m, args.engine, base) for m in args.methods]

    ran = FLEET.run_benchmark(parser, args, "end-to-end", each_method)
    if ran is None:  # --down
        return 0
    base, rows = ran
    result = {"machine": machine(), "file_bytes": args.file_mib << 20, "upload_bits_per_s": bits_per_s,
              "repeat": args.repeat, "rows": rows}  # fmt: skip
    write_result(base, result)
    if args.publish:
        os.makedirs(PUBLISHED, exist_ok=True)
        shutil.copy(base + ".json", PUBLISHED)
    print(table(rows))
    log(f"wrote {base}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
