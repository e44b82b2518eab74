# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Distribution methods other than bittorrent (_methods): http from a loopback server with Range
support (interrupted and resumed), sharedfs from a directory, and the push methods' promotion of what
was pushed. Every one ends in the same ImageStore.promote."""

from __future__ import annotations

import http.server
import os
import re
import threading
import time

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils import _sync
from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._fetch import download_file
from ansible_collections.vmcloud.fleet.plugins.module_utils._methods import image_url, method_for
from ansible_collections.vmcloud.fleet.plugins.module_utils._store import ImageStore
from ansible_collections.vmcloud.fleet.plugins.module_utils._sync import sync
from tests.unit.sync_world import World, sha256_of, snapshot


class NoEngine:
    """Any engine call fails the test: the pull methods do not use one."""

    def __getattr__(self, name):
        raise AssertionError(f"the engine was called ({name}) by a method that has none")


class Origin(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root, ranges=True, cut_after=None, trickle=False, corrupt=False):
        super().__init__(("127.0.0.1", 0), Handler)
        self.root, self.ranges, self.cut_after, self.trickle, self.corrupt = root, ranges, cut_after, trickle, corrupt
        self.requests = []  # (path, Range header)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_):
        pass

    def do_GET(self):  # noqa: N802 - http.server's name
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        path = os.path.join(server.root, self.path.lstrip("/"))
        if not os.path.isfile(path):
            self.send_error(404)
            return
        with open(path, "rb") as handle:
            data = handle.read()
        if server.corrupt:
            data = bytes([data[0] ^ 1]) + data[1:]
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and server.ranges:
            start = int(match.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if server.trickle:
            for byte in body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.05)
            return
        if server.cut_after is not None:
            server.cut_after, cut = None, server.cut_after  # only the first answer is cut
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def world(tmp_path, monkeypatch) -> World:
    world = World(tmp_path)
    world.publish("alma", 9, compressed=True)
    world.publish("slc", 5, size=200_000)
    world.write_index(1)
    monkeypatch.setattr(_sync, "read_source", world.fetcher([]))
    return world


@pytest.fixture
def origin(world):
    servers = []

    def start(**kwargs):
        server = Origin(str(world.root / "origin"), **kwargs)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def held(world):
    return sorted(ImageStore(world.host_path("images")).manifest())


# --------------------------------------------------------------------------- http


def test_http_method_downloads_from_the_catalogue_and_promotes_without_an_engine(world, origin):
    server = origin()
    report = sync(world.options(distribution_method="http", http_url=server.url + "/"), NoEngine(), False)
    assert report.failures == []
    assert sorted(report.promoted) == sorted(world.published)
    assert held(world) == sorted(world.published)
    assert {image.engine for image in report.images} == {"none"}
    for published in world.published.values():
        stored = ImageStore(world.host_path("images")).path_of(published.entry)
        assert sha256_of(stored) == published.content_sha256


def test_http_method_resumes_with_a_range_after_the_server_closes_mid_body(world, origin, tmp_path):
    server = origin(cut_after=50_000)
    slc = next(p for p in world.published.values() if p.entry["name"] == "slc")
    dest = tmp_path / "slc.part"
    result = download_file(f"{server.url}/{slc.entry['file']}", str(dest), slc.entry["size"], timeout=10)
    assert result["resumed"] == 1
    assert [rng for _path, rng in server.requests] == [None, "bytes=50000-"]
    assert dest.read_bytes() == slc.path.read_bytes()


def test_http_method_resumes_what_an_interrupted_run_left_in_staging(world, origin):
    server = origin()
    slc = next(p for p in world.published.values() if p.entry["name"] == "slc")
    staged_dir = os.path.join(world.host_path("staging"), slc.info_hash)
    os.makedirs(staged_dir)
    with open(os.path.join(staged_dir, slc.entry["file"] + ".part"), "wb") as handle:
        handle.write(slc.path.read_bytes()[:70_000])
    report = sync(world.options(distribution_method="http", http_url=server.url, approved=[{"uuid": slc.uuid}]),
                  NoEngine(), False)
    assert report.failures == []
    assert report.promoted == [slc.uuid]
    assert (f"/{slc.entry['file']}", "bytes=70000-") in server.requests


def test_http_method_starts_over_when_the_server_ignores_ranges(world, origin, tmp_path):
    server = origin(ranges=False, cut_after=50_000)
    slc = next(p for p in world.published.values() if p.entry["name"] == "slc")
    dest = tmp_path / "slc.part"
    download_file(f"{server.url}/{slc.entry['file']}", str(dest), slc.entry["size"], timeout=10)
    assert dest.read_bytes() == slc.path.read_bytes()


def test_http_method_bytes_that_do_not_verify_are_refused_and_dropped(world, origin):
    server = origin(corrupt=True)
    slc = next(p for p in world.published.values() if p.entry["name"] == "slc")
    report = sync(world.options(distribution_method="http", http_url=server.url, approved=[{"uuid": slc.uuid}]),
                  NoEngine(), False)
    assert [(f["step"], f["rule"]) for f in report.failures] == [("promote", "sha256-mismatch")]
    assert held(world) == []
    assert not os.path.exists(os.path.join(world.host_path("staging"), slc.info_hash, slc.entry["file"]))


def test_http_method_overall_deadline_ends_a_trickling_server(world, origin, tmp_path):
    server = origin(trickle=True)
    slc = next(p for p in world.published.values() if p.entry["name"] == "slc")
    with pytest.raises(VmcloudError) as caught:
        download_file(f"{server.url}/{slc.entry['file']}", str(tmp_path / "x"), slc.entry["size"], timeout=0.5)
    assert caught.value.rule == "fetch-deadline"


def test_http_method_refuses_more_bytes_than_the_index_declares(world, origin, tmp_path):
    server = origin()
    slc = next(p for p in world.published.values() if p.entry["name"] == "slc")
    with pytest.raises(VmcloudError) as caught:
        download_file(f"{server.url}/{slc.entry['file']}", str(tmp_path / "x"), 1000, timeout=5)
    assert caught.value.rule == "size-cap"


def test_http_method_uses_the_web_seed_without_http_url(world):
    image = {"uuid": "u", "file": "a b.img", "web_seeds": ["http://cat/images/"]}
    assert image_url({}, image) == "http://cat/images/a%20b.img"
    assert image_url({}, dict(image, web_seeds=["http://cat/images/x.img"])) == "http://cat/images/x.img"
    with pytest.raises(VmcloudError) as caught:
        image_url({}, dict(image, web_seeds=[]))
    assert caught.value.rule == "option-invalid"


# --------------------------------------------------------------------------- sharedfs


def test_sharedfs_method_promotes_from_the_shared_directory(world):
    report = sync(world.options(distribution_method="sharedfs", sharedfs_dir=str(world.root / "origin")),
                  NoEngine(), False)
    assert report.failures == []
    assert held(world) == sorted(world.published)
    assert not os.path.exists(world.host_path("staging"))  # nothing copied to staging first


def test_sharedfs_method_a_wrong_file_on_the_mount_is_refused_and_left_alone(world):
    slc = next(p for p in world.published.values() if p.entry["name"] == "slc")
    slc.path.write_bytes(b"x" * slc.entry["size"])
    before = snapshot(world.root / "origin")
    report = sync(world.options(distribution_method="sharedfs", sharedfs_dir=str(world.root / "origin"),
                                approved=[{"uuid": slc.uuid}]), NoEngine(), False)
    assert [f["rule"] for f in report.failures] == ["sha256-mismatch"]
    assert snapshot(world.root / "origin") == before
    assert held(world) == []


def test_sharedfs_method_refuses_a_symlink_on_the_mount(world, tmp_path):
    slc = next(p for p in world.published.values() if p.entry["name"] == "slc")
    mount = tmp_path / "mount"
    mount.mkdir()
    (mount / slc.entry["file"]).symlink_to(slc.path)
    report = sync(world.options(distribution_method="sharedfs", sharedfs_dir=str(mount),
                                approved=[{"uuid": slc.uuid}]), NoEngine(), False)
    assert [f["rule"] for f in report.failures] == ["staged-unsafe"]


def test_sharedfs_method_without_a_directory_names_the_option(world):
    report = sync(world.options(distribution_method="sharedfs"), NoEngine(), False)
    assert {f["rule"] for f in report.failures} == {"option-invalid"}
    assert held(world) == []


# --------------------------------------------------------------------------- push methods, receiver side


@pytest.mark.parametrize("method", ["scp_wave", "scp_tsunami"])
def test_push_methods_promote_only_what_was_pushed(world, method):
    push_dir = world.host_path("push")
    slc = next(p for p in world.published.values() if p.entry["name"] == "slc")
    options = world.options(distribution_method=method, push_dir=push_dir, push_user=str(os.geteuid()),
                            approved=[{"uuid": slc.uuid}])
    report = sync(options, NoEngine(), False)
    assert [f["rule"] for f in report.failures] == ["staged-missing"]
    os.makedirs(os.path.join(push_dir, slc.info_hash))
    with open(os.path.join(push_dir, slc.info_hash, slc.entry["file"]), "wb") as handle:
        handle.write(slc.path.read_bytes())
    report = sync(options, NoEngine(), False)
    assert report.failures == []
    assert held(world) == [slc.uuid]


def test_unknown_method_is_refused():
    with pytest.raises(VmcloudError) as caught:
        method_for({"distribution_method": "carrier-pigeon"})
    assert caught.value.rule == "option-invalid"


def test_push_method_retirement_drops_what_no_desired_image_uses_from_the_push_area(world):
    push_dir = world.host_path("push")
    slc = next(p for p in world.published.values() if p.entry["name"] == "slc")
    stale = os.path.join(push_dir, "f" * 40)
    os.makedirs(stale)
    with open(os.path.join(stale, "old.img"), "wb") as handle:
        handle.write(b"old")
    os.makedirs(os.path.join(push_dir, slc.info_hash))
    with open(os.path.join(push_dir, slc.info_hash, slc.entry["file"]), "wb") as handle:
        handle.write(slc.path.read_bytes())
    report = sync(world.options(distribution_method="scp_wave", push_dir=push_dir, push_user=str(os.geteuid()),
                                approved=[{"uuid": slc.uuid}]), NoEngine(), False)
    assert report.failures == []
    assert report.removed == ["f" * 40]
    assert sorted(os.listdir(push_dir)) == [slc.info_hash]  # the pushed copy stays: it is the next round's source
