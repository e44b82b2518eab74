"""_fetch.read_source against real servers on 127.0.0.1: deadline, redirects, protocol errors.

Each server is a socket thread that sends scripted bytes (with pauses), so the client meets
what a hostile or broken catalogue sends. No timing asserts: the slow servers would hold the
client for minutes without the deadline, and the rule names which limit ended the fetch.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Callable, List

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import IndexRefused, VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._fetch import read_source
from ansible_collections.vmcloud.fleet.plugins.module_utils._index_service import fetch_and_accept
from tests.unit import index_factory as factory
from tests.unit import pki


class ScriptedServer:
    """Accepts connections on 127.0.0.1 and runs ``script(conn, request_bytes)`` for each."""

    def __init__(self, script: Callable[[socket.socket, bytes], None]) -> None:
        self.script = script
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests: List[bytes] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def url(self, path: str = "/index.yaml") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                conn, _unused = self.listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            request = b""
            try:
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    request += chunk
                self.requests.append(request)
                self.script(conn, request)
            except OSError:
                pass

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()
        self.listener.close()


@pytest.fixture
def serve():
    servers: List[ScriptedServer] = []

    def start(script):
        server = ScriptedServer(script)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def sends(*parts: bytes, pause: float = 0.0):
    def script(conn, _request):
        for part in parts:
            conn.sendall(part)
            if pause:
                time.sleep(pause)
    return script


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body


def refusal(url: str, rule: str, *fragments: str, **kwargs) -> VmcloudError:
    with pytest.raises(VmcloudError) as caught:
        read_source(url, max_size=kwargs.pop("max_size", 1 << 20), **kwargs)
    assert caught.value.rule == rule, str(caught.value)
    for fragment in fragments:
        assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)
    return caught.value


# ------------------------------------------------------------------ success


def test_reads_a_body_with_content_length(serve):
    server = serve(sends(ok(b"signed: {}\n")))
    assert read_source(server.url(), max_size=100) == (b"signed: {}\n", server.url())
    assert server.requests[0].startswith(b"GET /index.yaml HTTP/1.1\r\n")


def test_reads_a_chunked_body(serve):
    server = serve(sends(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                         b"5\r\nhello\r\n", b"6\r\n world\r\n", b"0\r\n\r\n"))
    assert read_source(server.url(), max_size=100)[0] == b"hello world"


def test_reads_a_body_ended_by_close(serve):
    server = serve(sends(b"HTTP/1.0 200 OK\r\n\r\nuntil close"))
    assert read_source(server.url(), max_size=100)[0] == b"until close"


def test_query_string_is_sent(serve):
    server = serve(sends(ok(b"x")))
    read_source(server.url("/index.yaml?v=2"), max_size=100)
    assert server.requests[0].startswith(b"GET /index.yaml?v=2 HTTP/1.1\r\n")


# ------------------------------------------------------------------ overall deadline


def drip(head: bytes, body: bytes = b"", interval: float = 0.1):
    def script(conn, _request):
        conn.sendall(head)
        for byte in body or b"x" * 100_000:
            conn.sendall(bytes([byte]))
            time.sleep(interval)
    return script


def test_a_body_sent_one_byte_at_a_time_ends_at_the_deadline(serve):
    server = serve(drip(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"))
    refusal(server.url(), "fetch-deadline", "1 s", server.url(), timeout=1)


def test_headers_sent_one_byte_at_a_time_end_at_the_deadline(serve):
    server = serve(drip(b"", b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000 + b"\r\n\r\n"))
    refusal(server.url(), "fetch-deadline", timeout=1)


def test_a_chunked_body_sent_slowly_ends_at_the_deadline(serve):
    chunks = b"".join(b"1\r\nx\r\n" for _unused in range(10_000))
    server = serve(drip(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", chunks, interval=0.02))
    refusal(server.url(), "fetch-deadline", timeout=1)


def test_a_server_that_never_answers_times_out(serve):
    server = serve(lambda conn, _request: time.sleep(3))
    refusal(server.url(), "fetch-deadline", timeout=1)


def test_the_deadline_spans_redirects(serve):
    hops = []

    def script(conn, request):
        hops.append(request)
        time.sleep(0.4)
        conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n")

    server = serve(script)
    refusal(server.url(), "fetch-deadline", timeout=1)
    assert 1 <= len(hops) <= 4


# ------------------------------------------------------------------ redirects


def redirect(location: bytes, status: bytes = b"302 Found"):
    return sends(b"HTTP/1.1 " + status + b"\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n")


@pytest.mark.parametrize("status", [b"301 Moved Permanently", b"302 Found", b"303 See Other",
                                    b"307 Temporary Redirect", b"308 Permanent Redirect"])
def test_a_redirect_on_the_same_origin_is_followed_and_reported(serve, status):
    def script(conn, request):
        if request.startswith(b"GET /index.yaml "):
            redirect(b"/v2/index.yaml", status)(conn, request)
        else:
            conn.sendall(ok(b"moved"))

    server = serve(script)
    assert read_source(server.url(), max_size=100) == (b"moved", server.url("/v2/index.yaml"))


def test_a_redirect_to_another_port_is_refused(serve):
    other = serve(sends(ok(b"decoy")))
    server = serve(redirect(other.url().encode()))
    refusal(server.url(), "fetch-redirect", other.url(), "other origin")
    assert other.requests == []


@pytest.mark.parametrize("location", [b"http://localhost:{port}/index.yaml", b"https://127.0.0.1:{port}/index.yaml",
                                      b"file:///etc/passwd", b"ftp://127.0.0.1/index.yaml",
                                      b"//evil.example/index.yaml"])
def test_a_redirect_to_another_host_or_scheme_is_refused(serve, location):
    holder = {}

    def handler(conn, request):
        return redirect(location.replace(b"{port}", str(holder["port"]).encode()))(conn, request)

    server = serve(handler)
    holder["port"] = server.port
    refusal(server.url(), "fetch-redirect")


def test_a_redirect_loop_is_refused(serve):
    server = serve(redirect(b"/index.yaml"))
    refusal(server.url(), "fetch-redirect", "more than")


def test_a_redirect_without_location_is_a_protocol_error(serve):
    server = serve(sends(b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n"))
    refusal(server.url(), "fetch-protocol", "Location")


# ------------------------------------------------------------------ protocol errors


@pytest.mark.parametrize(
    ("response", "fragment"),
    [
        (b"HTTP/1.1 abc OK\r\n\r\n", "status line"),
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "status line"),
        (b"", "status line"),
        (b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n", "line"),
        (b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(150)) + b"\r\n", "headers"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", "body"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", "body"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b", "10 of 100"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\nbody", "Content-Length"),
    ],
    ids=["bad-status", "not-http", "empty", "long-header", "many-headers", "truncated-chunk", "bad-chunk-size",
         "short-body", "bad-length"],
)
def test_protocol_errors_are_one_rule(serve, response, fragment):
    server = serve(sends(response))
    refusal(server.url(), "fetch-protocol", fragment)


def test_http_errors_are_fetch_failed(serve):
    server = serve(sends(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))
    refusal(server.url(), "fetch-failed", "HTTP 404")


def test_a_closed_port_is_fetch_failed():
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    refusal(f"http://127.0.0.1:{port}/index.yaml", "fetch-failed", "cannot fetch")


# ------------------------------------------------------------------ size cap


def test_a_declared_length_over_the_cap_is_refused_before_reading(serve):
    server = serve(sends(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"))
    refusal(server.url(), "size-cap", "5000", max_size=1000)


def test_a_body_over_the_cap_is_refused(serve):
    server = serve(sends(b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * 5000))
    refusal(server.url(), "size-cap", max_size=1000)


# ------------------------------------------------------------------ addresses


@pytest.mark.parametrize("url", ["http://127.0.0.1:port/index.yaml", "http://127.0.0.1/in dex.yaml",
                                 "http:///index.yaml", "http://127.0.0.1:99999/index.yaml",
                                 "http://user@127.0.0.1/index.yaml", "http://127.0.0.1/index\x00.yaml"])
def test_malformed_addresses_are_refused(url):
    refusal(url, "fetch-failed", "not a valid http(s) URL")


def test_local_paths_are_read(tmp_path):
    path = tmp_path / "index.yaml"
    path.write_bytes(b"local")
    assert read_source(str(path), max_size=10) == (b"local", None)
    refusal(str(path), "size-cap", max_size=2)


# ------------------------------------------------------------------ the URL check uses the final address


@pytest.fixture(scope="module")
def signing():
    ca = pki.make_ca("fetch CA")
    return ca, pki.make_endorser(ca, "lab-endorser", key_type="ec")


def options_for(tmp_path, ca, src: str) -> dict:
    anchor = tmp_path / "anchor.pem"
    anchor.write_bytes(pki.pem(ca.cert))
    return {"src": src, "trust_anchors": [str(anchor)], "max_size": 1 << 20, "timeout": 10,
            "state_dir": str(tmp_path / "state"), "reference_time": factory.NOW}


def serve_moved_index(serve, data_for):
    def script(conn, request):
        if request.startswith(b"GET /index.yaml "):
            redirect(b"/v2/index.yaml")(conn, request)
        else:
            conn.sendall(ok(data_for(server)))

    server = serve(script)
    return server


def test_the_index_url_is_compared_with_the_address_that_answered(serve, signing, tmp_path):
    ca, endorser = signing

    def data_for(server):
        return factory.document(factory.signed_index([factory.image(1)], url=server.url()), [endorser])

    server = serve_moved_index(serve, data_for)
    options = options_for(tmp_path, ca, server.url())
    with pytest.raises(IndexRefused) as caught:
        fetch_and_accept(options, persist=True)
    assert caught.value.rule == "url-mismatch", str(caught.value)
    assert f"was fetched from {server.url('/v2/index.yaml')}" in str(caught.value)
    assert not (tmp_path / "state").exists()


def test_an_index_published_at_the_final_address_is_accepted_after_a_redirect(serve, signing, tmp_path):
    ca, endorser = signing

    def data_for(server):
        return factory.document(factory.signed_index([factory.image(1)], url=server.url("/v2/index.yaml")),
                                [endorser])

    server = serve_moved_index(serve, data_for)
    accepted, _unused = fetch_and_accept(options_for(tmp_path, ca, server.url()), persist=True)
    assert accepted.index.url == server.url("/v2/index.yaml") and accepted.advanced
