# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reconciliation of the image store: image states, unknown entries, policies, quota, check mode.

Pure module_utils: runs in both venvs (the controller's and Debian bookworm's, no ansible).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils import _store
from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import StoreError
from ansible_collections.vmcloud.fleet.plugins.module_utils._reconcile_execute import apply_plan, report
from ansible_collections.vmcloud.fleet.plugins.module_utils._reconcile_plan import (
    Options,
    Plan,
    find_pending,
    find_unknown,
    plan_reconcile,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._store import ImageStore, open_files

KIB = 1024


# --------------------------------------------------------------------------- helpers


class Site:
    """A store, a staging area to promote from, and a directory outside the store that must
    never change."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "store"
        self.root.mkdir()
        self.staging = tmp_path / "staging"
        self.outside = tmp_path / "outside"
        self.outside.mkdir()
        (self.outside / "secret.img").write_bytes(b"outside the store")
        (self.outside / "dir").mkdir()
        (self.outside / "dir" / "inner").write_bytes(b"also outside")
        self.store = ImageStore(str(self.root))
        self.now = time.time()

    def image(self, uuid: str, size: int = 4 * KIB, name: str = "", fill: bytes = b"",
              family: str = "") -> Dict[str, Any]:
        """Promote an image into the store (the verified way) and return its index entry."""
        staged = self.staging / uuid / (name or f"{uuid}.img")
        staged.parent.mkdir(parents=True, exist_ok=True)
        data = (fill or uuid.encode()) * (size // len(fill or uuid.encode()) + 1)
        staged.write_bytes(data[:size])
        image = {"uuid": uuid, "name": family or uuid, "version": 1, "file": staged.name, "compressed": False,
                 "size": size, "sha256": hashlib.sha256(data[:size]).hexdigest()}
        self.store.promote(image, str(staged))
        return image

    def unpromoted(self, uuid: str, size: int = 4 * KIB) -> Dict[str, Any]:
        """An index entry the store does not hold."""
        return {"uuid": uuid, "file": f"{uuid}.img", "compressed": False, "size": size, "sha256": "0" * 64}

    def path(self, image: Dict[str, Any]) -> Path:
        return Path(self.store.path_of(image))

    def plan(self, desired: List[Dict[str, Any]], **options: Any) -> Plan:
        return plan_reconcile(str(self.root), desired, Options(**options), now=self.now)

    def run(self, desired: List[Dict[str, Any]], check_mode: bool = False, **options: Any) -> Dict[str, Any]:
        return report(apply_plan(self.plan(desired, **options), check_mode=check_mode))


def snapshot(directory: Path) -> Dict[str, tuple]:
    """Every entry under ``directory`` with its content, symlinks as links (never followed)."""
    state: Dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(directory):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            relative = str(path.relative_to(directory))
            if path.is_symlink():
                state[relative] = ("symlink", os.readlink(path))
            elif path.is_dir():
                state[relative] = ("directory",)
            elif path.is_file():
                state[relative] = ("file", path.read_bytes(), path.stat().st_ino)
            else:
                state[relative] = ("other",)
    return state


def age(path: Path, seconds: float, now: float) -> None:
    os.utime(path, (now - seconds, now - seconds), follow_symlinks=False)


@contextlib.contextmanager
def held_open(path: Path) -> Iterator[int]:
    """A real process holding ``path`` open (as a running VM holds its disk)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; handle = open(sys.argv[1], 'rb'); print('ready', flush=True); "
         "time.sleep(120)", str(path)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def kinds(plan: Plan) -> List[tuple]:
    return [(action.kind, os.path.basename(action.path), action.uuid) for action in plan.actions]


# --------------------------------------------------------------------------- desired images


def test_unchanged_images_are_present_without_being_read(site, monkeypatch):
    desired = [site.image("alma-9"), site.image("slc-5")]

    def never(*_args):
        raise AssertionError("an unchanged image must not be read again")

    monkeypatch.setattr(_store, "sha256_file", never)
    plan = site.plan(desired)
    assert plan.uuids("present") == ["alma-9", "slc-5"]
    assert {image.reason for image in plan.images} == {"unchanged since verified (not read)"}
    assert plan.actions == () and plan.unknown == ()


def test_an_image_the_store_lacks_is_missing(site):
    plan = site.plan([site.image("alma-9"), site.unpromoted("slc-5")])
    assert plan.uuids("missing") == ["slc-5"] and plan.uuids("present") == ["alma-9"]
    assert plan.actions == ()


def test_a_changed_size_is_corrupt_even_with_mtime_restored(site):
    image = site.image("alma-9")
    path = site.path(image)
    before = path.stat()
    with open(path, "ab") as handle:  # same inode, one byte more
        handle.write(b"x")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_ino == before.st_ino and path.stat().st_mtime_ns == before.st_mtime_ns
    plan = site.plan([image])
    assert plan.uuids("corrupt") == ["alma-9"]
    assert plan.images[0].reason == f"size is {4 * KIB + 1} bytes, was {4 * KIB} when verified"
    assert kinds(plan) == [("forget", "alma-9.img", "alma-9")]

    result = report(apply_plan(plan))
    assert result["forgotten"] == ["alma-9"] and "alma-9" not in site.store.manifest()
    assert path.exists(), "a corrupt copy is dropped from the manifest, not deleted"
    again = site.plan([image])
    assert again.uuids("missing") == ["alma-9"] and "unverified" in again.images[0].reason
    assert again.actions == ()


def test_a_same_size_change_is_corrupt_when_the_mtime_moves(site):
    image = site.image("alma-9")
    path = site.path(image)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    with open(path, "r+b") as handle:
        handle.write(bytes(data))
    age(path, -5, site.now)  # a writer moves the mtime
    plan = site.plan([image])
    assert plan.uuids("corrupt") == ["alma-9"]
    assert plan.images[0].reason == "content changed: same size, but the SHA-256 is not the verified one"


def test_the_cache_cannot_see_a_same_size_rewrite_with_mtime_restored(site):
    """Documented limit (docs/reconcile.md): same inode, same size, mtime put back → not read,
    reported present. Only a full read would see it."""
    image = site.image("alma-9")
    path = site.path(image)
    before = path.stat()
    with open(path, "r+b") as handle:
        handle.write(b"EVIL")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    plan = site.plan([image])
    assert plan.uuids("present") == ["alma-9"]
    assert _store.sha256_file(str(path)) != site.store.manifest()["alma-9"]["sha256"]


def test_a_copy_with_a_new_inode_is_read_again_and_present(site):
    image = site.image("alma-9")
    path = site.path(image)
    copy = site.root / "copy.tmp"
    copy.write_bytes(path.read_bytes())
    os.replace(copy, path)
    plan = site.plan([image])
    assert plan.uuids("present") == ["alma-9"]
    assert plan.images[0].reason.startswith("size, mtime or inode changed since verified: read again")


def test_an_index_that_now_gives_another_sha256_makes_the_copy_corrupt(site):
    image = site.image("alma-9")
    changed = dict(image, sha256="f" * 64)
    plan = site.plan([changed])
    assert plan.uuids("corrupt") == ["alma-9"] and "the index now gives" in plan.images[0].reason
    assert kinds(plan) == [("forget", "alma-9.img", "alma-9")]


def test_a_corrupt_image_held_open_stays_in_the_manifest(site):
    image = site.image("alma-9")
    path = site.path(image)
    with open(path, "ab") as handle:
        handle.write(b"written by the VM")
    with held_open(path) as pid:
        plan = site.plan([image])
        result = report(apply_plan(plan))
    assert plan.uuids("corrupt") == ["alma-9"] and plan.actions == ()
    assert result["changed"] is False and "alma-9" in site.store.manifest()
    assert result["held_open"] == [{"path": str(path), "pids": [pid], "uuid": "alma-9",
                                    "reason": f"corrupt ({plan.images[0].reason}), held open: left in the manifest",
                                    "domains": [], "rule": "image-in-use"}]


def test_a_symlink_at_a_desired_name_is_corrupt_and_unknown_never_followed(site):
    image = site.image("alma-9")
    path = site.path(image)
    path.unlink()
    path.symlink_to(site.outside / "secret.img")
    outside = snapshot(site.outside)
    plan = site.plan([image], unknown="remove")
    assert plan.uuids("corrupt") == ["alma-9"] and "is a symlink" in plan.images[0].reason
    assert [entry.path for entry in plan.unknown] == [str(path)]
    assert plan.unknown[0].reason.startswith("a symlink where vmcloud keeps desired image alma-9, pointing to ")
    assert kinds(plan) == [("forget", "alma-9.img", "alma-9"), ("remove", "alma-9.img", None)]
    result = report(apply_plan(plan))
    assert result["removed"] == [str(path)] and result["forgotten"] == ["alma-9"]
    assert not os.path.lexists(path) and snapshot(site.outside) == outside


# --------------------------------------------------------------------------- managed, no longer desired


def test_images_no_longer_desired_are_retired(site):
    keep = site.image("alma-9")
    old = site.image("alma-8")
    plan = site.plan([keep])
    assert kinds(plan) == [("retire", "alma-8.img", "alma-8")]
    result = report(apply_plan(plan))
    assert result["retired"] == ["alma-8"] and not site.path(old).exists()
    assert sorted(site.store.manifest()) == ["alma-9"]


def test_an_image_no_longer_desired_but_held_open_is_not_retired(site):
    old = site.image("alma-8")
    with held_open(site.path(old)) as pid:
        plan = site.plan([])
        result = report(apply_plan(plan))
    assert plan.actions == () and result["changed"] is False and site.path(old).exists()
    assert result["held_open"][0]["pids"] == [pid] and result["held_open"][0]["uuid"] == "alma-8"


def test_a_new_version_under_the_same_file_name_is_never_deleted(site):
    """ImageStore.retire alone would unlink the file, which now holds the desired version."""
    site.image("cernvm-1", name="cernvm.img", fill=b"one")
    new = site.image("cernvm-2", name="cernvm.img", fill=b"two")
    plan = site.plan([new])
    assert plan.uuids("present") == ["cernvm-2"]
    assert kinds(plan) == [("forget", "cernvm.img", "cernvm-1")]
    apply_plan(plan)
    assert site.path(new).read_bytes().startswith(b"two")
    assert sorted(site.store.manifest()) == ["cernvm-2"]
    assert site.plan([new]).actions == ()


def test_a_superseded_image_stays_until_its_successor_is_in_the_store(site):
    old, other = site.image("alma-9", family="alma"), site.image("slc-5", family="slc")
    new = dict(site.unpromoted("alma-10"), name="alma")
    before = snapshot(site.root)
    plan = site.plan([new, other])
    assert plan.actions == () and plan.uuids("missing") == ["alma-10"]
    assert [p.as_dict() for p in plan.pending] == [{"uuid": "alma-9", "name": "alma", "version": 1,
                                                   "path": str(site.path(old)), "waiting_for": ["alma-10"]}]
    result = report(apply_plan(plan))
    assert result["retired"] == [] and result["superseded_pending"][0]["waiting_for"] == ["alma-10"]
    assert snapshot(site.root) == before
    # Blocked or withdrawn from the index: it goes even so; a sync's check mode counts what would arrive.
    assert kinds(plan_reconcile(str(site.root), [new, other], retire_now=["alma-9"], now=site.now)) == [
        ("retire", "alma-9.img", "alma-9")]
    assert kinds(plan_reconcile(str(site.root), [new, other], arriving=["alma-10"], now=site.now)) == [
        ("retire", "alma-9.img", "alma-9")]
    # The successor arrives: the next plan retires the old one.
    arrived = site.image("alma-10", family="alma")
    plan = site.plan([arrived, other])
    assert kinds(plan) == [("retire", "alma-9.img", "alma-9")] and plan.pending == ()


def test_find_pending_is_the_plans_decision_without_reading_who_uses_what(site, monkeypatch):
    """The run guard asks the planner itself (a libvirt hook must not call back into libvirt)."""
    site.image("alma-9", family="alma")
    other = site.image("slc-5", family="slc")
    new = dict(site.unpromoted("alma-10"), name="alma")
    before = snapshot(site.root)
    monkeypatch.setattr("ansible_collections.vmcloud.fleet.plugins.module_utils._reconcile_scan.libvirt_domains",
                        lambda *a: pytest.fail("find_pending read libvirt's domains"))
    for module in ("_reconcile_scan", "_reconcile_plan"):
        monkeypatch.setattr(f"ansible_collections.vmcloud.fleet.plugins.module_utils.{module}.open_files",
                            lambda *a: pytest.fail("find_pending scanned /proc"))
    found = find_pending(str(site.root), [new, other], now=site.now)
    monkeypatch.undo()
    assert {uuid: p.as_dict() for uuid, p in found.items()} == {
        p.uuid: p.as_dict() for p in site.plan([new, other]).pending}
    assert list(found) == ["alma-9"] and found["alma-9"].waiting_for == ("alma-10",)
    assert find_pending(str(site.root), [new, other], retire_now=["alma-9"], now=site.now) == {}
    assert find_pending(str(site.root), [other], now=site.now) == {}  # the family is no longer approved
    assert snapshot(site.root) == before
    arrived = site.image("alma-10", family="alma")
    assert find_pending(str(site.root), [arrived, other], now=site.now) == {}


def test_a_failed_upgrade_under_the_same_file_name_keeps_the_old_entry(site):
    old = site.image("alma-9", name="alma.img", family="alma")
    new = dict(site.unpromoted("alma-10"), name="alma", file="alma.img")
    plan = site.plan([new])
    assert plan.actions == () and [p.uuid for p in plan.pending] == ["alma-9"]
    assert "alma-9" in site.store.manifest() and site.path(old).exists()


def test_the_guard_stops_a_mass_retirement_before_anything_changes(site):
    images = [site.image(uuid) for uuid in ("a-1", "b-1", "c-1")]
    before = snapshot(site.root)
    for desired in ([], images[:1]):
        with pytest.raises(StoreError) as caught:
            site.plan(desired)
        assert caught.value.rule == "retire-guard"
        assert f"would retire {3 - len(desired)} of the 3 images" in caught.value.message
        assert "retire_confirm" in caught.value.message
    assert snapshot(site.root) == before
    assert kinds(site.plan(images[:2])) == [("retire", "c-1.img", "c-1")]  # one of three: within 50 %
    assert len(site.plan([], retire_max_percent=100).actions) == 3
    assert report(apply_plan(site.plan([], retire_confirm=True)))["retired"] == ["a-1", "b-1", "c-1"]


def test_a_supersession_does_not_count_toward_the_guard(site):
    site.image("a-1", family="a")
    new = site.image("a-2", family="a")
    site.image("d-1", family="d")
    assert kinds(site.plan([new, site.image("d-2", family="d")], retire_max_percent=0)) == [
        ("retire", "a-1.img", "a-1"), ("retire", "d-1.img", "d-1")]
    with pytest.raises(StoreError) as caught:  # d withdrawn altogether: that one counts
        site.plan([new], retire_max_percent=10)
    assert caught.value.rule == "retire-guard" and "(d-1, d-2)" in caught.value.message


def test_a_manifest_entry_naming_a_path_outside_is_dropped_without_touching_it(site):
    site.image("alma-9")
    manifest = json.loads(Path(site.store.manifest_path).read_text())
    manifest["images"]["alma-9"]["file"] = "../outside/secret.img"
    Path(site.store.manifest_path).write_text(json.dumps(manifest))
    outside = snapshot(site.outside)
    plan = site.plan([])
    assert [(a.kind, a.uuid) for a in plan.actions] == [("forget", "alma-9")]
    apply_plan(plan)
    assert site.store.manifest() == {} and snapshot(site.outside) == outside
    assert [entry.name for entry in plan.unknown] == ["alma-9.img"]


# --------------------------------------------------------------------------- unknown entries


def populate_unknown(site: Site) -> Dict[str, Path]:
    """One of each kind of entry nobody declared."""
    entries = {
        "file": site.root / "stray.img",
        "hidden": site.root / ".hidden",
        "directory": site.root / "subdir",
        "link-file": site.root / "link-out",
        "link-dir": site.root / "link-dir",
        "dangling": site.root / "dangling",
        "fifo": site.root / "pipe",
    }
    entries["file"].write_bytes(b"s" * 3000)
    entries["hidden"].write_bytes(b"h" * 10)
    entries["directory"].mkdir()
    (entries["directory"] / "nested.img").write_bytes(b"n" * 500)
    (entries["directory"] / "deeper").mkdir()
    (entries["directory"] / "deeper" / "escape").symlink_to(site.outside / "dir")
    entries["link-file"].symlink_to(site.outside / "secret.img")
    entries["link-dir"].symlink_to(site.outside / "dir")
    entries["dangling"].symlink_to(site.outside / "nowhere")
    os.mkfifo(entries["fifo"])
    return entries


def test_unknown_entries_are_found_and_untouched_under_report(site):
    desired = [site.image("alma-9")]
    entries = populate_unknown(site)
    before, outside = snapshot(site.root), snapshot(site.outside)
    plan = site.plan(desired)
    found = {entry.name: entry for entry in plan.unknown}
    assert sorted(found) == sorted(path.name for path in entries.values())
    assert found[".hidden"].reason.startswith("hidden file nobody declared")
    assert (found["subdir"].kind, found["subdir"].size) == ("directory", 500)
    assert found["link-out"].kind == "symlink" and found["link-out"].size == 0
    assert found["link-out"].reason.endswith(f"pointing to {site.outside / 'secret.img'} (never followed)")
    assert found["pipe"].kind == "other"
    assert plan.actions == ()
    assert report(apply_plan(plan))["changed"] is False
    assert snapshot(site.root) == before and snapshot(site.outside) == outside


def test_quarantine_moves_unknown_entries_as_they_are(site):
    desired = [site.image("alma-9")]
    entries = populate_unknown(site)
    outside = snapshot(site.outside)
    result = site.run(desired, unknown="quarantine")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(site.now))
    quarantine = site.root / ".vmcloud" / "quarantine"
    expected = sorted(path.name for path in entries.values())
    assert result["quarantined"] == [str(site.root / name) for name in expected]
    assert [Path(a["to"]).name for a in result["actions"]] == [f"{stamp}-{name}" for name in expected]
    assert sorted(os.listdir(site.root)) == [".vmcloud", "alma-9.img"]
    assert os.readlink(quarantine / f"{stamp}-link-out") == str(site.outside / "secret.img")
    assert (quarantine / f"{stamp}-subdir" / "nested.img").read_bytes() == b"n" * 500
    assert snapshot(site.outside) == outside
    assert site.plan(desired, unknown="quarantine").actions == ()


