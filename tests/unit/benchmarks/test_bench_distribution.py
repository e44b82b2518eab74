# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The distribution benchmark's own logic (benchmarks/bench_distribution.py): the push driver that runs
playbooks/push.yml's rounds over the product's planner, the round budget, the image entry. The
containers, ssh and the store are exercised by the smoke run (docs/performance.md), not here."""

from __future__ import annotations

import math

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError
from benchmarks import bench_distribution as bench

ORIGIN = "origin"


class World:
    """Hosts that receive pushes: who holds what, and a clock that advances one tick per round."""

    def __init__(self, hosts, chunks=1, fail=(), corrupt=()):
        self.hosts = list(hosts)
        self.chunks = chunks
        self.fail = set(fail)  # (round, destination) pairs whose push does not arrive
        self.corrupt = set(corrupt)  # hosts whose promotion fails (the bytes do not verify)
        self.whole: set = {ORIGIN}  # holders of the verified image
        self.held = {host: set() for host in self.hosts}  # chunks (tsunami) held by each receiver
        self.round = 0
        self.sent: list = []  # (round, source, destination, chunk)
        self.promoted: list = []  # (round, hosts)

    def send(self, pairs):
        self.round += 1
        delivered = {}
        for pair in pairs:
            source, destination, chunk = pair["source"], pair["destination"], pair.get("chunk")
            assert destination not in delivered, "a destination receives once per round"
            if chunk is None:
                assert source in self.whole, f"{source} sent before it held the verified image"
            else:
                assert source in self.whole or chunk in self.held[source], f"{source} sent chunk {chunk} it lacks"
            ok = (self.round, destination) not in self.fail
            delivered[destination] = ok
            self.sent.append((self.round, source, destination, chunk))
            if ok:
                self.held[destination] |= set(range(self.chunks)) if chunk is None else {chunk}
        senders = [pair["source"] for pair in pairs]
        assert len(senders) == len(set(senders)), "a host sends once per round"
        return delivered

    def promote(self, hosts):
        self.promoted.append((self.round, list(hosts)))
        times = {}
        for host in hosts:
            good = self.held[host] == set(range(self.chunks)) and host not in self.corrupt
            if good:
                self.whole.add(host)
            times[host] = float(self.round) if good else None
        return times


def drive(method, world, size, chunk_size):
    return bench.drive_push(method, ORIGIN, world.hosts, size, chunk_size, world.send, world.promote)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 8, 15, 16])
def test_wave_reaches_every_host_in_log2_rounds(n):
    hosts = [f"hv{i:02d}" for i in range(1, n + 1)]
    world = World(hosts)
    outcome = drive("scp_wave", world, 100, 100)
    assert sorted(outcome.verified_at) == hosts
    assert len(outcome.rounds) == math.ceil(math.log2(n + 1))
    # Every host received the whole image exactly once, and was promoted in the round it arrived.
    assert sorted(dst for _r, _src, dst, _c in world.sent) == hosts
    assert all(outcome.verified_at[dst] == r for r, _src, dst, _c in world.sent)
    assert outcome.failed == []


def test_wave_retries_a_failed_push_in_a_spare_round():
    hosts = [f"hv{i:02d}" for i in range(1, 5)]
    world = World(hosts, fail={(1, "hv01")})
    outcome = drive("scp_wave", world, 100, 100)
    assert sorted(outcome.verified_at) == hosts
    assert [pair["destination"] for pair in outcome.failed] == ["hv01"]
    assert len(outcome.rounds) == math.ceil(math.log2(5)) + 1
    assert world.sent.count((1, ORIGIN, "hv01", None)) == 1


def test_wave_host_that_does_not_verify_is_never_a_source():
    hosts = [f"hv{i:02d}" for i in range(1, 5)]
    world = World(hosts, corrupt={"hv01"})
    outcome = drive("scp_wave", world, 100, 100)
    assert "hv01" not in outcome.verified_at
    assert all(src != "hv01" for _r, src, _dst, _c in world.sent)
    # The budget (ceil(log2(N+1)) + 2 rounds) ends the retries, as in the playbook.
    assert len(outcome.rounds) == bench.push_round_budget(4)


class Pipeline:
    """Hosts of a pipelined tsunami: each sender's queue runs until it needs a chunk it does not hold."""

    def __init__(self, hosts, chunks, dead=(), refusing=()):
        self.hosts, self.chunks = list(hosts), chunks
        self.dead = set(dead)  # senders whose whole run fails
        self.refusing = set(refusing)  # receivers that refuse every chunk in the first pass
        self.held = {host: set() for host in self.hosts}
        self.passes = []
        self.before = []  # what each host held when each pass began
        self.promoted = []

    def holds(self, host, chunk):
        return host == ORIGIN or chunk in self.held[host]

    def serve(self, queues):
        self.passes.append({s: list(q) for s, q in queues.items()})
        self.before.append({host: set(chunks) for host, chunks in self.held.items()})
        results = {s: {"sent": [], "failed": [], "left": []} for s in queues if s not in self.dead}
        pending = {s: list(q) for s, q in queues.items() if s not in self.dead}
        moved = True
        while moved:
            moved = False
            for sender, queue in pending.items():
                if queue and self.holds(sender, queue[0][1]):
                    destination, chunk = queue.pop(0)
                    if destination in self.refusing and len(self.passes) == 1:
                        results[sender]["failed"].append({"destination": destination, "chunk": chunk,
                                                          "rule": "push-refused", "msg": "refused"})
                    else:
                        self.held[destination].add(chunk)
                        results[sender]["sent"].append([destination, chunk])
                    moved = True
        for sender, queue in pending.items():
            results[sender]["left"] = [list(item) for item in queue]
        return {**results, **{s: None for s in queues if s in self.dead}}

    def held_by(self, hosts):
        return {host: sorted(self.held[host]) for host in hosts}

    def promote(self, hosts):
        self.promoted.append(list(hosts))
        return {host: 1.0 for host in hosts}


