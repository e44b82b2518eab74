# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The libtorrent engine against the real vmcloud seeder service on loopback.

Seeders and leechers are each a seeder process (``_seeder``, Debian's python3-libtorrent) on its
own 127.0.0.x address; the tracker is opentracker and the rtorrent peers are the conftest's.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import re
import shutil
import socket
import struct
import threading
import time

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils._engine import DownloadTimeout
from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import EngineError, VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._framing import MAX_REQUEST_BYTES, read_frame
from ansible_collections.vmcloud.fleet.plugins.module_utils._torrent import create_torrent

from .conftest import LOOPBACK, free_port, wait_until

IMAGE_SIZE = 8 * 1024 * 1024
PIECE = 256 * 1024
WAIT = 60.0


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def diagnosis(info_hash: str, *daemons) -> str:
    lines = []
    for daemon in daemons:
        try:
            engine = daemon.engine()
            lines += [f"{daemon.name} {daemon.address}", f"  status: {engine.status(info_hash)}"]
            lines += [f"  peers: {engine.peers(info_hash)}"]
        except Exception as exc:  # noqa: BLE001 - a diagnosis, not a check
            lines.append(f"{daemon.name}: {exc}")
        lines.append(daemon.log())
    return "\n".join(lines)


def write_image(directory: str, name: str = "lab-image.raw", size: int = IMAGE_SIZE) -> str:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    with open(path, "wb") as handle:
        handle.write(os.urandom(size))
    return path


def wait_done(engine, info_hash: str, *daemons):
    try:
        return engine.wait_complete(info_hash, timeout=WAIT, poll_interval=0.2)
    except DownloadTimeout as exc:
        pytest.fail(f"no complete download: {exc}\n{diagnosis(info_hash, *daemons)}")


@pytest.fixture
def origin(libtorrent_factory):
    return libtorrent_factory("origin")


@pytest.fixture
def image(origin):
    return write_image(os.path.join(origin.data, "images"))


@pytest.fixture
def torrent(image, tracker):
    created = create_torrent(image, announce=[tracker.announce], piece_length=PIECE, creation_date=1_700_000_000)
    tracker.allow(created.info.info_hash)
    return created


@pytest.fixture
def seeding(origin, image, torrent):
    engine = origin.engine()
    info_hash = engine.add(torrent.data, os.path.dirname(image))
    status = wait_done(engine, info_hash, origin)
    assert status.state == "seeding"
    return engine


def test_seed_then_leech(origin, seeding, torrent, image, libtorrent_factory):
    info_hash = torrent.info.info_hash
    seeded = seeding.status(info_hash)
    assert seeded.complete and seeded.completed_bytes == IMAGE_SIZE == seeded.size_bytes
    assert seeded.name == "lab-image.raw" and seeded.base_path == image
    assert seeded.uploaded_bytes == 0

    leecher = libtorrent_factory("leecher")
    staging = os.path.join(leecher.data, "staging", info_hash)
    engine = leecher.engine()
    assert engine.add(torrent.data, staging) == info_hash
    done = wait_done(engine, info_hash, origin, leecher)
    assert done.complete and done.state == "seeding"
    assert done.completed_bytes == done.size_bytes == IMAGE_SIZE
    assert done.directory == staging and done.base_path == os.path.join(staging, "lab-image.raw")
    assert sha256_of(done.base_path) == torrent.content_sha256 == sha256_of(image)
    wait_until(lambda: seeding.status(info_hash).uploaded_bytes >= IMAGE_SIZE, 20, "the origin's upload counter")
    assert seeding.status(info_hash).ratio >= 0.99
    assert [status.info_hash for status in engine.list()] == [info_hash]


def test_session_settings_apply_and_a_tuned_origin_serves(libtorrent_factory, tracker, short_tmp):
    tuned = {"choking_algorithm": 2, "enable_outgoing_utp": False, "unchoke_slots_limit": 16}
    origin = libtorrent_factory("tuned", session_settings=tuned)
    assert origin.engine().version()["session_settings"] == tuned
    image = write_image(os.path.join(origin.data, "images"))
    created = create_torrent(image, announce=[tracker.announce], piece_length=PIECE)
    tracker.allow(created.info.info_hash)
    info_hash = origin.engine().add(created.data, os.path.dirname(image))
    wait_done(origin.engine(), info_hash, origin)
    leechers = [libtorrent_factory(f"leecher{i}") for i in (1, 2)]
    for leecher in leechers:
        leecher.engine().add(created.data, os.path.join(leecher.data, "staging"))
    for leecher in leechers:
        done = wait_done(leecher.engine(), info_hash, origin, *leechers)
        assert sha256_of(done.base_path) == created.content_sha256


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"no_such_setting": 1}, "session_settings.no_such_setting is not a libtorrent"),
        ({"choking_algorithm": "rate_based_choker"}, "session_settings.choking_algorithm must be an integer"),
    ],
)
def test_a_session_setting_libtorrent_does_not_know_stops_the_seeder(libtorrent_factory, settings, fragment):
    with pytest.raises(RuntimeError) as excinfo:
        libtorrent_factory("untuned", session_settings=settings)
    assert "exited with 2" in str(excinfo.value)
    assert f"config-invalid: {fragment}" in str(excinfo.value)


