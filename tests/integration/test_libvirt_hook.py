# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The vmic_agent role's libvirt qemu hook, run as libvirt runs it, and ``imgdist check`` beside it.

The role's own templates (hook, imgdist launcher, imgdist.yml) are rendered by ansible-playbook
with the host paths pointed into a temporary directory. A host then goes through what the hook
guards against: a sync (the real ``imgdist sync``, with an in-memory engine) puts three images in
the store; the site withdraws its approval of one, the endorser drops another from the index,
and the next sync keeps both files because running guests hold them open. A new guest may start
only from the image that is still endorsed, approved and verified.

The hook is executed as a program, ``qemu DOMAIN OPERATION SUBOP EXTRA`` with the domain XML on
stdin, in libvirt's small environment.
"""

from __future__ import annotations

import contextlib
import datetime
import http.server
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from ansible_collections.vmcloud.fleet.plugins.module_utils import _imgdist, _imgdist_config, _imgdist_status, _sync
from ansible_collections.vmcloud.fleet.plugins.module_utils._imgdist_config import (
    EXIT_NOT_APPROVED,
    EXIT_NOT_ENDORSED,
    EXIT_NOT_VERIFIED,
    EXIT_OK,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._index_service import build_policy
from ansible_collections.vmcloud.fleet.plugins.module_utils._index_state import accept_index
from ansible_collections.vmcloud.fleet.plugins.module_utils._store import ImageStore
from tests.unit import pki
from tests.unit.sync_world import FakeEngine, World, now, utc

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "vmic_agent"
PLAYBOOK_BIN = Path(sys.executable).parent / "ansible-playbook"
# libvirt runs hooks with a cleared environment (LC_ALL=C and a PATH).
HOOK_ENV = {"LC_ALL": "C", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

RENDER = """\
- name: Render the vmic_agent role's scripts and configuration
  hosts: localhost
  gather_facts: false
  vars_files:
    - {role}/../vmcloud/defaults/main.yml
    - {role}/defaults/main.yml
    - {role}/vars/main.yml
  tasks:
    - name: The hypervisor artifact, from the role's default (the lookup), validated as the role validates it
      ansible.builtin.copy:
        src: "{{{{ vmic_agent_artifact }}}}"
        dest: "{{{{ _vmic_agent_artifact_path }}}}"
        mode: "0644"
        validate: "{{{{ _vmic_agent_python }}}} -I %s --self-check"
    - name: The imgdist launcher and the libvirt qemu hook
      ansible.builtin.template:
        src: "{role}/templates/{{{{ item.src }}}}"
        dest: "{{{{ item.dest }}}}"
        mode: "0755"
      loop:
        - {{src: imgdist.j2, dest: "{{{{ _vmic_agent_launcher }}}}"}}
        - {{src: libvirt-qemu-hook.j2, dest: "{{{{ vmic_agent_libvirt_hook_path }}}}"}}
        - {{src: vmcloud.fact.j2, dest: "{{{{ _vmic_agent_fact }}}}"}}
        - {{src: vmcloud-imgdist-sync.service.j2, dest: "{{{{ _vmic_agent_fact | dirname }}}}/sync.service"}}
    - name: The imgdist configuration, validated as the role validates it
      ansible.builtin.template:
        src: "{role}/templates/imgdist.yml.j2"
        dest: "{{{{ _vmic_agent_config }}}}"
        mode: "0644"
        validate: "{{{{ _vmic_agent_launcher }}}} --config %s config-check"