def pipelined(world, size, chunk_size):
    return bench.drive_tsunami(ORIGIN, world.hosts, size, chunk_size, world.serve, world.held_by, world.promote)


@pytest.mark.parametrize(("n", "chunks"), [(2, 4), (4, 4), (8, 8), (16, 40), (3, 1)])
def test_tsunami_reaches_every_host_in_one_pass_and_promotes_once_at_the_end(n, chunks):
    hosts = [f"hv{i:02d}" for i in range(1, n + 1)]
    world = Pipeline(hosts, chunks)
    outcome = pipelined(world, chunks * 10 - 3, 10)
    assert sorted(outcome.verified_at) == hosts
    assert world.promoted == [hosts]
    assert len(world.passes) == 1
    for host in hosts:  # each host received every chunk exactly once
        assert sorted(c for q in world.passes[0].values() for d, c in q if d == host) == list(range(chunks))


def test_tsunami_repairs_what_a_dead_sender_left_from_another_holder():
    hosts = ["hv01", "hv02", "hv03", "hv04"]
    first = bench.plan_queues(8, [ORIGIN], hosts)
    dead = next(h for h in hosts if first.get(h))
    world = Pipeline(hosts, 8, dead={dead})
    outcome = pipelined(world, 80, 10)
    assert sorted(outcome.verified_at) == hosts
    assert len(world.passes) == 2 and dead not in world.passes[1]


def test_tsunami_repairs_a_refusing_receiver_without_resending_what_it_holds():
    hosts = ["hv01", "hv02", "hv03"]
    world = Pipeline(hosts, 6, refusing={"hv02"})
    outcome = pipelined(world, 60, 10)
    assert sorted(outcome.verified_at) == hosts
    assert outcome.failed and all(f["rule"] == "push-refused" for f in outcome.failed)
    assert len(world.passes) == 2
    for host in hosts:  # the repair pass sends each host exactly what it lacked after the first
        repaired = sorted(c for q in world.passes[1].values() for d, c in q if d == host)
        assert repaired == sorted(set(range(6)) - world.before[1][host])


def test_tsunami_promotes_only_the_complete_hosts_when_no_holder_is_left():
    hosts = ["hv01"]
    world = Pipeline(hosts, 2, dead={ORIGIN})
    outcome = pipelined(world, 20, 10)
    assert outcome.verified_at == {} and world.promoted == []


def test_a_push_that_never_arrives_ends_at_the_budget_without_the_host():
    hosts = ["hv01", "hv02"]
    world = World(hosts, fail={(r, "hv02") for r in range(1, 20)})
    outcome = drive("scp_wave", world, 100, 100)
    assert "hv02" not in outcome.verified_at
    assert len(outcome.rounds) == bench.push_round_budget(2)


def test_round_budget_is_the_playbooks():
    # playbooks/tasks/push_image.yml's wave: range(ceil(log2(lackers + 1)) + 2).
    assert bench.push_round_budget(16) == 5 + 2
    assert bench.push_round_budget(1) == 1 + 2