def test_quarantine_never_overwrites_an_earlier_quarantined_entry(site):
    (site.root / "stray").write_bytes(b"first")
    site.run([], unknown="quarantine")
    (site.root / "stray").write_bytes(b"second")
    result = site.run([], unknown="quarantine")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(site.now))
    assert [Path(a["to"]).name for a in result["actions"]] == [f"{stamp}-1-stray"]
    quarantine = site.root / ".vmcloud" / "quarantine"
    assert (quarantine / f"{stamp}-stray").read_bytes() == b"first"
    assert (quarantine / f"{stamp}-1-stray").read_bytes() == b"second"


def test_remove_deletes_unknown_entries_and_nothing_outside(site):
    desired = [site.image("alma-9")]
    populate_unknown(site)
    outside = snapshot(site.outside)
    result = site.run(desired, unknown="remove")
    assert len(result["removed"]) == 7
    assert sorted(os.listdir(site.root)) == [".vmcloud", "alma-9.img"]
    assert snapshot(site.outside) == outside
    assert site.plan(desired, unknown="remove").actions == ()


@pytest.mark.parametrize("policy", ["quarantine", "remove"])
def test_a_held_open_unknown_file_is_never_moved_or_removed(site, policy):
    stray = site.root / "stray.img"
    stray.write_bytes(b"a VM's disk nobody declared")
    (site.root / "other").write_bytes(b"x")
    with held_open(stray) as pid:
        plan = site.plan([], unknown=policy)
        result = report(apply_plan(plan))
        assert stray.exists()
    verb = "quarantined" if policy == "quarantine" else "removed"
    assert result["held_open"] == [{"path": str(stray), "pids": [pid], "uuid": None,
                                    "reason": f"unknown file, held open: not {verb}", "domains": [],
                                    "rule": "image-in-use"}]
    assert [os.path.basename(a.path) for a in plan.actions] == ["other"]


