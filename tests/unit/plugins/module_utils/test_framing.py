# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The seeder's framing and the libtorrent client's handling of answers, against a scripted socket."""

from __future__ import annotations

import json
import os
import socket
import struct
import tempfile
import threading
import time

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils import _framing
from ansible_collections.vmcloud.fleet.plugins.module_utils._engine import DEFAULT_SOCKETS, ENGINES, engine_for
from ansible_collections.vmcloud.fleet.plugins.module_utils._engine_libtorrent import LibtorrentEngine
from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import EngineError
from ansible_collections.vmcloud.fleet.plugins.module_utils._seeder import DEFAULTS, ConfigError, check_config


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


class Scripted:
    """A unix socket server that reads one request frame and answers with fixed bytes."""

    def __init__(self, answer) -> None:
        self.directory = tempfile.mkdtemp(prefix="vmc-")
        self.path = os.path.join(self.directory, "s.sock")
        self.answer = answer
        self.requests: list = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(1)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        conn, _unused = self.listener.accept()
        with conn:
            request = _framing.read_frame(conn, _framing.MAX_REQUEST_BYTES, time.monotonic() + 5)
            self.requests.append(request)
            answer = self.answer(request) if callable(self.answer) else self.answer
            conn.sendall(answer)

    def close(self) -> None:
        self.listener.close()
        os.unlink(self.path)
        os.rmdir(self.directory)


@pytest.fixture
def scripted():
    made = []

    def make(answer) -> LibtorrentEngine:
        server = Scripted(answer)
        made.append(server)
        return LibtorrentEngine(socket=server.path, timeout=3)

    yield make
    for server in made:
        server.close()


def test_round_trip():
    encoded = _framing.encode_frame({"id": 1, "method": "list", "params": {}})
    (length,) = struct.unpack(">I", encoded[:4])
    assert length == len(encoded) - 4
    assert _framing.decode_body(encoded[4:]) == {"id": 1, "method": "list", "params": {}}


@pytest.mark.parametrize(
    ("answer", "fragment"),
    [
        (frame(b"not json"), "not UTF-8 JSON"),
        (frame(b"\xff\xfe"), "not UTF-8 JSON"),
        (frame(b"[1, 2]"), "not an object"),
        (b"\x00\x00", "frame header"),  # closed inside the header
        (struct.pack(">I", 100) + b"{}", "frame body"),  # closed inside the body
        (frame(json.dumps({"id": 999, "result": []}).encode()), "answered request 999"),
        (lambda r: frame(json.dumps({"id": r["id"]}).encode()), "neither result nor error"),
        (lambda r: frame(json.dumps({"id": r["id"], "error": "boom"}).encode()), "error answer is malformed"),
        (lambda r: frame(json.dumps({"id": r["id"], "result": {"x": 1}}).encode()), "list answer is not a list"),
        (lambda r: frame(json.dumps({"id": r["id"], "result": [{"info_hash": "a"}]}).encode()), "status is malformed"),
    ],
)
def test_malformed_answers_are_engine_protocol(scripted, answer, fragment):
    engine = scripted(answer)
    with pytest.raises(EngineError) as excinfo:
        engine.list()
    assert excinfo.value.rule == "engine-protocol"
    assert fragment in excinfo.value.message


def test_oversized_answer_is_refused_unread(scripted):
    engine = scripted(struct.pack(">I", _framing.MAX_RESPONSE_BYTES + 1))
    with pytest.raises(EngineError) as excinfo:
        engine.list()
    assert excinfo.value.rule == "engine-protocol"
    assert "refused unread" in excinfo.value.message


def test_oversized_request_is_refused_before_sending():
    with pytest.raises(EngineError) as excinfo:
        _framing.encode_frame({"torrent": "x" * 100}, max_bytes=50)
    assert excinfo.value.rule == "engine-protocol"


def test_read_frame_refuses_announced_oversize_without_reading():
    left, right = socket.socketpair()
    with left, right:
        left.sendall(struct.pack(">I", 1 << 30))
        with pytest.raises(_framing.FrameError) as excinfo:
            _framing.read_frame(right, 1024, time.monotonic() + 2)
    assert excinfo.value.rule == "engine-protocol"


def test_error_answer_keeps_the_seeders_rule(scripted):
    def answer(request):
        error = {"rule": "torrent-not-loaded", "message": "no"}
        return frame(json.dumps({"id": request["id"], "error": error}).encode())

    engine = scripted(answer)
    with pytest.raises(EngineError) as excinfo:
        engine.ensure_seeding("A" * 40)
    assert (excinfo.value.rule, excinfo.value.message) == ("torrent-not-loaded", "no")


def test_request_names_method_and_normalized_hash(scripted):
    def server_answer(request):
        return frame(json.dumps({"id": request["id"], "result": None}).encode())
    engine = scripted(server_answer)
    assert engine.status("AB" * 20) is None


def test_silent_seeder_is_engine_timeout(tmp_path):
    directory = tempfile.mkdtemp(prefix="vmc-")
    path = os.path.join(directory, "s.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    try:
        with pytest.raises(EngineError) as excinfo:
            LibtorrentEngine(socket=path, timeout=0.5).list()
        assert excinfo.value.rule == "engine-timeout"
    finally:
        listener.close()
        os.unlink(path)
        os.rmdir(directory)


def test_engine_choice_and_default_socket():
    assert ENGINES == ("rtorrent", "libtorrent")
    engine = engine_for("libtorrent")
    assert isinstance(engine, LibtorrentEngine) and engine.socket == DEFAULT_SOCKETS["libtorrent"]
    assert engine.socket == "/run/vmcloud/seeder.socket"
    assert engine_for("rtorrent").socket == "/run/rtorrent/rpc.socket"
    with pytest.raises(EngineError) as excinfo:
        engine_for("transmission")
    assert excinfo.value.rule == "engine-unknown"


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ([], "expected a JSON object"),
        ({"sockett": "/x"}, "unknown key(s) sockett"),
        ({"dht": "yes"}, "dht must be true or false"),
        ({"max_peers": True}, "max_peers must be an integer"),
        ({"socket": "relative.sock"}, "socket must be an absolute path"),
        ({"socket_mode": "rw"}, "socket_mode must be octal"),
        ({"upload_rate_kib": -1}, "upload_rate_kib must be 0"),
        ({"max_uploads": 0}, "max_uploads must be at least 1"),
        ({"dht_bootstrap": ["catalogue01"]}, "HOST:PORT"),
        ({"listen_interfaces": ""}, "listen_interfaces"),
        ({"session_settings": ["choking_algorithm"]}, "session_settings must be a mapping"),
        ({"session_settings": {"choking_algorithm": [2]}}, "session_settings.choking_algorithm must be a boolean"),
        ({"session_settings": {"upload_rate_limit": 1}}, "session_settings.upload_rate_limit is set by the seeder"),
        ({"super_seeding": 1}, "super_seeding must be true or false"),
    ],
)
def test_seeder_config_refusals(document, fragment):
    with pytest.raises(ConfigError) as excinfo:
        check_config(document)
    assert excinfo.value.rule == "config-invalid"
    assert fragment in excinfo.value.message


def test_seeder_config_defaults():
    assert check_config({}) == DEFAULTS
    assert DEFAULTS["dht"] and DEFAULTS["pex"] and not DEFAULTS["lsd"]  # as the rtorrent role
