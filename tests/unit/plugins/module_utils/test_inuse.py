# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""In use is in use: qcow2 backing chains (real qemu-img files, malformed headers, loops, length),
libvirt domain XML (captured from a real libvirtd, tests/fixtures/libvirt), and the reconcile plan,
which never retires, evicts or quarantines what a domain uses.

Pure module_utils: runs in both venvs. qemu-img (Debian qemu-utils) makes the images.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import List

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils import _inuse, _store
from ansible_collections.vmcloud.fleet.plugins.module_utils._inuse import (
    MAX_CHAIN,
    Chain,
    Libvirt,
    backing_chain,
    domain_disks,
    libvirt_domains,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._reconcile_execute import apply_plan, report
from ansible_collections.vmcloud.fleet.plugins.module_utils._reconcile_plan import plan_reconcile

from .test_reconcile import Site, snapshot

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "libvirt"
CAPTURED_STORE, CAPTURED_VMS = "/tmp/lvs/store", "/tmp/lvs/vms"  # noqa: S108 - text in the fixtures, replaced
QEMU_IMG = shutil.which("qemu-img") or "/usr/bin/qemu-img"


def qemu_img(*args: str, cwd: Path | None = None) -> None:
    subprocess.run([QEMU_IMG, *args], check=True, capture_output=True, cwd=cwd)


def raw(path: Path, size: str = "1M") -> str:
    qemu_img("create", "-q", "-f", "raw", str(path), size)
    return str(path)


def overlay(path: Path, backing: str, backing_format: str = "raw", cwd: Path | None = None) -> str:
    qemu_img("create", "-q", "-f", "qcow2", "-b", backing, "-F", backing_format, str(path), cwd=cwd)
    return str(path)


def patch(path: str, offset: int, data: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


# --------------------------------------------------------------------------- qcow2 chains


def test_an_overlay_made_by_qemu_img_names_its_store_image(tmp_path):
    base = raw(tmp_path / "base.img")
    top = overlay(tmp_path / "top.qcow2", base)
    assert backing_chain(top) == Chain((top, base))
    assert backing_chain(base, "raw") == Chain((base,))
    alone = tmp_path / "alone.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(alone), "1M")
    assert backing_chain(str(alone)) == Chain((str(alone),))


def test_relative_backing_names_are_resolved_against_the_overlays_directory(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "vms").mkdir()
    base = raw(tmp_path / "images" / "base.img")
    # qemu-img writes the name as given: relative to the overlay's directory, not to a cwd.
    middle = overlay(tmp_path / "vms" / "middle.qcow2", "../images/base.img", cwd=tmp_path / "vms")
    top = overlay(tmp_path / "vms" / "top.qcow2", "middle.qcow2", "qcow2", cwd=tmp_path / "vms")
    os.chdir("/")
    chain = backing_chain(top)
    assert chain.problem is None
    assert chain.files == (top, middle, str(tmp_path / "vms" / "../images/base.img"))
    assert os.path.samefile(chain.files[-1], base)


def test_a_raw_disk_is_never_parsed_even_if_it_looks_like_qcow2(tmp_path):
    # A guest may write anything into a raw disk, a qcow2 header naming a store image included.
    guest_written = overlay(tmp_path / "guest.img", raw(tmp_path / "store-image.img"))
    assert backing_chain(guest_written, "raw") == Chain((guest_written,))
    # ... and a qcow2 overlay whose backing format is raw does not have its backing parsed either.
    top = overlay(tmp_path / "top.qcow2", guest_written, "raw")
    assert backing_chain(top) == Chain((top, guest_written))


def test_a_backing_format_extension_of_qcow2_is_followed(tmp_path):
    base = raw(tmp_path / "base.img")
    middle = overlay(tmp_path / "middle.qcow2", base)
    top = overlay(tmp_path / "top.qcow2", middle, "qcow2")
    assert backing_chain(top).files == (top, middle, base)


def test_a_loop_is_refused_and_every_file_of_it_is_listed(tmp_path):
    first = tmp_path / "a.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(first), "1M")
    second = overlay(tmp_path / "b.qcow2", str(first), "qcow2")
    qemu_img("rebase", "-u", "-b", second, "-F", "qcow2", str(first))  # unsafe rebase: no loop check
    chain = backing_chain(str(first))
    assert chain.files == (str(first), second) and chain.complete
    assert chain.problem == f"the backing chain of {first} loops: {first} is {first} again (qemu refuses it)"
    # A file naming itself.
    qemu_img("rebase", "-u", "-b", str(first), "-F", "qcow2", str(first))
    assert backing_chain(str(first)).files == (str(first),) and "loops" in backing_chain(str(first)).problem


def test_the_chain_length_is_bounded(tmp_path):
    files = [raw(tmp_path / "0.img")]
    for level in range(1, 5):
        files.append(overlay(tmp_path / f"{level}.qcow2", files[-1], "raw" if level == 1 else "qcow2"))
    top = files[-1]
    assert backing_chain(top, max_files=5) == Chain(tuple(reversed(files)))
    chain = backing_chain(top, max_files=3)
    assert chain.files == tuple(reversed(files))[:3] and chain.complete is False
    assert chain.problem == f"the backing chain of {top} is longer than 3 files (at {files[1]})"
    assert MAX_CHAIN == 32


def test_a_missing_backing_file_ends_the_chain(tmp_path):
    gone = tmp_path / "gone.img"
    top = overlay(tmp_path / "top.qcow2", raw(gone))
    gone.unlink()
    assert backing_chain(top) == Chain((top, str(gone)))
    assert backing_chain(str(tmp_path / "not-there.qcow2")) == Chain((str(tmp_path / "not-there.qcow2"),))


def test_a_fifo_or_directory_is_not_read(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert backing_chain(str(fifo)) == Chain((str(fifo),))  # returns at once: never blocks on open or read
    assert backing_chain(str(tmp_path)) == Chain((str(tmp_path),))


def test_network_backing_files_end_the_chain_json_names_are_not_followed(tmp_path):
    top = overlay(tmp_path / "top.qcow2", raw(tmp_path / "base.img"))
    qemu_img("rebase", "-u", "-b", "nbd://127.0.0.1:10809/disk", "-F", "raw", top)
    assert backing_chain(top) == Chain((top,))
    qemu_img("rebase", "-u", "-b", f"file:{tmp_path}/base.img", "-F", "raw", top)
    assert backing_chain(top) == Chain((top, f"{tmp_path}/base.img"))
    qemu_img("rebase", "-u", "-b", 'json:{"file.driver":"file","file.filename":"/x"}', "-F", "raw", top)
    chain = backing_chain(top)
    assert chain.files == (top,) and chain.complete is False and "json:" in chain.problem


def test_an_external_data_file_is_part_of_the_chain(tmp_path):
    data = tmp_path / "data.raw"
    top = tmp_path / "top.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-o", f"data_file={data}", str(top), "1M")
    assert backing_chain(str(top)) == Chain((str(top), str(data)))


def header_fields(path: str) -> dict:
    with open(path, "rb") as handle:
        head = handle.read(104)
    version, offset, size, cluster_bits = struct.unpack(">IQII", head[4:24])
    return {"version": version, "offset": offset, "size": size, "cluster_bits": cluster_bits}


@pytest.mark.parametrize(("where", "data", "message"), [
    (4, struct.pack(">I", 4), "qcow2 version 4 (qemu opens 2 and 3)"),
    (20, struct.pack(">I", 30), "cluster_bits 30 (qemu accepts 9 to 21)"),
    (16, struct.pack(">I", 1024), "a backing file name of 1024 bytes (qemu allows 1023)"),
    (8, struct.pack(">Q", 1 << 40), "is not inside the first cluster after the header"),
    (8, struct.pack(">Q", 16), "is not inside the first cluster after the header"),
    (100, struct.pack(">I", 8), "header_length 8 (104 to the cluster size 65536)"),
])
def test_malformed_headers_end_the_chain_with_a_problem(tmp_path, where, data, message):
    base = raw(tmp_path / "base.img")
    top = overlay(tmp_path / "top.qcow2", base)
    assert header_fields(top)["version"] == 3
    patch(top, where, data)
    chain = backing_chain(top)
    assert chain.files == (top,) and chain.complete is True  # qemu cannot open it: nothing further is read
    assert chain.problem.startswith(f"{top} has a malformed qcow2 header: ") and message in chain.problem


def test_a_truncated_header_a_nul_in_the_name_and_a_runaway_extension(tmp_path):
    base = raw(tmp_path / "base.img")
    top = overlay(tmp_path / "top.qcow2", base)
    fields = header_fields(top)
    content = Path(top).read_bytes()

    Path(top).write_bytes(content[:50])
    assert "at least 72 bytes, the file has 50" in backing_chain(top).problem

    Path(top).write_bytes(content[:fields["offset"] + 3])
    assert "the backing file name ends at byte" in backing_chain(top).problem

    Path(top).write_bytes(content)
    patch(top, fields["offset"] + 2, b"\0")
    assert "contains a NUL byte" in backing_chain(top).problem

    Path(top).write_bytes(content)
    header_length = struct.unpack(">I", content[100:104])[0]  # qemu 7.2 writes 112
    patch(top, header_length, struct.pack(">II", _inuse.EXT_BACKING_FORMAT, 0xFFFFFF00))
    assert "runs past the header" in backing_chain(top).problem


def test_an_unopenable_path_leaves_the_chain_incomplete(tmp_path):
    link = tmp_path / "loop-link"
    os.symlink(link, link)  # ELOOP on open
    chain = backing_chain(str(link))
    assert chain.files == (str(link),) and chain.complete is False and "cannot be read" in chain.problem


# --------------------------------------------------------------------------- domain XML from libvirt


def fixture(name: str, store: Path, vms: Path) -> str:
    text = (FIXTURES / name).read_text()
    return text.replace(CAPTURED_STORE, str(store)).replace(CAPTURED_VMS, str(vms))


@pytest.fixture
def disks(tmp_path):
    """The captured domains' disks, made again with qemu-img under tmp_path."""
    store, vms = tmp_path / "store", tmp_path / "vms"
    store.mkdir()
    vms.mkdir()
    for name in ("a.img", "b.img", "c.img"):
        raw(store / name)
    overlay(vms / "overlay.qcow2", str(store / "b.img"))
    return store, vms


def test_domain_xml_captured_from_libvirtd(disks):
    store, vms = disks
    assert domain_disks(fixture("off1-inactive.xml", *disks)).files == (f"{store}/a.img",)
    # The inactive XML names only the overlay: the store image comes from its qcow2 header.
    found = domain_disks(fixture("ov1-inactive.xml", *disks))
    assert (found.name, found.files) == ("ov1", (f"{vms}/overlay.qcow2", f"{store}/b.img"))
    assert domain_disks(fixture("ov1-live.xml", *disks)).files == (f"{vms}/overlay.qcow2", f"{store}/b.img")
    assert domain_disks(fixture("saved1-managedsave.xml", *disks)).files == (f"{store}/c.img",)


def test_a_live_backing_store_counts_even_if_the_overlay_is_unreadable(disks):
    store, vms = disks
    (vms / "overlay.qcow2").unlink()
    assert domain_disks(fixture("ov1-live.xml", *disks)).files == (f"{vms}/overlay.qcow2", f"{store}/b.img")
    assert domain_disks(fixture("ov1-inactive.xml", *disks)).files == (f"{vms}/overlay.qcow2",)


def test_every_device_counts_and_sources_without_a_file_are_skipped(tmp_path):
    xml = (f"<domain type='qemu'><name>cd</name><devices>"
           f"<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='{tmp_path}/boot.iso'/>"
           f"<target dev='sda' bus='sata'/></disk>"
           f"<disk type='network' device='disk'><source protocol='nbd' name='x'><host name='h'/></source></disk>"
           f"<disk type='file' device='floppy'><target dev='fda'/></disk>"
           f"</devices></domain>")
    assert domain_disks(xml).files == (f"{tmp_path}/boot.iso",)


# --------------------------------------------------------------------------- where domains are read from


def config_dir(tmp_path: Path, disks, *names: str) -> Path:
    directory = tmp_path / "etc-libvirt-qemu"
    directory.mkdir()
    (directory / "networks").mkdir()  # as /etc/libvirt/qemu has: not a domain
    for name in names:
        (directory / name).write_text(fixture(name, *disks))
    return directory


def test_without_virsh_the_persistent_definitions_are_read(tmp_path, disks):
    directory = config_dir(tmp_path, disks, "off1-inactive.xml", "ov1-inactive.xml")
    found = libvirt_domains(Libvirt(virsh=str(tmp_path / "no-virsh"), config_dir=str(directory)))
    store, vms = disks
    assert found.unknown is None and found.source == f"{directory}/*.xml (virsh not found)"
    assert found.disks == {"off1": (f"{store}/a.img",), "ov1": (f"{vms}/overlay.qcow2", f"{store}/b.img")}


def test_libvirt_absent_means_no_domains(tmp_path):
    found = libvirt_domains(Libvirt(virsh=str(tmp_path / "no-virsh"), config_dir=str(tmp_path / "no-etc")))
    assert (found.disks, found.unknown) == ({}, None)
    assert found.source == f"none: libvirt is not installed (virsh not found, no {tmp_path / 'no-etc'})"


def test_unreadable_definitions_make_the_answer_unknown(tmp_path, disks):
    directory = config_dir(tmp_path, disks)
    (directory / "broken.xml").write_text("<domain><devices>")
    found = libvirt_domains(Libvirt(virsh=str(tmp_path / "no-virsh"), config_dir=str(directory)))
    assert found.unknown.startswith("libvirt's domains cannot be read (virsh not found; ")
    (directory / "broken.xml").unlink()
    (tmp_path / "a-file").write_text("")
    found = libvirt_domains(Libvirt(virsh=str(tmp_path / "no-virsh"), config_dir=str(tmp_path / "a-file")))
    assert found.unknown is not None and found.disks == {}


def fake_virsh(tmp_path: Path, script: str) -> str:
    """A stand-in for virsh that answers from files (the real one is in tests/integration)."""
    path = tmp_path / "virsh"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return str(path)


def test_virsh_that_cannot_connect_falls_back_to_the_definitions(tmp_path, disks):
    virsh = fake_virsh(tmp_path, "echo 'error: failed to connect to the hypervisor' >&2; exit 1\n")
    directory = config_dir(tmp_path, disks, "off1-inactive.xml")
    found = libvirt_domains(Libvirt(virsh=virsh, config_dir=str(directory)))
    assert found.disks == {"off1": (f"{disks[0]}/a.img",)}
    assert "failed to connect to the hypervisor" in found.source


# --------------------------------------------------------------------------- the reconcile plan


def in_use_site(tmp_path: Path):
    """A store with two images no longer desired, and the definitions of domains using them: off1
    (shut off) names old-1 directly, ov1's overlay outside the store is backed by old-2."""
    site = Site(tmp_path)
    old1, old2, new = site.image("old-1"), site.image("old-2"), site.image("new-1")
    vms = tmp_path / "vms"
    vms.mkdir()
    overlay(vms / "overlay.qcow2", str(site.path(old2)))
    directory = tmp_path / "etc-libvirt-qemu"
    directory.mkdir()
    (directory / "off1.xml").write_text((FIXTURES / "off1-inactive.xml").read_text()
                                        .replace(f"{CAPTURED_STORE}/a.img", str(site.path(old1))))
    (directory / "ov1.xml").write_text(fixture("ov1-inactive.xml", site.root, vms))
    return site, (old1, old2, new), Libvirt(virsh=str(tmp_path / "no-virsh"), config_dir=str(directory))


def test_images_used_by_domains_are_never_retired_and_the_report_names_the_domains(tmp_path):
    site, (old1, old2, new), libvirt = in_use_site(tmp_path)
    before = snapshot(site.root)
    confirmed = _options(retire_confirm=True)  # two of three retired: past the mass-deletion guard
    plan = plan_reconcile(str(site.root), [new], libvirt=libvirt, now=site.now, options=confirmed)
    assert plan.actions == ()
    result = report(apply_plan(plan, libvirt=libvirt))
    assert result["changed"] is False and result["retired"] == []
    assert result["held_open"] == [
        {"path": str(site.path(old1)), "pids": [], "uuid": "old-1", "domains": ["off1"], "rule": "image-in-use",
         "reason": "no longer desired, in use by libvirt domain off1: not retired"},
        {"path": str(site.path(old2)), "pids": [], "uuid": "old-2", "domains": ["ov1"], "rule": "image-in-use",
         "reason": "no longer desired, in use by libvirt domain ov1: not retired"},
    ]
    assert snapshot(site.root) == before
    assert result["libvirt"] == {"source": f"{libvirt.config_dir}/*.xml (virsh not found)", "unknown": None,
                                 "problems": []}
    # Without the domains (libvirt absent: the report says so), both are retired.
    result = report(apply_plan(plan_reconcile(str(site.root), [new], libvirt=Libvirt(
        virsh="/nonexistent", config_dir="/nonexistent"), now=site.now, options=confirmed)))
    assert sorted(result["retired"]) == ["old-1", "old-2"]
    assert result["libvirt"]["source"] == "none: libvirt is not installed (virsh not found, no /nonexistent)"


def test_kept_images_used_by_domains_are_never_evicted(tmp_path):
    site, (_old1, old2, new), libvirt = in_use_site(tmp_path)
    plan = plan_reconcile(str(site.root), [new], libvirt=libvirt, now=site.now,
                          options=_options(not_desired="keep", max_bytes=0))
    assert [a.kind for a in plan.actions] == [] and plan.quota.over_after
    assert {held.uuid: held.domains for held in plan.held_open} == {"old-1": ("off1",), "old-2": ("ov1",)}
    assert os.path.exists(site.path(old2))


def _options(**kwargs):
    from ansible_collections.vmcloud.fleet.plugins.module_utils._reconcile_plan import Options

    return Options(**kwargs)


@pytest.mark.parametrize("policy", ["quarantine", "remove"])
def test_an_unknown_file_used_by_a_domain_is_never_moved_or_removed(tmp_path, policy):
    site = Site(tmp_path)
    stray = site.root / "hand-copied.img"
    raw(stray)
    top = overlay(tmp_path / "vm.qcow2", str(stray))
    directory = tmp_path / "defs"
    directory.mkdir()
    (directory / "vm.xml").write_text(
        f"<domain type='qemu'><name>vm</name><devices><disk type='file' device='disk'>"
        f"<driver name='qemu' type='qcow2'/><source file='{top}'/><target dev='vda'/></disk></devices></domain>")
    libvirt = Libvirt(virsh="/nonexistent", config_dir=str(directory))
    plan = plan_reconcile(str(site.root), [], libvirt=libvirt, now=site.now, options=_options(unknown=policy))
    result = report(apply_plan(plan, libvirt=libvirt))
    assert plan.actions == () and stray.exists()
    verb = "quarantined" if policy == "quarantine" else "removed"
    assert result["held_open"] == [{"path": str(stray), "pids": [], "uuid": None, "domains": ["vm"],
                                    "rule": "image-in-use", "reason": f"unknown file, in use by libvirt domain vm: "
                                                                      f"not {verb}"}]
    assert result["unknown_entries"][0]["domains"] == ["vm"]


def test_a_domain_defined_after_planning_defers_the_retirement(tmp_path):
    site, (old1, _old2, new), libvirt = in_use_site(tmp_path)
    nothing = Libvirt(virsh="/nonexistent", config_dir="/nonexistent")
    plan = plan_reconcile(str(site.root), [new], libvirt=nothing, now=site.now, options=_options(retire_confirm=True))
    assert sorted(a.uuid for a in plan.actions if a.kind == "retire") == ["old-1", "old-2"]
    outcome = apply_plan(plan, libvirt=libvirt)
    assert outcome.done == [] and sorted(why for _unused, why in outcome.deferred) == [
        "in use by libvirt domain off1 since planned", "in use by libvirt domain ov1 since planned"]
    assert [held.domains for held in outcome.held_open] == [("off1",), ("ov1",)]
    assert os.path.exists(site.path(old1)) and "old-1" in site.store.manifest()


def test_when_the_domains_cannot_be_read_nothing_is_retired(tmp_path):
    site, (_old1, _old2, new), _libvirt = in_use_site(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.xml").write_text("not xml")
    libvirt = Libvirt(virsh="/nonexistent", config_dir=str(broken))
    before = snapshot(site.root)
    plan = plan_reconcile(str(site.root), [new], libvirt=libvirt, now=site.now)
    result = report(apply_plan(plan, libvirt=libvirt))
    assert plan.actions == () and snapshot(site.root) == before
    reasons: List[str] = [held["reason"] for held in result["held_open"]]
    assert len(reasons) == 2 and all("maybe in use (libvirt's domains cannot be read" in r for r in reasons)


def test_a_symlink_in_the_store_named_as_a_disk_is_in_use(tmp_path):
    site = Site(tmp_path)
    target = raw(tmp_path / "elsewhere.img")
    link = site.root / "link.img"
    os.symlink(target, link)
    directory = tmp_path / "defs"
    directory.mkdir()
    (directory / "vm.xml").write_text(
        f"<domain type='qemu'><name>vm</name><devices><disk type='file' device='disk'>"
        f"<source file='{link}'/><target dev='vda'/></disk></devices></domain>")
    libvirt = Libvirt(virsh="/nonexistent", config_dir=str(directory))
    plan = plan_reconcile(str(site.root), [], libvirt=libvirt, now=site.now, options=_options(unknown="remove"))
    assert plan.actions == () and [held.domains for held in plan.held_open] == [("vm",)]


# --------------------------------------------------------------------------- ImageStore.retire (the sync's path)


def test_image_store_retire_keeps_an_image_a_domain_uses(tmp_path, monkeypatch):
    site = Site(tmp_path)
    old, _new = site.image("old-1"), site.image("new-1")
    top = overlay(tmp_path / "vm.qcow2", str(site.path(old)))
    used = _inuse.Domains(disks={"vm": (top, str(site.path(old)))}, source="test")
    assert site.store.retire("old-1", domains=used) == {
        "changed": False, "uuid": "old-1", "action": "held-open", "path": str(site.path(old)), "pids": [],
        "domains": ["vm"]}
    unknown = _inuse.Domains(source="test", unknown="cannot read them")
    assert site.store.retire("old-1", domains=unknown)["unknown"] == "cannot read them"
    # Without domains given, retire reads libvirt's itself.
    calls = []
    monkeypatch.setattr(_store, "libvirt_domains", lambda: calls.append(1) or used)
    result = site.store.retire("old-1")
    assert (result["action"], result["domains"], calls) == ("held-open", ["vm"], [1])
    assert site.path(old).exists() and "old-1" in site.store.manifest()
    assert site.store.retire("old-1", domains=_inuse.Domains())["action"] == "removed"