"""


@dataclass
class Host:
    """A hypervisor in a temporary directory, with the role's files rendered into it."""

    world: World
    root: Path
    config: Path
    launcher: Path
    hook: Path
    store: ImageStore

    @property
    def fact(self) -> Path:
        return self.root / "facts" / "vmcloud.fact"

    def image_path(self, uuid: str) -> str:
        return self.store.path_of(self.world.published[uuid].entry)

    crl_url: str = ""

    def render(self, approved: list) -> None:
        variables = {
            "vmic_agent_trust_crl_urls": [{"url": self.crl_url, "name": "ca.crl"}],
            "vmcloud_index_url": str(self.world.index_path),
            "vmcloud_approved_images": approved,
            "vmic_agent_host": "hv1",
            "vmic_agent_trust_dir": str(self.root / "trust"),
            "vmic_agent_store_dir": self.world.host_path("images"),
            "vmic_agent_staging_dir": self.world.host_path("staging"),
            "vmic_agent_torrent_dir": self.world.host_path("torrents"),
            "vmic_agent_index_state_dir": self.world.host_path("index"),
            "vmic_agent_disabled_flag": self.world.host_path("disabled"),
            "vmic_agent_download_timeout": 30,
            "vmic_agent_libvirt_hook_path": str(self.hook),
            "vmcloud_metrics_textfile_dir": str(self.root / "textfile"),
            "_vmic_agent_python": sys.executable,
            "_vmic_agent_artifact_path": str(self.root / "lib" / "vmcloud-hypervisor.pyz"),
            "_vmic_agent_config": str(self.config),
            "_vmic_agent_launcher": str(self.launcher),
            "_vmic_agent_fact": str(self.fact),
            "ansible_python_interpreter": sys.executable,
        }
        (self.root / "vars.json").write_text(json.dumps(variables))
        (self.root / "render.yml").write_text(RENDER.format(role=ROLE))
        done = subprocess.run(
            [str(PLAYBOOK_BIN) if PLAYBOOK_BIN.exists() else "ansible-playbook", "-i", "localhost,", "-c", "local",
             str(self.root / "render.yml"), "-e", f"@{self.root / 'vars.json'}"],
            cwd=REPO, env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                               VMCLOUD_ARTIFACT_CACHE_DIR=str(self.root / "artifact-cache")),
            capture_output=True, text=True, timeout=300, check=False,
        )
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    def sync(self) -> dict:
        out, err = io.StringIO(), io.StringIO()
        code = _imgdist.main(["-c", str(self.config), "sync", "--json"], out=out, err=err)
        assert (code, err.getvalue()) == (EXIT_OK, "")
        return json.loads(out.getvalue())

    def check(self, target: str) -> tuple:
        done = subprocess.run([str(self.launcher), "-c", str(self.config), "check", target], env=HOOK_ENV,
                              capture_output=True, text=True, timeout=60, check=False)
        return done.returncode, done.stdout

    def local_fact(self) -> dict:
        """ansible_local.vmcloud: what setup reads from the rendered fact script."""
        done = subprocess.run([str(self.fact)], env=HOOK_ENV, capture_output=True, text=True, timeout=60,
                              check=True)
        return json.loads(done.stdout)

    def run_hook_logged(self, domain: str, xml: str) -> tuple:
        """(exit status, stderr, syslog lines) of ``qemu DOMAIN prepare begin``, with /dev/log ours.

        The hook runs in a private mount namespace whose /dev holds the real null/zero/random nodes
        and a datagram socket of this test as ``log``, so glibc's syslog() writes to the test.
        """
        dev = self.root / "dev"
        dev.mkdir(exist_ok=True)
        (dev / "log").unlink(missing_ok=True)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as log:
            log.bind(str(dev / "log"))
            done = subprocess.run([shutil.which("unshare") or "/usr/bin/unshare", "--mount", "--propagation",
                                   "private", "/bin/sh", "-c", PRIVATE_DEV, "sh", str(dev), str(self.hook),
                                   domain, "prepare", "begin", "-"],
                                  input=xml.encode(), env=HOOK_ENV, capture_output=True, timeout=60, check=False)
            assert done.returncode != 97, done.stderr.decode()
            lines = []
            log.settimeout(0.5)
            with contextlib.suppress(TimeoutError):
                while True:
                    lines.append(log.recv(65536).decode())
        assert done.stdout == b""
        return done.returncode, done.stderr.decode(), lines

    def run_hook(self, domain: str, operation: str, subop: str, xml: str) -> tuple:
        done = subprocess.run([str(self.hook), domain, operation, subop, "-"], input=xml.encode(), env=HOOK_ENV,
                              capture_output=True, timeout=60, check=False)
        assert done.stdout == b""  # libvirt would take output as a replacement XML on some operations
        return done.returncode, done.stderr.decode()


