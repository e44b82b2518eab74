# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet report (playbooks/report.yml) rendered for four hosts and read back from headless Chromium.

Each host is ``ansible_connection=local`` with its own directory in tmp_path: an image store built by
``ImageStore.promote`` (one file changed afterwards, one deleted, a stray file and a hostile image name),
the local fact ``vmcloud.fact`` in its own fact path (the shape of ``imgdist status --json``, its rows made
by ``_imgdist``'s own row builder from engine statuses), the real ``imgdist --list_unknown_files`` (the
collection's library with the host's configuration) and, as the test machine has no systemd, a
``systemctl show`` stand-in printing the sync unit's properties. The fourth host is an SSH host on a
closed loopback port: unreachable. The playbook runs for real (image_store_info, the filter, the
template); Chromium loads the page from file:// only, with networking features off, and its DOM is
checked cell by cell: state text and class per host and image.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils import _imgdist_status
from ansible_collections.vmcloud.fleet.plugins.module_utils._engine import TorrentStatus
from ansible_collections.vmcloud.fleet.plugins.module_utils._store import ImageStore

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK_BIN = Path(sys.executable).parent / "ansible-playbook"
CHROMIUM = shutil.which("chromium")
HOSTILE = '<script>alert("x")</script>'
SCREENSHOT = os.environ.get("VMCLOUD_REPORT_SCREENSHOT")  # set to refresh docs/images/fleet-report.png
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-default-apps", "--disable-extensions", "--mute-audio"]


