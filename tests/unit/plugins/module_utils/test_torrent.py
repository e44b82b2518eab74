# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Torrent metainfo: parse, verify, create. Pure Python: runs in both venvs (no ansible)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import pytest
from fastbencode import bdecode, bencode

from ansible_collections.vmcloud.fleet.plugins.module_utils import _torrent
from ansible_collections.vmcloud.fleet.plugins.module_utils._torrent import (
    TorrentError,
    auto_piece_length,
    create_torrent,
    describe_torrent_file,
    ensure_torrent_file,
    normalize_info_hash,
    parse_torrent,
    read_torrent_file,
    verify_torrent,
)

ANNOUNCE = "http://127.0.0.1:6969/announce"
KIB = 1024
MIB = 1024 * KIB


def mktorrent() -> str:
    path = shutil.which("mktorrent")
    if path is None:
        pytest.fail(
            "mktorrent is not installed; these tests compare against it. "
            "`make test` installs it (Debian package mktorrent): apt-get install mktorrent"
        )
    return path


def make_file(directory, name: str, size: int, seed: int = 1) -> str:
    path = os.path.join(str(directory), name)
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB of deterministic bytes
    with open(path, "wb") as handle:
        remaining = size
        counter = 0
        while remaining > 0:
            chunk = hashlib.sha256(block + counter.to_bytes(8, "big")).digest() + block
            handle.write(chunk[:remaining])
            remaining -= min(len(chunk), remaining)
            counter += 1
    return path


def torrent_dict(info_overrides: dict | None = None) -> dict:
    info = {b"length": 40000, b"name": b"img.raw", b"piece length": 16384, b"pieces": b"\x01" * 60}
    info.update(info_overrides or {})
    return {b"announce": ANNOUNCE.encode(), b"info": info}


def rule_of(excinfo) -> str:
    return excinfo.value.rule


@pytest.fixture
def image(tmp_path):
    return make_file(tmp_path, "alma9.qcow2", 3 * MIB + 12345)


# ----------------------------------------------------------------- against mktorrent