# /dev for the hook in its own mount namespace (run_hook_logged): $1 is the directory holding our socket.
PRIVATE_DEV = """\
dev=$1; shift
for node in null zero random urandom; do
  : > "$dev/$node" && mount --bind "/dev/$node" "$dev/$node" || exit 97
done
mount --bind "$dev" /dev || exit 97
exec "$@"
"""


def disk(path: str, fmt: str = "raw", backing: str | None = None, target: str = "vda") -> str:
    chain = (f"<backingStore type='file'><format type='raw'/><source file='{backing}'/><backingStore/>"
             f"</backingStore>") if backing else ""
    return (f"<disk type='file' device='disk'><driver name='qemu' type='{fmt}'/><source file='{path}'/>"
            f"{chain}<target dev='{target}' bus='virtio'/></disk>")


def domain(name: str, *disks: str) -> str:
    devices = "".join(disks) + "<disk type='block' device='cdrom'><source dev='/dev/sr0'/><target dev='sda'/></disk>"
    return (f"<domain type='kvm'><name>{name}</name><uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid>"
            f"<memory unit='KiB'>1048576</memory><os><type arch='x86_64'>hvm</type></os>"
            f"<devices>{devices}</devices></domain>")


def qcow2_overlay(path: Path, backing: str, backing_format: str = "raw") -> str:
    """A qcow2 overlay of ``backing`` (a name relative to ``path``'s directory, or absolute), by qemu-img."""
    path.unlink(missing_ok=True)
    subprocess.run([shutil.which("qemu-img") or "/usr/bin/qemu-img", "create", "-q", "-f", "qcow2", "-b", backing,
                    "-F", backing_format, str(path)], cwd=path.parent, check=True, capture_output=True)
    return str(path)


@pytest.fixture(scope="module")
def crl_server():
    """A real HTTP server on loopback: the CA's CRL distribution point (``files`` by path)."""
    files: dict = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server interface
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.files = files
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def host(tmp_path_factory, crl_server) -> Host:
    root = tmp_path_factory.mktemp("hook")
    world = World(root / "world")
    (root / "trust" / "anchors").mkdir(parents=True)
    (root / "trust" / "crl").mkdir()
    shutil.copy(world.root / "trust" / "ca.pem", root / "trust" / "anchors" / "ca.pem")
    (root / "bin").mkdir()
    (root / "lib").mkdir()
    host = Host(world, root, root / "imgdist.yml", root / "bin" / "imgdist", root / "hooks" / "qemu",
                ImageStore(world.host_path("images")))
    host.crl_url = f"http://127.0.0.1:{crl_server.server_port}/ca.crl"
    host.hook.parent.mkdir()
    host.fact.parent.mkdir()
    (root / "textfile").mkdir()
    for name, version in (("alma", 9), ("slc", 5), ("centos", 7)):
        world.publish(name, version)
    world.write_index(1)
    every = [{"name": "alma", "version": "latest"}, {"name": "slc", "version": 5}, {"name": "centos"}]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_sync, "read_source", world.fetcher())
        engine = FakeEngine.serving(world)
        for module in (_imgdist, _imgdist_status):  # the sync, and status/metrics
            patch.setattr(module, "engine_for", lambda *args, **kwargs: engine)
        host.render(every)
        assert sorted(host.sync()["promoted"]) == ["alma-9", "centos-7", "slc-5"]
        # The site withdraws its approval of slc; the endorser drops centos from the index. Guests
        # still run from both, so the next sync keeps their files (held open) and the index moves on.
        host.render([{"name": "alma", "version": "latest"}, {"name": "centos"}])
        world.write_index(2, [world.published[uuid].entry for uuid in ("alma-9", "slc-5")])
        with open(host.image_path("slc-5"), "rb"), open(host.image_path("centos-7"), "rb"):
            report = host.sync()
    assert report["index"]["version"] == 2
    assert sorted(held["uuid"] for held in report["held_open"]) == ["centos-7", "slc-5"]
    for uuid in ("alma-9", "slc-5", "centos-7"):
        assert os.path.exists(host.image_path(uuid))
    return host


