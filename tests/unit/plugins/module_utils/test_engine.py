# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine interface and the rtorrent engine against a fake XML-RPC proxy. No ansible imports.

The real daemon is exercised in tests/integration/test_rtorrent_engine.py.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import pytest
import yaml

from ansible_collections.vmcloud.fleet.plugins.module_utils._argspec import ENGINE_ARGSPEC
from ansible_collections.vmcloud.fleet.plugins.module_utils._engine import (
    DEFAULT_ENGINE,
    DEFAULT_SOCKETS,
    DEFAULT_USERS,
    DownloadTimeout,
    TorrentEngine,
    TorrentStatus,
    engine_for,
    reconcile,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._engine_rtorrent import (
    RtorrentEngine,
    directory_command,
    engine_state,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import EngineError, VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._imgdist_config import CONFIG_KEYS
from ansible_collections.vmcloud.fleet.plugins.module_utils._store import DEFAULT_ENGINE_USER
from tests.unit.fake_rtorrent import INFO_HASH, TORRENT, FakeRtorrent


@pytest.fixture
def fake() -> FakeRtorrent:
    return FakeRtorrent()


@pytest.fixture
def engine(fake) -> RtorrentEngine:
    return RtorrentEngine(socket="/nonexistent", timeout=2, proxy=fake)


# ----------------------------------------------------------------- state mapping


def raw_flags(**overrides) -> dict[str, int]:
    flags = {"hashing_failed": 0, "hashing": 0, "state": 1, "active": 1, "complete": 0}
    flags.update(overrides)
    return flags


@pytest.mark.parametrize(
    ("flags", "state"),
    [
        (raw_flags(), "downloading"),
        (raw_flags(complete=1), "seeding"),
        (raw_flags(state=0, active=0), "stopped"),
        (raw_flags(active=0), "stopped"),  # paused
        (raw_flags(hashing=1), "checking"),
        (raw_flags(hashing=1, hashing_failed=1), "error"),
    ],
)
def test_engine_state(flags, state):
    assert engine_state(flags) == state


@pytest.mark.parametrize("bad", ["relative/dir", '/with"quote', "/back\\slash", "/new\nline"])
def test_directory_command_refuses(bad):
    with pytest.raises(EngineError) as excinfo:
        directory_command(bad)
    assert excinfo.value.rule == "engine-directory-invalid"


def test_directory_command_quotes():
    assert directory_command("/srv/a dir,x") == 'd.directory.set="/srv/a dir,x"'


ROLES = Path(__file__).resolve().parents[4] / "roles"


def role_defaults(role: str) -> dict:
    return yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())


def test_one_default_engine_with_its_roles_socket_and_user():
    """The default engine is the roles' vmcloud_engine, and each engine's socket and user are its role's
    defaults, so a module, imgdist.yml and the store given no engine all mean the host the roles set up."""
    assert DEFAULT_ENGINE == "libtorrent" == role_defaults("vmcloud")["vmcloud_engine"]
    assert ENGINE_ARGSPEC["engine"]["default"] == DEFAULT_ENGINE
    assert CONFIG_KEYS["engine"].default == DEFAULT_ENGINE
    seeder, rtorrent = role_defaults("libtorrent_seeder"), role_defaults("rtorrent")
    assert DEFAULT_SOCKETS["libtorrent"] == seeder["libtorrent_seeder_socket"]
    assert DEFAULT_SOCKETS["rtorrent"] == rtorrent["rtorrent_socket"]
    assert DEFAULT_USERS["libtorrent"] == seeder["libtorrent_seeder_user"]
    assert DEFAULT_USERS["rtorrent"] == rtorrent["rtorrent_user"]
    assert DEFAULT_ENGINE_USER == DEFAULT_USERS[DEFAULT_ENGINE] == "vmcloud-seeder"


def test_engine_for():
    assert isinstance(engine_for("rtorrent", socket="/x", timeout=1), RtorrentEngine)
    with pytest.raises(EngineError) as excinfo:
        engine_for("transmission")
    assert excinfo.value.rule == "engine-unknown"


# ----------------------------------------------------------------- rtorrent engine over a fake proxy


def test_add_status_list_remove(engine, fake, tmp_path):
    assert engine.status(INFO_HASH) is None
    assert engine.add(TORRENT, str(tmp_path)) == INFO_HASH
    status = engine.status(INFO_HASH)
    assert isinstance(status, TorrentStatus)
    assert status.info_hash == INFO_HASH and status.info_hash.islower()
    assert status.state == "downloading"
    assert status.base_path == os.path.join(str(tmp_path), "img.raw")  # closed items report ""
    assert [s.info_hash for s in engine.list()] == [INFO_HASH]
    assert engine.list()[0] == status
    assert status.to_dict()["progress"] == 0.0
    # Loaded with the bytes, started, the directory set on load: nothing left in a watch dir.
    load = [call for call in fake.calls if call[0].startswith("load.")]
    assert load[0][0] == "load.raw_start_verbose"
    assert load[0][3] == f'd.directory.set="{tmp_path}"'
    # Idempotent: a second add loads nothing.
    assert engine.add(TORRENT, str(tmp_path) + "/") == INFO_HASH
    assert len([call for call in fake.calls if call[0].startswith("load.")]) == 1
    with pytest.raises(EngineError) as excinfo:
        engine.add(TORRENT, "/elsewhere")
    assert excinfo.value.rule == "torrent-directory-conflict"
    assert engine.remove(INFO_HASH.upper()) is True
    assert engine.remove(INFO_HASH) is False
    assert engine.status(INFO_HASH) is None


def test_add_stopped(engine):
    engine.add(TORRENT, "/srv/staging", start=False)
    assert engine.status(INFO_HASH).state == "stopped"
    assert engine.ensure_seeding(INFO_HASH) is True
    assert engine.status(INFO_HASH).state == "downloading"
    assert engine.ensure_seeding(INFO_HASH) is False


def test_ensure_seeding_resumes_paused_and_retries_failed(engine, fake):
    engine.add(TORRENT, "/srv/staging")
    fake.downloads[INFO_HASH.upper()]["d.is_active"] = 0
    assert engine.ensure_seeding(INFO_HASH) is True
    assert fake.calls[-1][0] == "d.resume"
    fake.downloads[INFO_HASH.upper()]["d.hashing_failed"] = 1
    assert engine.status(INFO_HASH).state == "error"
    assert engine.ensure_seeding(INFO_HASH) is True
    assert [call[0] for call in fake.calls[-2:]] == ["d.stop", "d.start"]
    with pytest.raises(EngineError) as excinfo:
        engine.ensure_seeding("0" * 40)
    assert excinfo.value.rule == "torrent-not-loaded"


def test_remove_keeps_data_unless_asked(engine, tmp_path):
    data = tmp_path / "img.raw"
    data.write_bytes(b"x")
    engine.add(TORRENT, str(tmp_path))
    engine.remove(INFO_HASH)
    assert data.exists()
    engine.add(TORRENT, str(tmp_path))
    engine.remove(INFO_HASH, delete_data=True)
    assert not data.exists()


def test_remove_refuses_deleting_multi_file_data(engine, fake, tmp_path):
    engine.add(TORRENT, str(tmp_path))
    fake.downloads[INFO_HASH.upper()]["d.is_multi_file"] = 1
    with pytest.raises(EngineError) as excinfo:
        engine.remove(INFO_HASH, delete_data=True)
    assert excinfo.value.rule == "engine-delete-multi-file"
    assert engine.status(INFO_HASH) is not None


def test_recheck(engine, fake):
    engine.add(TORRENT, "/srv/staging")
    engine.recheck(INFO_HASH)
    assert engine.status(INFO_HASH).state == "checking"
    with pytest.raises(EngineError):
        engine.recheck("0" * 40)


def test_announce_asks_the_trackers_of_a_loaded_torrent(engine, fake):
    engine.add(TORRENT, "/srv/staging")
    assert engine.announce(INFO_HASH) is True
    assert fake.calls[-1] == ("d.tracker_announce", INFO_HASH.upper())
    with pytest.raises(EngineError) as excinfo:
        engine.announce("0" * 40)
    assert excinfo.value.rule == "torrent-not-loaded"


def test_load_failure_is_reported():
    engine = RtorrentEngine(timeout=0.3, proxy=FakeRtorrent(load_works=False))
    with pytest.raises(EngineError) as excinfo:
        engine.add(TORRENT, "/srv/staging")
    assert excinfo.value.rule == "engine-load-failed"


def test_request_size_limit():
    engine = RtorrentEngine(proxy=FakeRtorrent(size_limit=1000))
    with pytest.raises(EngineError) as excinfo:
        engine.add(TORRENT, "/srv/staging")
    assert excinfo.value.rule == "engine-request-too-large"
    assert "network.xmlrpc.size_limit" in excinfo.value.message


def test_faults_become_engine_errors(engine):
    with pytest.raises(EngineError) as excinfo:
        engine.call("no.such.command")
    assert excinfo.value.rule == "engine-fault"


def test_add_refuses_malformed_torrent(engine):
    with pytest.raises(VmcloudError) as excinfo:
        engine.add(b"garbage", "/srv/staging")
    assert excinfo.value.rule == "torrent-malformed"


def test_bad_info_hash(engine):
    with pytest.raises(VmcloudError) as excinfo:
        engine.status("not-a-hash")
    assert excinfo.value.rule == "info-hash-malformed"


# ----------------------------------------------------------------- waiting


def test_wait_complete_and_timeout(engine, fake):
    engine.add(TORRENT, "/srv/staging")
    now = [0.0]
    seen = []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(DownloadTimeout) as excinfo:
        engine.wait_complete(
            INFO_HASH, timeout=5, poll_interval=1, clock=lambda: now[0], sleep=sleep, on_progress=seen.append
        )
    assert excinfo.value.rule == "download-timeout"
    assert excinfo.value.status.completed_bytes == 0
    assert "keeps downloading" in excinfo.value.message
    assert len(seen) == 6
    assert engine.status(INFO_HASH) is not None  # left in the engine

    fake.downloads[INFO_HASH.upper()].update({"d.complete": 1, "d.completed_bytes": 40000})
    status = engine.wait_complete(INFO_HASH, timeout=5, clock=lambda: now[0], sleep=sleep)
    assert status.complete and status.state == "seeding" and status.progress == 1.0


def test_wait_error_and_disappearing(engine, fake):
    engine.add(TORRENT, "/srv/staging")
    fake.downloads[INFO_HASH.upper()]["d.hashing_failed"] = 1
    with pytest.raises(EngineError) as excinfo:
        engine.wait_complete(INFO_HASH, timeout=5, sleep=lambda s: None)
    assert excinfo.value.rule == "download-error"
    engine.remove(INFO_HASH)
    with pytest.raises(EngineError) as excinfo:
        engine.wait_complete(INFO_HASH, timeout=5, sleep=lambda s: None)
    assert excinfo.value.rule == "torrent-not-loaded"


# ----------------------------------------------------------------- reconcile


def test_reconcile_present_check_then_apply(engine, fake):
    planned = reconcile(
        engine, info_hash=INFO_HASH, state="present", directory="/srv/s", torrent_bytes=TORRENT, check_mode=True
    )
    assert (planned.changed, planned.action) == (True, "add")
    assert planned.before == {"present": False}
    assert fake.mutating_calls() == []
    applied = reconcile(engine, info_hash=INFO_HASH, state="present", directory="/srv/s", torrent_bytes=TORRENT)
    assert (applied.changed, applied.action) == (True, "add")
    assert applied.after["present"] is True and applied.status.directory == "/srv/s"
    again = reconcile(engine, info_hash=INFO_HASH, state="present", directory="/srv/s/", torrent_bytes=TORRENT)
    assert (again.changed, again.action) == (False, "none")
    with pytest.raises(EngineError) as excinfo:
        reconcile(engine, info_hash=INFO_HASH, state="present", directory="/other", torrent_bytes=TORRENT)
    assert excinfo.value.rule == "torrent-directory-conflict"


def test_reconcile_restarts_stopped(engine, fake):
    engine.add(TORRENT, "/srv/s", start=False)
    before = len(fake.mutating_calls())
    planned = reconcile(
        engine, info_hash=INFO_HASH, state="present", directory="/srv/s", torrent_bytes=TORRENT, check_mode=True
    )
    assert (planned.changed, planned.action) == (True, "start")
    assert len(fake.mutating_calls()) == before
    applied = reconcile(engine, info_hash=INFO_HASH, state="present", directory="/srv/s", torrent_bytes=TORRENT)
    assert applied.changed and applied.status.state == "downloading"


def test_reconcile_absent(engine, fake):
    assert reconcile(engine, info_hash=INFO_HASH, state="absent").changed is False
    engine.add(TORRENT, "/srv/s")
    planned = reconcile(engine, info_hash=INFO_HASH, state="absent", check_mode=True)
    assert (planned.changed, planned.action) == (True, "remove")
    assert engine.status(INFO_HASH) is not None
    applied = reconcile(engine, info_hash=INFO_HASH, state="absent")
    assert applied.changed and applied.after == {"present": False}
    assert engine.status(INFO_HASH) is None


def test_reconcile_needs_torrent_for_present(engine):
    with pytest.raises(EngineError) as excinfo:
        reconcile(engine, info_hash=INFO_HASH, state="present")
    assert excinfo.value.rule == "torrent-missing"
    with pytest.raises(EngineError):
        reconcile(engine, info_hash=INFO_HASH, state="sideways")


def test_interface_is_abstract():
    assert inspect.isabstract(TorrentEngine)
    with pytest.raises(TypeError):
        TorrentEngine.__call__()  # TorrentEngine() itself, which pylint refuses to see written
