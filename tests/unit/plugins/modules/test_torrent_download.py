# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""vmcloud.fleet.torrent_download against an in-memory rtorrent (the real one: tests/integration)."""

from __future__ import annotations

import pytest

from ansible_collections.vmcloud.fleet.plugins.modules import torrent_download
from tests.unit.fake_rtorrent import INFO_HASH, TORRENT

from .conftest import fake_rtorrent_behind


@pytest.fixture
def fake(monkeypatch):
    return fake_rtorrent_behind(monkeypatch, torrent_download)


@pytest.fixture
def torrent_file(tmp_path):
    path = tmp_path / "img.raw.torrent"
    path.write_bytes(TORRENT)
    return str(path)


def test_check_apply_check_apply(run_module, fake, torrent_file, tmp_path):
    args = {"torrent": torrent_file, "info_hash": INFO_HASH.upper(), "directory": str(tmp_path / "staging")}
    first = run_module(torrent_download, engine="rtorrent", _ansible_check_mode=True, _ansible_diff=True, **args)
    assert fake.mutating_calls() == []
    results = [
        first,
        run_module(torrent_download, engine="rtorrent", _ansible_diff=True, **args),
        run_module(torrent_download, engine="rtorrent", _ansible_check_mode=True, **args),
        run_module(torrent_download, engine="rtorrent", **args),
    ]
    assert [r["changed"] for r in results] == [True, True, False, False]
    assert [r["action"] for r in results] == ["add", "add", "none", "none"]
    assert first["diff"]["before"] == {"present": False}
    assert first["status"] is None
    assert results[1]["status"]["info_hash"] == INFO_HASH
    assert results[1]["status"]["directory"] == str(tmp_path / "staging")
    assert fake.made[0] == ("rtorrent", {"socket": "/run/rtorrent/rpc.socket", "timeout": 30.0})


def test_default_engine_is_libtorrent_at_the_seeders_socket(run_module, fake, torrent_file, tmp_path):
    """No engine given: the module asks for libtorrent (DEFAULT_ENGINE) at the libtorrent_seeder role's socket."""
    result = run_module(torrent_download, torrent=torrent_file, info_hash=INFO_HASH, directory=str(tmp_path))
    assert fake.made == [("libtorrent", {"socket": "/run/vmcloud/seeder.socket", "timeout": 30.0})]
    assert result["failed"] is True and result["rule"] == "engine-unreachable"
    assert fake.calls == []


def test_wrong_info_hash_is_refused_before_the_engine(run_module, fake, torrent_file, tmp_path):
    result = run_module(torrent_download, engine="rtorrent", torrent=torrent_file, info_hash="0" * 40,
                        directory=str(tmp_path))
    assert result["failed"] is True and result["rule"] == "torrent-info-hash-mismatch"
    assert fake.calls == []


def test_wait_timeout_reports_progress_and_keeps_torrent(run_module, fake, torrent_file, tmp_path):
    result = run_module(
        torrent_download,
        engine="rtorrent",
        torrent=torrent_file,
        info_hash=INFO_HASH,
        directory=str(tmp_path),
        wait=True,
        timeout=0,
        poll_interval=0.01,  # 0 is refused (a busy loop on the engine); timeout=0 looks once
    )
    assert result["failed"] is True and result["rule"] == "download-timeout"
    assert result["changed"] is True
    assert result["status"]["completed_bytes"] == 0 and result["status"]["size_bytes"] == 40000
    assert INFO_HASH.upper() in fake.downloads


def test_wait_complete(run_module, fake, torrent_file, tmp_path):
    run_module(torrent_download, engine="rtorrent", torrent=torrent_file, info_hash=INFO_HASH, directory=str(tmp_path))
    fake.downloads[INFO_HASH.upper()].update({"d.complete": 1, "d.completed_bytes": 40000, "d.up.total": 5})
    result = run_module(torrent_download, engine="rtorrent", torrent=torrent_file, info_hash=INFO_HASH,
                        directory=str(tmp_path), wait=True, timeout=5)
    assert result["changed"] is False
    assert result["status"]["complete"] is True and result["status"]["state"] == "seeding"
    assert result["status"]["uploaded_bytes"] == 5


def test_absent_keeps_data(run_module, fake, torrent_file, tmp_path):
    data = tmp_path / "img.raw"
    data.write_bytes(b"x")
    run_module(torrent_download, engine="rtorrent", torrent=torrent_file, info_hash=INFO_HASH, directory=str(tmp_path))
    planned = run_module(torrent_download, engine="rtorrent", _ansible_check_mode=True, info_hash=INFO_HASH,
                         state="absent")
    assert planned["changed"] is True and INFO_HASH.upper() in fake.downloads
    removed = run_module(torrent_download, engine="rtorrent", info_hash=INFO_HASH, state="absent")
    assert removed["changed"] is True and removed["action"] == "remove"
    assert INFO_HASH.upper() not in fake.downloads and data.exists()
    assert run_module(torrent_download, engine="rtorrent", info_hash=INFO_HASH, state="absent")["changed"] is False


def test_present_requires_torrent_and_directory(run_module, fake):
    result = run_module(torrent_download, engine="rtorrent", info_hash=INFO_HASH)
    assert result["failed"] is True
    assert "torrent" in result["msg"] and "directory" in result["msg"]


def test_unreachable_engine(run_module, torrent_file, tmp_path):
    result = run_module(torrent_download, engine="rtorrent", torrent=torrent_file, info_hash=INFO_HASH,
                        directory=str(tmp_path), socket=str(tmp_path / "no.socket"))
    assert result["failed"] is True and result["rule"] == "engine-unreachable"
