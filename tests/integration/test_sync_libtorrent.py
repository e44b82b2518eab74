# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``imgdist sync`` end to end with ``engine: libtorrent``, on loopback.

A loopback HTTP server (with byte ranges, as the catalogue's nginx) publishes a signed index, the
.torrent files and the images themselves; the hypervisor's engine is the vmcloud seeder. One image
comes from an origin seeder over BitTorrent, the other only from its web seed (the index entry's
``web_seeds``, handed to the engine by the sync): no peer has it.
"""

from __future__ import annotations

import functools
import os
import threading

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils._imgdist_config import EXIT_OK
from ansible_collections.vmcloud.fleet.plugins.module_utils._store import ImageStore
from tests.integration.conftest import LOOPBACK, wait_until
from tests.integration.test_libtorrent_engine import RangeHandler
from tests.unit.sync_world import World, imgdist_json, sha256_of, write_imgdist_config

WAIT = 60
IMAGE_BYTES = 4 * 1024 * 1024


@pytest.fixture
def catalogue(tmp_path):
    import http.server

    origin = tmp_path / "world" / "origin"
    origin.mkdir(parents=True)
    RangeHandler.requests_seen = []
    handler = functools.partial(RangeHandler, directory=str(origin))
    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_imgdist_sync_with_libtorrent(catalogue, tracker, libtorrent_factory, tmp_path):
    base_url = f"http://{LOOPBACK}:{catalogue.server_address[1]}"
    world = World(tmp_path / "world", base_url=base_url, announce=tracker.announce)
    swarmed = world.publish("cernvm", 1276695059, size=IMAGE_BYTES, compressed=True)
    web_only = world.publish("slc5", 1277993853, size=IMAGE_BYTES,
                             web_seeds=[f"{base_url}/slc5_1277993853.img"])
    world.write_index(1)
    origin = libtorrent_factory("origin")
    tracker.allow(swarmed.info_hash)
    tracker.allow(web_only.info_hash)
    origin.engine().add(swarmed.torrent, str(swarmed.path.parent))
    assert origin.engine().wait_complete(swarmed.info_hash, timeout=WAIT, poll_interval=0.2).state == "seeding"

    host = libtorrent_factory("hv1")
    config = write_imgdist_config(
        world, index_url=world.index_url, engine="libtorrent", socket=host.socket, timeout=WAIT, poll_interval=0.2,
        approved_images=[{"name": "cernvm", "version": "latest"}, {"name": "slc5", "version": "latest"}])
    code, report = imgdist_json("-c", str(config), "sync")
    assert code == EXIT_OK, (report, origin.log(), host.log())
    assert sorted(report["promoted"]) == sorted([swarmed.uuid, web_only.uuid]) and report["failures"] == []
    store = ImageStore(world.host_path("images"))
    for published in (swarmed, web_only):
        assert sha256_of(store.path_of(published.entry)) == published.content_sha256
    # The web-only image came over HTTP ranges from the catalogue, the other from the origin peer.
    assert any(path == "/slc5_1277993853.img" and ranges for path, ranges in RangeHandler.requests_seen)
    # (The origin is the image's only BitTorrent source; its counter is read as a sign it served, not as a total.)
    wait_until(lambda: origin.engine().status(swarmed.info_hash).uploaded_bytes > 0, 20, "the origin's upload counter")
    # Both keep seeding on the host, and a second run changes nothing.
    states = {status.info_hash: status.state for status in host.engine().list()}
    assert states == {swarmed.info_hash: "seeding", web_only.info_hash: "seeding"}
    code, again = imgdist_json("-c", str(config), "sync")
    assert code == EXIT_OK and again["changed"] is False
    assert os.path.isdir(world.host_path("staging"))
