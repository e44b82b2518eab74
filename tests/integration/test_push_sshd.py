# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The push methods over a real sshd on loopback: the fleet key's authorized_keys entry is
``restrict,command="vmcloud-push-receive <root>"``, as the hypervisor role writes it. Each "host" is one
key with its own receiver root (one sshd stands in for the fleet). Needs openssh-server
(``apt-get install -y openssh-server``)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils import _push
from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._push import (
    MIN_CHUNK_SIZE,
    chunk_count,
    held_chunks,
    plan_wave,
    push_image,
    serve_queue,
    ssh_command,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._tsunami import Scheduler, plan_queues
from tests.integration.conftest import free_port, port_open, require, start_daemon, stop_daemon, wait_until

IH = "cd" * 20
IH2 = "ef" * 20
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

    scheduler = Scheduler(chunk_count(size, MIN_CHUNK_SIZE), ["origin"], HOSTS)
    while not scheduler.done:  # every transfer one time unit, one chunk request each
        for transfer in scheduler.assign():
            push_image(sources(transfer.sender), IH, "t.img", size, ssh_to(fleet, transfer.receiver),
                       chunk=transfer.chunk, chunk_size=MIN_CHUNK_SIZE)
            scheduler.finished(transfer, True)
    for host in HOSTS:
        assert (fleet["roots"][host] / IH / "t.img").read_bytes() == origin.read_bytes()


def tsunami_sources(fleet, origin, host, name):
    if host == "origin":
        return [str(origin)]
    return [str(fleet["roots"][host] / IH2 / name), str(fleet["roots"][host] / IH2 / f".{name}.part")]


def run_pass(fleet, origin, name, size, queues, serving, stall=8.0, during=None):
    """One pipelined pass: every sender in ``serving`` works through its queue at once (as the playbook's
    one image_push task per sender does), each over one stream session per destination."""
    results, threads = {}, []

    def one(sender):
        results[sender] = serve_queue(tsunami_sources(fleet, origin, sender, name), queues.get(sender, []),
                                      lambda destination: ssh_to(fleet, destination), IH2, name, size,
                                      MIN_CHUNK_SIZE, stall_seconds=stall, poll_seconds=0.02)

    for sender in serving:
        threads.append(threading.Thread(target=one, args=(sender,)))
        threads[-1].start()
    if during:
        during()
    for thread in threads:
        thread.join(120)
    return results


def held(fleet, name, size):
    return {host: held_chunks(str(fleet["roots"][host]), IH2, name, size, MIN_CHUNK_SIZE) for host in HOSTS}


def test_a_pipelined_tsunami_over_sshd_streams_many_chunks_per_session(fleet, tmp_path):
    origin = tmp_path / "origin.img"
    origin.write_bytes(os.urandom(6 * MIN_CHUNK_SIZE + 7))
    size, chunks = origin.stat().st_size, 7
    queues = plan_queues(chunks, ["origin"], HOSTS)
    assert set(queues) > {"origin"}  # the hosts relay
    results = run_pass(fleet, origin, "p.img", size, queues, ["origin", *HOSTS])
    for host in HOSTS:
        assert (fleet["roots"][host] / IH2 / "p.img").read_bytes() == origin.read_bytes()
        assert not (fleet["roots"][host] / IH2 / ".p.img.part").exists()
    assert all(not r["failed"] and not r["left"] and not r["closing"] for r in results.values())
    assert sum(len(r["sent"]) for r in results.values()) == chunks * len(HOSTS)


def receivers_of(root):
    """The receiver processes this test's sshd runs for one host (found by their root, ended by pid)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    words = handle.read().split(b"\0")
            except OSError:
                continue
            if any(w.endswith(b"vmcloud-push-receive") for w in words) and str(root).encode() in words:
                pids.append(int(entry))
    return pids


def test_a_tsunami_survives_a_receiver_that_fails_midway_and_a_sender_that_dies(fleet, tmp_path):
    origin = tmp_path / "origin.img"
    origin.write_bytes(os.urandom(8 * MIN_CHUNK_SIZE))
    size, chunks = origin.stat().st_size, 8
    queues = plan_queues(chunks, ["origin"], HOSTS)
    dead = "hv02"  # never serves its queue: what it should have relayed is left missing
    assert queues.get(dead)
    victim = fleet["roots"]["hv03"]
    killed = []

    def kill_hv03_midway():
        wait_until(lambda: len(held(fleet, "f.img", size)["hv03"]) >= 1, 60, "hv03's first chunk")
        for pid in receivers_of(victim):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    results = run_pass(fleet, origin, "f.img", size, queues, ["origin", "hv01", "hv03"], during=kill_hv03_midway)
    after_first = held(fleet, "f.img", size)
    assert killed and 1 <= len(after_first["hv03"]) < chunks
    failed = [f for r in results.values() for f in r["failed"]]
    assert all(f["rule"] in ("push-failed", "push-refused") for f in failed)
    # The repair pass: planned from what each host holds now, the dead sender excluded.
    repair = plan_queues(chunks, ["origin"], HOSTS, held=after_first, dead_senders=[dead])
    assert dead not in repair
    assert sorted(c for q in repair.values() for d, c in q if d == "hv03") == sorted(
        set(range(chunks)) - set(after_first["hv03"]))  # what hv03 held is kept, not sent again
    run_pass(fleet, origin, "f.img", size, repair, ["origin", "hv01", "hv03"])
    for host in HOSTS:
        assert (fleet["roots"][host] / IH2 / "f.img").read_bytes() == origin.read_bytes()


def test_a_stream_refuses_a_chunk_whose_hash_differs_and_goes_on(fleet, tmp_path):
    data = os.urandom(2 * MIN_CHUNK_SIZE)
    process = subprocess.Popen([*ssh_to(fleet, "hv01"), f"stream {IH2} r.img {len(data)} {MIN_CHUNK_SIZE}"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first, second = data[:MIN_CHUNK_SIZE], data[MIN_CHUNK_SIZE:]
    process.stdin.write(f"0 {'0' * 64}\n".encode() + first)
    process.stdin.flush()
    assert process.stdout.readline().startswith(b"refused push-refused: chunk 0")
    process.stdin.write(f"1 {hashlib.sha256(second).hexdigest()}\n".encode() + second)
    process.stdin.flush()
    assert process.stdout.readline().startswith(b"ok received chunk 1")
    process.stdin.close()
    assert process.wait(30) == 0
    assert held_chunks(str(fleet["roots"]["hv01"]), IH2, "r.img", len(data), MIN_CHUNK_SIZE) == [1]


def test_a_chunk_sent_again_is_answered_as_held_and_not_written_again(fleet, tmp_path):
    # A sender may send a chunk its receiver holds already (e.g. a repair pass planned from holdings read
    # before the receiver's last answer): the receiver drops the copy and answers that it holds the chunk, so
    # the sender counts it delivered and goes on with the session's next chunk.
    origin = tmp_path / "origin.img"
    origin.write_bytes(os.urandom(2 * MIN_CHUNK_SIZE + 5))
    size = origin.stat().st_size
    first = run_pass(fleet, origin, "a.img", size, {"origin": [("hv01", 0)]}, ["origin"])["origin"]
    assert first["sent"] == [["hv01", 0]]
    part = fleet["roots"]["hv01"] / IH2 / ".a.img.part"
    held_bytes = part.read_bytes()[:MIN_CHUNK_SIZE]
    again = run_pass(fleet, origin, "a.img", size, {"origin": [("hv01", 0), ("hv01", 1), ("hv01", 2)]},
                     ["origin"])["origin"]
    assert again["failed"] == [] and again["left"] == [] and again["sent"] == [["hv01", 0], ["hv01", 1], ["hv01", 2]]
    assert (fleet["roots"]["hv01"] / IH2 / "a.img").read_bytes()[:MIN_CHUNK_SIZE] == held_bytes
    assert (fleet["roots"]["hv01"] / IH2 / "a.img").read_bytes() == origin.read_bytes()


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
