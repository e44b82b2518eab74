# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""scp_tsunami's scheduler: which host sends which chunk to whom, pipelined (no rounds).

Private to the collection; not a public API. Pure logic, standard library only (it runs on the
controller in a filter, on the hypervisors in image_push, and in the benchmark's driver).

- ``Scheduler``: the chunks every host holds, a per-host upload and download slot count, the transfers
  in flight. ``assign()`` starts every transfer that can start now: a receiver with a free download slot
  takes the rarest chunk it lacks that a sender with a free upload slot holds (a chunk a host received
  counts only once the receiver acknowledged it, i.e. checked its SHA-256). ``finished(transfer, ok,
  culprit)`` frees both slots; a failed transfer's chunk goes back to what the receiver lacks and is
  assigned again, from any holder; a sender that failed (``culprit="sender"``) sends nothing more, a
  receiver that failed ``max_failures`` times receives nothing more, and keeps what it holds. There is no
  round: a transfer starts as soon as its sender and receiver are both free.
- ``plan_queues``: the scheduler run to its end with every transfer taking one time unit, as each
  sender's ordered queue of (destination, chunk). Each sender works through its own queue on its own
  (``serve``): it sends the first item whose chunk it holds, so it never waits for a slower pair
  elsewhere; what a failure leaves missing is planned again from what the hosts then hold (a repair pass).
- ``serve(queue, holds, send, ...)``: that per-sender loop, with the I/O injected (``_push.serve_queue``).
- ``choose_chunk_size(size, n_hosts)``: see its docstring.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from ._errors import VmcloudError

MIB = 1024 * 1024
MIN_AUTO_CHUNK = 4 * MIB
MAX_AUTO_CHUNK = 64 * MIB


@dataclasses.dataclass(frozen=True)
class Transfer:
    sender: str
    receiver: str
    chunk: int


def choose_chunk_size(size: int, n_hosts: int) -> int:
    """The chunk size for ``size`` bytes to ``n_hosts`` receivers.

    A pipelined tsunami ends about ``(chunks + log2(N + 1))`` chunk times after it starts: the last chunk
    leaves the origin after one copy time and then needs about log2(N + 1) relays to reach everybody. So the
    fill and drain cost ``log2(N + 1) / chunks`` of a copy time; with ``chunks >= 8 * log2(N + 1)`` that is at
    most 1/8. Smaller chunks cost a header, an answer and an fsync each (cheap over one kept session per
    pair, but not free), so no more chunks than that; at least 4 MiB, at most 64 MiB, in whole MiB.

    Bigger chunks, now that the receiver writes a chunk once (straight into the part file; it used to write
    it twice and read it back, which cost per byte, not per chunk)? What a chunk costs beyond its bytes is a
    fixed stop ``s``: the sender waits for each chunk's answer before the next (the receiver's fsync and
    marker, one round trip). A pass takes about ``(F / C + L) * (C / U + s)`` for F bytes in chunks of C at
    upload U, L = log2(N + 1): ``F / U`` plus ``F * s / C`` (the stops, fewer with bigger chunks) plus
    ``L * C / U`` (the fill and drain, longer with bigger chunks), least at ``C = sqrt(F * s * U / L)``. For
    F = 256 MiB, U = 100 Mbit/s, N = 16 that is about 4 MiB at s = 20 ms and 6 MiB at s = 50 ms: the 7 MiB
    chosen here is already on the big side, and writing once makes ``s`` smaller, not bigger, so the count
    rule stays. The single copy did remove what capped the size (a receiver's extra disk was one chunk; it
    is none now); what still caps it at 64 MiB is that a sender holds a whole chunk in memory to hash it
    before its header, and that a chunk cut short is sent again whole. Above the cap a big image gets more
    chunks than the rule asks for (10 GB at N = 250: 160 instead of 64), which costs only stops (a few
    seconds of a pass of minutes). Measured choices belong to the benchmark (``--chunk-mib``)."""
    if size <= 0:
        return MIN_AUTO_CHUNK
    wanted = 8 * math.ceil(math.log2(max(1, n_hosts) + 1))
    chunk = -(-size // wanted)
    chunk = -(-chunk // MIB) * MIB
    return max(MIN_AUTO_CHUNK, min(MAX_AUTO_CHUNK, chunk))


class Scheduler:
    """See the module docstring. Host order is the order of ``holders`` then ``lackers``."""

    def __init__(self, n_chunks: int, holders: Sequence[str], lackers: Sequence[str],
                 held: Optional[Dict[str, Iterable[int]]] = None, upload_slots: int = 1, download_slots: int = 1,
                 max_failures: int = 2, dead_senders: Iterable[str] = ()) -> None:
        if n_chunks < 1 or upload_slots < 1 or download_slots < 1:
            raise VmcloudError("option-invalid", "a tsunami needs at least one chunk, one upload and one download slot")
        self.everything = frozenset(range(n_chunks))
        self.order: List[str] = list(dict.fromkeys(holders))
        self.has: Dict[str, Set[int]] = {host: set(self.everything) for host in self.order}
        self.lackers: List[str] = [host for host in dict.fromkeys(lackers) if host not in self.has]
        for host in self.lackers:
            self.has[host] = set((held or {}).get(host, ())) & self.everything
            self.order.append(host)
        self.upload_slots, self.download_slots, self.max_failures = upload_slots, download_slots, max_failures
        self.in_flight: List[Transfer] = []
        self.dead_senders: Set[str] = set(dead_senders)
        self.failures: Dict[str, int] = {}
        self.given_up: Set[str] = set()  # receivers that failed max_failures times
        if self.wanting() and not self._live_senders():
            raise VmcloudError("push-no-source", "no host holds the verified image; obtain it on one host first")

    # -- state
    def _live_senders(self) -> List[str]:
        return [host for host in self.order if host not in self.dead_senders and self.has[host]]

    def wanting(self) -> List[str]:
        """Receivers still to be served (not given up) that lack a chunk."""
        return [host for host in self.lackers if host not in self.given_up and self.has[host] != self.everything]

    @property
    def done(self) -> bool:
        return not self.in_flight and not self.wanting()

    @property
    def stuck(self) -> bool:
        """Nothing in flight and nothing can start although a receiver still lacks a chunk."""
        return not self.in_flight and bool(self.wanting()) and not self._candidates(dry=True)

    def missing(self) -> Dict[str, List[int]]:
        return {host: sorted(self.everything - self.has[host]) for host in self.lackers
                if self.has[host] != self.everything}

    # -- scheduling
    def _busy(self, host: str, side: str) -> int:
        return sum(getattr(t, side) == host for t in self.in_flight)

    def _candidates(self, dry: bool = False) -> List[Transfer]:
        started: List[Transfer] = []
        copies = {chunk: sum(chunk in chunks for chunks in self.has.values()) for chunk in self.everything}
        for t in self.in_flight:
            copies[t.chunk] += 1
        receivers = sorted(self.wanting(), key=lambda host: (len(self.has[host]), self.order.index(host)))
        # First what the relays (hosts that hold part of the image) can send, then the full holders (the
        # origin): their upload is the only source of the chunks nobody else has yet, so it goes to the
        # receivers that no relay could serve.
        for relays_only in (True, False):
            progress = True
            while progress:  # with several download slots a receiver takes one more once every other had one
                progress = False
                for receiver in receivers:
                    if self._busy(receiver, "receiver") >= self.download_slots:
                        continue
                    coming = {t.chunk for t in self.in_flight if t.receiver == receiver}
                    missing = self.everything - self.has[receiver] - coming
                    for chunk in sorted(missing, key=lambda c: (copies[c], c)):
                        sender = self._sender_for(chunk, receiver, relays_only)
                        if sender is None:
                            continue
                        transfer = Transfer(sender, receiver, chunk)
                        if dry:
                            return [transfer]
                        self.in_flight.append(transfer)
                        copies[chunk] += 1
                        started.append(transfer)
                        progress = True
                        break
        return started

    def _sender_for(self, chunk: int, receiver: str, relays_only: bool) -> Optional[str]:
        free = [host for host in self.order if host != receiver and host not in self.dead_senders
                and chunk in self.has[host] and self._busy(host, "sender") < self.upload_slots
                and (self.has[host] != self.everything or not relays_only)]
        if not free:
            return None
        return min(free, key=lambda host: (self._busy(host, "sender"), self.order.index(host)))

    def assign(self) -> List[Transfer]:
        """Start every transfer that can start now (see the module docstring)."""
        return self._candidates()

    def finished(self, transfer: Transfer, ok: bool, culprit: str = "receiver") -> None:
        """A transfer ended. ``culprit`` (``receiver`` or ``sender``) says whose fault a failure was."""
        if transfer not in self.in_flight:
            raise VmcloudError("option-invalid", f"{transfer} is not in flight")
        self.in_flight.remove(transfer)
        if ok:
            self.has[transfer.receiver].add(transfer.chunk)
            return
        if culprit == "sender":
            self.dead_senders.add(transfer.sender)
            return
        self.failures[transfer.receiver] = self.failures.get(transfer.receiver, 0) + 1
        if self.failures[transfer.receiver] >= self.max_failures:
            self.given_up.add(transfer.receiver)


def plan_queues(n_chunks: int, holders: Sequence[str], lackers: Sequence[str],
                held: Optional[Dict[str, Iterable[int]]] = None, upload_slots: int = 1, download_slots: int = 1,
                dead_senders: Iterable[str] = ()) -> Dict[str, List[Tuple[str, int]]]:
    """Each sender's queue of (destination, chunk): the scheduler run with every transfer one time unit.
    ``held``: what the receivers hold already (a repair pass); ``dead_senders``: hosts that send nothing."""
    scheduler = Scheduler(n_chunks, holders, lackers, held, upload_slots, download_slots,
                          dead_senders=dead_senders)
    queues: Dict[str, List[Tuple[str, int]]] = {}
    while not scheduler.done:
        started = scheduler.assign()
        if not started:
            raise VmcloudError("push-no-source", f"no host can send what {sorted(scheduler.missing())} lack")
        for transfer in started:
            queues.setdefault(transfer.sender, []).append((transfer.receiver, transfer.chunk))
        for transfer in started:
            scheduler.finished(transfer, True)
    return queues


def serve(queue: Sequence[Tuple[str, int]], holds: Callable[[int], bool], send: Callable[[str, int], None],
          stall_seconds: float = 120.0, poll_seconds: float = 0.05, clock: Callable[[], float] = time.monotonic,
          sleep: Callable[[float], None] = time.sleep) -> Dict[str, object]:
    """One sender's queue: send the first item whose chunk it holds (``holds``), as soon as it does.

    ``send(destination, chunk)`` raises ``VmcloudError`` when the transfer failed; the destination then
    gets nothing more from this sender in this pass (what it lacks is planned again). An item whose chunk
    has not arrived ``stall_seconds`` after the last progress (a chunk arrived here, or one was sent) is
    left (``waited``): its upstream failed. Returns what was ``sent``, ``failed`` (with the rule) and left."""
    pending = list(queue)
    sent: List[Tuple[str, int]] = []
    failed: List[Dict[str, object]] = []
    failed_destinations: Set[str] = set()
    held_count = -1
    last_progress = clock()
    while pending:
        pending = [item for item in pending if item[0] not in failed_destinations]
        ready = next((item for item in pending if holds(item[1])), None)
        if ready is None:
            if not pending:
                break
            now_held = sum(1 for chunk in {item[1] for item in pending} if holds(chunk))
            if now_held != held_count:
                held_count, last_progress = now_held, clock()
            if clock() - last_progress > stall_seconds:
                break
            sleep(poll_seconds)
            continue
        pending.remove(ready)
        try:
            send(*ready)
        except VmcloudError as exc:
            failed.append({"destination": ready[0], "chunk": ready[1], "rule": exc.rule, "msg": str(exc)})
            failed_destinations.add(ready[0])
        else:
            sent.append(ready)
        last_progress = clock()
    left = [item for item in queue if item not in sent and not any(
        f["destination"] == item[0] and f["chunk"] == item[1] for f in failed)]
    return {"sent": [list(item) for item in sent], "failed": failed, "left": [list(item) for item in left]}