# --------------------------------------------------------------------------- imgdist check


def test_imgdist_check_exit_codes(host):
    code, out = host.check(host.image_path("alma-9"))
    assert code == EXIT_OK and out.startswith("ok: alma-9 is endorsed (the verified index version 2), approved")
    code, out = host.check(host.image_path("slc-5"))
    assert code == EXIT_NOT_APPROVED and out == "not-approved: slc-5 is endorsed but not approved for host hv1 " \
                                                "(no approval or rule selects it)\n"
    code, out = host.check(host.image_path("centos-7"))
    assert code == EXIT_NOT_ENDORSED
    assert out == f"not-endorsed: {host.image_path('centos-7')} holds centos-7, which is not in the verified " \
                  "index version 2\n"


# --------------------------------------------------------------------------- the hook


@pytest.mark.parametrize("operation", [("prepare", "begin"), ("start", "begin")])
def test_an_endorsed_approved_verified_image_starts(host, operation):
    xml = domain("web1", disk(host.image_path("alma-9")))
    assert host.run_hook("web1", *operation, xml) == (0, "")


@pytest.mark.parametrize("operation", [("prepare", "begin"), ("start", "begin")])
def test_an_endorsed_but_unapproved_image_is_refused(host, operation):
    path = host.image_path("slc-5")
    code, err = host.run_hook("web2", *operation, domain("web2", disk(path)))
    assert code == 1
    assert err == f"vmcloud: refusing to start web2: disk {path} (image slc-5): not-approved: slc-5 is endorsed " \
                  "but not approved for host hv1 (no approval or rule selects it)\n"


def test_an_approved_but_unendorsed_image_is_refused(host):
    path = host.image_path("centos-7")
    code, err = host.run_hook("web3", "prepare", "begin", domain("web3", disk(path)))
    assert code == 1
    assert err == f"vmcloud: refusing to start web3: disk {path} (image centos-7): not-endorsed: {path} holds " \
                  "centos-7, which is not in the verified index version 2\n"


def test_disks_outside_the_store_are_not_its_business(host, tmp_path):
    scratch = tmp_path / "scratch.img"
    scratch.write_bytes(b"\0" * 4096)
    xml = domain("web4", disk(str(scratch)), disk(str(tmp_path / "not-there.qcow2"), "qcow2", target="vdb"))
    assert host.run_hook("web4", "prepare", "begin", xml) == (0, "")
    xml = domain("web4", disk(host.image_path("alma-9")), disk(str(scratch), target="vdb"))
    assert host.run_hook("web4", "prepare", "begin", xml) == (0, "")


def test_backing_stores_in_the_store_are_checked(host, tmp_path):
    overlay = str(tmp_path / "web5.qcow2")
    xml = domain("web5", disk(overlay, "qcow2", backing=host.image_path("centos-7")))
    code, err = host.run_hook("web5", "prepare", "begin", xml)
    assert code == 1 and f"disk {host.image_path('centos-7')} (image centos-7): not-endorsed: " in err
    xml = domain("web5", disk(overlay, "qcow2", backing=host.image_path("alma-9")))
    assert host.run_hook("web5", "prepare", "begin", xml) == (0, "")


def test_a_qcow2_backing_chain_into_the_store_is_followed(host, tmp_path):
    # libvirt's inactive XML names only the overlay; its qcow2 header names the store image.
    qcow2_overlay(tmp_path / "middle.qcow2", host.image_path("slc-5"))
    top = qcow2_overlay(tmp_path / "top.qcow2", "middle.qcow2", "qcow2")
    code, err = host.run_hook("web6", "prepare", "begin", domain("web6", disk(top, "qcow2")))
    assert code == 1 and "(image slc-5): not-approved: " in err and err.count("\n") == 1
    qcow2_overlay(tmp_path / "middle.qcow2", host.image_path("alma-9"))
    assert host.run_hook("web6", "prepare", "begin", domain("web6", disk(top, "qcow2"))) == (0, "")