def test_a_directory_with_a_held_open_file_is_not_removed(site):
    directory = site.root / "vmdir"
    directory.mkdir()
    (directory / "disk.img").write_bytes(b"d" * 100)
    with held_open(directory / "disk.img") as pid:
        plan = site.plan([], unknown="remove")
        result = report(apply_plan(plan))
    assert plan.actions == () and result["held_open"][0]["pids"] == [pid]
    assert (directory / "disk.img").exists()


@pytest.mark.parametrize("policy", ["report", "quarantine", "remove"])
def test_vmcloud_temporary_files_are_left_alone_within_the_grace_period(site, policy):
    fresh = site.root / ".promote-fresh"
    stale = site.root / ".promote-stale"
    fresh.write_bytes(b"being written")
    stale.write_bytes(b"interrupted")
    age(fresh, 60, site.now)
    age(stale, 7200, site.now)
    plan = site.plan([], unknown=policy, grace_seconds=3600)
    assert plan.in_progress == (str(fresh),)
    assert plan.unknown == ()  # vmcloud's own leftovers are never unknown images
    assert [(a.kind, a.path) for a in plan.actions] == [("clean", str(stale))]
    assert "interrupted promotion" in plan.actions[0].reason
    assert report(apply_plan(plan))["cleaned"] == [str(stale)]
    assert fresh.exists() and not stale.exists()