def test_remove_keeps_data_readd_is_idempotent_and_stop_start(origin, seeding, torrent, image):
    info_hash = torrent.info.info_hash
    directory = os.path.dirname(image)
    assert seeding.add(torrent.data, directory) == info_hash  # already loaded: nothing changes
    assert [status.info_hash for status in seeding.list()] == [info_hash]
    with pytest.raises(EngineError) as excinfo:
        seeding.add(torrent.data, os.path.join(origin.data, "elsewhere"))
    assert excinfo.value.rule == "torrent-directory-conflict"

    assert seeding.stop(info_hash) is True
    assert seeding.status(info_hash).state == "stopped"
    assert seeding.ensure_seeding(info_hash) is True
    wait_until(lambda: seeding.status(info_hash).state == "seeding", WAIT, "seeding again")
    assert seeding.ensure_seeding(info_hash) is False

    assert seeding.remove(info_hash) is True
    assert seeding.status(info_hash) is None and seeding.list() == []
    assert seeding.remove(info_hash) is False
    assert sha256_of(image) == torrent.content_sha256  # data untouched
    assert not os.path.exists(os.path.join(origin.state_dir, info_hash + ".resume"))

    assert seeding.add(torrent.data, directory) == info_hash
    assert wait_done(seeding, info_hash, origin).state == "seeding"  # hash check found it complete
    assert seeding.remove(info_hash, delete_data=True) is True
    assert not os.path.exists(image)


def test_announce_tells_a_restarted_tracker_about_the_seed(origin, seeding, torrent, tracker):
    """opentracker keeps peers in memory only: after a restart it knows no seed until one announces."""
    info_hash = torrent.info.info_hash
    # Before the restart the tracker knows the seed from its start-up announce alone. (This once needed
    # re-announcing "in 1 run of 8": the fixture's scrape mis-encoded info-hashes holding a 0x20 byte,
    # see test_tracker_fixture.py.)
    try:
        wait_until(lambda: tracker.seeders(info_hash) == 1, WAIT, "the seed known to the tracker", interval=0.5)
    except TimeoutError as exc:
        scrape = tracker.scrape(info_hash)
        pytest.fail(f"{exc}\nscrape: {scrape}\n{diagnosis(info_hash, origin)}\n--- tracker\n{tracker.log()}")
    tracker.stop()
    tracker.start()
    tracker.allow(info_hash)
    assert tracker.seeders(info_hash) == 0
    assert seeding.announce(info_hash) is True
    wait_until(lambda: tracker.seeders(info_hash) == 1, 10, "the seed announced again")


