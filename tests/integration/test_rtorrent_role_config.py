# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rtorrent role's rtorrent.rc, rendered by ansible-playbook after the role's own checks and run
by a real rtorrent on loopback: bound to one address (as a site binds it to the cluster network),
it listens there only, and a private torrent (BEP 27) is private to it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils._engine import engine_for
from ansible_collections.vmcloud.fleet.plugins.module_utils._torrent import create_torrent
from tests.integration.conftest import free_port, require, start_daemon, stop_daemon, wait_until

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK_BIN = Path(sys.executable).parent / "ansible-playbook"
PLAY = """\
- name: Render rtorrent.rc as the rtorrent role does
  hosts: localhost
  gather_facts: false
  tasks:
    - name: The role's checks of its settings
      ansible.builtin.include_role:
        name: vmcloud.fleet.rtorrent
        tasks_from: validate
        public: true
    - name: The role's template
      ansible.builtin.template:
        src: "{role}/templates/rtorrent.rc.j2"
        dest: "{{{{ rc_path }}}}"
        mode: "0644"
      vars:
        ansible_managed: test
"""


@pytest.fixture
def run_dir():
    """/run/DIR for the control socket: the role requires it there (systemd's RuntimeDirectory)."""
    path = Path(tempfile.mkdtemp(prefix="vmcloud-test-", dir="/run"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def render(base: Path, socket_dir: Path, **variables) -> subprocess.CompletedProcess:
    (base / "play.yml").write_text(PLAY.format(role=REPO / "roles" / "rtorrent"))
    settings = {
        "ansible_python_interpreter": sys.executable, "rc_path": str(base / "rtorrent.rc"),
        "rtorrent_socket": str(socket_dir / "rpc.socket"), "rtorrent_data_dirs": [str(base / "data")],
        "_rtorrent_state_dir": str(base), "_rtorrent_log_dir": str(base), "rtorrent_dht": False,
        "rtorrent_min_free_space_mib": 0, **variables,
    }
    (base / "vars.json").write_text(json.dumps(settings))
    return subprocess.run(
        [str(PLAYBOOK_BIN) if PLAYBOOK_BIN.exists() else "ansible-playbook", "-i", "localhost,", "-c", "local",
         str(base / "play.yml"), "-e", f"@{base / 'vars.json'}"],
        cwd=REPO, env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1"),
        capture_output=True, text=True, timeout=300, check=False,
    )


def _ipv4(little_endian_hex: str) -> str:
    return ".".join(str(int(little_endian_hex[i:i + 2], 16)) for i in (6, 4, 2, 0))


def listening(port: int) -> set:
    """Addresses of every TCP socket in LISTEN on ``port`` (/proc/net/tcp and tcp6; an IPv4-mapped
    IPv6 address as its IPv4 address, the IPv6 wildcard as ``::``)."""
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] != "0A" or int(hex_port, 16) != port:
                continue
            if len(address) == 8:
                found.add(_ipv4(address))
            elif address.startswith("0000000000000000FFFF0000"):
                found.add(_ipv4(address[24:]))
            else:
                found.add("::" if set(address) == {"0"} else address)
    return found


def test_bound_to_one_address_it_listens_there_only_and_private_torrents_are_private(short_tmp, run_dir):
    base = Path(short_tmp)
    for sub in ("session", "data"):
        (base / sub).mkdir()
    address = "127.0.0.9"
    port = free_port(address)
    done = render(base, run_dir, rtorrent_bind_address=address, rtorrent_local_address=address,
                  rtorrent_port_range=f"{port}-{port}")
    assert done.returncode == 0, done.stdout[-3000:]
    rc = (base / "rtorrent.rc").read_text()
    assert f"network.bind_address.set = {address}\nnetwork.local_address.set = {address}\n" in rc

    env = {"HOME": str(base), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "dumb"}
    process = start_daemon([require("rtorrent"), "-n", "-o", f"import={base / 'rtorrent.rc'}"],
                           str(base / "stdout.log"), str(base), env)
    try:
        engine = engine_for("rtorrent", socket=str(run_dir / "rpc.socket"), timeout=5)

        def answers() -> bool:
            assert process.poll() is None, (base / "stdout.log").read_text()
            try:
                return bool(engine.call("system.client_version"))
            except Exception:  # noqa: BLE001 - not up yet
                return False

        wait_until(answers, 15, "rtorrent on its socket")
        wait_until(lambda: listening(port), 15, f"rtorrent listening on port {port}")
        assert listening(port) == {address}  # not 0.0.0.0: only the configured network

        image = base / "data" / "image.img"
        image.write_bytes(os.urandom(100_000))
        announce = [f"http://{address}:1/announce"]
        private = create_torrent(str(image), announce=announce, creation_date=0, private=True)
        public = create_torrent(str(image), announce=announce, creation_date=0, name="public.img")
        for created in (private, public):
            engine.add(created.data, str(base / "data"), start=False)
        assert engine.call("d.is_private", private.info.info_hash.upper()) == 1
        assert engine.call("d.is_private", public.info.info_hash.upper()) == 0
    finally:
        stop_daemon(process)


def test_a_bind_address_that_is_not_an_address_is_refused(short_tmp, run_dir):
    done = render(Path(short_tmp), run_dir, rtorrent_bind_address="cluster network")
    assert done.returncode == 2
    assert "rtorrent_bind_address an IP address" in done.stdout and 'got bind address "cluster network"' in done.stdout
    assert not (Path(short_tmp) / "rtorrent.rc").exists()


def test_min_free_space_0_turns_rtorrents_own_low_diskspace_guard_off(short_tmp, run_dir):
    """rtorrent schedules ``close_low_diskspace,500M`` itself (first run 5 s after start): with
    ``rtorrent_min_free_space_mib: 0`` a download on a filesystem with less free space than that
    (a 64 MiB tmpfs here) must stay open, not be closed with "Low diskspace"."""
    base = Path(short_tmp)
    (base / "session").mkdir()
    data = base / "data"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(data)], check=True)
    process = None
    try:
        done = render(base, run_dir, rtorrent_min_free_space_mib=0)
        assert done.returncode == 0, done.stdout[-3000:]
        env = {"HOME": str(base), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "dumb"}
        process = start_daemon([require("rtorrent"), "-n", "-o", f"import={base / 'rtorrent.rc'}"],
                               str(base / "stdout.log"), str(base), env)
        engine = engine_for("rtorrent", socket=str(run_dir / "rpc.socket"), timeout=5)

        def answers() -> bool:
            assert process.poll() is None, (base / "stdout.log").read_text()
            try:
                return bool(engine.call("system.client_version"))
            except Exception:  # noqa: BLE001 - not up yet
                return False

        wait_until(answers, 15, "rtorrent on its socket")
        source = base / "image.img"  # outside the tmpfs: the download into it never gets a peer
        source.write_bytes(os.urandom(1 << 20))
        created = create_torrent(str(source), announce=["http://127.0.0.1:1/announce"], creation_date=0)
        info_hash = engine.add(created.data, str(data), start=True)
        target = info_hash.upper()
        assert engine.call("d.is_open", target) == 1
        # Past rtorrent's first low_diskspace run (5 s after start) and a margin.
        time.sleep(12)
        assert "diskspace" not in engine.call("d.message", target)  # (the dead tracker may say so)
        assert engine.call("d.is_open", target) == 1
        assert engine.status(info_hash).state == "downloading"
        assert engine.announce(info_hash) is True  # d.tracker_announce: a real rtorrent takes it
    finally:
        if process is not None:
            stop_daemon(process)
        subprocess.run(["umount", str(data)], check=False)
