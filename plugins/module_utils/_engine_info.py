# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A read-only report of a BitTorrent engine: its torrents and totals.

Private to the collection; not a public API.

Built on the ``TorrentEngine`` interface only (``list``), so it works for every
engine ``engine_for`` makes. Used by the ``torrent_info`` module (role checks,
molecule verify steps that read upload counters).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ansible_collections.vmcloud.fleet.plugins.module_utils._engine import STATES, TorrentEngine, TorrentStatus
from ansible_collections.vmcloud.fleet.plugins.module_utils._torrent import normalize_info_hash


def summarize(engine_name: str, statuses: list[TorrentStatus]) -> dict[str, Any]:
    """Totals over every torrent the engine has."""
    states = dict.fromkeys(STATES, 0)
    for status in statuses:
        states[status.state] = states.get(status.state, 0) + 1
    return {
        "name": engine_name,
        "torrents": len(statuses),
        "complete": sum(1 for status in statuses if status.complete),
        "states": states,
        "size_bytes": sum(status.size_bytes for status in statuses),
        "completed_bytes": sum(status.completed_bytes for status in statuses),
        "uploaded_bytes": sum(status.uploaded_bytes for status in statuses),
        "up_rate": sum(status.up_rate for status in statuses),
        "down_rate": sum(status.down_rate for status in statuses),
        "peers": sum(status.peers for status in statuses),
    }


def engine_report(engine: TorrentEngine, info_hashes: Iterable[str] = ()) -> dict[str, Any]:
    """The engine's totals, its torrents (only ``info_hashes`` when given) and the requested ones it lacks.

    ``engine`` totals cover every torrent; ``torrents`` is sorted by info-hash.
    """
    wanted = {normalize_info_hash(info_hash) for info_hash in info_hashes}
    statuses = sorted(engine.list(), key=lambda status: status.info_hash)
    selected = [status for status in statuses if not wanted or status.info_hash in wanted]
    return {
        "engine": summarize(engine.name, statuses),
        "torrents": [status.to_dict() for status in selected],
        "missing": sorted(wanted - {status.info_hash for status in statuses}),
    }
