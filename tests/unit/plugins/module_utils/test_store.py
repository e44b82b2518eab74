"""Verify-and-promote into the image store: nothing unverified lands, failures leave it unchanged."""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import StoreError
from ansible_collections.vmcloud.fleet.plugins.module_utils._store import (
    ImageStore,
    gunzip_stream,
    open_by_processes,
    stored_file_name,
)


def entry_for(path: Path, uuid: str = "img-1", compressed: bool = False, **overrides):
    data = path.read_bytes()
    image = {"uuid": uuid, "name": "img", "version": 1, "file": path.name, "compressed": compressed,
             "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
             "torrent": {"info_hash": "ab" * 20}}
    image.update(overrides)
    return image


def snapshot(directory: Path) -> dict:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def staged(tmp_path) -> Path:
    directory = tmp_path / "staging"
    directory.mkdir()
    raw = directory / "disk.img"
    raw.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    return raw


@pytest.fixture
def store(tmp_path) -> ImageStore:
    return ImageStore(str(tmp_path / "store"))


def test_promotes_a_verified_raw_image(staged, store):
    image = entry_for(staged)
    outcome = store.promote(image, str(staged))
    assert outcome.changed and outcome.action == "promoted"
    assert Path(outcome.path).read_bytes() == staged.read_bytes()
    assert store.manifest()["img-1"]["sha256"] == image["sha256"]
    assert store.manifest()["img-1"]["info_hash"] == "ab" * 20
    assert [p for p in os.listdir(store.root) if p.startswith(".promote-")] == []


def test_second_promotion_is_a_no_op_without_reading(staged, store, monkeypatch):
    image = entry_for(staged)
    store.promote(image, str(staged))
    import ansible_collections.vmcloud.fleet.plugins.module_utils._store as store_module

    def never(*_args):
        raise AssertionError("an unchanged image must not be read again")

    monkeypatch.setattr(store_module, "sha256_file", never)
    outcome = store.promote(image, str(staged))
    assert outcome.changed is False and outcome.action == "present"


def test_unpacks_a_compressed_image_as_a_stream(tmp_path, store):
    raw = os.urandom(2 * 1024 * 1024) + b"\0" * (4 * 1024 * 1024)
    packed = tmp_path / "disk.img.gz"
    packed.write_bytes(gzip.compress(raw, compresslevel=1))
    image = entry_for(packed, compressed=True)
    outcome = store.promote(image, str(packed))
    assert stored_file_name(image) == "disk.img"
    assert Path(outcome.path).read_bytes() == raw
    assert outcome.sha256 == hashlib.sha256(raw).hexdigest()


def test_multi_member_gzip_unpacks_whole():
    members = gzip.compress(b"a" * 1000) + gzip.compress(b"b" * 1000)
    chunks = [members[i:i + 7] for i in range(0, len(members), 7)]
    assert b"".join(gunzip_stream(chunks, "x")) == b"a" * 1000 + b"b" * 1000


def test_highly_compressible_data_is_unpacked_in_bounded_pieces():
    pieces = list(gunzip_stream([gzip.compress(b"\0" * (64 * 1024 * 1024))], "zeros"))
    assert sum(map(len, pieces)) == 64 * 1024 * 1024
    assert max(map(len, pieces)) <= 1024 * 1024


@pytest.mark.parametrize(
    ("damage", "rule"),
    [
        ("sha256", "sha256-mismatch"),
        ("size", "size-mismatch"),
        ("truncate-gzip", "unpack-failed"),
        ("not-gzip", "unpack-failed"),
        ("missing", "staged-missing"),
    ],
)
def test_failures_leave_the_store_unchanged(tmp_path, store, staged, damage, rule):
    good = entry_for(staged, uuid="good")
    store.promote(good, str(staged))
    before = snapshot(Path(store.root))
    packed = tmp_path / "other.img.gz"
    packed.write_bytes(gzip.compress(os.urandom(100_000)))
    image = entry_for(packed, uuid="bad", compressed=True)
    source = packed
    if damage == "sha256":
        image["sha256"] = "0" * 64
    elif damage == "size":
        image["size"] += 1
    elif damage == "truncate-gzip":
        packed.write_bytes(packed.read_bytes()[:-100])
        image = entry_for(packed, uuid="bad", compressed=True)
    elif damage == "not-gzip":
        packed.write_bytes(b"plain bytes, no gzip header" * 100)
        image = entry_for(packed, uuid="bad", compressed=True)
    elif damage == "missing":
        source = tmp_path / "nowhere.img.gz"
    with pytest.raises(StoreError) as caught:
        store.promote(image, str(source))
    assert caught.value.rule == rule
    assert snapshot(Path(store.root)) == before


@pytest.fixture
def tiny_store(tmp_path):
    """A 1 MiB tmpfs as the store (the test machines run as root; CI too)."""
    mount_point = tmp_path / "tiny-store"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_full_disk_leaves_the_store_unchanged(tiny_store, staged):
    (tiny_store / "keep.img").write_bytes(b"keep")
    store = ImageStore(str(tiny_store))
    with pytest.raises(StoreError) as caught:
        store.promote(entry_for(staged), str(staged))
    assert caught.value.rule == "store-full" and "nothing changed" in str(caught.value)
    assert sorted(os.listdir(tiny_store)) == ["keep.img"]


