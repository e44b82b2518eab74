# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Promotion under attack from the engine's user (issue 7, defect 8): the staged file is opened
without following symlinks, must be a regular file owned as expected, is read to exactly its
declared size, and its content hash is always verified (SHA-256, or a legacy torrent's piece
hashes). Each refusal leaves the store byte for byte as it was and copies nothing.

Pure module_utils: runs in both venvs. The tests run as root (as CI does) to chown and mount.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Dict

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils import _store
from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import StoreError
from ansible_collections.vmcloud.fleet.plugins.module_utils._reconcile_execute import apply_plan, report
from ansible_collections.vmcloud.fleet.plugins.module_utils._reconcile_plan import plan_reconcile
from ansible_collections.vmcloud.fleet.plugins.module_utils._store import ImageStore
from ansible_collections.vmcloud.fleet.plugins.module_utils._torrent import create_torrent

INFO_HASH = "ab" * 20
OTHER_UID = 4242


def entry(data: bytes, name: str, uuid: str = "img-1", **overrides: Any) -> Dict[str, Any]:
    image = {"uuid": uuid, "name": "img", "version": 1, "file": name, "compressed": False,
             "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "torrent": {"info_hash": INFO_HASH}}
    image.update(overrides)
    return image


def snapshot(directory: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


class Site:
    """A staging directory laid out as the pull path does (<staging>/<info_hash>/<file>), a store
    holding one good image, and a secret outside both that must never reach the store."""

    def __init__(self, tmp_path: Path) -> None:
        self.staging = tmp_path / "staging"
        self.download = self.staging / INFO_HASH
        self.download.mkdir(parents=True)
        self.store = ImageStore(str(tmp_path / "store"))
        self.root = Path(self.store.root)
        good = self.download / "good.img"
        good.write_bytes(b"good" * 1000)
        self.store.promote(entry(good.read_bytes(), "good.img", uuid="good"), str(good))
        good.unlink()
        self.outside = tmp_path / "outside"
        self.outside.mkdir()
        self.secret = self.outside / "disk.img"
        self.secret.write_bytes(b"root's secret " * 100)
        self.before = snapshot(self.root)

    def refused(self, image: Dict[str, Any], staged: Path, **kwargs: Any) -> StoreError:
        with pytest.raises(StoreError) as caught:
            self.store.promote(image, str(staged), staging_dir=str(self.staging), **kwargs)
        assert snapshot(self.root) == self.before, "a refused promotion changed the store"
        assert [n for n in os.listdir(self.root) if n.startswith(".promote-")] == []
        return caught.value


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


# --------------------------------------------------------------------------- what is opened


def test_a_symlink_planted_in_staging_is_not_followed(site):
    staged = site.download / "disk.img"
    staged.symlink_to(site.secret)
    error = site.refused(entry(site.secret.read_bytes(), "disk.img"), staged)
    assert error.rule == "staged-unsafe" and "symlink" in error.message


def test_a_symlinked_download_directory_is_not_followed(site):
    # The engine's user replaces <staging>/<info_hash> with a link to a directory of root's.
    os.rmdir(site.download)
    site.download.symlink_to(site.outside)
    error = site.refused(entry(site.secret.read_bytes(), "disk.img"), site.download / "disk.img")
    assert error.rule == "staged-unsafe"


def test_without_staging_dir_no_component_may_be_a_symlink(site, tmp_path):
    linked = tmp_path / "linked"
    linked.symlink_to(site.outside)
    with pytest.raises(StoreError) as caught:
        site.store.promote(entry(site.secret.read_bytes(), "disk.img"), str(linked / "disk.img"))
    assert caught.value.rule == "staged-unsafe" and snapshot(site.root) == site.before


def test_a_staged_path_outside_the_staging_dir_is_refused(site):
    error = site.refused(entry(site.secret.read_bytes(), "disk.img"), site.secret)
    assert error.rule == "staged-unsafe" and "outside" in error.message


def test_a_fifo_is_refused_without_hanging(site):
    staged = site.download / "disk.img"
    os.mkfifo(staged)

    def hung(*_args):
        raise AssertionError("promote blocked on a FIFO")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)  # a guard against hanging the suite, not a timing assertion
    try:
        error = site.refused(entry(b"", "disk.img"), staged)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert error.rule == "staged-unsafe" and "not a regular file" in error.message


def test_a_file_of_another_user_is_refused(site):
    staged = site.download / "disk.img"
    staged.write_bytes(site.secret.read_bytes())
    os.chown(staged, OTHER_UID, OTHER_UID)
    error = site.refused(entry(staged.read_bytes(), "disk.img"), staged, owner=OTHER_UID + 1)
    assert error.rule == "staged-unsafe" and str(OTHER_UID) in error.message


def test_the_engine_users_file_and_roots_file_are_accepted(site):
    staged = site.download / "disk.img"
    staged.write_bytes(b"engine's download" * 100)
    os.chown(staged, OTHER_UID, OTHER_UID)
    image = entry(staged.read_bytes(), "disk.img")
    assert site.store.promote(image, str(staged), staging_dir=str(site.staging), owner=OTHER_UID).action == "promoted"
    os.chown(staged, 0, 0)
    image = entry(staged.read_bytes(), "disk.img", uuid="img-2", file="disk.img")
    (site.root / "disk.img").unlink()
    assert site.store.promote(image, str(staged), staging_dir=str(site.staging), owner=OTHER_UID).changed


def test_an_unknown_owner_name_is_an_option_error(site):
    staged = site.download / "disk.img"
    staged.write_bytes(b"x")
    error = site.refused(entry(b"x", "disk.img"), staged, owner="no-such-user-vmcloud")
    assert error.rule == "option-invalid"


def test_a_hard_link_to_another_file_is_refused(site):
    staged = site.download / "disk.img"
    os.link(site.secret, staged)
    error = site.refused(entry(site.secret.read_bytes(), "disk.img"), staged)
    assert error.rule == "staged-unsafe" and "hard link" in error.message


# --------------------------------------------------------------------------- what is read


@pytest.mark.parametrize("delta", [1, -1])
def test_a_file_of_another_size_is_refused(site, delta):
    staged = site.download / "disk.img"
    staged.write_bytes(b"a" * 1000)
    image = entry(b"a" * 1000, "disk.img")
    image["size"] += delta
    assert site.refused(image, staged).rule == "size-mismatch"


def test_a_file_that_grows_while_read_is_refused(site, monkeypatch):
    staged = site.download / "disk.img"
    data = b"b" * (3 * _store.CHUNK)
    staged.write_bytes(data)
    real_read = os.read
    grown = []

    def read_then_grow(fd, count):
        chunk = real_read(fd, count)
        if not grown:
            grown.append(True)
            with open(staged, "ab") as handle:
                handle.write(b"appended after the check")
        return chunk

    monkeypatch.setattr(_store.os, "read", read_then_grow)
    assert site.refused(entry(data, "disk.img"), staged).rule == "size-mismatch"


def test_a_legacy_entry_is_never_promoted_unverified(site):
    staged = site.download / "disk.img"
    staged.write_bytes(b"legacy bytes" * 100)
    image = entry(staged.read_bytes(), "disk.img", sha256=None, size=None)
    assert site.refused(image, staged).rule == "content-unverifiable"


def legacy(site: Site, data: bytes, name: str = "disk.img"):
    staged = site.download / name
    staged.write_bytes(data)
    created = create_torrent(str(staged), announce=["http://tracker.invalid/announce"], piece_length=16384)
    image = entry(data, name, sha256=None, size=None, torrent={"info_hash": created.info.info_hash, "sha1": None})
    return staged, image, created.data


def test_a_legacy_entry_is_verified_against_its_torrents_pieces(site):
    staged, image, torrent = legacy(site, os.urandom(100_000))
    outcome = site.store.promote(image, str(staged), staging_dir=str(site.staging), torrent=torrent)
    assert outcome.action == "promoted" and Path(outcome.path).read_bytes() == staged.read_bytes()
    assert site.store.manifest()["img-1"]["size"] == 100_000


def test_a_tampered_legacy_image_is_refused(site):
    data = os.urandom(100_000)
    staged, image, torrent = legacy(site, data)
    staged.write_bytes(data[:50_000] + bytes([data[50_000] ^ 1]) + data[50_001:])
    error = site.refused(image, staged, torrent=torrent)
    assert error.rule == "content-hash-mismatch" and "piece 3" in error.message


def test_a_legacy_torrent_of_another_content_hash_is_refused(site):
    staged, image, torrent = legacy(site, os.urandom(40_000))
    image["torrent"]["info_hash"] = "cd" * 20
    assert site.refused(image, staged, torrent=torrent).rule == "torrent-info-hash-mismatch"


def test_a_legacy_image_longer_than_its_torrent_is_refused(site):
    staged, image, torrent = legacy(site, os.urandom(40_000))
    with open(staged, "ab") as handle:
        handle.write(b"more")
    assert site.refused(image, staged, torrent=torrent).rule == "size-mismatch"


def test_a_compressed_legacy_image_is_verified_then_unpacked(site):
    raw = os.urandom(30_000) + b"\0" * 70_000
    staged, image, torrent = legacy(site, gzip.compress(raw), name="disk.img.gz")
    image["compressed"] = True
    outcome = site.store.promote(image, str(staged), staging_dir=str(site.staging), torrent=torrent)
    assert Path(outcome.path).read_bytes() == raw


# --------------------------------------------------------------------------- what is written


def test_an_unendorsed_gzip_bomb_writes_nothing(tmp_path):
    """A 1 MiB store: a bomb that unpacks to 64 MiB fills it unless refused before unpacking."""
    store_dir = tmp_path / "tiny"
    store_dir.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(store_dir)], check=True)
    try:
        staged = tmp_path / "bomb.img.gz"
        staged.write_bytes(gzip.compress(b"\0" * (64 << 20), compresslevel=9))
        image = entry(staged.read_bytes(), "bomb.img.gz", compressed=True, sha256="0" * 64)
        with pytest.raises(StoreError) as caught:
            ImageStore(str(store_dir)).promote(image, str(staged))
        assert caught.value.rule == "sha256-mismatch"
        assert os.listdir(store_dir) == []
    finally:
        subprocess.run(["umount", str(store_dir)], check=True)


