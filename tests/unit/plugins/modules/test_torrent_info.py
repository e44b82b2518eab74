# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""vmcloud.fleet.torrent_info against an in-memory rtorrent (the real one: the lab roles)."""

from __future__ import annotations

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils._engine_rtorrent import RtorrentEngine
from ansible_collections.vmcloud.fleet.plugins.modules import torrent_info
from tests.unit.fake_rtorrent import INFO_HASH, TORRENT

from .conftest import fake_rtorrent_behind

OTHER_HASH = "ab" * 20


@pytest.fixture
def fake(monkeypatch):
    return fake_rtorrent_behind(monkeypatch, torrent_info)


@pytest.fixture
def seeding(fake):
    """The fake engine with the test torrent loaded, complete, 120000 bytes uploaded."""
    RtorrentEngine(proxy=fake).add(TORRENT, "/srv/images")
    fake.downloads[INFO_HASH.upper()].update(
        {"d.complete": 1, "d.completed_bytes": 40000, "d.up.total": 120000, "d.ratio": 3000, "d.peers_connected": 2}
    )
    return fake


def test_empty_engine(run_module, fake):
    result = run_module(torrent_info, engine="rtorrent")
    assert result["changed"] is False
    assert result["torrents"] == [] and result["missing"] == []
    assert result["engine"]["name"] == "rtorrent" and result["engine"]["torrents"] == 0
    assert fake.made == [("rtorrent", {"socket": "/run/rtorrent/rpc.socket", "timeout": 30.0})]


def test_default_engine_is_libtorrent_at_the_seeders_socket(run_module, fake):
    """No engine given: the module asks for libtorrent (DEFAULT_ENGINE) at the libtorrent_seeder role's socket."""
    result = run_module(torrent_info)
    assert fake.made == [("libtorrent", {"socket": "/run/vmcloud/seeder.socket", "timeout": 30.0})]
    assert result["failed"] is True and result["rule"] == "engine-unreachable"


def test_lists_status_and_totals(run_module, seeding):
    result = run_module(torrent_info, engine="rtorrent")
    assert [t["info_hash"] for t in result["torrents"]] == [INFO_HASH]
    torrent = result["torrents"][0]
    assert torrent["state"] == "seeding" and torrent["complete"] is True
    assert torrent["uploaded_bytes"] == 120000 and torrent["ratio"] == 3.0 and torrent["progress"] == 1.0
    assert torrent["directory"] == "/srv/images"
    engine = result["engine"]
    assert engine["torrents"] == 1 and engine["complete"] == 1
    assert engine["states"]["seeding"] == 1 and engine["states"]["downloading"] == 0
    assert engine["uploaded_bytes"] == 120000 and engine["peers"] == 2


def test_selection_reports_missing_and_keeps_engine_totals(run_module, seeding):
    result = run_module(torrent_info, engine="rtorrent", info_hashes=[OTHER_HASH.upper()])
    assert result["torrents"] == []
    assert result["missing"] == [OTHER_HASH]
    assert result["engine"]["torrents"] == 1
    selected = run_module(torrent_info, engine="rtorrent", info_hashes=[INFO_HASH.upper(), OTHER_HASH])
    assert [t["info_hash"] for t in selected["torrents"]] == [INFO_HASH]
    assert selected["missing"] == [OTHER_HASH]


def test_read_only_in_check_mode(run_module, seeding):
    before = len(seeding.calls)
    result = run_module(torrent_info, engine="rtorrent", _ansible_check_mode=True)
    assert result["changed"] is False and len(result["torrents"]) == 1
    assert [call[0] for call in seeding.calls[before:]] == ["d.multicall2"]


def test_malformed_info_hash(run_module, fake):
    result = run_module(torrent_info, engine="rtorrent", info_hashes=["not-a-hash"])
    assert result["failed"] is True and result["rule"] == "info-hash-malformed"


def test_unreachable_engine(run_module, tmp_path):
    result = run_module(torrent_info, engine="rtorrent", socket=str(tmp_path / "no.socket"), rpc_timeout=2)
    assert result["failed"] is True and result["rule"] == "engine-unreachable"
    assert "no.socket" in result["msg"]