def test_an_entry_replaced_after_planning_is_deferred_not_removed(site):
    stray = site.root / "stray"
    stray.write_bytes(b"planned")
    plan = site.plan([], unknown="remove")
    newcomer = site.root / "newcomer"
    newcomer.write_bytes(b"arrived after planning")
    os.replace(newcomer, stray)
    outcome = apply_plan(plan)
    assert outcome.done == [] and outcome.deferred[0][1] == "replaced since planned; run again"
    assert stray.read_bytes() == b"arrived after planning"


@pytest.fixture
def mounted(site):
    """A tmpfs mounted inside the store (the test machines run as root; skipped otherwise)."""
    points = [site.root / "mnt", site.root / "holder" / "mnt"]
    mounted_points = []
    try:
        for point in points:
            point.mkdir(parents=True)
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(point)],
                                  capture_output=True, check=False)
            if done.returncode != 0:
                pytest.skip(f"cannot mount a tmpfs here: {done.stderr!r}")
            mounted_points.append(point)
            (point / "data").write_bytes(b"another filesystem")
        yield points
    finally:
        for point in mounted_points:
            subprocess.run(["umount", str(point)], check=True)


def test_another_filesystem_inside_the_store_is_never_touched(site, mounted):
    plan = site.plan([], unknown="remove")
    refusals = {entry.name: entry.refusal for entry in plan.unknown}
    assert refusals["mnt"] == "another filesystem is mounted here; never touched"
    assert "another filesystem is mounted there" in refusals["holder"]
    assert plan.actions == ()
    apply_plan(plan)
    assert all((point / "data").exists() for point in mounted)


