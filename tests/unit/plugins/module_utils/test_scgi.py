# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SCGI framing for XML-RPC, against a small SCGI server on a unix socket. No ansible imports."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import xmlrpc.client
from collections.abc import Callable, Iterator

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils._scgi import (
    ScgiError,
    decode_response,
    encode_request,
    exchange,
    rtorrent_proxy,
)


def parse_scgi_request(raw: bytes) -> tuple[list[tuple[str, str]], bytes]:
    length, _unused, rest = raw.partition(b":")
    block, comma, body = rest[: int(length)], rest[int(length) : int(length) + 1], rest[int(length) + 1 :]
    assert comma == b","
    fields = block.split(b"\0")
    assert fields[-1] == b""
    pairs = [(fields[i].decode(), fields[i + 1].decode()) for i in range(0, len(fields) - 1, 2)]
    return pairs, body


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b":" not in data:
        data += conn.recv(4096)
    length = int(data.split(b":", 1)[0])
    header_end = len(str(length)) + 1 + length + 1
    while len(data) < header_end:
        data += conn.recv(4096)
    pairs, body = parse_scgi_request(data)
    content_length = int(dict(pairs)["CONTENT_LENGTH"])
    while len(body) < content_length:
        chunk = conn.recv(4096)
        data += chunk
        body += chunk
    return data


Handler = Callable[[bytes], bytes]


@pytest.fixture
def scgi_server() -> Iterator[Callable[[Handler], str]]:
    """Start an SCGI server whose answers come from a handler(raw request) -> raw answer."""
    directory = tempfile.mkdtemp(prefix="scgi-")
    path = os.path.join(directory, "rpc.socket")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)
    server.settimeout(0.05)  # so the loop notices stop quickly
    stop = threading.Event()
    holder: dict[str, Handler] = {}
    seen: list[bytes] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _unused = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(10)
            with conn:
                raw = read_request(conn)
                seen.append(raw)
                answer = holder["handler"](raw)
                if answer:
                    conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)

    def start(handler: Handler) -> str:
        holder["handler"] = handler
        if not thread.is_alive():
            thread.start()
        return path

    start.seen = seen  # type: ignore[attr-defined]
    yield start
    stop.set()
    server.close()
    thread.join(timeout=5)
    os.unlink(path)
    os.rmdir(directory)


def xml_answer(body: bytes, status: str = "200 OK", content_length: int | None = None) -> bytes:
    length = len(body) if content_length is None else content_length
    head = f"Status: {status}\r\nContent-Type: text/xml\r\nContent-Length: {length}\r\n\r\n"
    return head.encode() + body


def echo_handler(raw: bytes) -> bytes:
    _unused, body = parse_scgi_request(raw)
    params, method = xmlrpc.client.loads(body, use_builtin_types=True)
    result = {"method": method, "params": list(params)}
    return xml_answer(xmlrpc.client.dumps((result,), methodresponse=True).encode())


def test_encode_request_layout():
    raw = encode_request(b"<xml/>")
    pairs, body = parse_scgi_request(raw)
    assert pairs == [("CONTENT_LENGTH", "6"), ("SCGI", "1"), ("REQUEST_METHOD", "POST"), ("REQUEST_URI", "/RPC2")]
    assert body == b"<xml/>"
    assert raw.startswith(b"62:CONTENT_LENGTH\x006\x00SCGI\x001\x00")


def test_decode_response_variants():
    assert decode_response(b"Status: 200 OK\r\nContent-Length: 2\r\n\r\nhi") == (
        200,
        {"status": "200 OK", "content-length": "2"},
        b"hi",
    )
    status, headers, body = decode_response(b"Content-Type: text/xml\n\n<x/>")
    assert (status, body) == (200, b"<x/>")
    assert decode_response(b"Status: 404 Not Found\r\n\r\n")[0] == 404