def test_errors_are_rules(origin, tracker, tmp_path):
    engine = origin.engine()
    with pytest.raises(VmcloudError) as excinfo:
        engine.add(b"garbage", origin.data)
    assert excinfo.value.rule == "torrent-malformed"
    assert engine.status("0" * 40) is None
    for call in (engine.ensure_seeding, engine.recheck, engine.announce):
        with pytest.raises(EngineError) as excinfo:
            call("0" * 40)
        assert excinfo.value.rule == "torrent-not-loaded"
    with pytest.raises(EngineError) as excinfo:
        engine.call("format_disk")
    assert excinfo.value.rule == "engine-method-unknown"
    with pytest.raises(EngineError) as excinfo:
        engine.call("status", info_hash="../../etc")
    assert excinfo.value.rule == "engine-request-invalid"
    orphan = tmp_path / "orphan.raw"
    orphan.write_bytes(os.urandom(64 * 1024))
    created = create_torrent(str(orphan), announce=[tracker.announce], creation_date=0)
    with pytest.raises(EngineError) as excinfo:
        engine.add(created.data, origin.data, web_seeds=["file:///etc/passwd"])
    assert excinfo.value.rule == "engine-request-invalid"
    assert engine.list() == []
    # Nobody seeds this one: the wait ends with download-timeout, the torrent stays and downloads.
    info_hash = engine.add(created.data, os.path.join(origin.data, "staging"))
    with pytest.raises(DownloadTimeout) as excinfo:
        engine.wait_complete(info_hash, timeout=1.5, poll_interval=0.2)
    assert excinfo.value.status.completed_bytes == 0 and excinfo.value.status.size_bytes == 64 * 1024
    assert engine.status(info_hash).state == "downloading"


def raw_exchange(path: str, data: bytes) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(data)
        return read_frame(sock, 1 << 20, time.monotonic() + 10)


def test_seeder_refuses_bad_frames_and_keeps_serving(origin):
    oversized = raw_exchange(origin.socket, struct.pack(">I", MAX_REQUEST_BYTES + 1))
    assert oversized["error"]["rule"] == "engine-protocol" and "refused unread" in oversized["error"]["message"]
    garbage = raw_exchange(origin.socket, struct.pack(">I", 5) + b"hello")
    assert garbage["error"]["rule"] == "engine-protocol"
    not_object = raw_exchange(origin.socket, struct.pack(">I", 2) + b"[]")
    assert not_object["error"]["rule"] == "engine-protocol"
    assert origin.engine().list() == []  # still serving


def test_unreachable_socket_is_a_rule(short_tmp):
    from ansible_collections.vmcloud.fleet.plugins.module_utils._engine import engine_for

    engine = engine_for("libtorrent", socket=os.path.join(short_tmp, "absent.socket"), timeout=2)
    with pytest.raises(EngineError) as excinfo:
        engine.list()
    assert excinfo.value.rule == "engine-unreachable"


# --------------------------------------------------------------------------- with rtorrent


@pytest.mark.parametrize("direction", ["libtorrent seeds, rtorrent downloads", "rtorrent seeds, libtorrent downloads"])
def test_swarms_with_rtorrent(direction, libtorrent_factory, rtorrent_factory, tracker, short_tmp):
    lt_host = libtorrent_factory("lthost")
    rt_host = rtorrent_factory("rthost")
    lt_seeds = direction.startswith("libtorrent")
    seed_dir = os.path.join((lt_host if lt_seeds else rt_host).data, "images")
    image = write_image(seed_dir)
    created = create_torrent(image, announce=[tracker.announce], piece_length=PIECE, creation_date=1_700_000_000)
    info_hash = created.info.info_hash
    tracker.allow(info_hash)
    seeder, leecher = (lt_host, rt_host) if lt_seeds else (rt_host, lt_host)
    seed_engine, leech_engine = seeder.engine(), leecher.engine()
    seed_engine.add(created.data, seed_dir)
    wait_done(seed_engine, info_hash, lt_host)
    staging = os.path.join(leecher.data, "staging", info_hash)
    os.makedirs(os.path.dirname(staging), exist_ok=True)  # rtorrent creates one level only
    leech_engine.add(created.data, staging)
    try:
        done = leech_engine.wait_complete(info_hash, timeout=WAIT, poll_interval=0.2)
    except DownloadTimeout as exc:
        pytest.fail(f"{direction}: {exc}\n{diagnosis(info_hash, lt_host)}\n{rt_host.log()}")
    assert done.complete and done.completed_bytes == IMAGE_SIZE
    assert sha256_of(os.path.join(staging, "lab-image.raw")) == created.content_sha256
    # The bytes came from the other engine, over the wire.
    wait_until(lambda: seed_engine.status(info_hash).uploaded_bytes >= IMAGE_SIZE, 20, "the seeder's upload counter")


