# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""In use is in use, shown with a real libvirtd: the reconcile plan never retires a store image
that a libvirt domain uses, running or not, and says which domain holds it.

Each test starts its own libvirtd (the qemu driver in session mode, as the unprivileged user
``nobody`` when the tests run as root), with every directory it uses (runtime, sockets, domain
definitions, managed-save images) in a temporary directory, so the host's libvirt, if any, is
neither used nor disturbed. Domains are ``type='qemu'``: TCG, no KVM needed. The disks are real
files made by ``qemu-img``; the store images are promoted the verified way (``ImageStore``).

- ``off1`` is defined and never started (shut off); its disk is a store image;
- ``ov1``'s disk is a qcow2 overlay outside the store whose backing file is a store image (what
  libvirt's inactive XML names is the overlay only);
- ``saved1`` is started under TCG (a tiny domain with no OS boots into nothing) and then
  ``virsh managedsave``-d: no process holds its disk.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils._inuse import Libvirt, libvirt_domains
from ansible_collections.vmcloud.fleet.plugins.module_utils._reconcile_execute import apply_plan, report
from ansible_collections.vmcloud.fleet.plugins.module_utils._reconcile_plan import Options, plan_reconcile
from tests.unit.plugins.module_utils.test_reconcile import Site, snapshot

from .conftest import _die_with_parent, require, stop_daemon, wait_until

NOBODY = 65534
START_TIMEOUT = 60.0


@dataclass
class Daemon:
    base: Path
    process: subprocess.Popen
    uid: int

    @property
    def socket(self) -> Path:
        return self.base / "run" / "libvirt" / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu+unix:///session?socket={self.socket}"

    @property
    def config_dir(self) -> Path:
        """Where this libvirtd keeps its persistent domain definitions (/etc/libvirt/qemu for root's)."""
        return self.base / "config" / "libvirt" / "qemu"

    def libvirt(self) -> Libvirt:
        return Libvirt(uri=self.uri, virsh=require("virsh"), config_dir=str(self.config_dir))

    def virsh(self, *args: str, check: bool = True) -> str:
        done = subprocess.run([require("virsh"), "-q", "-c", self.uri, *args], capture_output=True, text=True,
                              timeout=120, check=False, env={"LC_ALL": "C", "PATH": os.environ["PATH"]})
        assert not check or done.returncode == 0, f"virsh {' '.join(args)}: {done.stderr}"
        return done.stdout

    def answers(self) -> bool:
        return self.socket.exists() and subprocess.run(
            [require("virsh"), "-c", self.uri, "list"], capture_output=True, timeout=30, check=False).returncode == 0

    def log(self) -> str:
        return (self.base / "libvirtd.log").read_text(errors="replace")[-4000:]


def _give(path: Path | str, uid: int) -> None:
    os.chown(path, uid, uid)


@pytest.fixture
def libvirtd() -> Iterator[Daemon]:
    binary = require("libvirtd")
    require("qemu-system-x86_64")
    uid = NOBODY if os.geteuid() == 0 else os.geteuid()
    base = Path(tempfile.mkdtemp(prefix="vmc-lv-"))  # short: the socket path is limited to 107 bytes
    base.chmod(0o755)
    env = {"LC_ALL": "C", "PATH": os.environ["PATH"], "HOME": str(base / "home"),
           "XDG_RUNTIME_DIR": str(base / "run"), "XDG_CONFIG_HOME": str(base / "config"),
           "XDG_CACHE_HOME": str(base / "cache"), "XDG_DATA_HOME": str(base / "data")}
    for name in ("home", "run", "config", "cache", "data"):
        (base / name).mkdir(mode=0o700)
        _give(base / name, uid)
    log = open(base / "libvirtd.log", "ab")  # noqa: SIM115 - handed to the child, closed after Popen
    try:
        process = subprocess.Popen([binary], cwd=str(base), env=env, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True,
                                   user=uid if uid != os.geteuid() else None,
                                   group=uid if uid != os.geteuid() else None,
                                   extra_groups=[] if uid != os.geteuid() else None,
                                   preexec_fn=_die_with_parent)
    finally:
        log.close()
    daemon = Daemon(base, process, uid)
    try:
        wait_until(lambda: daemon.answers() or process.poll() is not None, START_TIMEOUT, "libvirtd")
        assert process.poll() is None, f"libvirtd exited: {daemon.log()}"
        yield daemon
    finally:
        if process.poll() is None:
            for uuid in daemon.virsh("list", "--all", "--uuid", check=False).split():
                daemon.virsh("destroy", uuid, check=False)
                daemon.virsh("undefine", "--managed-save", uuid, check=False)
        stop_daemon(process)
        shutil.rmtree(base, ignore_errors=True)


def domain_xml(name: str, disk: str, fmt: str) -> str:
    return (f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>32</memory>"
            f"<os><type arch='x86_64'>hvm</type></os><devices>"
            f"<disk type='file' device='disk'><driver name='qemu' type='{fmt}'/><source file='{disk}'/>"
            f"<target dev='vda' bus='virtio'/></disk></devices></domain>")


@dataclass
class Fleet:
    """A store with four images, three used by domains of ``daemon``; only ``new-1`` is desired."""

    daemon: Daemon
    site: Site
    images: Dict[str, dict]
    overlay: Path

    def path(self, uuid: str) -> str:
        return str(self.site.path(self.images[uuid]))

    def plan(self, libvirt: Libvirt | None = None):
        return plan_reconcile(str(self.site.root), [self.images["new-1"]], libvirt=libvirt or self.daemon.libvirt(),
                              now=self.site.now, options=Options(retire_confirm=True))  # 3 of 4: past the guard

    def held(self, result: dict) -> Dict[str, List[str]]:
        return {held["uuid"]: held["domains"] for held in result["held_open"]}


