# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rtorrent engine: ``TorrentEngine`` over rtorrent's XML-RPC on an SCGI socket.

Private to the collection; not a public API.

rtorrent facts this relies on (checked against 0.9.8):
- ``load.raw_start_verbose`` / ``load.raw_verbose`` take the .torrent bytes (base64)
  plus commands run on the new download (``d.directory.set="..."``), and load
  synchronously; they always return 0 and only log a refusal, so the info-hash is
  looked up afterwards to tell success from failure;
- ``d.*`` calls take the info-hash (uppercase) as the target and fault with code
  -501 when rtorrent does not have it;
- ``d.erase`` drops a download and its session files, never its data;
- ``d.ratio`` is uploaded/completed times 1000.
"""

from __future__ import annotations

import contextlib
import os
import time
import xmlrpc.client
from typing import Any, Optional, Sequence

from ansible_collections.vmcloud.fleet.plugins.module_utils._engine import (
    DEFAULT_RPC_TIMEOUT,
    DEFAULT_SOCKETS,
    TorrentEngine,
    TorrentStatus,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import EngineError
from ansible_collections.vmcloud.fleet.plugins.module_utils._scgi import rtorrent_proxy
from ansible_collections.vmcloud.fleet.plugins.module_utils._torrent import (
    normalize_info_hash,
    parse_torrent,
)

DEFAULT_SOCKET = DEFAULT_SOCKETS["rtorrent"]
FAULT_UNKNOWN_HASH = -501
# Fields read for a status, in order: (our name, rtorrent command).
_FIELDS = (
    ("hash", "d.hash"),
    ("name", "d.name"),
    ("size_bytes", "d.size_bytes"),
    ("completed_bytes", "d.completed_bytes"),
    ("complete", "d.complete"),
    ("state", "d.state"),
    ("active", "d.is_active"),
    ("open", "d.is_open"),
    ("hashing", "d.hashing"),
    ("hashing_failed", "d.hashing_failed"),
    ("down_rate", "d.down.rate"),
    ("up_rate", "d.up.rate"),
    ("uploaded", "d.up.total"),
    ("ratio", "d.ratio"),
    ("peers", "d.peers_connected"),
    ("message", "d.message"),
    ("directory", "d.directory"),
    ("base_path", "d.base_path"),
    ("multi_file", "d.is_multi_file"),
)
_UNSAFE_IN_COMMAND = ('"', "\\", "\n", "\r", "\0")
# XML-RPC envelope around the base64 torrent and the command strings.
_REQUEST_OVERHEAD = 4096


def engine_state(raw: dict[str, Any]) -> str:
    """Map rtorrent's flags onto the interface's states.

    Closed items have state 0; paused ones state 1 but not active; started ones
    are active. A storage or hash failure sets ``d.hashing_failed``.
    """
    if raw["hashing_failed"]:
        return "error"
    if raw["hashing"]:
        return "checking"
    if not raw["state"] or not raw["active"]:
        return "stopped"
    return "seeding" if raw["complete"] else "downloading"


def status_from_row(row: list[Any]) -> TorrentStatus:
    return status_from_raw(dict(zip((name for name, _unused in _FIELDS), row, strict=True)))


def status_from_raw(raw: dict[str, Any]) -> TorrentStatus:
    base_path = raw["base_path"]
    if not base_path:  # empty while the item is closed
        base_path = raw["directory"] if raw["multi_file"] else os.path.join(raw["directory"], raw["name"])
    message = raw["message"]
    if raw["hashing_failed"] and not message:
        message = "hash check or storage failed; is the download directory usable?"
    return TorrentStatus(
        info_hash=raw["hash"].lower(),
        name=raw["name"],
        size_bytes=int(raw["size_bytes"]),
        completed_bytes=int(raw["completed_bytes"]),
        complete=bool(raw["complete"]),
        state=engine_state(raw),
        down_rate=int(raw["down_rate"]),
        up_rate=int(raw["up_rate"]),
        uploaded_bytes=int(raw["uploaded"]),
        ratio=int(raw["ratio"]) / 1000.0,
        peers=int(raw["peers"]),
        message=message,
        directory=raw["directory"],
        base_path=base_path,
    )


def directory_command(directory: str) -> str:
    """The ``d.directory.set`` command for load, refusing paths that would need escaping."""
    if not os.path.isabs(directory) or any(char in directory for char in _UNSAFE_IN_COMMAND):
        raise EngineError(
            "engine-directory-invalid",
            f"download directory {directory!r} must be an absolute path without quotes, "
            "backslashes or control characters",
        )
    return f'd.directory.set="{directory}"'


class RtorrentEngine(TorrentEngine):
    """rtorrent 0.9.x driven over XML-RPC on its SCGI unix socket."""

    name = "rtorrent"

    def __init__(self, socket: str = DEFAULT_SOCKET, timeout: float = DEFAULT_RPC_TIMEOUT, proxy: Any = None) -> None:
        self.socket = socket
        self.timeout = timeout
        self._proxy = proxy if proxy is not None else rtorrent_proxy(socket, timeout)

    # ------------------------------------------------------------------ transport

    def call(self, method: str, *params: Any) -> Any:
        """Call one rtorrent command; faults become ``EngineError``."""
        try:
            return getattr(self._proxy, method)(*params)
        except xmlrpc.client.Fault as exc:
            raise EngineError(
                "engine-fault", f"rtorrent refused {method}: {exc.faultString} (fault {exc.faultCode})"
            ) from exc
        except xmlrpc.client.ProtocolError as exc:
            raise EngineError(
                "engine-protocol", f"rtorrent answered {method} with HTTP status {exc.errcode} {exc.errmsg}"
            ) from exc

    def _has(self, target: str) -> bool:
        try:
            getattr(self._proxy, "d.hash")(target)
        except xmlrpc.client.Fault as exc:
            if exc.faultCode == FAULT_UNKNOWN_HASH:
                return False
            raise EngineError("engine-fault", f"rtorrent refused d.hash: {exc.faultString}") from exc
        return True

    # ------------------------------------------------------------------ interface

    def _raw(self, info_hash: str) -> Optional[dict[str, Any]]:
        """rtorrent's fields for one download (one system.multicall), or None if absent."""
        target = normalize_info_hash(info_hash).upper()
        calls = [{"methodName": command, "params": [target]} for _unused, command in _FIELDS]
        results = self.call("system.multicall", calls)
        raw = {}
        for (name, command), result in zip(_FIELDS, results, strict=True):
            if isinstance(result, dict):  # a fault struct
                if result.get("faultCode") == FAULT_UNKNOWN_HASH:
                    return None
                raise EngineError("engine-fault", f"rtorrent refused {command}: {result.get('faultString')}")
            raw[name] = result[0]
        return raw

    def status(self, info_hash: str) -> Optional[TorrentStatus]:
        raw = self._raw(info_hash)
        return None if raw is None else status_from_raw(raw)

    def list(self) -> list[TorrentStatus]:
        rows = self.call("d.multicall2", "", "main", *(f"{command}=" for _unused, command in _FIELDS))
        return [status_from_row(row) for row in rows]

    def add(self, torrent_bytes: bytes, directory: str, start: bool = True, web_seeds: Sequence[str] = ()) -> str:
        # rtorrent 0.9 has no web-seed (BEP 19) support: web_seeds are ignored.
        info = parse_torrent(torrent_bytes)
        directory = os.path.normpath(directory)
        command = directory_command(directory)
        current = self.status(info.info_hash)
        if current is not None:
            if os.path.normpath(current.directory) != directory:
                raise EngineError(
                    "torrent-directory-conflict",
                    f"{info.info_hash} is already loaded with its data in {current.directory}, not {directory}; "
                    "remove it from the engine first to move it",
                )
            return info.info_hash
        self._check_request_size(len(torrent_bytes))
        method = "load.raw_start_verbose" if start else "load.raw_verbose"
        self.call(method, "", xmlrpc.client.Binary(bytes(torrent_bytes)), command)
        target = info.info_hash.upper()
        # Loading raw data is synchronous in rtorrent 0.9; the short grace covers slower builds.
        deadline = time.monotonic() + min(5.0, self.timeout)
        while not self._has(target):
            if time.monotonic() >= deadline:
                raise EngineError(
                    "engine-load-failed",
                    f"rtorrent did not load {info.info_hash} ({info.name}); its log says why "
                    "(e.g. 'Could not create download')",
                )
            time.sleep(0.1)
        return info.info_hash

    def remove(self, info_hash: str, delete_data: bool = False) -> bool:
        raw = self._raw(info_hash)
        if raw is None:
            return False
        current = status_from_raw(raw)
        if delete_data and raw["multi_file"]:
            raise EngineError(
                "engine-delete-multi-file",
                f"{current.info_hash} is a multi-file torrent; deleting its data is not supported",
            )
        self.call("d.erase", raw["hash"])
        if delete_data:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(current.base_path)
        return True

    def ensure_seeding(self, info_hash: str) -> bool:
        raw = self._raw(info_hash)
        if raw is None:
            raise EngineError("torrent-not-loaded", f"rtorrent does not have {info_hash.lower()}; add it first")
        if raw["hashing_failed"]:
            # A failed check (e.g. the directory was missing) is retried by a fresh start.
            self.call("d.stop", raw["hash"])
            self.call("d.start", raw["hash"])
            return True
        if raw["state"] and raw["active"]:
            return False
        if raw["state"] and raw["open"]:
            self.call("d.resume", raw["hash"])
        else:
            self.call("d.start", raw["hash"])
        return True

    def recheck(self, info_hash: str) -> None:
        target = normalize_info_hash(info_hash).upper()
        if not self._has(target):
            raise EngineError("torrent-not-loaded", f"rtorrent does not have {info_hash.lower()}")
        self.call("d.check_hash", target)

    def announce(self, info_hash: str) -> bool:
        target = normalize_info_hash(info_hash).upper()
        if not self._has(target):
            raise EngineError("torrent-not-loaded", f"rtorrent does not have {info_hash.lower()}")
        self.call("d.tracker_announce", target)
        return True

    # ------------------------------------------------------------------ rtorrent only

    def peers(self, info_hash: str) -> list[dict[str, Any]]:
        """Connected peers of a torrent (address, port, incoming, bytes up/down)."""
        target = normalize_info_hash(info_hash).upper()
        rows = self.call(
            "p.multicall", target, "", "p.address=", "p.port=", "p.is_incoming=", "p.up_total=", "p.down_total="
        )
        keys = ("address", "port", "incoming", "uploaded_bytes", "downloaded_bytes")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def _check_request_size(self, torrent_size: int) -> None:
        limit = int(self.call("network.xmlrpc.size_limit"))
        needed = (torrent_size + 2) // 3 * 4 + _REQUEST_OVERHEAD
        if needed > limit:
            raise EngineError(
                "engine-request-too-large",
                f"a {torrent_size}-byte .torrent needs an XML-RPC request of about {needed} bytes, over "
                f"rtorrent's network.xmlrpc.size_limit of {limit}; raise it in rtorrent.rc",
            )