@pytest.mark.parametrize(
    "raw",
    [
        b"no header block at all",
        b"Status: 200 OK\r\nContent-Length: 5\r\n\r\nhi",
        b"Status: abc\r\n\r\nx",
        b"not a header line\r\n\r\nx",
    ],
)
def test_decode_response_refuses(raw):
    with pytest.raises(ScgiError) as excinfo:
        decode_response(raw)
    assert excinfo.value.rule == "engine-protocol"


def test_proxy_round_trip(scgi_server):
    path = scgi_server(echo_handler)
    proxy = rtorrent_proxy(path, timeout=5)
    payload = b"\x00\xffd8:announce"
    answer = getattr(proxy, "load.raw_start_verbose")("", payload, 'd.directory.set="/srv/x"')
    assert answer == {"method": "load.raw_start_verbose", "params": ["", payload, 'd.directory.set="/srv/x"']}
    pairs, _unused = parse_scgi_request(scgi_server.seen[-1])
    assert [name for name, _unused in pairs] == ["CONTENT_LENGTH", "SCGI", "REQUEST_METHOD", "REQUEST_URI"]
    assert dict(pairs)["REQUEST_URI"] == "/RPC2"


def test_proxy_64bit_integers(scgi_server):
    big = 5 * 1024**3

    def handler(raw: bytes) -> bytes:
        body = (
            b"<?xml version='1.0'?><methodResponse><params><param><value><i8>%d</i8></value>"
            b"</param></params></methodResponse>" % big
        )
        return xml_answer(body)

    proxy = rtorrent_proxy(scgi_server(handler), timeout=5)
    assert getattr(proxy, "d.size_bytes")("ABC") == big


def test_proxy_fault(scgi_server):
    def handler(raw: bytes) -> bytes:
        return xml_answer(xmlrpc.client.dumps(xmlrpc.client.Fault(-501, "Could not find info-hash.")).encode())

    proxy = rtorrent_proxy(scgi_server(handler), timeout=5)
    with pytest.raises(xmlrpc.client.Fault) as excinfo:
        getattr(proxy, "d.hash")("0" * 40)
    assert excinfo.value.faultCode == -501


def test_proxy_http_error_status(scgi_server):
    proxy = rtorrent_proxy(scgi_server(lambda raw: xml_answer(b"", status="500 Internal Server Error")), timeout=5)
    with pytest.raises(xmlrpc.client.ProtocolError) as excinfo:
        proxy.system.listMethods()
    assert excinfo.value.errcode == 500


def test_proxy_not_xml(scgi_server):
    proxy = rtorrent_proxy(scgi_server(lambda raw: xml_answer(b"<<<not xml")), timeout=5)
    with pytest.raises(ScgiError) as excinfo:
        proxy.system.listMethods()
    assert excinfo.value.rule == "engine-protocol"


def test_exchange_timeout(scgi_server):
    release = threading.Event()

    def slow(raw: bytes) -> bytes:
        release.wait(5)
        return b""

    path = scgi_server(slow)
    try:
        with pytest.raises(ScgiError) as excinfo:
            exchange(path, b"<x/>", timeout=0.3)
        assert excinfo.value.rule == "engine-timeout"
    finally:
        release.set()


def test_exchange_response_cap(scgi_server):
    path = scgi_server(lambda raw: xml_answer(b"x" * 200000))
    with pytest.raises(ScgiError) as excinfo:
        exchange(path, b"<x/>", timeout=5, max_response_bytes=1000)
    assert excinfo.value.rule == "engine-protocol"


def test_exchange_missing_socket(tmp_path):
    with pytest.raises(ScgiError) as excinfo:
        exchange(str(tmp_path / "absent.socket"), b"<x/>", timeout=1)
    assert excinfo.value.rule == "engine-unreachable"
    assert "is the BitTorrent daemon running" in excinfo.value.message


def test_exchange_refused(tmp_path):
    path = str(tmp_path / "dead.socket")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.close()  # the path exists, nobody listens
    with pytest.raises(ScgiError) as excinfo:
        exchange(path, b"<x/>", timeout=1)
    assert excinfo.value.rule == "engine-unreachable"
