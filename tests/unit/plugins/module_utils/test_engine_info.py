# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine report behind torrent_info (no ansible imports: runs under the hypervisor venv too)."""

from __future__ import annotations

from ansible_collections.vmcloud.fleet.plugins.module_utils._engine import TorrentStatus
from ansible_collections.vmcloud.fleet.plugins.module_utils._engine_info import engine_report, summarize
from ansible_collections.vmcloud.fleet.plugins.module_utils._engine_rtorrent import RtorrentEngine
from tests.unit.fake_rtorrent import INFO_HASH, TORRENT, FakeRtorrent


def status(info_hash: str, state: str, complete: bool, uploaded: int) -> TorrentStatus:
    return TorrentStatus(
        info_hash=info_hash,
        name=info_hash[:4],
        size_bytes=100,
        completed_bytes=100 if complete else 10,
        complete=complete,
        state=state,
        down_rate=0 if complete else 5,
        up_rate=7,
        uploaded_bytes=uploaded,
        ratio=uploaded / 100,
        peers=1,
        message="",
        directory="/d",
        base_path="/d/" + info_hash[:4],
    )


def test_summarize_counts_states_and_sums():
    summary = summarize(
        "rtorrent",
        [status("a" * 40, "seeding", True, 300), status("b" * 40, "downloading", False, 20)],
    )
    assert summary["torrents"] == 2 and summary["complete"] == 1
    assert summary["states"] == {"downloading": 1, "seeding": 1, "stopped": 0, "checking": 0, "error": 0}
    assert summary["completed_bytes"] == 110 and summary["uploaded_bytes"] == 320
    assert summary["up_rate"] == 14 and summary["down_rate"] == 5 and summary["peers"] == 2


def test_report_over_the_engine_interface():
    fake = FakeRtorrent()
    engine = RtorrentEngine(proxy=fake)
    engine.add(TORRENT, "/srv/images")
    report = engine_report(engine, [INFO_HASH.upper(), "c" * 40])
    assert [t["info_hash"] for t in report["torrents"]] == [INFO_HASH]
    assert report["missing"] == ["c" * 40]
    assert report["engine"]["torrents"] == 1 and report["engine"]["states"]["downloading"] == 1
    assert engine_report(engine)["missing"] == []
