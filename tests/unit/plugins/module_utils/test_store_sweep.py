# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The store class of issue 7's sweep: names that are not UTF-8, very deep directories, manifests
vmcloud did not write, a FIFO where an image was. Each ends in a report or a one-line rule, never
a crash, a hang, or a deletion beyond what the policy says.

Pure module_utils: runs in both venvs (no ansible).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import StoreError
from ansible_collections.vmcloud.fleet.plugins.module_utils._reconcile_execute import apply_plan, report
from ansible_collections.vmcloud.fleet.plugins.module_utils._reconcile_plan import Options, find_unknown, plan_reconcile
from ansible_collections.vmcloud.fleet.plugins.module_utils._reconcile_scan import MAX_DEPTH, printable
from ansible_collections.vmcloud.fleet.plugins.module_utils._store import MANIFEST, META_DIR, ImageStore
from tests.unit.sync_world import imgdist, write_imgdist_config


@contextmanager
def no_hang(seconds: int = 20) -> Iterator[None]:
    """A guard against hanging the suite on a FIFO, not a timing assertion."""

    def hung(*_args):
        raise AssertionError("blocked (opened a FIFO?)")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def every_string_is_utf8(value: Any) -> None:
    json.dumps(value, ensure_ascii=False).encode("utf-8")  # raises on a lone surrogate


@pytest.fixture
def held(tmp_path: Path) -> Dict[str, Any]:
    """A store holding one verified image, promoted from staging."""
    root = tmp_path / "store"
    staged = tmp_path / "staging" / "alma-9.img"
    staged.parent.mkdir()
    staged.write_bytes(b"alma" * 1024)
    image = {"uuid": "alma-9", "name": "alma", "version": 9, "file": "alma-9.img", "compressed": False,
             "size": 4096, "sha256": hashlib.sha256(staged.read_bytes()).hexdigest()}
    store = ImageStore(str(root))
    store.promote(image, str(staged))
    return {"root": root, "store": store, "image": image}


# --------------------------------------------------------------------------- names not UTF-8


def test_a_name_that_is_not_utf8_is_reported_safely_and_only_unknowns_go(held):
    root = held["root"]
    odd = os.path.join(os.fsencode(root), b"caf\xe9.img")
    with open(odd, "wb") as handle:
        handle.write(b"latin-1 named")
    (root / "stray.img").write_bytes(b"stray")
    result = report(apply_plan(plan_reconcile(str(root), [held["image"]], Options(unknown="remove"))))
    every_string_is_utf8(result)
    shown = str(root / "caf\\xe9.img")
    assert result["unknown"] == [shown, str(root / "stray.img")]
    assert result["removed"] == [shown, str(root / "stray.img")] and result["failures"] == []
    assert "not UTF-8" in result["unknown_entries"][0]["reason"]
    assert result["diff"]["before"]["files"] == ["alma-9.img", "caf\\xe9.img", "stray.img"]
    assert result["present"] == ["alma-9"] and sorted(os.listdir(root)) == [META_DIR, "alma-9.img"]


def test_find_unknown_names_are_printable(held):
    with open(os.path.join(os.fsencode(held["root"]), b"\xff\xfe"), "wb") as handle:
        handle.write(b"x")
    names = [printable(entry.name) for entry in find_unknown(str(held["root"]), [held["image"]])]
    assert names == ["\\xff\\xfe"]
    every_string_is_utf8(names)


def test_printable_leaves_utf8_alone():
    assert printable("café.img") == "café.img" and printable("a\udce9") == "a\\xe9"


# --------------------------------------------------------------------------- deep trees