# --------------------------------------------------------------------------- web seeds (BEP 19)


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single byte ranges (what a web seed needs; nginx does the same)."""

    requests_seen: list = []

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.translate_path(self.path)
        type(self).requests_seen.append((self.path, self.headers.get("Range")))
        if not os.path.isfile(path):
            self.send_error(404)
            return
        size = os.path.getsize(path)
        first, last = 0, size - 1
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if match:
            first = int(match.group(1))
            last = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(last - first + 1))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        with open(path, "rb") as handle:
            handle.seek(first)
            self.wfile.write(handle.read(last - first + 1))


@pytest.fixture
def web_server(short_tmp):
    root = os.path.join(short_tmp, "www")
    os.makedirs(os.path.join(root, "images"))
    RangeHandler.requests_seen = []
    handler = functools.partial(RangeHandler, directory=root)
    server = http.server.ThreadingHTTPServer((LOOPBACK, free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://{LOOPBACK}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_web_seed_only_download(libtorrent_factory, tracker, web_server, short_tmp):
    """No peer has the image: the catalogue's HTTP copy (the entry's web_seeds) is the only source."""
    root, base_url = web_server
    image = write_image(os.path.join(root, "images"))
    created = create_torrent(image, announce=[tracker.announce], piece_length=PIECE, creation_date=1_700_000_000)
    info_hash = created.info.info_hash
    tracker.allow(info_hash)
    leecher = libtorrent_factory("webleech")
    engine = leecher.engine()
    staging = os.path.join(leecher.data, "staging", info_hash)
    engine.add(created.data, staging, web_seeds=[f"{base_url}/images/lab-image.raw"])
    done = wait_done(engine, info_hash, leecher)
    assert done.complete and done.completed_bytes == IMAGE_SIZE
    assert sha256_of(os.path.join(staging, "lab-image.raw")) == created.content_sha256
    assert any(path == "/images/lab-image.raw" and ranges for path, ranges in RangeHandler.requests_seen)


# --------------------------------------------------------------------------- restart with resume data


def test_restart_readds_from_resume_data_and_rechecks(origin, seeding, torrent, image, libtorrent_factory):
    info_hash = torrent.info.info_hash
    leecher = libtorrent_factory("restarted")
    engine = leecher.engine()
    staging = os.path.join(leecher.data, "staging", info_hash)
    engine.add(torrent.data, staging)
    wait_done(engine, info_hash, origin, leecher)
    resume = os.path.join(leecher.state_dir, info_hash + ".resume")
    wait_until(lambda: os.path.exists(resume), 20, "the resume data")

    # Restart with no peer to download from: everything on disk must be found by the re-check.
    seeding.remove(info_hash)
    leecher.stop()
    leecher.start()
    again = wait_done(engine, info_hash, leecher)
    assert again.complete and again.state == "seeding" and again.directory == staging
    assert sha256_of(again.base_path) == torrent.content_sha256

    # A damaged piece is found by the re-check on start and not trusted from the resume data.
    leecher.stop()
    with open(again.base_path, "r+b") as handle:
        handle.seek(PIECE * 3)
        handle.write(b"\0" * 4096)
    leecher.start()
    wait_until(lambda: engine.status(info_hash).state != "checking", WAIT, "the re-check")
    damaged = engine.status(info_hash)
    assert not damaged.complete and damaged.completed_bytes == IMAGE_SIZE - PIECE
    # With the origin back, only that piece comes again and the copy is whole.
    seeding.add(torrent.data, os.path.dirname(image))
    healed = wait_done(engine, info_hash, origin, leecher)
    assert healed.complete and sha256_of(healed.base_path) == torrent.content_sha256


def test_unusable_resume_data_is_left_alone(libtorrent_factory, short_tmp):
    state = os.path.join(short_tmp, "bad", "state")
    os.makedirs(state)
    bad = os.path.join(state, "f" * 40 + ".resume")
    with open(bad, "wb") as handle:
        handle.write(b"not bencoded")
    daemon = libtorrent_factory("bad")
    assert daemon.engine().list() == []
    with open(bad, "rb") as handle:
        assert handle.read() == b"not bencoded"
    shutil.rmtree(state)