@pytest.mark.parametrize(
    ("size", "exponent"),
    [(3 * MIB + 12345, 15), (3 * MIB + 12345, 18), (8 * MIB, 20), (100, 15), (5 * MIB, 22)],
)
def test_info_hash_matches_mktorrent(tmp_path, size, exponent):
    tool = mktorrent()
    path = make_file(tmp_path, "image.raw", size, seed=size + exponent)
    out = tmp_path / "mk.torrent"
    subprocess.run(
        [tool, "-a", ANNOUNCE, "-l", str(exponent), "-o", str(out), path],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    theirs = parse_torrent(out.read_bytes())
    ours = create_torrent(path, announce=[ANNOUNCE], piece_length=1 << exponent, creation_date=0)
    assert ours.info.info_hash == theirs.info_hash
    assert ours.info.piece_length == theirs.piece_length == 1 << exponent
    assert ours.info.pieces_count == theirs.pieces_count
    assert theirs.created_by.startswith("mktorrent")


def test_mktorrent_multiple_announce_and_web_seed_parse(tmp_path, image):
    tool = mktorrent()
    out = tmp_path / "mk.torrent"
    subprocess.run(
        [tool, "-a", ANNOUNCE, "-a", "http://backup:6969/announce", "-w", "http://web/x", "-o", str(out), image],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    info = parse_torrent(out.read_bytes())
    assert info.trackers == [ANNOUNCE, "http://backup:6969/announce"]
    assert info.web_seeds == ["http://web/x"]
    ours = create_torrent(
        image,
        announce=[ANNOUNCE, "http://backup:6969/announce"],
        web_seeds=["http://web/x"],
        piece_length=info.piece_length,
    )
    assert ours.info.info_hash == info.info_hash
    assert ours.info.announce_list == info.announce_list


# ----------------------------------------------------------------- creation


def test_create_private_sets_bep27_flag(image):
    public = create_torrent(image, announce=[ANNOUNCE], creation_date=1700000000)
    private = create_torrent(image, announce=[ANNOUNCE], creation_date=1700000000, private=True)
    assert private.info.private is True and public.info.private is False
    assert bdecode(private.data)[b"info"][b"private"] == 1  # inside info: it is part of the info-hash
    assert private.info.info_hash != public.info.info_hash
    assert private.content_sha256 == public.content_sha256
    assert create_torrent(image, announce=[ANNOUNCE], creation_date=1700000000, private=False).data == public.data


def test_create_is_deterministic_and_complete(image):
    first = create_torrent(image, announce=[ANNOUNCE], creation_date=1700000000, comment="alma 9")
    second = create_torrent(image, announce=[ANNOUNCE], creation_date=1700000000, comment="alma 9")
    assert first.data == second.data
    assert first.torrent_sha256 == hashlib.sha256(first.data).hexdigest()
    with open(image, "rb") as handle:
        content = handle.read()
    assert first.content_sha256 == hashlib.sha256(content).hexdigest()
    info = first.info
    assert info.name == "alma9.qcow2"
    assert info.length == len(content)
    assert info.piece_length == 32 * KIB  # auto: <= 50 MiB
    assert info.pieces_count == -(-len(content) // info.piece_length)
    assert info.creation_date == 1700000000
    assert info.created_by == "vmcloud.fleet"
    assert info.comment == "alma 9"
    assert info.private is False
    assert info.single_file is True
    decoded = bdecode(first.data)
    assert b"private" not in decoded[b"info"]
    assert b"url-list" not in decoded and b"announce-list" not in decoded
    # The piece hashes are the SHA-1 of each piece.
    pieces = decoded[b"info"][b"pieces"]
    for index in (0, info.pieces_count - 1):
        piece = content[index * info.piece_length : (index + 1) * info.piece_length]
        assert pieces[index * 20 : (index + 1) * 20] == hashlib.sha1(piece).digest()  # noqa: S324


def test_create_date_changes_file_not_info_hash(image):
    first = create_torrent(image, announce=[ANNOUNCE], creation_date=1)
    second = create_torrent(image, announce=[ANNOUNCE], creation_date=2)
    assert first.torrent_sha256 != second.torrent_sha256
    assert first.info.info_hash == second.info.info_hash


def test_create_without_date_omits_it(image):
    created = create_torrent(image, announce=[ANNOUNCE], creation_date=None, created_by=None)
    decoded = bdecode(created.data)
    assert b"creation date" not in decoded and b"created by" not in decoded


def test_create_web_seeds_and_tiers(image):
    created = create_torrent(
        image,
        announce=[ANNOUNCE, "udp://127.0.0.1:6969"],
        web_seeds=["http://mirror/a.qcow2", "https://mirror2/a.qcow2"],
        creation_date=0,
    )
    assert created.info.announce == ANNOUNCE
    assert created.info.announce_list == [[ANNOUNCE], ["udp://127.0.0.1:6969"]]
    assert created.info.web_seeds == ["http://mirror/a.qcow2", "https://mirror2/a.qcow2"]


def test_create_name_override(image):
    created = create_torrent(image, announce=[ANNOUNCE], name="renamed.qcow2", creation_date=0)
    assert created.info.name == "renamed.qcow2"


def test_create_exact_multiple_of_piece_length(tmp_path):
    path = make_file(tmp_path, "exact.raw", 4 * 16 * KIB)
    created = create_torrent(path, announce=[ANNOUNCE], piece_length=16 * KIB, creation_date=0)
    assert created.info.pieces_count == 4


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (1, 32 * KIB),
        (50 * MIB, 32 * KIB),
        (50 * MIB + 1, 64 * KIB),
        (100 * MIB, 64 * KIB),
        (400 * MIB, 256 * KIB),
        (400 * MIB + 1, 512 * KIB),
        (1600 * MIB, 1 * MIB),
        (12800 * MIB, 8 * MIB),
        (12800 * MIB + 1, 16 * MIB),
        (1 << 40, 16 * MIB),
    ],
)
def test_auto_piece_length_follows_mktorrent(size, expected):
    assert auto_piece_length(size) == expected


@pytest.mark.parametrize("bad", [0, 1000, 8 * KIB, 512 * MIB, True, "32768"])
def test_create_refuses_bad_piece_size(image, bad):
    with pytest.raises(TorrentError) as excinfo:
        create_torrent(image, announce=[ANNOUNCE], piece_length=bad)
    assert rule_of(excinfo) == "torrent-piece-size-invalid"


@pytest.mark.parametrize("bad", ["ftp://x/announce", "", "http://a b/announce", 42])
def test_create_refuses_bad_announce(image, bad):
    with pytest.raises(TorrentError) as excinfo:
        create_torrent(image, announce=[bad])
    assert rule_of(excinfo) == "torrent-announce-invalid"


def test_create_refuses_bad_web_seed(image):
    with pytest.raises(TorrentError) as excinfo:
        create_torrent(image, announce=[ANNOUNCE], web_seeds=["udp://x/y"])
    assert rule_of(excinfo) == "torrent-web-seed-invalid"


def test_create_refuses_empty_missing_and_directory(tmp_path):
    empty = tmp_path / "empty.raw"
    empty.write_bytes(b"")
    with pytest.raises(TorrentError) as excinfo:
        create_torrent(str(empty), announce=[ANNOUNCE])
    assert rule_of(excinfo) == "image-empty"
    with pytest.raises(TorrentError) as excinfo:
        create_torrent(str(tmp_path / "missing"), announce=[ANNOUNCE])
    assert rule_of(excinfo) == "image-unreadable"
    (tmp_path / "dir").mkdir()
    with pytest.raises(TorrentError) as excinfo:
        create_torrent(str(tmp_path / "dir"), announce=[ANNOUNCE])
    assert rule_of(excinfo) in ("image-unreadable", "image-not-regular-file")


def test_create_refuses_bad_name_and_date(image):
    with pytest.raises(TorrentError) as excinfo:
        create_torrent(image, announce=[ANNOUNCE], name="../escape")
    assert rule_of(excinfo) == "torrent-malformed"
    with pytest.raises(TorrentError) as excinfo:
        create_torrent(image, announce=[ANNOUNCE], creation_date=-1)
    assert rule_of(excinfo) == "torrent-creation-date-invalid"


def test_create_refuses_file_changing_while_hashed(image, monkeypatch):
    real = _torrent._read_full

    def growing(handle, buffer):
        count = real(handle, buffer)
        with open(image, "ab") as grow:
            grow.write(b"more")
        return count

    monkeypatch.setattr(_torrent, "_read_full", growing)
    with pytest.raises(TorrentError) as excinfo:
        create_torrent(image, announce=[ANNOUNCE], creation_date=0)
    assert rule_of(excinfo) == "image-changed-during-hashing"


# ----------------------------------------------------------------- parsing


def test_parse_round_trip_of_created(image):
    created = create_torrent(image, announce=[ANNOUNCE], creation_date=5)
    parsed = parse_torrent(created.data)
    assert parsed == created.info
    assert parsed.info_hash == hashlib.sha1(bencode(bdecode(created.data)[b"info"])).hexdigest()  # noqa: S324
    as_dict = parsed.to_dict()
    assert as_dict["trackers"] == [ANNOUNCE]
    assert as_dict["piece_length"] == parsed.piece_length


def test_parse_multi_file():
    data = bencode(
        {
            b"info": {
                b"files": [
                    {b"length": 20000, b"path": [b"a.raw"]},
                    {b"length": 20000, b"path": [b"sub", b"b.raw"]},
                ],
                b"name": b"bundle",
                b"piece length": 16384,
                b"pieces": b"\x02" * 60,
            }
        }
    )
    info = parse_torrent(data)
    assert info.single_file is False
    assert info.length == 40000
    assert info.announce is None and info.trackers == []


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"garbage", "not bencode"),
        (b"d4:infoi1ee", "info not a dict"),
        (b"li1ee", "top not a dict"),
        (b"d1:ai1e", "truncated"),
        (b"d1:bi1e1:ai1ee", "unsorted keys"),
        (b"d4:infod6:lengthi01eee", "leading zero"),
        (b"l" * 100000, "deep nesting"),
        (bencode({b"announce": b"x"}), "no info"),
    ],
)
def test_parse_refuses_malformed(data, why):
    with pytest.raises(TorrentError) as excinfo:
        parse_torrent(data)
    # fastbencode's decoder is strict, so non-canonical input is mostly caught as malformed.
    assert rule_of(excinfo) in ("torrent-malformed", "torrent-not-canonical"), why


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({b"name": b"../etc"}, "traversal"),
        ({b"name": b"a/b"}, "slash"),
        ({b"name": b""}, "empty name"),
        ({b"name": b"\xff\xfe"}, "not utf-8"),
        ({b"name": 5}, "name not string"),
        ({b"length": 0}, "empty content"),
        ({b"length": -5}, "negative length"),
        ({b"piece length": 20000}, "not power of two"),
        ({b"piece length": 8192, b"pieces": b"\x01" * 100}, "too small"),
        ({b"pieces": b"\x01" * 59}, "pieces not multiple of 20"),
        ({b"pieces": b"\x01" * 40}, "piece count mismatch"),
        ({b"private": 2}, "private not 0/1"),
        ({b"files": [{b"length": 1, b"path": [b"x"]}]}, "length and files"),
    ],
)
def test_parse_refuses_bad_info(overrides, why):
    with pytest.raises(TorrentError) as excinfo:
        parse_torrent(bencode(torrent_dict(overrides)))
    assert rule_of(excinfo) == "torrent-malformed", why