# --------------------------------------------------------------------------- quota


def kept_images(site: Site) -> Dict[str, Any]:
    """A desired image and three no-longer-desired ones whose age order is not their name order."""
    desired = site.image("want", size=100 * KIB)
    old = {uuid: site.image(uuid, size=size) for uuid, size in
           [("old-a", 300 * KIB), ("old-b", 200 * KIB), ("old-c", 100 * KIB)]}
    for uuid, seconds in [("old-b", 3000), ("old-a", 2000), ("old-c", 1000)]:
        age(site.path(old[uuid]), seconds, site.now)
    age(site.path(desired), 9000, site.now)  # the oldest file of all, and never evicted
    return {"desired": [desired], "old": old}


def test_without_a_quota_kept_images_stay(site):
    world = kept_images(site)
    plan = site.plan(world["desired"], not_desired="keep")
    assert plan.actions == () and plan.kept == ("old-a", "old-b", "old-c") and plan.quota is None


def test_over_the_quota_kept_images_are_evicted_oldest_first(site):
    world = kept_images(site)
    plan = site.plan(world["desired"], not_desired="keep", max_bytes=350 * KIB)
    assert kinds(plan) == [("evict", "old-b.img", "old-b"), ("evict", "old-a.img", "old-a")]
    assert plan.kept == ("old-c",)
    assert plan.quota is not None and plan.quota.over and not plan.quota.over_after
    assert plan.quota.store_bytes_after == plan.quota.store_bytes - 500 * KIB
    result = report(apply_plan(plan))
    assert [e["uuid"] for e in result["evicted"]] == ["old-b", "old-a"]
    assert sorted(site.store.manifest()) == ["old-c", "want"]
    assert site.plan(world["desired"], not_desired="keep", max_bytes=350 * KIB).actions == ()


