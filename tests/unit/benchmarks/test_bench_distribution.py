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
    assert len(outcome.rounds) == bench.push_round_budget("scp_wave", 4, 1)


@pytest.mark.parametrize(("n", "chunks"), [(2, 4), (4, 4), (8, 8), (16, 8), (3, 1)])
def test_tsunami_reaches_every_host_and_promotes_once_at_the_end(n, chunks):
    hosts = [f"hv{i:02d}" for i in range(1, n + 1)]
    world = World(hosts, chunks=chunks)
    outcome = drive("scp_tsunami", world, chunks * 10 - 3, 10)
    assert sorted(outcome.verified_at) == hosts
    assert world.promoted == [(len(outcome.rounds), hosts)]
    # Each host received every chunk exactly once.
    for host in hosts:
        assert sorted(c for _r, _s, dst, c in world.sent if dst == host) == list(range(chunks))
    assert len(outcome.rounds) <= bench.push_round_budget("scp_tsunami", n, chunks)


def test_tsunami_retries_a_failed_chunk():
    hosts = ["hv01", "hv02"]
    world = World(hosts, chunks=3, fail={(1, "hv01")})
    outcome = drive("scp_tsunami", world, 30, 10)
    assert sorted(outcome.verified_at) == hosts
    assert len(outcome.failed) == 1
    assert sorted(c for _r, _s, dst, c in world.sent if dst == "hv01" and (_r, dst) != (1, "hv01")) == [0, 1, 2]


def test_a_push_that_never_arrives_ends_at_the_budget_without_the_host():
    hosts = ["hv01", "hv02"]
    world = World(hosts, fail={(r, "hv02") for r in range(1, 20)})
    outcome = drive("scp_wave", world, 100, 100)
    assert "hv02" not in outcome.verified_at
    assert len(outcome.rounds) == bench.push_round_budget("scp_wave", 2, 1)


def test_round_budget_is_the_playbooks():
    # playbooks/tasks/push_image.yml: range(ceil(log2(lackers + 1)) + 2 + chunks if tsunami).
    assert bench.push_round_budget("scp_wave", 16, 8) == 5 + 2
    assert bench.push_round_budget("scp_tsunami", 16, 8) == 5 + 2 + 8
    assert bench.push_round_budget("scp_wave", 1, 1) == 1 + 2


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
    world = World(hosts, chunks=2)
    ticks = iter(range(100))
    outcome = bench.drive_push("scp_tsunami", ORIGIN, hosts, 20, 10, world.send, world.promote,
                               clock=lambda: float(next(ticks)))
    # One entry per round that sent (1 s of sending, 1 s of nothing promoted: the fake clock ticks once per
    # call), then the one promotion of a tsunami.
    assert len(outcome.timings) == len(outcome.rounds) + 1
    assert all(t == {"pairs": len(p), "send_seconds": 1.0, "promote_seconds": 1.0}
               for t, p in zip(outcome.timings, outcome.rounds, strict=False))
    assert outcome.timings[-1] == {"pairs": 0, "send_seconds": 0.0, "promote_seconds": 1.0}


def run_of(last, origin, end_to_end=None):
    return bench.MethodRun({"hv01": last / 2, "hv02": last}, origin, {"hv01": 0, "hv02": 0}, end_to_end=end_to_end)


def test_summary_row_is_the_issues_schema_with_medians():
    row = bench.summary_row("scp_wave", "none", 2, [run_of(30.0, 300), run_of(10.0, 100), run_of(20.0, 200)], 10.0)
    assert row == {"method": "scp_wave", "engine": "none", "n": 2, "seconds": 20.0, "end_to_end_seconds": None,
                   "bound_seconds": 10.0, "ratio_to_bound": 2.0, "origin_bytes": 200, "cpu_busy_share": None}


def test_end_to_end_is_a_median_only_when_every_repetition_measured_it():
    measured = [run_of(10.0, 1, 15.0), run_of(10.0, 1, 17.0), run_of(10.0, 1, 16.0)]
    assert bench.summary_row("http", "none", 2, measured, 5.0)["end_to_end_seconds"] == 16.0
    partly = [run_of(10.0, 1, 15.0), run_of(10.0, 1)]
    assert bench.summary_row("http", "none", 2, partly, 5.0)["end_to_end_seconds"] is None


def test_table_prints_every_row_and_a_dash_for_no_end_to_end():
    rows = [bench.summary_row("http", "none", 2, [run_of(10.0, 100)], 5.0),
            bench.summary_row("scp_tsunami", "none", 16, [run_of(12.5, 150, 20.0)], 5.0)]
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
