# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Attacks on the .torrent files, against the real ``imgdist sync`` and image_sync with a real rtorrent.

Each case starts from a host that converged for real (opentracker, a seeding rtorrent and the host's
rtorrent on loopback: image A downloaded, verified, promoted, seeding). The index also lists image B,
not approved yet. The site then approves B while the catalogue serves a hostile .torrent for it: B
fails at the torrent step naming the rule, A is untouched, and the host (state_dir, store, staging,
.torrent directory) and the engine are byte for byte as they were.
"""

from __future__ import annotations

import hashlib

import pytest

from tests.attack.conftest import EXIT_IMAGES_FAILED, Forever, Stall

HANG = 45


@pytest.fixture
def converged(fleet):
    """A converged (held, seeding), B published and seeded but not approved, B's older version too."""
    fleet.a = fleet.publish("alma", 9)
    fleet.b_old = fleet.publish("slc", 5, seed=False)
    fleet.b = fleet.publish("slc", 6)
    fleet.index(1, fleet.a, fleet.b_old, fleet.b)
    done = fleet.converge([{"uuid": fleet.a.uuid}])
    assert done["promoted"] == [fleet.a.uuid], done
    return fleet


def torrent_refused(fleet, image, rule: str, cli: bool = False, **options) -> None:
    """Approve ``image``: imgdist sync and image_sync both fail it at the torrent step with ``rule``."""
    approved = [{"uuid": fleet.a.uuid}, {"uuid": image.uuid}]
    before, engine_before = fleet.host.snapshot(), fleet.engine_view()
    run = fleet.sync(approved, **options)
    assert run.code == EXIT_IMAGES_FAILED, run
    report = run.result
    assert [(f["uuid"], f["step"], f["rule"]) for f in report["failures"]] == [(image.uuid, "torrent", rule)], report
    assert report["promoted"] == report["retired"] == report["fetched"] == [] and report["held"] == [fleet.a.uuid]
    assert fleet.host.snapshot() == before and fleet.engine_view() == engine_before

    args = fleet.host.sync_options(**options)
    result = fleet.host.ansible("image_sync", run_timeout=HANG, **args) if cli else \
        fleet.host.module("image_sync", **args)
    assert result.get("failed") is True and result["rule"] == "images-failed", result
    assert [(f["uuid"], f["rule"]) for f in result["failures"]] == [(image.uuid, rule)], result
    assert fleet.host.snapshot() == before and fleet.engine_view() == engine_before


def test_torrent_of_another_version_is_refused(converged):
    # Mix and match: the older version's (genuine, endorsed) .torrent at the newer one's address.
    converged.site.serve(f"torrents/{converged.b.torrent_name}", converged.b_old.torrent)
    torrent_refused(converged, converged.b, "torrent-sha256-mismatch", cli=True)


def test_torrent_whose_sha256_differs_from_the_index_is_refused(converged):
    tampered = converged.b.torrent.replace(b"announce", b"announcf", 1)
    assert hashlib.sha256(tampered).hexdigest() != converged.b.entry["torrent"]["sha256"]
    converged.site.serve(f"torrents/{converged.b.torrent_name}", tampered)
    torrent_refused(converged, converged.b, "torrent-sha256-mismatch")


def test_torrent_whose_info_hash_differs_from_the_index_is_refused(fleet):
    a = fleet.publish("alma", 9)
    b = fleet.publish("slc", 6)
    # The signed entry names the .torrent's SHA-256 but another info-hash (of the older version).
    b.entry["torrent"]["info_hash"] = hashlib.sha1(b"another torrent's info", usedforsecurity=False).hexdigest()
    fleet.a = a
    fleet.index(1, a, b)
    assert fleet.converge([{"uuid": a.uuid}])["held"] == [a.uuid]
    torrent_refused(fleet, b, "torrent-info-hash-mismatch")


def test_torrent_server_that_sends_forever_is_cut_at_the_size_cap(converged):
    converged.site.serve(f"torrents/{converged.b.torrent_name}", Forever(chunk=b"d" * 65536))
    torrent_refused(converged, converged.b, "size-cap", torrent_max_size=1 << 20)


def test_torrent_server_that_stalls_is_cut_off_by_the_fetch_deadline(converged):
    converged.site.serve(f"torrents/{converged.b.torrent_name}", Stall(converged.b.torrent))
    torrent_refused(converged, converged.b, "fetch-deadline", cli=True, timeout=3)