def test_a_chain_the_hook_cannot_follow_to_its_end_is_refused(host, tmp_path):
    # Past the bound, or in a loop, a store image could hide: the guest does not start.
    chain = [qcow2_overlay(tmp_path / "0.qcow2", host.image_path("slc-5"))]
    for level in range(1, 40):
        chain.append(qcow2_overlay(tmp_path / f"{level}.qcow2", chain[-1], "qcow2"))
    code, err = host.run_hook("web14", "prepare", "begin", domain("web14", disk(chain[-1], "qcow2")))
    assert (code, err) == (1, f"vmcloud: refusing to start web14: cannot tell which files its disks read: the "
                              f"backing chain of {chain[-1]} is longer than 32 files (at {chain[7]})\n")
    first = qcow2_overlay(tmp_path / "a.qcow2", host.image_path("alma-9"))
    second = qcow2_overlay(tmp_path / "b.qcow2", first, "qcow2")
    subprocess.run(["qemu-img", "rebase", "-u", "-b", second, "-F", "qcow2", first], check=True)
    code, err = host.run_hook("web14", "prepare", "begin", domain("web14", disk(second, "qcow2")))
    assert (code, err) == (1, f"vmcloud: refusing to start web14: cannot tell which files its disks read: the "
                              f"backing chain of {second} loops: {second} is {second} again (qemu refuses it)\n")


def test_a_raw_disk_is_not_parsed_as_qcow2(host, tmp_path):
    # A guest may write a qcow2 header naming an unapproved store image into its raw disk.
    written = qcow2_overlay(tmp_path / "guest.img", host.image_path("slc-5"))
    assert host.run_hook("web15", "prepare", "begin", domain("web15", disk(written, "raw"))) == (0, "")
    code, err = host.run_hook("web15", "prepare", "begin", domain("web15", disk(written, "qcow2")))
    assert code == 1 and "(image slc-5): not-approved: " in err


def test_without_its_library_the_hook_refuses(host, tmp_path):
    hook = tmp_path / "qemu"
    library = str(host.root / "lib" / "vmcloud-hypervisor.pyz")
    hook.write_text(host.hook.read_text().replace(repr(library)[1:-1], str(tmp_path / "gone")))
    hook.chmod(0o755)
    done = subprocess.run([str(hook), "web16", "prepare", "begin", "-"], env=HOOK_ENV, capture_output=True,
                          input=domain("web16", disk(str(tmp_path / "x.img"))).encode(), timeout=60, check=False)
    assert done.returncode == 1
    assert done.stderr.decode().startswith(f"vmcloud: refusing to start web16: the imgdist library cannot be "
                                           f"loaded from {tmp_path / 'gone'} (")


@pytest.mark.parametrize(
    "operation",
    [("release", "end"), ("stopped", "end"), ("started", "begin"), ("migrate", "begin"), ("reconnect", "begin")],
)
def test_other_operations_exit_0_at_once(host, operation):
    xml = domain("web7", disk(host.image_path("slc-5")))
    assert host.run_hook("web7", *operation, xml) == (0, "")
    assert host.run_hook("web7", *operation, "") == (0, "")


def test_a_changed_image_is_refused_until_imgdist_sync(host):
    path = host.image_path("alma-9")
    original = Path(path).read_bytes()
    try:
        Path(path).write_bytes(b"\xff" + original[1:])
        assert host.check(path)[0] == EXIT_NOT_VERIFIED
        code, err = host.run_hook("web8", "prepare", "begin", domain("web8", disk(path)))
        assert code == 1 and "(image alma-9): not-verified: alma-9 is endorsed and approved but " in err
        assert "changed since it was verified; run imgdist sync" in err
    finally:
        Path(path).write_bytes(original)
    assert host.check(path)[0] == EXIT_OK