def test_parse_refuses_bad_multi_file_path():
    info = {
        b"files": [{b"length": 40000, b"path": [b"..", b"x"]}],
        b"name": b"bundle",
        b"piece length": 16384,
        b"pieces": b"\x02" * 60,
    }
    with pytest.raises(TorrentError) as excinfo:
        parse_torrent(bencode({b"info": info}))
    assert rule_of(excinfo) == "torrent-malformed"


def test_parse_refuses_non_canonical(monkeypatch):
    data = bencode(torrent_dict())
    # fastbencode never accepts non-canonical input; a more lenient decoder would,
    # and the round-trip check must catch it.
    lenient = dict(bdecode(data))
    lenient[b"comment"] = b"added by a lenient decoder"
    monkeypatch.setattr(_torrent, "bdecode", lambda _data: lenient)
    with pytest.raises(TorrentError) as excinfo:
        parse_torrent(data)
    assert rule_of(excinfo) == "torrent-not-canonical"


def test_parse_size_cap_and_type():
    data = bencode(torrent_dict())
    with pytest.raises(TorrentError) as excinfo:
        parse_torrent(data, max_bytes=len(data) - 1)
    assert rule_of(excinfo) == "torrent-too-large"
    with pytest.raises(TorrentError) as excinfo:
        parse_torrent(data.decode("latin-1"))
    assert rule_of(excinfo) == "torrent-malformed"
    assert parse_torrent(bytearray(data)).length == 40000