def test_a_desired_image_is_never_evicted_and_still_over_is_said(site):
    world = kept_images(site)
    with pytest.raises(StoreError) as caught:  # three of the four managed images: the guard
        site.plan(world["desired"], not_desired="keep", max_bytes=1)
    assert caught.value.rule == "retire-guard" and "would retire 3 of the 4 images" in caught.value.message
    plan = site.plan(world["desired"], not_desired="keep", max_bytes=1, retire_confirm=True)
    assert [action.uuid for action in plan.actions] == ["old-b", "old-a", "old-c"]
    assert plan.quota is not None and plan.quota.over_after is True
    apply_plan(plan)
    assert site.path(world["desired"][0]).exists()


def test_the_high_watermark_reads_the_filesystem(site):
    world = kept_images(site)
    total, used = 10_000 * KIB, 7_250 * KIB  # 72.5 % used, watermark 70 %: 250 KiB to free
    plan = plan_reconcile(str(site.root), world["desired"], Options(not_desired="keep", high_watermark_percent=70),
                          now=site.now, fs_usage=lambda _path: (total, used))
    assert [action.uuid for action in plan.actions] == ["old-b", "old-a"]
    assert plan.quota is not None and plan.quota.filesystem_used_bytes_after == used - 500 * KIB


def test_retired_and_removed_bytes_count_before_anything_is_evicted(site):
    world = kept_images(site)
    (site.root / "stray").write_bytes(b"s" * 400 * KIB)
    plan = site.plan(world["desired"], not_desired="keep", unknown="remove", max_bytes=650 * KIB)
    assert kinds(plan) == [("remove", "stray", None), ("evict", "old-b.img", "old-b")]