def test_fails_closed_for_store_disks_when_imgdist_cannot_check(host, tmp_path):
    scratch = tmp_path / "scratch.img"
    scratch.write_bytes(b"\0" * 4096)
    good = host.config.read_text()
    try:
        host.config.write_text(good + "surprise: 1\n")
        code, err = host.run_hook("web9", "prepare", "begin", domain("web9", disk(host.image_path("alma-9"))))
        assert code == 1 and err.startswith(f"vmcloud: refusing to start web9: disk {host.image_path('alma-9')} "
                                            f"is in the image store {host.store.root}, but imgdist cannot check it: "
                                            "config-invalid: ")
        assert "unknown key 'surprise'" in err and err.count("\n") == 1
        assert host.run_hook("web9", "prepare", "begin", domain("web9", disk(str(scratch)))) == (0, "")
    finally:
        host.config.write_text(good)
    code, err = host.run_hook("web9", "prepare", "begin", "<domain><devices><disk>")
    assert code == 1 and err.startswith("vmcloud: refusing to start web9: cannot read the domain XML on stdin")


def test_the_launcher_and_the_hook_run_the_library_from_the_artifact(host, tmp_path):
    """Without the installed artifact imgdist cannot run, and the hook refuses store disks, naming it."""
    artifact = host.root / "lib" / "vmcloud-hypervisor.pyz"
    aside = tmp_path / "aside.pyz"
    artifact.rename(aside)
    try:
        code, _unused = host.check(host.image_path("alma-9"))
        assert code != EXIT_OK
        code, err = host.run_hook("web9", "prepare", "begin", domain("web9", disk(host.image_path("alma-9"))))
        assert code == 1 and err.startswith("vmcloud: refusing to start web9: ") and err.count("\n") == 1
        assert f"the imgdist library cannot be loaded from {artifact} (" in err
    finally:
        aside.rename(artifact)
    assert host.check(host.image_path("alma-9"))[0] == EXIT_OK


def test_the_rendered_configuration_is_what_imgdist_reads(host):
    document = yaml.safe_load(host.config.read_text())
    assert document["approved_images"] == [{"name": "alma", "version": "latest"}, {"name": "centos"}]
    assert document["trust_anchors"] == [str(host.root / "trust" / "anchors")]
    assert (document["host"], document["subcluster"], document["threshold"]) == ("hv1", None, 1)
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert _imgdist.main(["-c", str(host.config), "config-check"]) == EXIT_OK
    assert out.getvalue() == f"{host.config}: valid\n"


# --------------------------------------------------------------------------- the run guard's grace


@contextlib.contextmanager
def kept_index(host: Host, data: bytes, accepted_at: datetime.datetime):
    """The host as a sync at ``accepted_at`` of the index ``data`` left it: the mark and the kept index,
    written by the library itself (accept_index with that reference time, save_verified_index); the
    host's own are put back afterwards."""
    state = Path(host.world.host_path("index"))
    saved = {path: path.read_bytes() for path in state.iterdir()}
    options = host.world.options(state_dir=str(state), reference_time=utc(accepted_at))
    try:
        accept_index(data, build_policy(options, None), str(state), persist=True)
        _sync.save_verified_index(str(state), data, check_mode=False)
        yield
    finally:
        for path in state.iterdir():
            if path not in saved:
                path.unlink()
        for path, content in saved.items():
            path.write_bytes(content)


@contextlib.contextmanager
def kept_index_accepted(host: Host, expired: datetime.timedelta, accepted_ago: datetime.timedelta):
    """The host as a sync ``accepted_ago`` left it, with an index (version 3) that expired ``expired`` ago."""
    expires = now() - expired
    entries = [host.world.published[uuid].entry for uuid in ("alma-9", "slc-5")]
    data = host.world.index_document(3, entries, created=utc(expires - datetime.timedelta(days=20)),
                                     expires=utc(expires))
    with kept_index(host, data, now() - accepted_ago):
        yield utc(expires + datetime.timedelta(days=7))


