# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``imgdist sync`` on the real pull path, on loopback.

An HTTP server on 127.0.0.1 publishes a signed index and the .torrent files; opentracker
(whitelist mode) and an origin rtorrent seed a compressed and an uncompressed image; the
hypervisor's rtorrent downloads them for ``imgdist sync`` (run through ``_imgdist.main``), which
verifies and promotes them into a temporary store. Every wait is bounded.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils._imgdist_config import (
    EXIT_IMAGES_FAILED,
    EXIT_NOT_APPROVED,
    EXIT_OK,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._store import ImageStore
from tests.unit.sync_world import World, imgdist, imgdist_json, sha256_of, write_imgdist_config

WAIT = 60  # seconds: the bound on every download and on the seeder's hash check
IMAGE_BYTES = 4 * 1024 * 1024


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        return


@pytest.fixture
def catalogue(tmp_path) -> Iterator[tuple]:
    """(server, origin directory): a loopback HTTP server for the index and the .torrent files."""
    origin = tmp_path / "world" / "origin"
    origin.mkdir(parents=True)
    handler = functools.partial(_QuietHandler, directory=str(origin))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, origin
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def world(catalogue, tracker, seeder, tmp_path) -> World:
    """A compressed and a raw image, published and seeded by the origin rtorrent."""
    server, _unused = catalogue
    world = World(tmp_path / "world", base_url=f"http://127.0.0.1:{server.server_address[1]}",
                  announce=tracker.announce)
    world.publish("cernvm", 1276695059, size=IMAGE_BYTES, compressed=True)
    world.publish("slc5", 1277993853, size=IMAGE_BYTES)
    world.write_index(1)
    origin = seeder.engine()
    for published in world.published.values():
        tracker.allow(published.info_hash)
        origin.add(published.torrent, str(published.path.parent))
        assert origin.wait_complete(published.info_hash, timeout=WAIT, poll_interval=0.2).state == "seeding"
    return world


def write_config(world: World, leecher, approved: list, timeout: int = WAIT) -> str:
    os.makedirs(world.host_path("staging"), exist_ok=True)  # the rtorrent role makes it
    return write_imgdist_config(world, index_url=world.index_url, approved_images=approved, engine="rtorrent",
                                socket=leecher.socket, timeout=timeout, poll_interval=0.2)


def test_sync_download_verify_promote_retire(world, leecher):
    cernvm, slc5 = world.published["cernvm-1276695059"], world.published["slc5-1277993853"]
    both = [{"name": "cernvm", "version": "latest"}, {"name": "slc5", "version": "latest"}]
    config = write_config(world, leecher, both)
    engine = leecher.engine()

    # Check mode: the plan, and nothing written, nothing handed to the engine.
    code, plan = imgdist_json("-c", config, "sync", "--check")
    assert code == EXIT_OK and plan["changed"] is True
    assert plan["fetched"] == plan["added"] == plan["promoted"] == [cernvm.uuid, slc5.uuid]
    assert engine.list() == [] and not os.path.exists(world.host_path("images"))
    assert not os.path.exists(world.host_path("index")) and not os.path.exists(world.host_path("torrents"))

    # Throttled and given 2 s, nothing completes: both fail with download-timeout, the rest is done.
    engine.call("throttle.global_down.max_rate.set_kb", "", 64)
    code, slow = imgdist_json("-c", write_config(world, leecher, both, timeout=2), "sync")
    assert code == EXIT_IMAGES_FAILED
    assert [(f["uuid"], f["step"], f["rule"]) for f in slow["failures"]] == [
        (cernvm.uuid, "download", "download-timeout"), (slc5.uuid, "download", "download-timeout")]
    assert slow["fetched"] == slow["added"] == [cernvm.uuid, slc5.uuid] and slow["promoted"] == []
    code, status = imgdist_json("-c", config, "status")
    assert code == EXIT_OK and status["problems"] == []
    rows = {row["uuid"]: row for row in status["images"]}
    assert {row["state"] for row in rows.values()} == {"downloading"}
    assert all(row["engine"]["progress"] < 1 for row in rows.values())
    code, text, _unused = imgdist("-c", config, "status")
    assert re.search(rf"^{slc5.uuid} +downloading +\[[#-]+\] +\d+\.\d% +[\d.]+ (B|KiB|MiB)/s +\d+ peer", text, re.M)

    # Unthrottled: the downloads finish, each image is verified and promoted.
    engine.call("throttle.global_down.max_rate.set_kb", "", 0)
    code, done = imgdist_json("-c", config, "sync")
    assert code == EXIT_OK, done["failures"]
    assert done["promoted"] == [cernvm.uuid, slc5.uuid] and done["fetched"] == done["added"] == []
    assert done["held"] == [cernvm.uuid, slc5.uuid] and done["failures"] == []
    store = ImageStore(world.host_path("images"))
    for published in (cernvm, slc5):
        stored = store.path_of(published.entry)
        assert sha256_of(stored) == published.content_sha256
        assert os.path.getsize(stored) == IMAGE_BYTES
        staged = os.path.join(world.host_path("staging"), published.info_hash, published.entry["file"])
        assert sha256_of(staged) == published.entry["sha256"]
    assert store.path_of(cernvm.entry).endswith(".img")  # unpacked

    # A second sync changes nothing.
    code, again = imgdist_json("-c", config, "sync")
    assert code == EXIT_OK and again["changed"] is False
    assert again["fetched"] == again["added"] == again["promoted"] == again["retired"] == again["removed"] == []

    code, status = imgdist_json("-c", config, "status")
    assert [(row["uuid"], row["state"], row["engine"]["state"]) for row in status["images"]] == [
        (cernvm.uuid, "ready", "seeding"), (slc5.uuid, "ready", "seeding")]
    assert imgdist("-c", config, "check", slc5.uuid)[0] == EXIT_OK
    code, result = imgdist_json("-c", config, "check", store.path_of(cernvm.entry))
    assert code == EXIT_OK and result["uuid"] == cernvm.uuid and result["ok"] is True

    # The site withdraws its approval of slc5: the plan, then the real thing, then nothing left.
    config = write_config(world, leecher, both[:1])
    code, plan = imgdist_json("-c", config, "sync", "--check")
    assert code == EXIT_OK and plan["retired"] == [slc5.uuid] and plan["removed"] == [slc5.info_hash]
    assert os.path.exists(store.path_of(slc5.entry)) and engine.status(slc5.info_hash) is not None
    code, retired = imgdist_json("-c", config, "sync")
    assert code == EXIT_OK
    for key in ("fetched", "added", "promoted", "retired", "removed", "held"):
        assert retired[key] == plan[key], key
    assert retired["held"] == [cernvm.uuid]
    assert engine.status(slc5.info_hash) is None and engine.status(cernvm.info_hash).state == "seeding"
    assert not os.path.exists(store.path_of(slc5.entry))
    assert imgdist("-c", config, "check", slc5.uuid)[0] != EXIT_OK  # its successor is in the store
    assert not os.path.exists(os.path.join(world.host_path("staging"), slc5.info_hash))
    assert not os.path.exists(os.path.join(world.host_path("torrents"), slc5.info_hash + ".torrent"))
    code, text, _unused = imgdist("-c", config, "check", slc5.uuid)
    assert code == EXIT_NOT_APPROVED and text.startswith(f"not-approved: {slc5.uuid} is endorsed but not approved")
    assert imgdist("-c", config, "check", cernvm.uuid)[0] == EXIT_OK
    code, last = imgdist_json("-c", config, "sync")
    assert code == EXIT_OK and last["changed"] is False


def test_a_failed_upgrade_and_a_bad_torrent_server_strand_nothing(world, leecher, seeder, tracker):
    """Version 2 of slc5 cannot arrive (its .torrent is served, nobody seeds it) and another image's
    .torrent URL answers 404: the host keeps slc5 version 1 byte for byte, and a new good image is
    still promoted in the same run. Once version 2 is seeded, version 1 goes."""
    cernvm, slc5 = world.published["cernvm-1276695059"], world.published["slc5-1277993853"]
    latest = [{"name": name, "version": "latest"} for name in ("cernvm", "slc5", "fresh", "broken")]
    config = write_config(world, leecher, latest)
    code, first = imgdist_json("-c", config, "sync")
    assert code == EXIT_OK and first["held"] == [cernvm.uuid, slc5.uuid], first["failures"]
    store = ImageStore(world.host_path("images"))
    held_v1 = Path(store.path_of(slc5.entry)).read_bytes()

    slc5_v2 = world.publish("slc5", 1277993854, size=IMAGE_BYTES)  # .torrent on the catalogue, no seeder
    tracker.allow(slc5_v2.info_hash)
    fresh = world.publish("fresh", 1, size=IMAGE_BYTES // 4)
    broken = world.publish("broken", 1, size=IMAGE_BYTES // 4)
    broken.entry["torrent"]["url"] = f"{world.base_url}/torrents/nowhere.torrent"  # HTTP 404
    origin = seeder.engine()
    for published in (fresh, broken):
        tracker.allow(published.info_hash)
        origin.add(published.torrent, str(published.path.parent))
        assert origin.wait_complete(published.info_hash, timeout=WAIT, poll_interval=0.2).state == "seeding"
    world.write_index(2)

    code, failed = imgdist_json("-c", write_config(world, leecher, latest, timeout=5), "sync")
    assert code == EXIT_IMAGES_FAILED
    assert sorted((f["uuid"], f["step"], f["rule"]) for f in failed["failures"]) == [
        (broken.uuid, "torrent", "fetch-failed"), (slc5_v2.uuid, "download", "download-timeout")]
    assert failed["promoted"] == [fresh.uuid] and failed["retired"] == []
    assert failed["held"] == sorted([cernvm.uuid, fresh.uuid, slc5.uuid])
    assert [(p["uuid"], p["waiting_for"]) for p in failed["superseded_pending"]] == [(slc5.uuid, [slc5_v2.uuid])]
    assert Path(store.path_of(slc5.entry)).read_bytes() == held_v1  # byte for byte
    code, out, err = imgdist("-c", config, "check", slc5.uuid)
    # The only copy of slc5 the host has: new guests may still start from it, loudly, until v2 is there.
    assert code == EXIT_OK and out.startswith(f"superseded-pending: {slc5.uuid} is superseded by {slc5_v2.uuid}")
    assert err.startswith("imgdist: warning: superseded-pending: ")

    # Version 2 gets a seeder: it arrives, and only then version 1 goes.
    origin.add(slc5_v2.torrent, str(slc5_v2.path.parent))
    assert origin.wait_complete(slc5_v2.info_hash, timeout=WAIT, poll_interval=0.2).state == "seeding"
    latest = latest[:3]
    code, upgraded = imgdist_json("-c", write_config(world, leecher, latest), "sync")
    assert code == EXIT_OK, upgraded["failures"]
    assert upgraded["promoted"] == [slc5_v2.uuid] and upgraded["retired"] == [slc5.uuid]
    assert upgraded["superseded_pending"] == [] and sha256_of(store.path_of(slc5_v2.entry)) == slc5_v2.content_sha256
    assert not os.path.exists(store.path_of(slc5.entry))