def test_unknown_files_under_report_count_but_are_not_evicted(site):
    world = kept_images(site)
    (site.root / "stray").write_bytes(b"s" * 400 * KIB)
    plan = site.plan(world["desired"], not_desired="keep", max_bytes=1, retire_confirm=True)
    assert [action.uuid for action in plan.actions] == ["old-b", "old-a", "old-c"]
    assert plan.quota is not None and plan.quota.over_after is True
    assert (site.root / "stray").exists()


# --------------------------------------------------------------------------- check mode, diff, idempotence


def busy_store(site: Site) -> List[Dict[str, Any]]:
    """Every rule at once: present, corrupt, missing, retired, kept, unknown of each kind."""
    present = site.image("alma-9")
    corrupt = site.image("slc-5")
    with open(site.path(corrupt), "ab") as handle:
        handle.write(b"damage")
    site.image("alma-8")
    site.image("slc-4", size=64 * KIB)
    populate_unknown(site)
    stale = site.root / ".promote-stale"
    stale.write_bytes(b"interrupted")
    age(stale, 7200, site.now)
    return [present, corrupt, site.unpromoted("cernvm-3")]


SCENARIOS = [
    {"unknown": "report"},
    {"unknown": "quarantine"},
    {"unknown": "remove"},
    {"unknown": "remove", "not_desired": "keep", "max_bytes": 40 * KIB},
]


@pytest.mark.parametrize("options", SCENARIOS)
def test_check_mode_shows_exactly_what_a_real_run_does(site, options):
    desired = busy_store(site)
    before, outside = snapshot(site.root), snapshot(site.outside)
    checked = site.plan(desired, **options)
    check_result = report(apply_plan(checked, check_mode=True))
    assert snapshot(site.root) == before, "check mode touched the store"
    applied = site.plan(desired, **options)
    assert applied == checked
    real_result = report(apply_plan(applied))
    assert real_result == check_result
    assert real_result["changed"] is True
    # The diff's "after" is what the store then holds.
    after = site.plan(desired, **options)
    assert list(after.files) == real_result["diff"]["after"]["files"]
    assert list(after.managed) == real_result["diff"]["after"]["managed"]
    assert snapshot(site.outside) == outside


@pytest.mark.parametrize("options", SCENARIOS)
def test_a_second_run_has_nothing_to_do(site, options):
    desired = busy_store(site)
    first = site.run(desired, **options)
    second = site.plan(desired, **options)
    assert second.actions == ()
    result = report(apply_plan(second))
    assert result["changed"] is False
    assert result["diff"]["before"] == result["diff"]["after"] == first["diff"]["after"]