def test_a_guest_starts_in_the_grace_period_and_syslog_says_until_when(host):
    path = host.image_path("alma-9")
    with kept_index_accepted(host, datetime.timedelta(days=1), datetime.timedelta(days=10)) as deadline:
        code, err, lines = host.run_hook_logged("web10", domain("web10", disk(path)))
        assert code == 0
        assert err.startswith(f"vmcloud: starting web10 in the run guard's grace period: disk {path} (image "
                              "alma-9): run-guard-grace: the kept index version 3 fails index-expired since ")
        assert f"until {deadline} (grace 604800 s)" in err and err.count("\n") == 1
        assert len(lines) == 1 and lines[0].startswith("<28>")  # daemon.warning
        assert f"vmcloud-libvirt-hook: {err.strip()}" in lines[0]

        fact = host.local_fact()
        assert (fact["run_guard"]["state"], fact["run_guard"]["deadline"]) == ("grace", deadline)
        assert fact["run_guard"]["failing_rule"] == "index-expired" and fact["index"]["version"] == 3
        assert any(problem.startswith("run-guard-grace: ") for problem in fact["problems"])

        # Never graced: an image the site does not approve.
        code, err, lines = host.run_hook_logged("web11", domain("web11", disk(host.image_path("slc-5"))))
        assert code == 1 and "(image slc-5): not-approved: " in err and len(lines) == 1
    assert host.local_fact()["run_guard"] == {"state": "current", "rule": None}


def test_after_the_grace_period_the_guest_is_refused(host):
    path = host.image_path("alma-9")
    with kept_index_accepted(host, datetime.timedelta(days=8), datetime.timedelta(days=20)):
        code, err, lines = host.run_hook_logged("web12", domain("web12", disk(path)))
        assert code == 1
        assert err.startswith(f"vmcloud: refusing to start web12: disk {path} (image alma_9.img): index-expired: "
                              "index version 3 expired at ")
        assert "the run guard's grace of 604800 s after that has passed" in err
        assert len(lines) == 1 and "refusing to start web12" in lines[0]
        assert host.local_fact()["run_guard"] == {"state": "refused", "rule": "index-expired"}


# --------------------------------------------------------------------------- a failed upgrade


def test_a_guest_starts_from_the_version_a_failed_upgrade_kept_and_syslog_says_so(host):
    """alma 10 is endorsed and desired (alma: latest) but not in the store: the sync keeps alma 9
    (superseded_pending), and a new guest may start from it, loudly; slc 5 stays refused."""
    world = host.world
    new = world.publish("alma", 10)
    try:
        data = world.index_document(3, [world.published[uuid].entry for uuid in ("alma-9", "alma-10", "slc-5")])
        path = host.image_path("alma-9")
        with kept_index(host, data, now()):
            code, err, lines = host.run_hook_logged("web14", domain("web14", disk(path)))
            assert code == 0
            assert err == (f"vmcloud: starting web14 from a superseded image kept until its successor is in the "
                           f"store: disk {path} (image alma-9): superseded-pending: alma-9 is superseded by "
                           "alma-10, which is not verified in the store yet (a failed or unfinished download); "
                           "the store keeps alma-9 and guests may start from it until alma-10 is there, then it "
                           "is retired and refused: see imgdist status, run imgdist sync\n")
            assert len(lines) == 1 and lines[0].startswith("<28>")  # daemon.warning
            assert f"vmcloud-libvirt-hook: {err.strip()}" in lines[0]
            rows = {row["uuid"]: row for row in host.local_fact()["images"]}
            assert (rows["alma-9"]["state"], rows["alma-9"]["waiting_for"]) == ("superseded-pending", ["alma-10"])
            code, err = host.run_hook("web15", "prepare", "begin", domain("web15", disk(host.image_path("slc-5"))))
            assert code == 1 and "(image slc-5): not-approved: " in err
        code, err = host.run_hook("web16", "prepare", "begin", domain("web16", disk(path)))
        assert (code, err) == (0, "")  # alma 9 is the latest again: no warning
    finally:
        del world.published[new.uuid]