def test_read_torrent_file(tmp_path):
    path = tmp_path / "t.torrent"
    path.write_bytes(b"x" * 100)
    assert read_torrent_file(str(path)) == b"x" * 100
    with pytest.raises(TorrentError) as excinfo:
        read_torrent_file(str(path), max_bytes=99)
    assert rule_of(excinfo) == "torrent-too-large"
    with pytest.raises(TorrentError) as excinfo:
        read_torrent_file(str(tmp_path / "missing"))
    assert rule_of(excinfo) == "torrent-unreadable"


def test_normalize_info_hash():
    assert normalize_info_hash("A" * 40) == "a" * 40
    for bad in ("a" * 39, "g" * 40, None, 5, "a" * 40 + "\n"):
        with pytest.raises(TorrentError) as excinfo:
            normalize_info_hash(bad)
        assert rule_of(excinfo) == "info-hash-malformed"


# ----------------------------------------------------------------- verification


@pytest.fixture
def created(image):
    return create_torrent(image, announce=[ANNOUNCE], creation_date=0)


def expected_of(created) -> dict:
    return {
        "sha256": created.torrent_sha256,
        "info_hash": created.info.info_hash,
        "name": created.info.name,
        "size": created.info.length,
    }


def test_verify_accepts_matching(created):
    info = verify_torrent(created.data, **expected_of(created))
    assert info.info_hash == created.info.info_hash
    upper = {**expected_of(created), "sha256": created.torrent_sha256.upper(),
             "info_hash": created.info.info_hash.upper()}
    assert verify_torrent(created.data, **upper) == info


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("sha256", "0" * 64, "torrent-sha256-mismatch"),
        ("info_hash", "0" * 40, "torrent-info-hash-mismatch"),
        ("name", "other.qcow2", "torrent-name-mismatch"),
        ("size", 1, "torrent-size-mismatch"),
        ("size", "3157073", "torrent-size-mismatch"),
        ("sha256", "nothex", "sha256-malformed"),
        ("info_hash", "nothex", "info-hash-malformed"),
    ],
)
def test_verify_refuses_each_mismatch(created, field, value, rule):
    expected = dict(expected_of(created), **{field: value})
    with pytest.raises(TorrentError) as excinfo:
        verify_torrent(created.data, **expected)
    assert rule_of(excinfo) == rule
    assert rule in str(excinfo.value)