def image(name: str, version: int, data: bytes, uuid: str | None = None) -> dict:
    return {"uuid": uuid or f"{name}-{version}", "name": name, "version": version, "file": f"{name}-{version}.img",
            "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "torrent": {"info_hash": hashlib.sha256(b"torrent" + data).hexdigest()[:40]}}


def engine(img: dict, state: str, completed: int, directory: str, peers: int = 2) -> TorrentStatus:
    return TorrentStatus(info_hash=img["torrent"]["info_hash"], name=img["file"], size_bytes=img["size"],
                         completed_bytes=completed, complete=completed >= img["size"], state=state, down_rate=0,
                         up_rate=0, uploaded_bytes=0, ratio=0.5 if state == "seeding" else 0.0, peers=peers,
                         message="", directory=directory, base_path=os.path.join(directory, img["file"]))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: connection refused


class Site:
    """Images, and hypervisors in tmp_path, as report.yml sees them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = {name: (name.encode() * 4096)[: 3 * 16384 + 7] for name in ("alma9", "cernvm", "slc6")}
        self.images = {
            "alma9-1": image("alma9", 1, self.data["alma9"]),
            "cernvm-4": image("cernvm", 4, self.data["cernvm"]),
            "slc6-2": image("slc6", 2, self.data["slc6"]),
            "hostile": image("evil", 1, b"evil" * 1000, uuid=HOSTILE),
        }
        self.images["hostile"]["file"] = "evil-1.img"
        self.inventory: dict = {}
        self.index = {"url": "http://127.0.0.1:8080/index.yaml", "version": 7, "expires": "2027-01-31T12:00:00Z"}

    def host(self, name: str, held: list, corrupt=(), deleted=(), stray=(), rows=(), enabled=True,
             sync_status=0, problems=()) -> None:
        base = self.root / name
        store = ImageStore(str(base / "images"))
        staging = base / "staging"
        staging.mkdir(parents=True)
        for key in held:
            img = self.images[key]
            staged = staging / img["file"]
            staged.write_bytes(self.data.get(img["name"], b"evil" * 1000))
            store.promote(img, str(staged))
        for key in corrupt:
            with open(store.path_of(self.images[key]), "r+b") as handle:
                handle.write(b"X")
        for key in deleted:
            os.unlink(store.path_of(self.images[key]))
        for stray_name in stray:
            (base / "images" / stray_name).write_bytes(b"copied by hand")
        status_rows = []
        holdings = {held["uuid"]: held for held in store.holdings()}
        for key, state, completed in rows:
            img = self.images[key]
            status = engine(img, state, completed, str(staging)) if state else None
            status_rows.append(_imgdist_status.status_row(img, holdings.get(img["uuid"]), status, True,
                                                          store.path_of(img)))
        facts = base / "facts"
        facts.mkdir()
        (facts / "vmcloud.fact").write_text(json.dumps({
            "host": name, "enabled": enabled, "index": self.index, "problems": list(problems),
            "run_guard": {"state": "current", "rule": None}, "images": status_rows}))
        config = base / "imgdist.yml"
        config.write_text(json.dumps({"store_dir": str(base / "images"), "staging_dir": str(staging),
                                      "state_dir": str(base / "state"), "torrent_dir": str(base / "torrents"),
                                      "disabled_flag": str(base / "disabled")}))
        imgdist = base / "imgdist"
        imgdist.write_text(textwrap.dedent(f"""\
            #!{sys.executable}
            import sys
            sys.path.insert(0, {str(REPO / "collections")!r})
            from ansible_collections.vmcloud.fleet.plugins.module_utils import _imgdist
            sys.exit(_imgdist.main())
            """))
        systemctl = base / "systemctl"  # this machine has no systemd: what `systemctl show` would print
        systemctl.write_text(textwrap.dedent(f"""\
            #!/bin/sh
            cat <<'EOF'
            LoadState=loaded
            Result={"success" if sync_status in (0, 3) else "exit-code"}
            ExecMainStatus={sync_status}
            ExecMainStartTimestamp=Wed 2026-12-02 14:00:01 UTC
            ExecMainExitTimestamp=Wed 2026-12-02 14:00:09 UTC
            EOF
            """))
        imgdist.chmod(0o755)
        systemctl.chmod(0o755)
        self.inventory[name] = {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "hypervisor_store_dir": str(base / "images"), "vmcloud_report_fact_path": str(facts),
            "vmcloud_report_imgdist": str(imgdist), "vmcloud_report_imgdist_config": str(config),
            "vmcloud_report_systemctl": str(systemctl),
        }

    def unreachable(self, name: str) -> None:
        self.inventory[name] = {"ansible_connection": "ssh", "ansible_host": "127.0.0.1",
                                "ansible_port": closed_port(), "ansible_user": "nobody",
                                "ansible_ssh_common_args": "-o ConnectTimeout=5 -o BatchMode=yes"}

    def report(self, html: Path) -> subprocess.CompletedProcess:
        inventory = self.root / "inventory.json"
        inventory.write_text(json.dumps({"lxcloud": {"hosts": self.inventory}}))
        return subprocess.run(
            [str(PLAYBOOK_BIN) if PLAYBOOK_BIN.exists() else "ansible-playbook", "-i", str(inventory),
             "playbooks/report.yml", "-e", f"vmcloud_report_html={html}"],
            cwd=REPO, env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1"),
            capture_output=True, text=True, timeout=300, check=False)


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, check=False,
                          env=dict(os.environ, HOME=str(tmp_path)))


class Cells(HTMLParser):
    """The matrix as Chromium's DOM has it: (host, image) -> (state, class, text); plus every <script>."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict = {}
        self.scripts = 0
        self.external = []
        self.sections: dict = {}
        self._cell = None
        self._section = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            self.scripts += 1
        for attr in ("src", "href"):
            if attrs.get(attr):
                self.external.append(attrs[attr])
        if tag == "td" and "data-image" in attrs and attrs.get("data-host"):
            self._cell = (attrs["data-host"], attrs["data-image"])
            self.cells[self._cell] = {"state": attrs.get("data-state"), "class": attrs.get("class", "").split(),
                                      "text": ""}
        elif tag == "td" and attrs.get("class", "").startswith("host-"):
            self._section = attrs["class"]
            self.sections.setdefault(self._section, []).append("")

    def handle_endtag(self, tag):
        if tag == "td":
            self._cell = self._section = None

    def handle_data(self, data):
        if self._cell:
            self.cells[self._cell]["text"] += data
        if self._section:
            self.sections[self._section][-1] += data


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: make system-packages (Debian's chromium)")
    tmp_path = tmp_path_factory.mktemp("report")
    site = Site(tmp_path)
    alma, cernvm, slc6 = (site.images[key] for key in ("alma9-1", "cernvm-4", "slc6-2"))
    site.host("hv01", held=["alma9-1", "cernvm-4"], stray=["rogue.img"],
              rows=[("alma9-1", "seeding", alma["size"]), ("cernvm-4", None, 0),
                    ("slc6-2", "downloading", int(slc6["size"] * 0.42))])
    site.host("hv02", held=["alma9-1", "cernvm-4", "hostile"], corrupt=["cernvm-4"], deleted=["alma9-1"],
              rows=[("alma9-1", None, 0), ("cernvm-4", "seeding", cernvm["size"]), ("slc6-2", None, 0)],
              sync_status=1, problems=["engine: engine-unreachable: no answer on /run/rtorrent/rpc.socket"])
    site.host("hv03", held=["alma9-1"], enabled=False, rows=[("alma9-1", "seeding", alma["size"])], sync_status=3)
    site.unreachable("hv04")
    site.host("hv05", held=[], rows=[("alma9-1", None, 0)])
    broken = tmp_path / "hv05" / "not-a-store"
    broken.write_text("a file where the store should be")
    site.inventory["hv05"]["hypervisor_store_dir"] = str(broken)
    html = tmp_path / "out" / "fleet.html"
    done = site.report(html)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    dumped = chromium(tmp_path, "--dump-dom", html.as_uri())
    assert dumped.returncode == 0, dumped.stderr[-3000:]
    if SCREENSHOT:
        shot = chromium(tmp_path, f"--screenshot={SCREENSHOT}", "--window-size=1280,1330", "--hide-scrollbars",
                        html.as_uri())
        assert shot.returncode == 0, shot.stderr[-3000:]
    parsed = Cells()
    parsed.feed(dumped.stdout)
    return {"tmp": str(tmp_path), "html": html.read_text(), "dom": dumped.stdout, "parsed": parsed,
            "stdout": done.stdout}


@pytest.mark.parametrize(("host", "uuid", "state", "text"), [
    ("hv01", "alma9-1", "seeding", "seeding"),
    ("hv01", "cernvm-4", "verified", "verified"),
    ("hv01", "slc6-2", "downloading", "downloading 42%"),
    ("hv01", HOSTILE, "none", "not wanted"),
    ("hv02", "alma9-1", "missing", "missing"),
    ("hv02", "cernvm-4", "corrupt", "corrupt"),
    ("hv02", "slc6-2", "missing", "missing"),
    ("hv02", HOSTILE, "present", "present"),
    ("hv03", "alma9-1", "disabled", "disabled"),
    ("hv03", "slc6-2", "disabled", "disabled"),
    ("hv04", "alma9-1", "unknown", "unknown"),
    ("hv04", HOSTILE, "unknown", "unknown"),
    ("hv05", "alma9-1", "missing", "missing"),
    ("hv05", "cernvm-4", "none", "not wanted"),
])
def test_cells_show_state_as_text_and_class(page, host, uuid, state, text):
    cell = page["parsed"].cells[(host, uuid)]
    assert cell["state"] == state
    assert f"cell-{state}" in cell["class"]
    assert cell["text"].strip().startswith(text)


def test_every_host_and_image_has_a_cell(page):
    cells = page["parsed"].cells
    assert {host for host, _unused in cells} == {"hv01", "hv02", "hv03", "hv04", "hv05"}
    assert {uuid for _unused, uuid in cells} == {"alma9-1", "cernvm-4", "slc6-2", HOSTILE}
    assert len(cells) == 20


def test_hostile_names_stay_text(page):
    parsed = page["parsed"]
    assert parsed.scripts == 0 and parsed.external == []
    assert "<script>" not in page["html"] and "&lt;script&gt;" in page["html"]


def test_host_sections(page):
    sections = page["parsed"].sections
    assert sections["host-state"] == ["enabled", "enabled", "disabled", "not reporting", "enabled"]
    assert sections["host-index"][:3] == ["version 7, expires 2027-01-31T12:00:00Z"] * 3
    assert sections["host-sync"][0] == "Wed 2026-12-02 14:00:09 UTC: success"
    assert sections["host-sync"][1] == "Wed 2026-12-02 14:00:09 UTC: some image failed"
    assert sections["host-sync"][3] == "not reported"
    assert "rogue.img" in sections["host-unknown"][0]
    assert sections["host-unknown"][1] == "none" and sections["host-unknown"][3] == "not reported"
    assert "engine-unreachable" in sections["host-failures"][1]
    assert "unreachable" in sections["host-failures"][3]
    assert sections["host-failures"][0] == "none"
    assert sections["host-failures"][4].startswith("image_store_info: manifest-unreadable: ")
    assert str(Path(page["tmp"]) / "hv05" / "not-a-store") in sections["host-failures"][4]
    assert "Index version <b>7</b>, expires <b>2027-01-31T12:00:00Z</b>" in page["dom"]


def test_the_text_table_stays(page):
    assert "cernvm-4" in page["stdout"] and "(no images)" in page["stdout"]