# --------------------------------------------------------------------------- CRLs from the timer


def test_the_timer_refreshes_the_crls_before_each_sync(host, crl_server):
    service = (host.fact.parent / "sync.service").read_text()
    assert f"ExecStartPre=-{host.launcher} crl-refresh\nExecStart={host.launcher} sync\n" in service
    assert f"ReadWritePaths=-{host.root}/trust/crl\n" in service
    installed = host.root / "trust" / "crl" / "ca.crl"
    day = datetime.timedelta(days=1)
    try:
        fresh = pki.pem(pki.make_crl(host.world.ca, [], last_update=now() - day, next_update=now() + 7 * day))
        crl_server.files["/ca.crl"] = fresh
        done = subprocess.run([str(host.launcher), "-c", str(host.config), "crl-refresh"], env=HOOK_ENV,
                              capture_output=True, text=True, timeout=60, check=False)
        assert (done.returncode, done.stdout) == (EXIT_OK, f"crl {host.crl_url} -> {installed}: installed\n")
        assert installed.read_bytes() == fresh
        assert host.check(host.image_path("alma-9"))[0] == EXIT_OK  # the verifier reads it

        crl_server.files["/ca.crl"] = pki.pem(pki.make_crl(host.world.ca, [], last_update=now() - 9 * day,
                                                           next_update=now() - day))
        done = subprocess.run([str(host.launcher), "-c", str(host.config), "crl-refresh"], env=HOOK_ENV,
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == _imgdist_config.EXIT_ERROR
        assert done.stdout.startswith(f"crl {host.crl_url} -> {installed}: NOT installed: crl-stale: ")
        assert installed.read_bytes() == fresh  # the installed one stays

        revoked = pki.make_crl(host.world.ca, [host.world.endorser.cert.serial_number], last_update=now(),
                               next_update=now() + 7 * day)
        crl_server.files["/ca.crl"] = pki.pem(revoked)
        subprocess.run([str(host.launcher), "-c", str(host.config), "crl-refresh"], env=HOOK_ENV, check=True,
                       capture_output=True, timeout=60)
        code, err = host.run_hook("web13", "prepare", "begin", domain("web13", disk(host.image_path("alma-9"))))
        assert code == 1 and "certificate-revoked" in err  # a revocation stops guests at once
    finally:
        installed.unlink(missing_ok=True)


# --------------------------------------------------------------------------- metrics


def test_the_syncs_write_the_textfile_and_the_hook_counts_its_refusals(host):
    from tests.unit.plugins.module_utils.test_metrics import parse, value

    assert yaml.safe_load(host.config.read_text())["metrics_textfile_dir"] == str(host.root / "textfile")
    unit = (host.fact.parent / "sync.service").read_text()
    assert f"ReadWritePaths=-{host.root / 'textfile'}\n" in unit  # the sandboxed service may write there
    families = parse((host.root / "textfile" / "vmcloud_imgdist.prom").read_text())
    assert value(families, "last_sync_success") == 1 and value(families, "index_version") == 2
    assert value(families, "image_present", name="alma", version="9") == 1

    def denials() -> float:
        out = io.StringIO()
        assert _imgdist.main(["-c", str(host.config), "metrics"], out=out, err=io.StringIO()) == EXIT_OK
        return value(parse(out.getvalue()), "run_guard_denials_total")

    before = denials()
    assert host.run_hook("web8", "prepare", "begin", domain("web8", disk(host.image_path("alma-9")))) == (0, "")
    assert denials() == before
    assert host.run_hook("web9", "prepare", "begin", domain("web9", disk(host.image_path("slc-5"))))[0] == 1
    assert denials() == before + 1
    record = json.loads(Path(host.world.host_path("index"), "run-guard-denials.json").read_text())
    assert record["last_rule"] == "not-approved"
