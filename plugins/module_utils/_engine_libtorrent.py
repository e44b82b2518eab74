# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The libtorrent engine: ``TorrentEngine`` over the vmcloud seeder's unix socket.

Private to the collection; not a public API. Standard library only (plus the collection):
the libtorrent session itself lives in the seeder service (``_seeder``, Debian's
python3-libtorrent), which keeps every torrent it was given seeding across restarts; this
client speaks its framed JSON protocol (``_framing``), one request per connection.

Unlike rtorrent, the seeder honours web seeds (BEP 19): ``add(..., web_seeds=[...])`` gives
the torrent HTTP sources (the catalogue's copy of the image), used alongside the peers.
"""

from __future__ import annotations

import base64
import itertools
import os
import socket as socket_module
import time
from typing import Any, Optional, Sequence

from ansible_collections.vmcloud.fleet.plugins.module_utils._engine import (
    DEFAULT_RPC_TIMEOUT,
    DEFAULT_SOCKETS,
    TorrentEngine,
    TorrentStatus,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import EngineError
from ansible_collections.vmcloud.fleet.plugins.module_utils._framing import (
    MAX_REQUEST_BYTES,
    MAX_RESPONSE_BYTES,
    encode_frame,
    read_frame,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._torrent import normalize_info_hash, parse_torrent

DEFAULT_SOCKET = DEFAULT_SOCKETS["libtorrent"]
_STATUS_FIELDS = (
    "info_hash", "name", "size_bytes", "completed_bytes", "complete", "state", "down_rate", "up_rate",
    "uploaded_bytes", "ratio", "peers", "message", "directory", "base_path",
)
_ids = itertools.count(1)


def status_from_dict(raw: Any) -> TorrentStatus:
    """A ``TorrentStatus`` from the seeder's answer; anything else is engine-protocol."""
    if not isinstance(raw, dict) or set(_STATUS_FIELDS) - set(raw):
        raise EngineError("engine-protocol", f"the seeder's torrent status is malformed: {str(raw)[:200]}")
    try:
        return TorrentStatus(
            info_hash=str(raw["info_hash"]), name=str(raw["name"]), size_bytes=int(raw["size_bytes"]),
            completed_bytes=int(raw["completed_bytes"]), complete=bool(raw["complete"]), state=str(raw["state"]),
            down_rate=int(raw["down_rate"]), up_rate=int(raw["up_rate"]), uploaded_bytes=int(raw["uploaded_bytes"]),
            ratio=float(raw["ratio"]), peers=int(raw["peers"]), message=str(raw["message"]),
            directory=str(raw["directory"]), base_path=str(raw["base_path"]),
        )
    except (TypeError, ValueError) as exc:
        raise EngineError("engine-protocol", f"the seeder's torrent status is malformed: {exc}") from None


class LibtorrentEngine(TorrentEngine):
    """libtorrent-rasterbar, held by the vmcloud seeder service and driven over its unix socket."""

    name = "libtorrent"

    def __init__(self, socket: str = DEFAULT_SOCKET, timeout: float = DEFAULT_RPC_TIMEOUT) -> None:
        self.socket = socket
        self.timeout = timeout

    # ------------------------------------------------------------------ transport

    def call(self, method: str, **params: Any) -> Any:
        """One request to the seeder; its error answers become ``EngineError`` with the seeder's rule."""
        request_id = next(_ids)
        frame = encode_frame({"id": request_id, "method": method, "params": params}, MAX_REQUEST_BYTES)
        deadline = time.monotonic() + self.timeout
        sock = socket_module.socket(socket_module.AF_UNIX, socket_module.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.socket)
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                raise EngineError(
                    "engine-unreachable",
                    f"cannot connect to the seeder's socket {self.socket} ({exc.strerror}); is the "
                    "vmcloud-seeder service running with that socket configured?",
                ) from None
            except PermissionError:
                raise EngineError(
                    "engine-unreachable",
                    f"no permission to use the seeder's socket {self.socket}; run as root or as a member "
                    "of the seeder's group",
                ) from None
            sock.sendall(frame)
            answer = read_frame(sock, MAX_RESPONSE_BYTES, deadline)
        except TimeoutError:
            raise EngineError(
                "engine-timeout",
                f"no complete answer to {method} on {self.socket} within {self.timeout:g} s; the seeder may be "
                "busy or hung",
            ) from None
        except EngineError:
            raise
        except OSError as exc:
            raise EngineError("engine-unreachable", f"the exchange on {self.socket} failed: {exc}") from None
        finally:
            sock.close()
        if answer.get("id") != request_id:
            raise EngineError("engine-protocol", f"the seeder answered request {answer.get('id')!r}, not {request_id}")
        if "error" in answer:
            error = answer["error"]
            if not isinstance(error, dict) or not isinstance(error.get("rule"), str):
                raise EngineError("engine-protocol", f"the seeder's error answer is malformed: {str(error)[:200]}")
            raise EngineError(error["rule"], str(error.get("message", "")))
        if "result" not in answer:
            raise EngineError("engine-protocol", "the seeder's answer has neither result nor error")
        return answer["result"]

    # ------------------------------------------------------------------ interface

    def add(self, torrent_bytes: bytes, directory: str, start: bool = True, web_seeds: Sequence[str] = ()) -> str:
        info = parse_torrent(torrent_bytes)
        directory = os.path.normpath(directory)
        if not os.path.isabs(directory):
            raise EngineError("engine-directory-invalid", f"download directory {directory!r} must be an absolute path")
        answer = self.call(
            "add",
            torrent=base64.b64encode(bytes(torrent_bytes)).decode("ascii"),
            directory=directory,
            start=bool(start),
            web_seeds=[str(url) for url in web_seeds],
        )
        if answer != info.info_hash:
            raise EngineError("engine-protocol", f"the seeder loaded {answer!r}, not {info.info_hash}")
        return info.info_hash

    def status(self, info_hash: str) -> Optional[TorrentStatus]:
        raw = self.call("status", info_hash=normalize_info_hash(info_hash))
        return None if raw is None else status_from_dict(raw)

    def list(self) -> list[TorrentStatus]:
        rows = self.call("list")
        if not isinstance(rows, list):
            raise EngineError("engine-protocol", "the seeder's list answer is not a list")
        return [status_from_dict(row) for row in rows]

    def remove(self, info_hash: str, delete_data: bool = False) -> bool:
        return bool(self.call("remove", info_hash=normalize_info_hash(info_hash), delete_data=bool(delete_data)))

    def ensure_seeding(self, info_hash: str) -> bool:
        return bool(self.call("ensure_seeding", info_hash=normalize_info_hash(info_hash)))

    def recheck(self, info_hash: str) -> None:
        self.call("recheck", info_hash=normalize_info_hash(info_hash))

    def announce(self, info_hash: str) -> bool:
        return bool(self.call("announce", info_hash=normalize_info_hash(info_hash)))

    # ------------------------------------------------------------------ libtorrent only

    def stop(self, info_hash: str) -> bool:
        """Pause the torrent (it stays loaded; ``ensure_seeding`` starts it again)."""
        return bool(self.call("stop", info_hash=normalize_info_hash(info_hash)))

    def peers(self, info_hash: str) -> list[dict[str, Any]]:
        """Connected peers and web seeds of a torrent (address, port, bytes up/down, web seed or not)."""
        return list(self.call("peers", info_hash=normalize_info_hash(info_hash)))

    def version(self) -> dict[str, Any]:
        return dict(self.call("version"))