def test_the_plan_names_every_action_with_a_reason(site):
    desired = busy_store(site)
    result = site.run(desired, check_mode=True, unknown="quarantine")
    assert result["present"] == ["alma-9"] and result["corrupt"] == ["slc-5"] and result["missing"] == ["cernvm-3"]
    assert result["retired"] == ["alma-8", "slc-4"] and result["forgotten"] == ["slc-5"]
    assert all(action["reason"] and action["path"] for action in result["actions"])
    assert result["diff"]["before"]["managed"] == ["alma-8", "alma-9", "slc-4", "slc-5"]
    assert result["diff"]["after"]["managed"] == ["alma-9"]
    assert result["diff"]["after"]["files"] == ["alma-9.img", "slc-5.img"]


# --------------------------------------------------------------------------- refusals and edges


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"unknown": "delete"}, "unknown='delete'"),
        ({"not_desired": "drop"}, "not_desired='drop'"),
        ({"max_bytes": -1}, "max_bytes=-1"),
        ({"high_watermark_percent": 0}, "high_watermark_percent=0"),
        ({"high_watermark_percent": 101}, "high_watermark_percent=101"),
        ({"grace_seconds": -1}, "grace_seconds=-1"),
    ],
)
def test_options_are_checked(site, options, message):
    with pytest.raises(StoreError) as caught:
        site.plan([], **options)
    assert caught.value.rule == "option-invalid" and message in caught.value.message


@pytest.mark.parametrize(
    ("desired", "rule"),
    [
        ([{"uuid": "a"}], "desired-invalid"),
        (["alma"], "desired-invalid"),
        ([{"uuid": "a", "file": "../escape.img"}], "desired-invalid"),
        ([{"uuid": "a", "file": ".vmcloud"}], "desired-invalid"),
        ([{"uuid": "a", "file": "x.img"}, {"uuid": "b", "file": "x.img.gz", "compressed": True}], "desired-conflict"),
    ],
)
def test_a_malformed_desired_set_is_refused(site, desired, rule):
    with pytest.raises(StoreError) as caught:
        site.plan(desired)
    assert caught.value.rule == rule


def test_a_meta_directory_that_is_a_symlink_is_refused(site):
    (site.root / ".vmcloud").symlink_to(site.outside)
    with pytest.raises(StoreError) as caught:
        site.plan([], unknown="quarantine")
    assert caught.value.rule == "store-meta-invalid"


def test_a_store_that_does_not_exist_yet_has_everything_missing(tmp_path):
    plan = plan_reconcile(str(tmp_path / "nowhere"), [{"uuid": "a", "file": "a.img"}],
                          Options(unknown="remove", max_bytes=1))
    assert plan.uuids("missing") == ["a"] and plan.actions == () and plan.files == ()
    assert report(apply_plan(plan))["changed"] is False
    assert not (tmp_path / "nowhere").exists()


def test_find_unknown_agrees_with_the_plan(site):
    desired = busy_store(site)
    assert find_unknown(str(site.root), desired, now=site.now) == list(site.plan(desired).unknown)


def test_open_files_sees_a_real_process(site):
    target = site.root / "disk.img"
    target.write_bytes(b"d")
    with held_open(target) as pid:
        st = target.stat()
        assert pid in open_files()[(st.st_dev, st.st_ino)]


def test_a_meta_directory_swapped_for_a_symlink_after_planning_stops_the_quarantine(site):
    stray = site.root / "stray"
    stray.write_bytes(b"s")
    plan = site.plan([], unknown="quarantine")
    (site.root / ".vmcloud").symlink_to(site.outside)
    outside = snapshot(site.outside)
    outcome = apply_plan(plan)
    assert outcome.done == [] and "store-meta-invalid" in outcome.failures[0][1]
    assert snapshot(site.outside) == outside and stray.exists()


def test_an_unreadable_store_names_the_rule(site, monkeypatch):
    listdir = os.listdir

    def refuse(path="."):
        if str(path) == str(site.root):
            raise PermissionError(13, "Permission denied", str(path))
        return listdir(path)

    monkeypatch.setattr(os, "listdir", refuse)
    with pytest.raises(StoreError) as caught:
        site.plan([])
    assert caught.value.rule == "store-unreadable" and "Permission denied" in caught.value.message