def test_unpacking_stops_at_the_declared_unpacked_size(site, monkeypatch):
    staged = site.download / "bomb.img.gz"
    staged.write_bytes(gzip.compress(b"\0" * (8 << 20), compresslevel=9))
    image = entry(staged.read_bytes(), "bomb.img.gz", compressed=True, unpacked_size=1 << 20)
    written = []
    real_write = os.write

    def counting_write(fd, data):
        written.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(_store.os, "write", counting_write)
    error = site.refused(image, staged)
    assert error.rule == "unpacked-too-large"
    assert sum(written) <= 1 << 20


def test_an_image_of_exactly_the_declared_unpacked_size_is_promoted(site):
    raw = b"\0" * (1 << 20)
    staged = site.download / "disk.img.gz"
    staged.write_bytes(gzip.compress(raw))
    image = entry(staged.read_bytes(), "disk.img.gz", compressed=True, unpacked_size=len(raw))
    assert Path(site.store.promote(image, str(staged), staging_dir=str(site.staging)).path).read_bytes() == raw


def test_a_declared_volume_size_bounds_unpacking(site):
    staged = site.download / "disk.img.gz"
    staged.write_bytes(gzip.compress(b"\0" * (1 << 20)))
    image = entry(staged.read_bytes(), "disk.img.gz", compressed=True, volume_size=1)
    assert site.store.promote(image, str(staged), staging_dir=str(site.staging)).changed