def test_no_push_method_is_refused():
    with pytest.raises(VmcloudError):
        bench.drive_push("http", ORIGIN, ["hv01"], 10, 10, lambda pairs: {}, lambda hosts: {})


def test_image_entry_is_what_the_promotion_reads():
    entry = bench.image_entry(1 << 20, "ab" * 32, "cd" * 20)
    assert entry["size"] == 1 << 20
    assert entry["sha256"] == "ab" * 32
    assert entry["torrent"] == {"info_hash": "cd" * 20}
    assert entry["file"] == "bench.img"
    assert entry["compressed"] is False
    for key in ("uuid", "name", "version"):
        assert entry[key]


def test_every_method_of_the_issue_has_a_row():
    methods = {method for method, _engine, _fn in bench.METHODS.values()}
    assert methods == {"sequential", "http", "scp_wave", "scp_tsunami", "bittorrent"}


def test_timings_say_how_long_each_round_sent_and_promoted():
    hosts = ["hv01", "hv02", "hv03"]
    world = Pipeline(hosts, 2)
    ticks = iter(range(100))
    outcome = bench.drive_tsunami(ORIGIN, hosts, 20, 10, world.serve, world.held_by, world.promote,
                                  clock=lambda: float(next(ticks)))
    # One entry per pass (1 s of sending on the fake clock, which ticks once per call), then the one promotion.
    assert outcome.timings == [{"pairs": 6, "send_seconds": 1.0, "promote_seconds": 0.0},
                               {"pairs": 0, "send_seconds": 0.0, "promote_seconds": 1.0}]


def run_of(last, origin):
    return bench.MethodRun({"hv01": last / 2, "hv02": last}, origin, {"hv01": 0, "hv02": 0})


def test_summary_row_is_the_issues_schema_with_medians():
    row = bench.summary_row("scp_wave", "none", 2, [run_of(30.0, 300), run_of(10.0, 100), run_of(20.0, 200)], 10.0)
    assert row == {"method": "scp_wave", "engine": "none", "n": 2, "seconds": 20.0, "end_to_end_seconds": None,
                   "bound_seconds": 10.0, "ratio_to_bound": 2.0, "origin_bytes": 200, "cpu_busy_share": None}


def test_table_prints_every_row_and_a_dash_for_no_end_to_end():
    rows = [bench.summary_row("http", "none", 2, [run_of(10.0, 100)], 5.0),
            bench.summary_row("scp_tsunami", "none", 16, [run_of(12.5, 150)], 5.0)]
    bench.fill_end_to_end(rows, [{"method": "scp_tsunami", "engine": None, "n": 16, "end_to_end_seconds": 20.0}])
    lines = bench.table(rows, 100).splitlines()
    assert len(lines) == 3
    assert lines[1].split() == ["http", "none", "2", "10.0", "2.00", "-", "100", "1.00", "-"]
    assert lines[2].split() == ["scp_tsunami", "none", "16", "12.5", "2.50", "20.0", "150", "1.50", "-"]


def test_the_cpu_busy_share_is_the_median_of_the_repetitions_and_printed():
    results = [run_of(10.0, 100), run_of(11.0, 100), run_of(12.0, 100)]
    for result, busy in zip(results, (0.5, 0.97, 0.9), strict=True):
        result.notes["cpu"] = {"busy_share": busy, "testbed_share": busy, "container_cpu_seconds": {}}
    row = bench.summary_row("bittorrent", "libtorrent", 8, results, 5.0)
    assert row["cpu_busy_share"] == 0.9
    assert bench.table([row], 100).splitlines()[1].split()[-1] == "90%"
    results[0].notes.pop("cpu")
    assert bench.summary_row("bittorrent", "libtorrent", 8, results, 5.0)["cpu_busy_share"] is None


def test_plot_lines_are_one_per_method_and_engine():
    assert bench.series_label({"method": "scp_wave", "engine": "none"}) == "scp_wave"
    assert bench.series_label({"method": "bittorrent", "engine": "libtorrent"}) == "bittorrent (libtorrent)"


def test_plot_has_a_line_per_method(tmp_path):
    rows = [bench.summary_row(m, e, n, [run_of(10.0 * n, 1)], 5.0)
            for m, e, _fn in bench.METHODS.values() for n in (2, 4)]
    path = tmp_path / "plot.png"
    bench.plot({"file_bytes": 1 << 20, "upload_bits_per_s": 1e8, "rows": rows}, str(path))
    assert path.stat().st_size > 0
