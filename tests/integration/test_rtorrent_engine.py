# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rtorrent engine against real daemons on loopback: opentracker + a seeder + a leecher."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils._engine import DownloadTimeout
from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import EngineError, VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._torrent import create_torrent

from .conftest import wait_until

IMAGE_SIZE = 8 * 1024 * 1024
PIECE = 256 * 1024
WAIT = 60.0
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def diagnosis(info_hash: str, *daemons) -> str:
    """Tracker counters, peers and logs of each daemon, for a failure message."""
    lines = []
    for daemon in daemons:
        engine = daemon.engine()
        target = info_hash.upper()
        trackers = engine.call("t.multicall", target, "", "t.url=", "t.success_counter=", "t.failed_counter=")
        lines += [f"{daemon.name} {daemon.address}:{daemon.port}", f"  status: {engine.status(info_hash)}"]
        lines += [f"  trackers: {trackers}", f"  peers: {engine.peers(info_hash)}", daemon.log()]
    return "\n".join(lines)


@pytest.fixture
def image(seeder):
    """An 8 MiB random image in the seeder's data directory."""
    directory = os.path.join(seeder.data, "images")
    os.makedirs(directory)
    path = os.path.join(directory, "lab-image.raw")
    with open(path, "wb") as handle:
        handle.write(os.urandom(IMAGE_SIZE))
    return path


@pytest.fixture
def torrent(image, tracker):
    created = create_torrent(image, announce=[tracker.announce], piece_length=PIECE, creation_date=1_700_000_000)
    tracker.allow(created.info.info_hash)
    return created


@pytest.fixture
def seeding(seeder, image, torrent):
    """The seeder has hash-checked the image and seeds it."""
    engine = seeder.engine()
    info_hash = engine.add(torrent.data, os.path.dirname(image))
    status = engine.wait_complete(info_hash, timeout=WAIT, poll_interval=0.2)
    assert status.state == "seeding"
    return engine


def test_seed_then_leech(seeder, leecher, seeding, torrent, image):
    info_hash = torrent.info.info_hash
    seeded = seeding.status(info_hash)
    assert seeded.complete and seeded.completed_bytes == IMAGE_SIZE == seeded.size_bytes
    assert seeded.name == "lab-image.raw"
    assert seeded.base_path == image
    assert seeded.uploaded_bytes == 0

    staging = os.path.join(leecher.data, "staging")
    os.makedirs(staging)
    engine = leecher.engine()
    assert engine.add(torrent.data, staging) == info_hash
    progress = []
    try:
        done = engine.wait_complete(info_hash, timeout=WAIT, poll_interval=0.2, on_progress=progress.append)
    except DownloadTimeout as exc:
        pytest.fail(f"leecher did not finish: {exc}\n{diagnosis(info_hash, seeder, leecher)}")
    assert done.complete and done.state == "seeding"
    assert done.completed_bytes == done.size_bytes == IMAGE_SIZE
    assert done.info_hash == info_hash and done.directory == staging
    assert progress[0].info_hash == info_hash
    downloaded = os.path.join(staging, "lab-image.raw")
    assert done.base_path == downloaded
    assert sha256_of(downloaded) == torrent.content_sha256 == sha256_of(image)

    # The seeder served the whole image, so it reports the upload and a ratio of about 1.
    wait_until(lambda: seeding.status(info_hash).uploaded_bytes >= IMAGE_SIZE, 10, "the seeder's upload counter")
    after = seeding.status(info_hash)
    assert after.ratio >= 0.99
    assert after.state == "seeding"
    listed = {status.info_hash: status for status in engine.list()}
    assert list(listed) == [info_hash]


def test_progress_and_peers_while_downloading(seeder, leecher, seeding, torrent):
    info_hash = torrent.info.info_hash
    engine = leecher.engine()
    # Slow the leecher down (about 4 s for the image) to watch a download in flight.
    engine.call("throttle.global_down.max_rate.set_kb", "", 2048)
    engine.add(torrent.data, os.path.join(leecher.data, "staging"))
    wait_until(lambda: 0 < engine.status(info_hash).completed_bytes < IMAGE_SIZE, WAIT, "partial progress")
    moving = engine.status(info_hash)
    assert moving.state == "downloading" and not moving.complete
    assert moving.peers >= 1
    assert 0 < moving.progress < 1
    assert {peer["address"] for peer in engine.peers(info_hash)} == {seeder.address}
    assert leecher.address in {peer["address"] for peer in seeding.peers(info_hash)}
    assert seeding.status(info_hash).up_rate > 0 or seeding.status(info_hash).uploaded_bytes > 0
    done = engine.wait_complete(info_hash, timeout=WAIT, poll_interval=0.2)
    assert done.completed_bytes == IMAGE_SIZE