@pytest.fixture
def fleet(libvirtd: Daemon) -> Fleet:
    site_dir = libvirtd.base / "site"
    site_dir.mkdir(mode=0o755)
    site = Site(site_dir)
    images = {uuid: site.image(uuid, size=1 << 20) for uuid in ("direct-1", "backing-1", "saved-1", "new-1")}
    vms = site_dir / "vms"
    vms.mkdir()
    _give(vms, libvirtd.uid)
    overlay = vms / "overlay.qcow2"
    subprocess.run([require("qemu-img"), "create", "-q", "-f", "qcow2", "-b", str(site.path(images["backing-1"])),
                    "-F", "raw", str(overlay)], check=True)
    _give(overlay, libvirtd.uid)
    # saved1 runs from its store image directly: qemu (as the daemon's user) opens it read-write.
    _give(site.path(images["saved-1"]), libvirtd.uid)
    for name, disk, fmt in (("off1", site.path(images["direct-1"]), "raw"), ("ov1", overlay, "qcow2"),
                            ("saved1", site.path(images["saved-1"]), "raw")):
        definition = libvirtd.base / f"{name}.xml"
        definition.write_text(domain_xml(name, str(disk), fmt))
        libvirtd.virsh("define", str(definition))
    libvirtd.virsh("start", "saved1")
    libvirtd.virsh("managedsave", "saved1")
    assert libvirtd.virsh("list", "--all", "--name", "--with-managed-save").split() == ["saved1"]
    assert libvirtd.virsh("list", "--name").split() == []  # nothing runs: no process holds any disk
    return Fleet(libvirtd, site, images, overlay)


def test_libvirtd_lists_the_domains_and_their_disks(fleet):
    found = libvirt_domains(fleet.daemon.libvirt())
    assert found.unknown is None and found.source == f"virsh -c {fleet.daemon.uri}"
    assert found.disks == {"off1": (fleet.path("direct-1"),), "ov1": (str(fleet.overlay), fleet.path("backing-1")),
                           "saved1": (fleet.path("saved-1"),)}


def test_shut_off_overlaid_and_managed_saved_domains_keep_their_images(fleet):
    before = snapshot(fleet.site.root)
    plan = fleet.plan()
    assert plan.actions == ()
    result = report(apply_plan(plan, libvirt=fleet.daemon.libvirt()))
    assert result["changed"] is False and result["retired"] == []
    assert result["libvirt"] == {"source": f"virsh -c {fleet.daemon.uri}", "unknown": None, "problems": []}
    assert fleet.held(result) == {"direct-1": ["off1"], "backing-1": ["ov1"], "saved-1": ["saved1"]}
    assert {held["uuid"]: (held["reason"], held["pids"], held["rule"]) for held in result["held_open"]} == {
        "direct-1": ("no longer desired, in use by libvirt domain off1: not retired", [], "image-in-use"),
        "backing-1": ("no longer desired, in use by libvirt domain ov1: not retired", [], "image-in-use"),
        "saved-1": ("no longer desired, in use by libvirt domain saved1: not retired", [], "image-in-use"),
    }
    assert snapshot(fleet.site.root) == before

    # Once the domains are gone, the same plan retires the three images.
    for name in ("off1", "ov1", "saved1"):
        fleet.daemon.virsh("undefine", "--managed-save", name)
    result = report(apply_plan(fleet.plan(), libvirt=fleet.daemon.libvirt()))
    assert sorted(result["retired"]) == ["backing-1", "direct-1", "saved-1"] and result["held_open"] == []
    assert sorted(fleet.site.store.manifest()) == ["new-1"]


def test_a_running_domain_is_reported_with_its_qemu_process_and_its_name(fleet):
    fleet.daemon.virsh("start", "ov1")
    plan = fleet.plan()
    held = {entry.uuid: entry for entry in plan.held_open}
    assert held["backing-1"].domains == ("ov1",) and len(held["backing-1"].pids) == 1
    qemu = Path(f"/proc/{held['backing-1'].pids[0]}/cmdline").read_bytes()
    assert b"qemu-system-x86_64" in qemu and b"guest=ov1" in qemu
    assert held["backing-1"].reason == "no longer desired, held open and in use by libvirt domain ov1: not retired"
    fleet.daemon.virsh("destroy", "ov1")


def test_a_domain_defined_between_plan_and_apply_defers_the_retirement(fleet):
    nothing = Libvirt(virsh="/nonexistent", config_dir="/nonexistent")
    plan = fleet.plan(nothing)  # as if libvirt knew of no domain when the plan was made
    assert sorted(action.uuid for action in plan.actions) == ["backing-1", "direct-1", "saved-1"]
    outcome = apply_plan(plan, libvirt=fleet.daemon.libvirt())
    assert outcome.done == [] and len(outcome.deferred) == 3
    assert all(os.path.exists(fleet.path(uuid)) for uuid in ("backing-1", "direct-1", "saved-1"))


def test_with_libvirtd_stopped_its_persistent_definitions_still_count(fleet):
    stop_daemon(fleet.daemon.process)
    found = libvirt_domains(fleet.daemon.libvirt())
    assert found.source.startswith(f"{fleet.daemon.config_dir}/*.xml (virsh -c {fleet.daemon.uri} list: ")
    result = report(apply_plan(fleet.plan(), libvirt=fleet.daemon.libvirt()))
    assert result["retired"] == []
    assert fleet.held(result) == {"direct-1": ["off1"], "backing-1": ["ov1"], "saved-1": ["saved1"]}