def test_changed_store_copy_is_detected_and_repaired(staged, store):
    image = entry_for(staged)
    path = Path(store.promote(image, str(staged)).path)
    path.write_bytes(b"corrupted")
    assert store.is_current(image) is False
    outcome = store.promote(image, str(staged))
    assert outcome.action == "repaired" and path.read_bytes() == staged.read_bytes()


def test_touched_but_identical_copy_is_rehashed_and_kept(staged, store):
    image = entry_for(staged)
    path = store.promote(image, str(staged)).path
    os.utime(path, (1, 1))
    assert store.is_current(image) is True


def test_check_mode_writes_nothing(staged, store):
    outcome = store.promote(entry_for(staged), str(staged), check_mode=True)
    assert outcome.changed and not os.path.exists(store.root)


def test_retire_removes_file_and_manifest_entry(staged, store):
    path = store.promote(entry_for(staged), str(staged)).path
    assert store.retire("img-1", check_mode=True)["action"] == "removed" and os.path.exists(path)
    result = store.retire("img-1")
    assert result["changed"] and not os.path.exists(path) and "img-1" not in store.manifest()
    assert store.retire("img-1") == {"changed": False, "uuid": "img-1", "action": "absent"}


def test_retire_never_removes_a_file_held_open(staged, store):
    path = store.promote(entry_for(staged), str(staged)).path
    holder = subprocess.Popen([sys.executable, "-c", "import sys,time; f=open(sys.argv[1]); time.sleep(60)", path])
    try:
        deadline = 50
        while not open_by_processes(path) and deadline:
            deadline -= 1
            subprocess.run(["sleep", "0.1"], check=True)
        result = store.retire("img-1")
        assert result["action"] == "held-open" and holder.pid in result["pids"] and not result["changed"]
        assert os.path.exists(path) and "img-1" in store.manifest()
    finally:
        holder.kill()
        holder.wait()


def test_the_reconcile_plan_retires_all_but_the_desired_and_keeps_unknown_files(tmp_path, store):
    from ansible_collections.vmcloud.fleet.plugins.module_utils._reconcile_execute import apply_plan
    from ansible_collections.vmcloud.fleet.plugins.module_utils._reconcile_execute import report as reconcile_report
    from ansible_collections.vmcloud.fleet.plugins.module_utils._reconcile_plan import Options, plan_reconcile

    entries = {}
    for name in ("a", "b", "c"):
        path = tmp_path / f"{name}.img"
        path.write_bytes(name.encode() * 1000)
        entries[name] = entry_for(path, uuid=name)
        store.promote(entries[name], str(path))
    stranger = Path(store.root) / "nobody-declared.img"
    stranger.write_bytes(b"x")
    confirmed = Options(retire_confirm=True)  # two of three: over the mass-deletion guard
    planned = reconcile_report(apply_plan(plan_reconcile(store.root, [entries["b"]], confirmed), check_mode=True))
    assert planned["retired"] == ["a", "c"] and sorted(store.manifest()) == ["a", "b", "c"]
    result = reconcile_report(apply_plan(plan_reconcile(store.root, [entries["b"]], confirmed)))
    assert result["changed"] and result["retired"] == ["a", "c"] and result["held_open"] == []
    assert sorted(os.listdir(store.root)) == [".vmcloud", "b.img", "nobody-declared.img"]
    assert not apply_plan(plan_reconcile(store.root, [entries["b"]])).changed


def test_holdings_report_present_corrupt_and_missing(tmp_path, store):
    paths = {}
    for name in ("a", "b", "c"):
        path = tmp_path / f"{name}.img"
        path.write_bytes(name.encode() * 1000)
        paths[name] = Path(store.promote(entry_for(path, uuid=name), str(path)).path)
    paths["b"].write_bytes(b"tampered")
    paths["c"].unlink()
    assert {h["uuid"]: h["state"] for h in store.holdings()} == {"a": "present", "b": "corrupt", "c": "missing"}


def test_retiring_an_old_version_keeps_a_new_version_with_the_same_file_name(tmp_path, store):
    old = tmp_path / "v1" / "cernvm.img"
    new = tmp_path / "v2" / "cernvm.img"
    for path, content in ((old, b"one" * 1000), (new, b"two" * 1000)):
        path.parent.mkdir()
        path.write_bytes(content)
    store.promote(entry_for(old, uuid="cernvm-1"), str(old))
    kept = store.promote(entry_for(new, uuid="cernvm-2"), str(new))
    from ansible_collections.vmcloud.fleet.plugins.module_utils._reconcile_execute import apply_plan, report
    from ansible_collections.vmcloud.fleet.plugins.module_utils._reconcile_plan import plan_reconcile

    result = report(apply_plan(plan_reconcile(store.root, [entry_for(new, uuid="cernvm-2")])))
    assert result["forgotten"] == ["cernvm-1"] and result["retired"] == []
    assert Path(kept.path).read_bytes() == b"two" * 1000
    assert sorted(store.manifest()) == ["cernvm-2"] and store.is_current(entry_for(new, uuid="cernvm-2"))