def test_a_very_deep_directory_is_reported_not_walked_to_the_bottom(held):
    deep = os.fsencode(held["root"] / "deep")
    os.mkdir(deep)
    fd = os.open(deep, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _unused in range(1100):  # relative to a descriptor: the path would pass PATH_MAX
            os.mkdir(b"d", dir_fd=fd)
            below = os.open(b"d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = below
        os.close(os.open(b"bottom", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    finally:
        os.close(fd)
    try:
        result = report(apply_plan(plan_reconcile(str(held["root"]), [held["image"]], Options(unknown="remove"))))
        entry = result["unknown_entries"][0]
        assert entry["path"] == str(held["root"] / "deep")
        assert f"deeper than {MAX_DEPTH} levels" in entry["refusal"]
        assert result["removed"] == [] and result["failures"] == [] and os.path.isdir(deep)
    finally:
        remove_deep(deep)  # pytest's own clean-up of old tmp directories recurses


def remove_deep(top: bytes) -> None:
    """Remove a single chain of directories ``top/d/d/...`` (and the file at its bottom) iteratively."""
    fds = [os.open(top, os.O_RDONLY | os.O_DIRECTORY)]
    try:
        while os.path.lexists(f"/proc/self/fd/{fds[-1]}/d"):
            fds.append(os.open(b"d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fds[-1]))
        for name in os.listdir(fds[-1]):
            os.unlink(name, dir_fd=fds[-1])
        while len(fds) > 1:
            os.close(fds.pop())
            os.rmdir(b"d", dir_fd=fds[-1])
    finally:
        for fd in fds:
            os.close(fd)
    os.rmdir(top)


def test_a_directory_within_the_depth_bound_is_handled(held):
    path = held["root"] / "shallow"
    (path / "a" / "b").mkdir(parents=True)
    (path / "a" / "b" / "f").write_bytes(b"12345")
    plan = plan_reconcile(str(held["root"]), [held["image"]], Options(unknown="remove"))
    assert plan.unknown[0].size == 5 and plan.unknown[0].refusal is None
    assert report(apply_plan(plan))["removed"] == [str(path)] and not path.exists()


# --------------------------------------------------------------------------- manifests


@pytest.mark.parametrize(
    ("document", "needle"),
    [
        ({"format": 1, "images": []}, "'images' is list"),
        ({"format": 1, "images": {"alma-9": {"sha256": "00"}}}, "has no 'file'"),
        ({"format": 1, "images": {"alma-9": "alma-9.img"}}, "is not a mapping"),
        (["not", "a", "mapping"], "expected a mapping"),
    ],
)
def test_a_manifest_vmcloud_did_not_write_is_store_invalid_and_nothing_goes(held, document, needle):
    root = held["root"]
    (root / "stray.img").write_bytes(b"stray")
    (root / META_DIR / MANIFEST).write_text(json.dumps(document))
    before = sorted(os.listdir(root))
    for call in (lambda: plan_reconcile(str(root), [held["image"]], Options(unknown="remove")),
                 held["store"].holdings):
        with pytest.raises(StoreError) as caught:
            call()
        assert caught.value.rule == "store-invalid" and needle in caught.value.message
        assert "\n" not in str(caught.value)
    assert sorted(os.listdir(root)) == before


# --------------------------------------------------------------------------- a FIFO for an image


def test_a_fifo_where_a_managed_image_was_neither_hangs_nor_passes(held):
    path = held["root"] / "alma-9.img"
    path.unlink()
    os.mkfifo(path)
    store = held["store"]
    with no_hang():
        assert store.is_current(held["image"]) is False
        [holding] = store.holdings()
        plan = plan_reconcile(str(held["root"]), [held["image"]])
    assert holding["state"] == "corrupt" and "not a regular file" in holding["reason"]
    assert plan.images[0].state == "corrupt" and "other" in plan.images[0].reason


def test_imgdist_status_with_a_fifo_for_an_image_reports_it(world, tmp_path):
    config = write_imgdist_config(world)
    assert imgdist("-c", config, "sync")[0] == 0
    store = Path(world.host_path("images"))
    image = store / "slc_5.img"
    image.unlink()
    os.mkfifo(image)
    with no_hang():
        code, out, _unused = imgdist("-c", config, "status", "--json")
    rows = {row["uuid"]: row for row in json.loads(out)["images"]}
    assert code == 0 and rows["slc-5"]["state"] == "corrupt" and rows["alma-9"]["state"] == "ready"
    assert rows["slc-5"]["store_reason"] == "not a regular file (a FIFO)"


def test_a_fifo_is_never_opened_even_when_its_size_matches(tmp_path):
    """A FIFO's size is 0: for an empty image the size check passes, and reading it blocks."""
    staged = tmp_path / "empty.img"
    staged.write_bytes(b"")
    image = {"uuid": "empty", "name": "empty", "version": 1, "file": "empty.img", "compressed": False, "size": 0,
             "sha256": hashlib.sha256(b"").hexdigest()}
    store = ImageStore(str(tmp_path / "store"))
    store.promote(image, str(staged))
    path = tmp_path / "store" / "empty.img"
    path.unlink()
    os.mkfifo(path)
    with no_hang():
        assert store.is_current(image) is False
        [holding] = store.holdings()
        plan = plan_reconcile(str(tmp_path / "store"), [image])
    assert holding["state"] == "corrupt" and plan.images[0].state == "corrupt"


def test_imgdist_lists_a_name_that_is_not_utf8_printably(world, tmp_path):
    config = write_imgdist_config(world)
    assert imgdist("-c", config, "sync")[0] == 0
    with open(os.path.join(os.fsencode(world.host_path("images")), b"caf\xe9.img"), "wb") as handle:
        handle.write(b"x")
    code, out, _unused = imgdist("-c", config, "--list_unknown_files")
    assert code == 0 and out == "caf\\xe9.img\n"
    out.encode("utf-8")


def test_imgdist_status_reports_a_manifest_it_cannot_use(world, tmp_path):
    config = write_imgdist_config(world)
    assert imgdist("-c", config, "sync")[0] == 0
    manifest = Path(world.host_path("images")) / META_DIR / MANIFEST
    manifest.write_text('{"format": 1, "images": []}')
    code, out, _unused = imgdist("-c", config, "status", "--json")
    report = json.loads(out)
    assert code == 0 and any(p.startswith("store: store-invalid: ") for p in report["problems"])
    assert manifest.read_text() == '{"format": 1, "images": []}'


@pytest.mark.parametrize("kind", ["fifo", "symlink"])
def test_a_manifest_that_is_not_a_regular_file_is_store_invalid(held, tmp_path, kind):
    manifest = held["root"] / META_DIR / MANIFEST
    manifest.unlink()
    if kind == "fifo":
        os.mkfifo(manifest)
    else:
        (tmp_path / "elsewhere.json").write_text('{"format": 1, "images": {}}')
        manifest.symlink_to(tmp_path / "elsewhere.json")
    with no_hang(), pytest.raises(StoreError) as caught:
        held["store"].manifest()
    assert caught.value.rule == "store-invalid" and "not a regular file" in caught.value.message