def test_remove_keeps_data_and_readd_is_idempotent(leecher, seeding, torrent):
    info_hash = torrent.info.info_hash
    staging = os.path.join(leecher.data, "staging")
    engine = leecher.engine()
    engine.add(torrent.data, staging)
    engine.wait_complete(info_hash, timeout=WAIT, poll_interval=0.2)
    downloaded = os.path.join(staging, "lab-image.raw")

    assert engine.remove(info_hash) is True
    assert engine.status(info_hash) is None
    assert engine.list() == []
    assert engine.remove(info_hash) is False
    assert sha256_of(downloaded) == torrent.content_sha256  # data untouched

    # Re-adding finds the data complete by hash check, with nothing to download.
    assert engine.add(torrent.data, staging) == info_hash
    again = engine.wait_complete(info_hash, timeout=WAIT, poll_interval=0.2)
    assert again.complete and again.state == "seeding"
    # And adding once more changes nothing.
    assert engine.add(torrent.data, staging) == info_hash
    assert [status.info_hash for status in engine.list()] == [info_hash]
    with pytest.raises(EngineError) as excinfo:
        engine.add(torrent.data, os.path.join(leecher.data, "elsewhere"))
    assert excinfo.value.rule == "torrent-directory-conflict"

    # A stopped torrent is restarted by ensure_seeding.
    engine.call("d.stop", info_hash.upper())
    assert engine.status(info_hash).state == "stopped"
    assert engine.ensure_seeding(info_hash) is True
    wait_until(lambda: engine.status(info_hash).state == "seeding", WAIT, "seeding again")
    assert engine.ensure_seeding(info_hash) is False

    # delete_data removes the file as well, only when asked.
    assert engine.remove(info_hash, delete_data=True) is True
    assert not os.path.exists(downloaded)


def test_timeout_leaves_download_running(leecher, tracker, tmp_path):
    # Nobody seeds this one: the wait must end with download-timeout and the progress so far.
    orphan = tmp_path / "orphan.raw"
    orphan.write_bytes(os.urandom(64 * 1024))
    created = create_torrent(str(orphan), announce=[tracker.announce], creation_date=0)
    tracker.allow(created.info.info_hash)
    engine = leecher.engine()
    engine.add(created.data, os.path.join(leecher.data, "staging"))
    with pytest.raises(DownloadTimeout) as excinfo:
        engine.wait_complete(created.info.info_hash, timeout=1.5, poll_interval=0.2)
    assert excinfo.value.rule == "download-timeout"
    assert excinfo.value.status.completed_bytes == 0
    assert excinfo.value.status.size_bytes == 64 * 1024
    assert engine.status(created.info.info_hash).state == "downloading"


def test_load_failure_is_an_error(leecher):
    engine = leecher.engine()
    with pytest.raises(VmcloudError) as excinfo:
        engine.add(b"garbage", leecher.data)
    assert excinfo.value.rule == "torrent-malformed"
    assert engine.status("0" * 40) is None
    with pytest.raises(EngineError) as excinfo:
        engine.ensure_seeding("0" * 40)
    assert excinfo.value.rule == "torrent-not-loaded"


def run_module(module: str, args: dict, check: bool = False) -> dict:
    """Run a collection module through ansible (AnsiballZ packaging included); return its result."""
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
    )
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible"), "localhost", "-m", module]
    argv += ["-a", json.dumps(args), "-i", "localhost,", "-c", "local"]
    if check:
        argv.append("--check")
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    try:
        output = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"ansible did not print JSON (rc {done.returncode}):\n{done.stdout}\n{done.stderr}")
    return output["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_torrent_download_module_end_to_end(leecher, seeding, torrent, tmp_path):
    torrent_path = tmp_path / "lab-image.raw.torrent"
    torrent_path.write_bytes(torrent.data)
    staging = os.path.join(leecher.data, "staging")
    args = {
        "engine": "rtorrent",  # the modules' default engine is libtorrent
        "socket": leecher.socket,
        "torrent": str(torrent_path),
        "info_hash": torrent.info.info_hash,
        "directory": staging,
        "wait": True,
        "timeout": int(WAIT),
        "poll_interval": 0.2,
    }
    results = [
        run_module("vmcloud.fleet.torrent_download", args, check=True),
        run_module("vmcloud.fleet.torrent_download", args),
        run_module("vmcloud.fleet.torrent_download", args, check=True),
        run_module("vmcloud.fleet.torrent_download", args),
    ]
    assert [r.get("failed", False) for r in results] == [False] * 4, results
    assert [r["changed"] for r in results] == [True, True, False, False]
    done = results[1]["status"]
    assert done["complete"] is True and done["completed_bytes"] == IMAGE_SIZE and done["progress"] == 1.0
    assert sha256_of(os.path.join(staging, "lab-image.raw")) == torrent.content_sha256

    absent = {"engine": "rtorrent", "socket": leecher.socket, "info_hash": torrent.info.info_hash, "state": "absent"}
    removed = run_module("vmcloud.fleet.torrent_download", absent)
    assert removed["changed"] is True
    assert run_module("vmcloud.fleet.torrent_download", absent)["changed"] is False
    assert os.path.exists(os.path.join(staging, "lab-image.raw"))

    wrong = run_module("vmcloud.fleet.torrent_download", dict(args, info_hash="0" * 40))
    assert wrong["failed"] is True and wrong["rule"] == "torrent-info-hash-mismatch"
