# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The push methods over a real sshd on loopback: the fleet key's authorized_keys entry is
``restrict,command="vmcloud-push-receive <root>"``, as the hypervisor role writes it. Each "host" is one
key with its own receiver root (one sshd stands in for the fleet). Needs openssh-server
(``apt-get install -y openssh-server``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils import _push
from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._push import (
    MIN_CHUNK_SIZE,
    chunk_count,
    plan_tsunami,
    plan_wave,
    push_image,
    ssh_command,
)
from tests.integration.conftest import free_port, port_open, require, start_daemon, stop_daemon, wait_until

IH = "cd" * 20
HOSTS = ["hv01", "hv02", "hv03"]


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return Path(f"{path}.pub").read_text().strip()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    sshd = "/usr/sbin/sshd"
    if not os.path.exists(sshd):
        pytest.fail("sshd is not installed; apt-get install -y openssh-server")
    require("ssh")
    base = tmp_path_factory.mktemp("sshd")
    library = str(Path(os.path.abspath(_push.__file__)).parents[5])
    receiver = base / "vmcloud-push-receive"
    receiver.write_text(
        f"#!{sys.executable} -I\nimport sys\nsys.path.insert(0, {library!r})\n"
        "from ansible_collections.vmcloud.fleet.plugins.module_utils._push import receiver_main\n"
        "sys.exit(receiver_main())\n"
    )
    receiver.chmod(0o755)
    host_key = base / "host_key"
    keygen(host_key)
    entries, keys, roots = [], {}, {}
    for host in HOSTS:
        key = base / f"key_{host}"
        public = keygen(key)
        root = base / "hosts" / host
        root.mkdir(parents=True)
        entries.append(f'restrict,command="{receiver} {root}" {public}')
        keys[host], roots[host] = str(key), root
    authorized = base / "authorized_keys"
    authorized.write_text("\n".join(entries) + "\n")
    port = free_port()
    config = base / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nAuthorizedKeysFile {authorized}\n"
        f"PidFile {base}/sshd.pid\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "PermitRootLogin prohibit-password\nStrictModes no\nAllowTcpForwarding yes\n"
    )
    known_hosts = base / "known_hosts"
    key_type, key_data = Path(f"{host_key}.pub").read_text().split()[:2]
    known_hosts.write_text(f"[127.0.0.1]:{port} {key_type} {key_data}\n")
    os.makedirs("/run/sshd", exist_ok=True)
    process = start_daemon([sshd, "-D", "-e", "-f", str(config)], str(base / "sshd.log"), str(base))
    try:
        wait_until(lambda: port_open(port), 10, "sshd")
        yield {"port": port, "keys": keys, "roots": roots, "known_hosts": str(known_hosts), "base": base}
    finally:
        stop_daemon(process)


def ssh_to(fleet, host):
    return ssh_command("127.0.0.1", fleet["port"], user="root", key=fleet["keys"][host],
                       known_hosts=fleet["known_hosts"])


def test_a_wave_over_sshd_reaches_every_host(fleet, tmp_path):
    origin = tmp_path / "origin.img"
    origin.write_bytes(os.urandom(300_000))

    def source(host):
        return [str(origin)] if host == "origin" else [str(fleet["roots"][host] / IH / "w.img")]

    for pairs in plan_wave(["origin"], HOSTS):
        for src, dst in pairs:
            push_image(source(src), IH, "w.img", origin.stat().st_size, ssh_to(fleet, dst))
    for host in HOSTS:
        assert (fleet["roots"][host] / IH / "w.img").read_bytes() == origin.read_bytes()


def test_a_tsunami_over_sshd_relays_chunks(fleet, tmp_path):
    origin = tmp_path / "origin.img"
    origin.write_bytes(os.urandom(2 * MIN_CHUNK_SIZE + 99))
    size = origin.stat().st_size

    def sources(host):
        if host == "origin":
            return [str(origin)]
        return [str(fleet["roots"][host] / IH / "t.img"), str(fleet["roots"][host] / IH / ".t.img.part")]

    for pairs in plan_tsunami(chunk_count(size, MIN_CHUNK_SIZE), ["origin"], HOSTS):
        for src, dst, chunk in pairs:
            push_image(sources(src), IH, "t.img", size, ssh_to(fleet, dst), chunk=chunk, chunk_size=MIN_CHUNK_SIZE)
    for host in HOSTS:
        assert (fleet["roots"][host] / IH / "t.img").read_bytes() == origin.read_bytes()


def test_the_forced_command_refuses_paths_outside_staging(fleet, tmp_path):
    source = tmp_path / "x"
    source.write_bytes(b"abc")
    before = sorted(p.name for p in fleet["base"].iterdir())
    with pytest.raises(VmcloudError) as caught:
        _push.send(str(source), ssh_to(fleet, "hv01"), f"put {IH} ../../escape 3")
    assert caught.value.rule == "push-failed" and "push-refused" in caught.value.message
    assert sorted(p.name for p in fleet["base"].iterdir()) == before


def test_the_fleet_key_cannot_run_a_shell_command(fleet, tmp_path):
    marker = tmp_path / "ran"
    result = subprocess.run([*ssh_to(fleet, "hv01"), f"touch {marker}"], capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode != 0
    assert "push-refused" in result.stderr
    assert not marker.exists()


def test_the_fleet_key_cannot_forward_ports(fleet):
    result = subprocess.run([*ssh_to(fleet, "hv01")[:-1], "-o", "ExitOnForwardFailure=yes",
                             "-W", f"127.0.0.1:{fleet['port']}", "127.0.0.1"], input="", capture_output=True,
                            text=True, timeout=30, check=False)
    assert result.returncode != 0
