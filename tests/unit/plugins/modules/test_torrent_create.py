# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""vmcloud.fleet.torrent_create: check → apply → check → apply, diff, refusals."""

from __future__ import annotations

import hashlib
import os

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils._torrent import parse_torrent
from ansible_collections.vmcloud.fleet.plugins.modules import torrent_create

ANNOUNCE = "http://127.0.0.1:6969/announce"


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "alma9.qcow2"
    path.write_bytes(os.urandom(300_000))
    os.utime(path, (1_700_000_000, 1_700_000_000))
    return path


def test_check_apply_check_apply(run_module, image, tmp_path):
    dest = tmp_path / "alma9.qcow2.torrent"
    args = {"path": str(image), "dest": str(dest), "announce": [ANNOUNCE]}
    results = [
        run_module(torrent_create, _ansible_check_mode=True, _ansible_diff=True, **args),
        run_module(torrent_create, _ansible_diff=True, **args),
        run_module(torrent_create, _ansible_check_mode=True, **args),
        run_module(torrent_create, **args),
    ]
    assert [r["changed"] for r in results] == [True, True, False, False]
    first = results[0]
    assert first["diff"]["before"] == {"info_hash": None, "torrent_sha256": None}
    assert first["diff"]["after"] == {"info_hash": first["info_hash"], "torrent_sha256": first["torrent_sha256"]}
    # Check mode predicted exactly what apply wrote.
    assert {r["info_hash"] for r in results} == {first["info_hash"]}
    assert {r["torrent_sha256"] for r in results} == {first["torrent_sha256"]}
    data = dest.read_bytes()
    assert hashlib.sha256(data).hexdigest() == first["torrent_sha256"]
    info = parse_torrent(data)
    assert info.info_hash == first["info_hash"]
    assert info.creation_date == 1_700_000_000  # the file's mtime by default
    assert first["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
    assert first["size"] == 300_000
    assert first["piece_size"] == 32768
    assert first["pieces"] == 10
    assert first["name"] == "alma9.qcow2"
    assert first["torrent"] == str(dest)
    # Once the .torrent exists, 'size' is still the image's, not the .torrent file's.
    assert [r["size"] for r in results] == [300_000] * 4


def test_check_mode_writes_nothing(run_module, image, tmp_path):
    dest = tmp_path / "t.torrent"
    result = run_module(torrent_create, _ansible_check_mode=True, path=str(image), dest=str(dest), announce=[ANNOUNCE])
    assert result["changed"] is True
    assert not dest.exists()
    assert os.listdir(tmp_path) == [image.name]


def test_changed_options_rewrite(run_module, image, tmp_path):
    dest = tmp_path / "t.torrent"
    base = {"path": str(image), "dest": str(dest), "announce": [ANNOUNCE]}
    first = run_module(torrent_create, **base)
    same_hash = run_module(torrent_create, _ansible_diff=True, comment="new comment", **base)
    assert same_hash["changed"] is True
    assert same_hash["info_hash"] == first["info_hash"]  # the comment is outside 'info'
    assert same_hash["diff"]["before"]["torrent_sha256"] == first["torrent_sha256"]
    bigger = run_module(torrent_create, piece_size=65536, web_seeds=["http://mirror/alma9.qcow2"], creation_date=5,
                        **base)
    assert bigger["changed"] is True and bigger["piece_size"] == 65536
    assert bigger["info_hash"] != first["info_hash"]
    info = parse_torrent(dest.read_bytes())
    assert info.web_seeds == ["http://mirror/alma9.qcow2"] and info.creation_date == 5
    assert (
        run_module(torrent_create, piece_size=65536, web_seeds=["http://mirror/alma9.qcow2"], creation_date=5,
                   **base)["changed"]
        is False
    )


def test_image_change_is_detected(run_module, image, tmp_path):
    dest = tmp_path / "t.torrent"
    args = {"path": str(image), "dest": str(dest), "announce": [ANNOUNCE], "creation_date": 1}
    first = run_module(torrent_create, **args)
    data = image.read_bytes()
    image.write_bytes(bytes([data[0] ^ 0xFF]) + data[1:])  # always a different first byte
    second = run_module(torrent_create, **args)
    assert second["changed"] is True and second["info_hash"] != first["info_hash"]


@pytest.mark.parametrize(
    ("extra", "rule"),
    [
        ({"announce": ["ftp://tracker/announce"]}, "torrent-announce-invalid"),
        ({"piece_size": 1000}, "torrent-piece-size-invalid"),
        ({"name": "../escape"}, "torrent-malformed"),
        ({"path": "/nonexistent/image.qcow2"}, "image-unreadable"),
    ],
)
def test_refusals_name_the_rule(run_module, image, tmp_path, extra, rule):
    dest = tmp_path / "t.torrent"
    args = dict({"path": str(image), "dest": str(dest), "announce": [ANNOUNCE]}, **extra)
    result = run_module(torrent_create, **args)
    assert result["failed"] is True
    assert result["rule"] == rule
    assert result["msg"].startswith(rule + ":")
    assert not dest.exists()


def test_private_torrent_for_sites_whose_images_must_not_leave_the_fleet(run_module, image, tmp_path):
    dest = tmp_path / "alma9.qcow2.torrent"
    args = {"path": str(image), "dest": str(dest), "announce": [ANNOUNCE]}
    public = run_module(torrent_create, **args)
    results = [run_module(torrent_create, _ansible_check_mode=True, private=True, **args),
               run_module(torrent_create, private=True, **args),
               run_module(torrent_create, private=True, **args)]
    assert [r["changed"] for r in results] == [True, True, False]
    assert results[1]["private"] is True and public["private"] is False
    assert results[1]["info_hash"] != public["info_hash"]  # a new torrent: the index must name it
    assert parse_torrent(dest.read_bytes()).private is True