def test_verify_checks_sha256_before_parsing(created):
    tampered = created.data.replace(b"vmcloud.fleet", b"vmcloud.fleeT")
    with pytest.raises(TorrentError) as excinfo:
        verify_torrent(tampered, **expected_of(created))
    assert rule_of(excinfo) == "torrent-sha256-mismatch"
    with pytest.raises(TorrentError) as excinfo:
        verify_torrent(b"garbage", **{**expected_of(created), "sha256": hashlib.sha256(b"garbage").hexdigest()})
    assert rule_of(excinfo) == "torrent-malformed"


def test_verify_refuses_multi_file():
    data = bencode(
        {
            b"info": {
                b"files": [{b"length": 40000, b"path": [b"a.raw"]}],
                b"name": b"bundle",
                b"piece length": 16384,
                b"pieces": b"\x02" * 60,
            }
        }
    )
    info = parse_torrent(data)
    with pytest.raises(TorrentError) as excinfo:
        verify_torrent(
            data, sha256=hashlib.sha256(data).hexdigest(), info_hash=info.info_hash, name="bundle", size=40000
        )
    assert rule_of(excinfo) == "torrent-not-single-file"


def test_verify_refuses_oversized(created):
    with pytest.raises(TorrentError) as excinfo:
        verify_torrent(created.data, max_bytes=10, **expected_of(created))
    assert rule_of(excinfo) == "torrent-too-large"


# ----------------------------------------------------------------- writing


def test_ensure_torrent_file(tmp_path, created):
    dest = str(tmp_path / "out.torrent")
    changed, before = ensure_torrent_file(dest, created, check_mode=True)
    assert changed and before == {"info_hash": None, "torrent_sha256": None}
    assert not os.path.exists(dest)
    changed, _unused = ensure_torrent_file(dest, created)
    assert changed
    with open(dest, "rb") as handle:
        assert handle.read() == created.data
    assert oct(os.stat(dest).st_mode & 0o777) == "0o644"
    changed, before = ensure_torrent_file(dest, created)
    assert not changed
    assert before == {"info_hash": created.info.info_hash, "torrent_sha256": created.torrent_sha256}


def test_describe_garbage_file(tmp_path):
    path = tmp_path / "garbage.torrent"
    path.write_bytes(b"not a torrent")
    assert describe_torrent_file(str(path)) == {
        "info_hash": None,
        "torrent_sha256": hashlib.sha256(b"not a torrent").hexdigest(),
    }
