# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An in-memory stand-in for rtorrent's XML-RPC proxy, for engine and module unit tests.

No ansible imports: the module_utils tests run under the hypervisor venv too.
"""

from __future__ import annotations

import xmlrpc.client
from typing import Any

from fastbencode import bencode

from ansible_collections.vmcloud.fleet.plugins.module_utils._torrent import parse_torrent

TORRENT = bencode(
    {
        b"announce": b"http://127.0.0.1:6969/announce",
        b"info": {b"length": 40000, b"name": b"img.raw", b"piece length": 16384, b"pieces": b"\x01" * 60},
    }
)
INFO_HASH = parse_torrent(TORRENT).info_hash


class FakeRtorrent:
    """Enough of rtorrent's XML-RPC for the engine: downloads keyed by uppercase hash."""

    def __init__(self, size_limit: int = 4 * 1024 * 1024, load_works: bool = True) -> None:
        self.downloads: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple] = []
        self.size_limit = size_limit
        self.load_works = load_works

    def __getattr__(self, method: str):
        def call(*params):
            self.calls.append((method, *params))
            return self.dispatch(method, list(params))

        return call

    def _download(self, target: str) -> dict[str, Any]:
        if target not in self.downloads:
            raise xmlrpc.client.Fault(-501, "Could not find info-hash.")
        return self.downloads[target]

    def dispatch(self, method: str, params: list) -> Any:
        if method == "system.multicall":
            results = []
            for call in params[0]:
                try:
                    results.append([self.dispatch(call["methodName"], call["params"])])
                except xmlrpc.client.Fault as fault:
                    results.append({"faultCode": fault.faultCode, "faultString": fault.faultString})
            return results
        if method == "network.xmlrpc.size_limit":
            return self.size_limit
        if method in ("load.raw_start_verbose", "load.raw_verbose"):
            data = params[1].data if isinstance(params[1], xmlrpc.client.Binary) else params[1]
            if self.load_works:
                info = parse_torrent(data)
                directory = params[2].split("=", 1)[1].strip('"')
                started = method == "load.raw_start_verbose"
                self.downloads[info.info_hash.upper()] = {
                    "d.hash": info.info_hash.upper(),
                    "d.name": info.name,
                    "d.size_bytes": info.length,
                    "d.completed_bytes": 0,
                    "d.complete": 0,
                    "d.state": int(started),
                    "d.is_active": int(started),
                    "d.is_open": int(started),
                    "d.hashing": 0,
                    "d.hashing_failed": 0,
                    "d.down.rate": 0,
                    "d.up.rate": 0,
                    "d.up.total": 0,
                    "d.ratio": 0,
                    "d.peers_connected": 0,
                    "d.message": "",
                    "d.directory": directory,
                    "d.base_path": "",
                    "d.is_multi_file": 0,
                }
            return 0
        if method == "d.multicall2":
            return [[d[command.rstrip("=")] for command in params[2:]] for d in self.downloads.values()]
        if not method.startswith("d."):
            raise xmlrpc.client.Fault(-506, f"Method '{method}' not defined")
        target = params[0]
        download = self._download(target)
        if method == "d.erase":
            del self.downloads[target]
        elif method == "d.start":
            download.update({"d.state": 1, "d.is_active": 1, "d.is_open": 1, "d.hashing_failed": 0})
        elif method == "d.stop":
            download.update({"d.state": 0, "d.is_active": 0})
        elif method == "d.resume":
            download["d.is_active"] = 1
        elif method == "d.check_hash":
            download["d.hashing"] = 3
        elif method == "d.tracker_announce":
            download["announced"] = download.get("announced", 0) + 1
        elif method in download:
            return download[method]
        else:
            raise xmlrpc.client.Fault(-506, f"Method '{method}' not defined")
        return 0

    def mutating_calls(self) -> list[str]:
        readers = {"system.multicall", "network.xmlrpc.size_limit", "d.multicall2", "d.hash"}
        return [call[0] for call in self.calls if call[0] not in readers]
