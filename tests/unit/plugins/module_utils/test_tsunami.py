# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""scp_tsunami's pipelined scheduler (pure logic): slots, rarest first, failures, per-sender queues."""

from __future__ import annotations

import math

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._push import (
    pass_queues,
    push_state,
    record_pass,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._tsunami import (
    MIB,
    Scheduler,
    Transfer,
    choose_chunk_size,
    plan_queues,
    serve,
)

HOSTS = [f"hv{i:02d}" for i in range(1, 17)]


def run_events(scheduler: Scheduler, duration) -> float:
    """Drive the scheduler with transfers of ``duration(transfer)`` time units; return when it is done."""
    now = 0.0
    running = {transfer: duration(transfer) for transfer in scheduler.in_flight}  # already started
    for transfer in scheduler.assign():
        running[transfer] = now + duration(transfer)
    while running:
        transfer = min(running, key=running.get)
        now = running.pop(transfer)
        scheduler.finished(transfer, True)
        for started in scheduler.assign():
            running[started] = now + duration(started)
    assert scheduler.done
    return now


def test_every_receiver_ends_with_every_chunk_once():
    scheduler = Scheduler(8, ["origin"], HOSTS)
    received = []
    while not scheduler.done:
        started = scheduler.assign()
        assert started
        received += [(t.receiver, t.chunk) for t in started]
        for transfer in started:
            scheduler.finished(transfer, True)
    assert sorted(received) == sorted((host, chunk) for host in HOSTS for chunk in range(8))


def test_slots_bound_each_hosts_transfers_at_once():
    scheduler = Scheduler(8, ["origin"], HOSTS[:8], upload_slots=1, download_slots=1)
    while not scheduler.done:
        started = scheduler.assign()
        senders = [t.sender for t in scheduler.in_flight]
        receivers = [t.receiver for t in scheduler.in_flight]
        assert len(senders) == len(set(senders)) and len(receivers) == len(set(receivers))
        for transfer in started:
            scheduler.finished(transfer, True)


def test_two_upload_slots_let_the_origin_feed_two_receivers():
    scheduler = Scheduler(4, ["origin"], ["hv01", "hv02"], upload_slots=2)
    assert {(t.sender, t.receiver) for t in scheduler.assign()} == {("origin", "hv01"), ("origin", "hv02")}


def test_a_sender_only_sends_chunks_it_holds_acknowledged():
    scheduler = Scheduler(2, ["origin"], ["hv01", "hv02"])
    first = scheduler.assign()
    assert [t.sender for t in first] == ["origin"]
    # hv01's chunk is in flight, not held: hv01 sends nothing yet, even though hv02 waits.
    assert scheduler.assign() == []
    scheduler.finished(first[0], True)
    again = scheduler.assign()
    assert {t.sender for t in again} == {"origin", first[0].receiver}


def test_rarest_first_keeps_the_origin_on_new_chunks():
    scheduler = Scheduler(8, ["origin"], HOSTS[:4])
    origin_chunks = []
    while not scheduler.done:
        started = scheduler.assign()
        origin_chunks += [t.chunk for t in started if t.sender == "origin"]
        for transfer in started:
            scheduler.finished(transfer, True)
    # The origin sends each chunk about once; the hosts relay the rest.
    assert sorted(set(origin_chunks)) == list(range(8))
    assert len(origin_chunks) <= 8 + 2


@pytest.mark.parametrize("n", [4, 8, 16])
def test_pipelined_time_is_chunks_plus_log_chunk_times(n):
    chunks = 8 * math.ceil(math.log2(n + 1))
    end = run_events(Scheduler(chunks, ["origin"], HOSTS[:n]), lambda transfer: 1.0)
    assert end <= chunks + math.ceil(math.log2(n + 1)) + 2


def test_no_lock_step_a_slow_pair_does_not_hold_the_others():
    """One slow receiver (3 time units a chunk) must not slow every host to its pace, as rounds would."""
    chunks = 16
    slow = "hv01"
    scheduler = Scheduler(chunks, ["origin"], HOSTS[:8])
    now, running, finished_at = 0.0, {}, {}

    def duration(transfer: Transfer) -> float:
        return 3.0 if slow in (transfer.sender, transfer.receiver) else 1.0

    for transfer in scheduler.assign():
        running[transfer] = duration(transfer)
    while running:
        transfer = min(running, key=running.get)
        now = running.pop(transfer)
        scheduler.finished(transfer, True)
        if scheduler.has[transfer.receiver] == scheduler.everything:
            finished_at[transfer.receiver] = now
        for started in scheduler.assign():
            running[started] = now + duration(started)
    others = [finished_at[host] for host in HOSTS[1:8]]
    # Lock-step rounds would need at least ``chunks`` rounds (a receiver takes one chunk a round), each as
    # long as the slow pair's transfer.
    lock_step = 3.0 * chunks
    assert max(others) <= lock_step / 1.5


def test_a_failed_receiver_keeps_what_it_holds_and_is_given_up_after_max_failures():
    scheduler = Scheduler(4, ["origin"], ["hv01", "hv02"], held={"hv01": [0, 1]}, max_failures=2)
    for _attempt in range(2):
        transfer = next(t for t in scheduler.assign() if t.receiver == "hv01")
        scheduler.finished(transfer, False, "receiver")
        for other in list(scheduler.in_flight):
            scheduler.finished(other, True)
    assert "hv01" in scheduler.given_up
    assert scheduler.has["hv01"] >= {0, 1}
    run_events(scheduler, lambda transfer: 1.0)
    assert scheduler.has["hv02"] == scheduler.everything
    assert scheduler.missing()["hv01"] == [2, 3]


def test_a_failed_senders_chunk_is_rescheduled_from_another_holder():
    scheduler = Scheduler(2, ["origin", "hv09"], ["hv01"])
    transfer = scheduler.assign()[0]
    scheduler.finished(transfer, False, "sender")
    again = scheduler.assign()
    assert again and again[0].chunk == transfer.chunk or transfer.chunk in scheduler.everything
    assert all(t.sender != transfer.sender for t in again)
    run_events(scheduler, lambda t: 1.0)
    assert scheduler.has["hv01"] == scheduler.everything


def test_stuck_when_the_only_holder_of_a_chunk_died():
    scheduler = Scheduler(2, ["origin"], ["hv01"])
    transfer = scheduler.assign()[0]
    scheduler.finished(transfer, False, "sender")
    assert scheduler.assign() == []
    assert scheduler.stuck and not scheduler.done


def test_no_holder_is_refused_with_its_rule():
    with pytest.raises(VmcloudError) as caught:
        Scheduler(2, [], ["hv01"])
    assert caught.value.rule == "push-no-source"


def test_a_receiver_resumes_from_what_it_held():
    queues = plan_queues(4, ["origin"], ["hv01"], held={"hv01": [0, 2]})
    assert sorted(chunk for _dst, chunk in queues["origin"]) == [1, 3]


def test_queues_deliver_every_missing_chunk_once_and_relay_among_hosts():
    queues = plan_queues(8, ["origin"], HOSTS[:8])
    deliveries = [(dst, chunk) for queue in queues.values() for dst, chunk in queue]
    assert sorted(deliveries) == sorted((h, c) for h in HOSTS[:8] for c in range(8))
    assert len(queues) > 1  # the hosts send too, not only the origin


def test_chunk_size_gives_enough_chunks_for_the_pipeline_and_stays_in_bounds():
    assert choose_chunk_size(256 * MIB, 16) == 7 * MIB  # 40 chunks: log2(17) rounds up to 5, 8 x 5
    assert choose_chunk_size(256 * MIB, 8) == 8 * MIB  # 32 chunks
    assert choose_chunk_size(10 * 1024 * MIB, 250) == 64 * MIB  # capped: a sender holds a chunk in memory
    assert choose_chunk_size(10 * MIB, 4) == 4 * MIB
    assert choose_chunk_size(0, 4) == 4 * MIB


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_serve_sends_what_it_holds_first_and_waits_for_the_rest():
    clock = Clock()
    held = {1}
    sent = []

    def send(destination, chunk):
        sent.append((destination, chunk))
        held.add(0)  # chunk 0 arrives meanwhile

    result = serve([("hv02", 0), ("hv03", 1)], held.__contains__, send, clock=clock, sleep=clock.sleep)
    assert sent == [("hv03", 1), ("hv02", 0)]
    assert result["left"] == [] and result["failed"] == []


def test_serve_skips_a_failed_destination_and_leaves_what_never_arrives():
    clock = Clock()

    def send(destination, chunk):
        if destination == "hv02":
            raise VmcloudError("push-failed", "hv02 went away")

    result = serve([("hv02", 0), ("hv02", 1), ("hv03", 0), ("hv03", 5)], {0, 1}.__contains__, send,
                   stall_seconds=10, clock=clock, sleep=clock.sleep)
    assert result["sent"] == [["hv03", 0]]
    assert [(f["destination"], f["chunk"], f["rule"]) for f in result["failed"]] == [("hv02", 0, "push-failed")]
    assert result["left"] == [["hv02", 1], ["hv03", 5]]
    assert 10 < clock.now < 11


def test_a_repair_pass_sends_nothing_from_a_dead_sender():
    queues = plan_queues(4, ["origin"], ["hv01", "hv02"], held={"hv01": [0, 1, 2, 3], "hv02": [0]},
                         dead_senders=["hv01"])
    assert list(queues) == ["origin"]
    assert sorted(chunk for _dst, chunk in queues["origin"]) == [1, 2, 3]


def test_the_playbooks_passes_plan_queues_then_repair_what_is_missing():
    state = push_state("scp_tsunami", ["cat"], ["hv01", "hv02"], 4 * MIB, MIB)
    queues = pass_queues(state, {"hv01": "10.0.0.1"})
    assert {item["address"] for item in queues["cat"] if item["destination"] == "hv01"} == {"10.0.0.1"}
    state = record_pass(state, {"hv01": [0, 1, 2, 3], "hv02": [1]}, dead=["hv01"])
    repair = pass_queues(state)
    assert list(repair) == ["cat"] and sorted(i["chunk"] for i in repair["cat"]) == [0, 2, 3]
    state = record_pass(state, {"hv01": [0, 1, 2, 3], "hv02": [0, 1, 2, 3]})
    assert pass_queues(state) == {} and state["dead"] == ["hv01"]


def test_a_pass_with_no_sender_left_plans_nothing_and_the_first_refuses():
    state = push_state("scp_tsunami", ["cat"], ["hv01"], 2 * MIB, MIB)
    assert pass_queues(record_pass(state, {"hv01": [0]}, dead=["cat"])) == {}
    with pytest.raises(VmcloudError) as caught:
        pass_queues(push_state("scp_tsunami", [], ["hv01"], 2 * MIB, MIB))
    assert caught.value.rule == "push-no-source"


def test_chunk_size_zero_is_chosen_from_the_size_and_the_receivers():
    state = push_state("scp_tsunami", ["cat"], HOSTS, 256 * MIB, 0)
    assert state["chunk_size"] == 7 * MIB and state["chunks"] == 37
