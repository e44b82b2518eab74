# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Length-prefixed JSON frames: the vmcloud seeder's control protocol on its unix socket.

Private to the collection; not a public API. Standard library only: both ends run on
hypervisors (the client in modules and imgdist, the server in ``_seeder``).

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON, whose
top level is an object. A request is ``{"id": N, "method": NAME, "params": {...}}``; the
answer is ``{"id": N, "result": ...}`` or ``{"id": N, "error": {"rule": R, "message": M}}``.
One request per connection. A frame announcing more than the reader's limit is refused
before its body is read; anything else that is not such a frame is ``engine-protocol``.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from typing import Any, Optional

from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import EngineError

HEADER = struct.Struct(">I")
# A .torrent is at most 32 MiB (_torrent.MAX_TORRENT_BYTES), about 43 MiB in base64.
MAX_REQUEST_BYTES = 48 * 1024 * 1024
# A list over every torrent of a host is far smaller; this bounds memory on a runaway answer.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


class FrameError(EngineError):
    """A frame that is not length-prefixed JSON, or that is too large."""

    def __init__(self, message: str) -> None:
        super().__init__("engine-protocol", message)


def encode_frame(message: dict[str, Any], max_bytes: Optional[int] = None) -> bytes:
    """One frame carrying ``message`` (a JSON object)."""
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    if max_bytes is not None and len(body) > max_bytes:
        raise FrameError(f"a {len(body)}-byte frame exceeds the limit of {max_bytes} bytes; refusing to send it")
    return HEADER.pack(len(body)) + body


def decode_body(body: bytes) -> dict[str, Any]:
    """The JSON object in a frame's body."""
    try:
        message = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FrameError(f"the frame is not UTF-8 JSON ({exc}); is this the vmcloud seeder's socket?") from None
    if not isinstance(message, dict):
        raise FrameError(f"the frame holds a JSON {type(message).__name__}, not an object")
    return message


def _recv_exactly(sock: socket.socket, count: int, deadline: float, what: str) -> bytes:
    chunks: list[bytes] = []
    remaining = count
    while remaining:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        chunk = sock.recv(min(remaining, 1 << 20))
        if not chunk:
            got = count - remaining
            raise FrameError(f"the connection closed after {got} of the {count} bytes of the {what}")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(sock: socket.socket, max_bytes: int, deadline: float) -> dict[str, Any]:
    """Read one frame from ``sock``; its body may be at most ``max_bytes`` long.

    Raises ``FrameError`` (engine-protocol) for a short, oversized or malformed frame and
    ``TimeoutError`` when ``deadline`` (a ``time.monotonic`` value) passes.
    """
    header = _recv_exactly(sock, HEADER.size, deadline, "frame header")
    (length,) = HEADER.unpack(header)
    if length > max_bytes:
        raise FrameError(f"a frame announces {length} bytes, over the limit of {max_bytes}; refused unread")
    return decode_body(_recv_exactly(sock, length, deadline, "frame body"))
