"""Verify + select on a generated 10,000-image v2 index. Target: under 1 s on one core.

Run with `make bench`; the figure goes to docs/performance.md by hand after a run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
import tracemalloc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "collections"), ROOT]

from ansible_collections.vmcloud.fleet.plugins.module_utils._index import IndexPolicy  # noqa: E402
from ansible_collections.vmcloud.fleet.plugins.module_utils._index_state import accept_index  # noqa: E402
from ansible_collections.vmcloud.fleet.plugins.module_utils._selection import (  # noqa: E402
    HostPlacement,
    parse_approvals,
    select_images,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._trust import TrustStore  # noqa: E402
from tests.unit import index_factory as factory  # noqa: E402
from tests.unit import pki  # noqa: E402

NOW = datetime.datetime(2026, 11, 24, 10, 0, 0, tzinfo=datetime.UTC)


def build(count: int, syntax: str):
    ca = pki.make_ca("bench CA")
    endorser = pki.make_endorser(ca, "bench-endorser", key_type="ec")
    images = []
    for n in range(count):
        targets = {"hosts": [], "subclusters": [f"sc-{n % 4}"] if n % 3 == 0 else [], "clusters": []}
        images.append(factory.image(n, family=f"family{n % 500}", version=1000 + n, targets=targets))
    data = factory.document(factory.signed_index(images, version=2), [endorser], syntax=syntax)
    return ca, data


def run_once(ca, data: bytes, state_dir: str):
    policy = IndexPolicy(trust=TrustStore(anchors=[ca.cert], now=NOW))
    accepted = accept_index(data, policy, state_dir, persist=False)
    approvals = parse_approvals(
        [{"name": f"family{i}", "version": "latest"} for i in range(0, 500, 2)],
        [{"name": "family10"}],
        ["[?name=='family7' && version > `5000`]"],
    )
    return select_images(accepted.index.images, approvals, HostPlacement("hv01", "sc-1", "lxcloud"))


def measure(count: int, syntax: str, repeat: int, state_dir: str) -> dict:
    ca, data = build(count, syntax)
    timings = []
    for _unused in range(repeat):
        start = time.perf_counter()
        selection = run_once(ca, data, state_dir)
        timings.append(time.perf_counter() - start)
    tracemalloc.start()
    run_once(ca, data, state_dir)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "syntax": syntax,
        "images": count,
        "index_bytes": len(data),
        "desired": len(selection["desired"]),
        "best_seconds": round(min(timings), 3),
        "median_seconds": round(sorted(timings)[len(timings) // 2], 3),
        "peak_python_memory_mib": round(peak / 2**20, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--output", default=os.path.join(ROOT, "benchmarks", "results", "index.json"))
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, as the target says
    state_dir = os.path.join(ROOT, ".cache", "bench-state")
    # The target is for the JSON syntax that the endorser tooling writes for large
    # indexes; YAML block syntax is measured too, since small sites may use it.
    runs = [measure(args.images, syntax, args.repeat, state_dir) for syntax in ("json", "yaml")]
    result = {"benchmark": "verify+select", "target_seconds": 1.0, "target_syntax": "json", "runs": runs}
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2)
    print(json.dumps(result, indent=2))
    return 0 if runs[0]["median_seconds"] < result["target_seconds"] else 1


if __name__ == "__main__":
    sys.exit(main())