class _FullDisk:
    """os.write that fails as a full filesystem does, after the first MiB."""

    def __init__(self) -> None:
        self.real = os.write
        self.total = 0

    def __call__(self, fd, data):
        if self.total + len(data) > 1 << 20:
            raise OSError(28, "No space left on device")
        self.total += len(data)
        return self.real(fd, data)


def test_enospc_is_store_full_and_leaves_the_store_intact(site, monkeypatch):
    staged = site.download / "disk.img"
    staged.write_bytes(os.urandom(3 << 20))
    monkeypatch.setattr(_store.os, "write", _FullDisk())
    error = site.refused(entry(staged.read_bytes(), "disk.img"), staged)
    assert error.rule == "store-full"


def test_interrupted_promotions_are_cleaned_at_the_next_promotion(site):
    stale = site.root / ".promote-interrupted"
    stale.write_bytes(b"half an image")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    fresh = site.root / ".promote-running"
    fresh.write_bytes(b"another promotion, still writing")
    staged = site.download / "disk.img"
    staged.write_bytes(b"new" * 100)
    site.store.promote(entry(staged.read_bytes(), "disk.img"), str(staged), staging_dir=str(site.staging))
    assert not stale.exists() and fresh.exists()


def test_interrupted_promotions_are_cleaned_by_reconcile_not_reported_unknown(site):
    stale = site.root / ".promote-interrupted"
    stale.write_bytes(b"half an image")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    desired = [entry(b"good" * 1000, "good.img", uuid="good")]
    result = report(apply_plan(plan_reconcile(str(site.root), desired)))  # unknown: report
    assert result["unknown"] == [] and result["cleaned"] == [str(stale)]
    assert not stale.exists() and (site.root / "good.img").exists()
