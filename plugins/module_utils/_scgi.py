# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""XML-RPC over SCGI on a unix socket (rtorrent's control channel).

Private to the collection; not a public API.

Only the SCGI framing is written here; the XML-RPC marshalling is the standard
library's ``xmlrpc.client``. A request is one connection: the netstring-framed
headers (``CONTENT_LENGTH`` first, then ``SCGI=1``, ``REQUEST_METHOD``,
``REQUEST_URI``), the XML body, then the server answers with CGI-style headers
(``Status: 200 OK``, ``Content-Type``, ``Content-Length``), a blank line and the
XML, and closes the connection.
"""

from __future__ import annotations

import socket
import time
import xmlrpc.client
from typing import Any

from ansible_collections.vmcloud.fleet.plugins.module_utils._engine import DEFAULT_RPC_TIMEOUT
from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import EngineError

# rtorrent answers d.multicall2 over every download in one document; 64 MiB is far
# above what a fleet's image set produces, and bounds memory on a runaway answer.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
_RECV_CHUNK = 65536


class ScgiError(EngineError):
    """The SCGI exchange with the engine failed (socket, timeout, framing)."""


def encode_request(body: bytes, uri: str = "/RPC2") -> bytes:
    """Frame ``body`` as one SCGI request: netstring headers, then the body."""
    headers = [
        ("CONTENT_LENGTH", str(len(body))),
        ("SCGI", "1"),
        ("REQUEST_METHOD", "POST"),
        ("REQUEST_URI", uri),
    ]
    block = b"".join(name.encode("ascii") + b"\0" + value.encode("ascii") + b"\0" for name, value in headers)
    return str(len(block)).encode("ascii") + b":" + block + b"," + body


def decode_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Split an SCGI answer into (status code, headers, body).

    The headers are CGI style: ``Name: value`` lines ended by CRLF (a bare LF is
    accepted too), then an empty line. A missing ``Status`` header means 200, as
    in CGI. ``Content-Length``, when present, must match the body.
    """
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, found, body = raw.partition(separator)
        if found:
            break
    else:
        raise ScgiError("engine-protocol", "the SCGI answer has no header block; is this an SCGI socket?")
    headers: dict[str, str] = {}
    for line in head.replace(b"\r\n", b"\n").split(b"\n"):
        name, colon, value = line.partition(b":")
        if not colon:
            raise ScgiError("engine-protocol", f"malformed SCGI answer header line {line[:80]!r}")
        headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    status = 200
    if "status" in headers:
        code = headers["status"].split(" ", 1)[0]
        if not code.isdigit():
            raise ScgiError("engine-protocol", f"malformed SCGI status {headers['status']!r}")
        status = int(code)
    if "content-length" in headers:
        length = headers["content-length"]
        if not length.isdigit() or int(length) != len(body):
            raise ScgiError(
                "engine-protocol",
                f"SCGI answer announced {length} body bytes but carried {len(body)}",
            )
    return status, headers, body


def exchange(
    socket_path: str,
    body: bytes,
    timeout: float = DEFAULT_RPC_TIMEOUT,
    uri: str = "/RPC2",
    max_response_bytes: int = MAX_RESPONSE_BYTES,
) -> bytes:
    """Send one SCGI request over the unix socket and return the raw answer.

    ``timeout`` bounds the whole exchange (connect, send and the full answer).
    """
    deadline = time.monotonic() + timeout
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(socket_path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise ScgiError(
                "engine-unreachable",
                f"cannot connect to the engine's SCGI socket {socket_path} ({exc.strerror}); "
                "is the BitTorrent daemon running with that socket configured?",
            ) from exc
        except PermissionError as exc:
            raise ScgiError(
                "engine-unreachable",
                f"no permission to use the engine's SCGI socket {socket_path}; "
                "run as the daemon's user or fix the socket's mode",
            ) from exc
        sock.sendall(encode_request(body, uri))
        chunks: list[bytes] = []
        received = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
            chunk = sock.recv(_RECV_CHUNK)
            if not chunk:
                break
            received += len(chunk)
            if received > max_response_bytes:
                raise ScgiError(
                    "engine-protocol",
                    f"the engine's answer exceeds {max_response_bytes} bytes; refusing to read more",
                )
            chunks.append(chunk)
        return b"".join(chunks)
    except TimeoutError as exc:
        raise ScgiError(
            "engine-timeout",
            f"no complete answer on {socket_path} within {timeout:g} s; the engine may be busy (hash checking) or hung",
        ) from exc
    except ScgiError:
        raise
    except OSError as exc:
        raise ScgiError("engine-unreachable", f"SCGI exchange on {socket_path} failed: {exc}") from exc
    finally:
        sock.close()


class ScgiTransport(xmlrpc.client.Transport):
    """An ``xmlrpc.client`` transport that speaks SCGI over a unix socket."""

    def __init__(self, socket_path: str, timeout: float = DEFAULT_RPC_TIMEOUT) -> None:
        super().__init__(use_datetime=False, use_builtin_types=True)
        self.socket_path = socket_path
        self.timeout = timeout

    def request(self, host: Any, handler: str, request_body: bytes, verbose: bool = False) -> Any:
        raw = exchange(self.socket_path, request_body, self.timeout, uri=handler or "/RPC2")
        status, headers, body = decode_response(raw)
        if status != 200:
            raise xmlrpc.client.ProtocolError(
                f"scgi://{self.socket_path}{handler}", status, headers.get("status", ""), headers
            )
        parser, unmarshaller = self.getparser()
        try:
            parser.feed(body)
            parser.close()
        except Exception as exc:  # expat raises its own ExpatError; any parse failure is a protocol error
            raise ScgiError("engine-protocol", f"the engine's answer is not XML-RPC: {exc}") from exc
        return unmarshaller.close()


def rtorrent_proxy(socket_path: str, timeout: float = DEFAULT_RPC_TIMEOUT) -> xmlrpc.client.ServerProxy:
    """A ``ServerProxy`` whose calls go to rtorrent over its SCGI unix socket.

    Dotted commands are reached with ``getattr``: ``getattr(proxy, "d.hash")(h)``.
    """
    return xmlrpc.client.ServerProxy(
        "http://rtorrent-scgi/RPC2",
        transport=ScgiTransport(socket_path, timeout),
        use_builtin_types=True,
    )
