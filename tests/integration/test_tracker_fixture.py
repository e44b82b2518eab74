"""The opentracker fixture's own queries: the tests that count seeds through it rely on them.

An info-hash is 20 raw bytes, sent percent-encoded. ``urlencode``'s default form writes the byte
0x20 as ``+``, which opentracker reads as itself (0x2B): the whitelist probe and the scrape then
ask about another torrent. About 1 info-hash in 13 holds a 0x20 byte; for those, a seed the tracker
knew looked unknown (``test_announce_tells_a_restarted_tracker_about_the_seed`` timed out).
"""

from __future__ import annotations

import urllib.parse
import urllib.request

from .conftest import Tracker

# Bytes urlencode's default form rewrites (0x20) or that need escaping (0x2B '+', 0x25 '%', 0x26 '&').
AWKWARD_HASH = "20" * 5 + "2b" * 5 + "25" * 5 + "26" * 5


def announce_as_seed(tracker: Tracker, info_hash: str, port: int) -> bytes:
    """Announce a seed (left=0) the way BitTorrent clients encode it: every byte as %XX."""
    raw = bytes.fromhex(info_hash)
    query = "&".join(
        [
            "info_hash=" + "".join(f"%{byte:02X}" for byte in raw),
            "peer_id=-VMCLOUD-FIXTURE-000",
            f"port={port}",
            "uploaded=0",
            "downloaded=0",
            "left=0",
            "event=started",
            "compact=1",
        ]
    )
    with urllib.request.urlopen(f"{tracker.announce}?{query}", timeout=5) as answer:  # noqa: S310 - loopback
        return answer.read()


def test_seeders_counts_a_seed_whose_info_hash_has_bytes_urlencode_rewrites(tracker):
    tracker.allow(AWKWARD_HASH)  # waits until the whitelist probe is accepted for this very hash
    assert tracker.seeders(AWKWARD_HASH) == 0
    answer = announce_as_seed(tracker, AWKWARD_HASH, port=6881)
    assert b"failure reason" not in answer
    assert tracker.seeders(AWKWARD_HASH) == 1
    assert tracker.scrape(AWKWARD_HASH).get(b"incomplete", 0) == 0


def test_allow_refuses_to_report_a_hash_the_tracker_does_not_accept(tracker):
    # The probe asks about exactly the hash given: one not on the whitelist is not accepted.
    assert tracker.accepts(AWKWARD_HASH) is False
    assert urllib.parse.quote(bytes.fromhex(AWKWARD_HASH), safe="").count("%20") == 5
