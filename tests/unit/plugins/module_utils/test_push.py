# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The push methods: the wave planner, the tsunami's push state, and the restricted receiver (forced command)."""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import sys
from pathlib import Path

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils import _push
from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._push import (
    MIN_CHUNK_SIZE,
    advance,
    chunk_count,
    chunk_hashes,
    held_chunks,
    next_round,
    plan_wave,
    push_image,
    push_state,
    receive,
    receiver_main,
    send,
    serve_queue,
    ssh_command,
    wave_rounds,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._tsunami import Scheduler
from tests.unit.sync_world import snapshot

IH = "ab" * 20


def hosts(n):
    return [f"hv{i:02d}" for i in range(1, n + 1)]


# --------------------------------------------------------------------------- wave


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 8, 15, 16, 100, 249])
def test_wave_takes_ceil_log2_n_plus_1_rounds_and_reaches_every_host_once(n):
    rounds = plan_wave(["origin"], hosts(n))
    assert len(rounds) == math.ceil(math.log2(n + 1)) == wave_rounds(n)
    destinations = [dst for pairs in rounds for _src, dst in pairs]
    assert sorted(destinations) == sorted(hosts(n))


def test_wave_sources_are_only_hosts_that_held_the_image_before_the_round():
    rounds = plan_wave(["origin"], hosts(10))
    holders = {"origin"}
    for pairs in rounds:
        senders = [src for src, _dst in pairs]
        assert set(senders) <= holders
        assert len(senders) == len(set(senders))  # each holder pushes to one host per round
        assert len(pairs) == min(len(holders), 10 - (len(holders) - 1))
        holders |= {dst for _src, dst in pairs}


def test_wave_skips_hosts_that_already_hold_it_and_refuses_without_a_source():
    assert plan_wave(["a", "b"], ["a", "c"]) == [[("a", "c")]]
    assert plan_wave(["a"], []) == []
    with pytest.raises(VmcloudError) as caught:
        plan_wave([], ["a"])
    assert caught.value.rule == "push-no-source"


# --------------------------------------------------------------------------- chunks


def test_chunk_count_and_hashes(tmp_path):
    path = tmp_path / "img"
    data = os.urandom(2 * MIN_CHUNK_SIZE + 5)
    path.write_bytes(data)
    assert chunk_count(len(data), MIN_CHUNK_SIZE) == 3
    assert chunk_hashes(str(path), MIN_CHUNK_SIZE) == [
        hashlib.sha256(data[i:i + MIN_CHUNK_SIZE]).hexdigest() for i in range(0, len(data), MIN_CHUNK_SIZE)
    ]


# --------------------------------------------------------------------------- receiver


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "push"
    path.mkdir()
    return path


def test_receiver_put_writes_exactly_into_the_staging_area(root):
    data = os.urandom(5000)
    assert "received" in receive(str(root), f"put {IH} alma_9.img {len(data)}", io.BytesIO(data))
    assert (root / IH / "alma_9.img").read_bytes() == data
    assert sorted(os.listdir(root / IH)) == ["alma_9.img"]


@pytest.mark.parametrize("command", [
    f"put {IH} ../../etc/passwd 3",
    f"put {IH} a/b 3",
    f"put {IH} .hidden 3",
    f"put {IH} a..b 3",
    "put ../x alma.img 3",
    f"put {IH.upper()} alma.img 3",
    f"put {IH} alma.img -3",
    f"put {IH} alma.img 3 extra",
    "rm -rf /",
    "",
    f"chunk {IH} alma.img 3 1024 0 {'0' * 64}",  # chunk size below the minimum
    f"chunk {IH} alma.img 3 {MIN_CHUNK_SIZE} 1 {'0' * 64}",  # chunk index past the end
    f"chunk {IH} alma.img 3 {MIN_CHUNK_SIZE} 0 xyz",
])
def test_receiver_refuses_requests_that_name_anything_else(root, command):
    with pytest.raises(VmcloudError) as caught:
        receive(str(root), command, io.BytesIO(b"abc"))
    assert caught.value.rule == "push-refused"
    assert snapshot(root) == {}
    assert os.listdir(root) in ([], [IH])  # at most the (empty) info-hash directory


def test_receiver_does_not_follow_a_symlinked_image_directory(root, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / IH).symlink_to(elsewhere)
    with pytest.raises(VmcloudError) as caught:
        receive(str(root), f"put {IH} alma.img 3", io.BytesIO(b"abc"))
    assert caught.value.rule == "push-refused"
    assert os.listdir(elsewhere) == []


def test_receiver_replaces_a_planted_symlink_instead_of_writing_through_it(root, tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    (root / IH).mkdir()
    (root / IH / "alma.img").symlink_to(victim)
    (root / IH / ".alma.img.put").symlink_to(victim)
    receive(str(root), f"put {IH} alma.img 3", io.BytesIO(b"abc"))
    assert victim.read_bytes() == b"keep"
    assert not os.path.islink(root / IH / "alma.img")
    assert (root / IH / "alma.img").read_bytes() == b"abc"


def test_receiver_refuses_a_symlinked_part_file(root, tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    (root / IH).mkdir()
    (root / IH / ".alma.img.part").symlink_to(victim)
    data = b"x" * 10
    with pytest.raises(OSError):
        receive(str(root), f"chunk {IH} alma.img 10 {MIN_CHUNK_SIZE} 0 {hashlib.sha256(data).hexdigest()}",
                io.BytesIO(data))
    assert victim.read_bytes() == b"keep"


def test_receiver_keeps_nothing_of_a_short_or_long_put(root):
    with pytest.raises(VmcloudError) as caught:
        receive(str(root), f"put {IH} alma.img 10", io.BytesIO(b"abc"))
    assert caught.value.rule == "push-refused"
    with pytest.raises(VmcloudError):
        receive(str(root), f"put {IH} alma.img 2", io.BytesIO(b"abc"))
    assert os.listdir(root / IH) == []


def test_receiver_assembles_chunks_in_any_order_and_refuses_a_wrong_one(root):
    data = os.urandom(2 * MIN_CHUNK_SIZE + 7)
    pieces = [data[i:i + MIN_CHUNK_SIZE] for i in range(0, len(data), MIN_CHUNK_SIZE)]
    digests = [hashlib.sha256(piece).hexdigest() for piece in pieces]
    request = f"chunk {IH} alma.img {len(data)} {MIN_CHUNK_SIZE}"
    receive(str(root), f"{request} 2 {digests[2]}", io.BytesIO(pieces[2]))
    with pytest.raises(VmcloudError) as caught:
        receive(str(root), f"{request} 0 {digests[0]}", io.BytesIO(pieces[1][:MIN_CHUNK_SIZE]))
    assert caught.value.rule == "push-refused"
    assert held_chunks(str(root), IH, "alma.img", len(data), MIN_CHUNK_SIZE) == [2]
    receive(str(root), f"{request} 0 {digests[0]}", io.BytesIO(pieces[0]))
    assert not (root / IH / "alma.img").exists()
    assert "complete" in receive(str(root), f"{request} 1 {digests[1]}", io.BytesIO(pieces[1]))
    assert os.listdir(root / IH) == ["alma.img"]
    assert (root / IH / "alma.img").read_bytes() == data
    assert held_chunks(str(root), IH, "alma.img", len(data), MIN_CHUNK_SIZE) == [0, 1, 2]


def test_receiver_main_reads_the_request_from_ssh_original_command(root):
    errors = io.StringIO()
    code = receiver_main([str(root)], {"SSH_ORIGINAL_COMMAND": f"put {IH} a.img 2"}, io.BytesIO(b"hi"), errors)
    assert code == 0 and (root / IH / "a.img").read_bytes() == b"hi"
    errors = io.StringIO()
    assert receiver_main([str(root)], {"SSH_ORIGINAL_COMMAND": "cat /etc/shadow"}, io.BytesIO(b""), errors) == 1
    assert errors.getvalue().startswith("push-refused: ")
    assert receiver_main(["relative"], {}, io.BytesIO(b""), io.StringIO()) == 2


def test_send_drives_the_receiver_through_a_stand_in_for_ssh(root, tmp_path):
    # Without sshd here, the "ssh" is a script that runs the receiver with $SSH_ORIGINAL_COMMAND set,
    # as sshd does for a forced command.
    fake_ssh = tmp_path / "fake-ssh"
    library = str(Path(os.path.abspath(_push.__file__)).parents[5])  # the directory holding ansible_collections
    fake_ssh.write_text(
        f"#!{sys.executable}\nimport os, sys\nsys.path.insert(0, {library!r})\n"
        "from ansible_collections.vmcloud.fleet.plugins.module_utils._push import receiver_main\n"
        f"os.environ['SSH_ORIGINAL_COMMAND'] = sys.argv[-1]\nsys.exit(receiver_main([{str(root)!r}]))\n"
    )
    fake_ssh.chmod(0o755)
    source = tmp_path / "image"
    source.write_bytes(os.urandom(3 * MIN_CHUNK_SIZE))
    answer = send(str(source), [str(fake_ssh), "hv02"], f"put {IH} img.raw {source.stat().st_size}")
    assert "received" in answer
    assert (root / IH / "img.raw").read_bytes() == source.read_bytes()
    with pytest.raises(VmcloudError) as caught:
        send(str(source), [str(fake_ssh), "hv02"], f"put {IH} ../img {source.stat().st_size}")
    assert caught.value.rule == "push-failed" and "push-refused" in caught.value.message


def stand_in_ssh(tmp_path, turn_away_first: bool = False):
    """A stand-in for ssh that runs each host's receiver on its own directory <tmp>/hosts/<host>. With
    ``turn_away_first``, each host's first connection is refused before the forced command runs (exit 255),
    as sshd's MaxStartups does when too many handshakes arrive at once."""
    base = tmp_path / "hosts"
    base.mkdir()
    fake_ssh = tmp_path / "fleet-ssh"
    library = str(Path(os.path.abspath(_push.__file__)).parents[5])
    turn_away = (
        "mark = os.path.join(root, '.turned-away')\n"
        "if not os.path.exists(mark):\n"
        "    open(mark, 'w').close()\n"
        "    sys.stderr.write('kex_exchange_identification: Connection closed by remote host\\n')\n"
        "    sys.exit(255)\n"
    ) if turn_away_first else ""
    fake_ssh.write_text(
        f"#!{sys.executable}\nimport os, sys\nsys.path.insert(0, {library!r})\n"
        "from ansible_collections.vmcloud.fleet.plugins.module_utils._push import receiver_main\n"
        f"root = os.path.join({str(base)!r}, sys.argv[-2])\nos.makedirs(root, exist_ok=True)\n"
        + turn_away + "os.environ['SSH_ORIGINAL_COMMAND'] = sys.argv[-1]\nsys.exit(receiver_main([root]))\n"
    )
    fake_ssh.chmod(0o755)
    return base, str(fake_ssh)


@pytest.fixture
def fleet(tmp_path):
    return stand_in_ssh(tmp_path)


def test_a_wave_between_directories_reaches_every_host(fleet, tmp_path):
    base, fake_ssh = fleet
    origin = tmp_path / "origin.img"
    origin.write_bytes(os.urandom(100_000))
    size = origin.stat().st_size

    def held_at(host):
        return str(base / host / IH / "img.raw") if host != "origin" else str(origin)

    for pairs in plan_wave(["origin"], hosts(5)):
        for src, dst in pairs:
            push_image([held_at(src)], IH, "img.raw", size, ssh_command(dst, ssh=fake_ssh))
    for host in hosts(5):
        assert Path(held_at(host)).read_bytes() == origin.read_bytes()


def test_a_tsunami_between_directories_relays_chunks_from_partial_holders(fleet, tmp_path):
    base, fake_ssh = fleet
    origin = tmp_path / "origin.img"
    origin.write_bytes(os.urandom(3 * MIN_CHUNK_SIZE + 11))
    size = origin.stat().st_size

    def sources(host):
        if host == "origin":
            return [str(origin)]
        return [str(base / host / IH / "img.raw"), str(base / host / IH / ".img.raw.part")]

    relayed = 0
    scheduler = Scheduler(chunk_count(size, MIN_CHUNK_SIZE), ["origin"], hosts(4))
    while not scheduler.done:  # every transfer one time unit, one chunk request each
        for transfer in scheduler.assign():
            result = push_image(sources(transfer.sender), IH, "img.raw", size,
                                ssh_command(transfer.receiver, ssh=fake_ssh), chunk=transfer.chunk,
                                chunk_size=MIN_CHUNK_SIZE)
            relayed += result["source"].endswith(".part")
            scheduler.finished(transfer, True)
    assert relayed > 0  # hosts passed on chunks before they had the whole image
    for host in hosts(4):
        assert sorted(os.listdir(base / host / IH)) == ["img.raw"]
        assert (base / host / IH / "img.raw").read_bytes() == origin.read_bytes()


def test_a_partial_holder_does_not_send_a_chunk_it_lacks(fleet, tmp_path):
    base, fake_ssh = fleet
    (base / "hv01" / IH).mkdir(parents=True)
    (base / "hv01" / IH / ".img.raw.part").write_bytes(b"\0" * 10)
    with pytest.raises(VmcloudError) as caught:
        push_image([str(base / "hv01" / IH / ".img.raw.part")], IH, "img.raw", 10, ssh_command("hv02", ssh=fake_ssh),
                   chunk=0, chunk_size=MIN_CHUNK_SIZE)
    assert caught.value.rule == "staged-missing"
    assert not (base / "hv02").exists()


@pytest.mark.parametrize("destination", ["-oProxyCommand=x", "a b", "", "host;rm"])
def test_ssh_command_refuses_option_like_or_odd_destinations(destination):
    with pytest.raises(VmcloudError) as caught:
        ssh_command(destination)
    assert caught.value.rule == "option-invalid"


# --------------------------------------------------------------------------- round bookkeeping (push.yml)


def run_push(state, fail_once=(), corrupt=()):
    """Drive next_round/advance as playbooks/push.yml does; ``fail_once``: destinations whose first push
    fails; ``corrupt``: hosts whose promotion never verifies."""
    failed = set()
    rounds = 0
    while True:
        pairs = next_round(state)
        if not pairs:
            return state, rounds
        rounds += 1
        delivered = {}
        for pair in pairs:
            destination = pair["destination"]
            delivered[destination] = not (destination in fail_once and destination not in failed)
            failed.add(destination)
        verified = {host: ok and host not in corrupt for host, ok in delivered.items()}
        state = advance(state, pairs, delivered, verified)
        assert rounds < 100


def test_push_state_wave_reaches_everyone_in_log_rounds_and_replans_after_a_failure():
    state, rounds = run_push(push_state("scp_wave", ["cat"], hosts(7), 10))
    assert rounds == 3 and state["lackers"] == [] and sorted(state["holders"]) == sorted(["cat", *hosts(7)])
    state, rounds = run_push(push_state("scp_wave", ["cat"], hosts(7), 10), fail_once={"hv01"})
    assert state["lackers"] == [] and rounds == 4


def test_push_state_a_host_that_does_not_verify_never_becomes_a_source():
    state = push_state("scp_wave", ["cat"], hosts(3), 10)
    pairs = next_round(state)
    assert pairs == [{"source": "cat", "destination": "hv01"}]
    state = advance(state, pairs, {"hv01": True}, {"hv01": False})
    assert state["holders"] == ["cat"] and "hv01" in state["lackers"]
    assert all(pair["source"] == "cat" for pair in next_round(state))


def test_push_state_a_host_that_keeps_failing_does_not_starve_the_others():
    # hv01's push or promotion fails every round: the origin must not spend every round on it while
    # hv02 and hv03 wait (they would never get the image, and the run would end push-incomplete).
    state = push_state("scp_wave", ["cat"], hosts(3), 10)
    for _round in range(4):
        pairs = next_round(state)
        delivered = {pair["destination"]: pair["destination"] != "hv01" for pair in pairs}
        state = advance(state, pairs, delivered, delivered)
    assert sorted(state["holders"]) == ["cat", "hv02", "hv03"] and state["lackers"] == ["hv01"]


def test_push_state_tsunami_counts_chunks_and_has_no_rounds():
    # A tsunami is pipelined (pass_queues / record_pass, playbooks/tasks/push_pass.yml): the rounds of a wave
    # refuse its state rather than plan lock-step rounds for it.
    state = push_state("scp_tsunami", ["cat"], hosts(4), 5 * MIN_CHUNK_SIZE + 1, MIN_CHUNK_SIZE)
    assert state["chunks"] == 6 and state["held"] == {}
    for call in (lambda: next_round(state), lambda: advance(state, [], {}, {})):
        with pytest.raises(VmcloudError) as caught:
            call()
        assert caught.value.rule == "option-invalid" and "push_queues" in caught.value.message


def test_push_state_refuses_another_method():
    with pytest.raises(VmcloudError) as caught:
        push_state("bittorrent", ["a"], ["b"], 1)
    assert caught.value.rule == "option-invalid"


def test_receiver_main_logs_each_request_with_its_sender(root):
    # The receiver's record (the journal, through syslog on a host) is how an operator sees who pushed
    # what: the sender's address from $SSH_CONNECTION, and the answer, refusals included.
    logged = []
    environ = {"SSH_ORIGINAL_COMMAND": f"put {IH} a.img 2", "SSH_CONNECTION": "10.0.0.5 40000 10.0.0.6 22"}
    assert receiver_main([str(root)], environ, io.BytesIO(b"hi"), io.StringIO(), log=logged.append) == 0
    environ = {"SSH_ORIGINAL_COMMAND": "cat /etc/shadow", "SSH_CONNECTION": "10.0.0.7 40000 10.0.0.6 22"}
    assert receiver_main([str(root)], environ, io.BytesIO(b""), io.StringIO(), log=logged.append) == 1
    assert logged[0] == f"from 10.0.0.5: received {IH}/a.img (2 bytes)"
    assert logged[1].startswith("from 10.0.0.7: push-refused: ")


def test_a_chunk_needs_no_disk_beyond_the_part_file(root):
    # The answer says what the image's staging held on disk at the chunk's peak: the part file (sparse),
    # the chunk written into it, so never more than the chunks held, this one included.
    data = os.urandom(3 * MIN_CHUNK_SIZE)
    pieces = [data[i:i + MIN_CHUNK_SIZE] for i in range(0, len(data), MIN_CHUNK_SIZE)]
    request = f"chunk {IH} big.img {len(data)} {MIN_CHUNK_SIZE}"
    for held, index in enumerate((2, 0, 1)):
        answer = receive(str(root), f"{request} {index} {hashlib.sha256(pieces[index]).hexdigest()}",
                         io.BytesIO(pieces[index]))
        disk = int(re.search(r"staging held (\d+) bytes", answer).group(1))
        assert MIN_CHUNK_SIZE <= disk <= (held + 1) * MIN_CHUNK_SIZE + 65536, answer


class _Watched(io.BytesIO):
    """A sender's bytes that note, at every read, which files the image's staging holds."""

    def __init__(self, data, directory):
        super().__init__(data)
        self.directory, self.seen = directory, []

    def read(self, size=-1):
        if self.directory.exists():
            self.seen.append({entry: (self.directory / entry).stat().st_blocks * 512
                              for entry in os.listdir(self.directory)})
        return super().read(size)


def test_a_chunk_is_written_into_the_part_file_as_it_arrives(root):
    # One write per chunk: the bytes go straight to their offset in the part file while they are hashed,
    # with no second copy of the chunk beside it; the staging's peak is the part file only.
    data = os.urandom(3 * MIN_CHUNK_SIZE)
    piece = data[MIN_CHUNK_SIZE:2 * MIN_CHUNK_SIZE]
    stdin = _Watched(piece, root / IH)
    answer = receive(str(root), f"chunk {IH} w.img {len(data)} {MIN_CHUNK_SIZE} 1 {hashlib.sha256(piece).hexdigest()}",
                     stdin)
    assert stdin.seen and all(set(seen) <= {".w.img.part", ".w.img.have"} for seen in stdin.seen), stdin.seen
    assert max(seen.get(".w.img.part", 0) for seen in stdin.seen) >= MIN_CHUNK_SIZE // 2  # filled while it arrived
    disk = int(re.search(r"staging held (\d+) bytes", answer).group(1))
    assert disk == (root / IH / ".w.img.part").stat().st_blocks * 512
    with open(root / IH / ".w.img.part", "rb") as part:
        part.seek(MIN_CHUNK_SIZE)
        assert part.read(MIN_CHUNK_SIZE) == piece


def _chunk_request(name, size, index, piece):
    return f"chunk {IH} {name} {size} {MIN_CHUNK_SIZE} {index} {hashlib.sha256(piece).hexdigest()}"


def test_a_held_chunk_is_never_written_again(root):
    # A chunk the receiver holds (checked, fsynced, marked) is not overwritten by a later copy, whatever its
    # bytes: the later bytes are read and dropped. Same bytes or other bytes with their own SHA-256, the answer
    # is a success (the receiver does hold the chunk, which is what the sender's scheduler counts); bytes whose
    # SHA-256 is not the announced one are refused, as for any chunk.
    data = os.urandom(2 * MIN_CHUNK_SIZE + 9)
    first = data[:MIN_CHUNK_SIZE]
    other = os.urandom(MIN_CHUNK_SIZE)
    receive(str(root), _chunk_request("h.img", len(data), 0, first), io.BytesIO(first))
    part = root / IH / ".h.img.part"
    answer = receive(str(root), _chunk_request("h.img", len(data), 0, other), io.BytesIO(other))
    assert "already held" in answer and "not written again" in answer
    assert part.read_bytes()[:MIN_CHUNK_SIZE] == first
    with pytest.raises(VmcloudError) as caught:
        receive(str(root), f"chunk {IH} h.img {len(data)} {MIN_CHUNK_SIZE} 0 {'0' * 64}", io.BytesIO(other))
    assert caught.value.rule == "push-refused"
    assert part.read_bytes()[:MIN_CHUNK_SIZE] == first
    answers = []
    body = f"0 {hashlib.sha256(other).hexdigest()}\n".encode() + other
    body += f"1 {hashlib.sha256(data[MIN_CHUNK_SIZE:2 * MIN_CHUNK_SIZE]).hexdigest()}\n".encode()
    body += data[MIN_CHUNK_SIZE:2 * MIN_CHUNK_SIZE]
    receive(str(root), f"stream {IH} h.img {len(data)} {MIN_CHUNK_SIZE}", io.BytesIO(body), answer=answers.append)
    assert [a.split()[0] for a in answers] == ["ok", "ok"] and "already held" in answers[0]
    assert part.read_bytes()[:2 * MIN_CHUNK_SIZE] == data[:2 * MIN_CHUNK_SIZE]
    assert held_chunks(str(root), IH, "h.img", len(data), MIN_CHUNK_SIZE) == [0, 1]


def test_a_complete_image_takes_no_more_chunks(root):
    data = os.urandom(MIN_CHUNK_SIZE + 3)
    pieces = [data[:MIN_CHUNK_SIZE], data[MIN_CHUNK_SIZE:]]
    for index, piece in enumerate(pieces):
        receive(str(root), _chunk_request("c.img", len(data), index, piece), io.BytesIO(piece))
    other = os.urandom(MIN_CHUNK_SIZE)
    answer = receive(str(root), _chunk_request("c.img", len(data), 0, other), io.BytesIO(other))
    assert "already held" in answer
    assert os.listdir(root / IH) == ["c.img"]  # no new part file, no marker
    assert (root / IH / "c.img").read_bytes() == data


def test_a_chunk_that_waited_while_the_image_completed_does_not_write_into_it(root, monkeypatch):
    # Two requests for the last chunk: the second opened the part file, then waited for its lock while the
    # first completed the image (renaming the part file to the image). It must not write into the inode it
    # opened, which is now the complete image.
    data = os.urandom(MIN_CHUNK_SIZE + 3)
    pieces = [data[:MIN_CHUNK_SIZE], data[MIN_CHUNK_SIZE:]]
    receive(str(root), _chunk_request("r.img", len(data), 0, pieces[0]), io.BytesIO(pieces[0]))
    real_flock = _push.fcntl.flock
    raced = []

    def flock_after_the_other_request(fd, operation):
        if not raced:
            raced.append(True)
            receive(str(root), _chunk_request("r.img", len(data), 1, pieces[1]), io.BytesIO(pieces[1]))
        return real_flock(fd, operation)

    monkeypatch.setattr(_push.fcntl, "flock", flock_after_the_other_request)
    late = os.urandom(3)
    answer = receive(str(root), _chunk_request("r.img", len(data), 1, late), io.BytesIO(late))
    assert raced and "already held" in answer
    assert os.listdir(root / IH) == ["r.img"]
    assert (root / IH / "r.img").read_bytes() == data


def test_a_wrong_or_cut_chunk_is_not_held_and_is_written_again(root):
    # Its bytes landed in the part file but it is not marked held: that space is not valid yet, and the next
    # copy of the chunk overwrites it.
    data = os.urandom(2 * MIN_CHUNK_SIZE)
    pieces = [data[:MIN_CHUNK_SIZE], data[MIN_CHUNK_SIZE:]]
    with pytest.raises(VmcloudError):
        receive(str(root), _chunk_request("x.img", len(data), 1, pieces[1]), io.BytesIO(pieces[0]))
    with pytest.raises(VmcloudError):
        receive(str(root), _chunk_request("x.img", len(data), 1, pieces[1]), io.BytesIO(pieces[1][:1000]))
    assert held_chunks(str(root), IH, "x.img", len(data), MIN_CHUNK_SIZE) == []
    receive(str(root), _chunk_request("x.img", len(data), 1, pieces[1]), io.BytesIO(pieces[1]))
    receive(str(root), _chunk_request("x.img", len(data), 0, pieces[0]), io.BytesIO(pieces[0]))
    assert (root / IH / "x.img").read_bytes() == data


def test_a_stream_carries_many_chunks_and_answers_each(tmp_path):
    chunk = MIN_CHUNK_SIZE
    data = os.urandom(2 * chunk + 5)
    body = b""
    for index in (2, 0, 1):
        piece = data[index * chunk:(index + 1) * chunk]
        digest = hashlib.sha256(piece).hexdigest() if index != 0 else "0" * 64
        body += f"{index} {digest}\n".encode() + piece
    answers = []
    message = receive(str(tmp_path), f"stream {IH} s.img {len(data)} {chunk}", io.BytesIO(body),
                      answer=answers.append)
    assert [a.split()[0] for a in answers] == ["ok", "refused", "ok"]  # chunk 0's hash differs: not kept
    assert "2 chunks received, 1 refused" in message
    assert held_chunks(str(tmp_path), IH, "s.img", len(data), chunk) == [1, 2]


def test_a_stream_cut_inside_a_chunk_keeps_nothing_of_it(tmp_path):
    chunk = MIN_CHUNK_SIZE
    piece = os.urandom(chunk)
    body = f"0 {hashlib.sha256(piece).hexdigest()}\n".encode() + piece[:100]
    with pytest.raises(VmcloudError) as caught:
        receive(str(tmp_path), f"stream {IH} c.img {2 * chunk} {chunk}", io.BytesIO(body), answer=print)
    assert caught.value.rule == "push-refused"
    assert held_chunks(str(tmp_path), IH, "c.img", 2 * chunk, chunk) == []


def test_a_stream_header_that_is_not_index_and_hash_is_refused(tmp_path):
    with pytest.raises(VmcloudError) as caught:
        receive(str(tmp_path), f"stream {IH} h.img 10 {MIN_CHUNK_SIZE}", io.BytesIO(b"../x\n"), answer=print)
    assert caught.value.rule == "push-refused"


@pytest.fixture
def busy_fleet(tmp_path):
    return stand_in_ssh(tmp_path, turn_away_first=True)


def test_a_stream_turned_away_at_the_handshake_is_opened_again_and_delivers(busy_fleet, tmp_path):
    # At N = 16 every sender opening its sessions at once had sshd refuse 13 handshakes; their chunks then
    # waited out the stall timeout (bench: 12 x T*). A session that fails before its first answer is opened
    # once more (after a short pause) and the chunk sent again.
    base, fake_ssh = busy_fleet
    origin = tmp_path / "origin.img"
    origin.write_bytes(os.urandom(3 * MIN_CHUNK_SIZE + 5))
    size = origin.stat().st_size
    chunks = chunk_count(size, MIN_CHUNK_SIZE)
    queue = [(host, chunk) for chunk in range(chunks) for host in ("hv01", "hv02")]
    result = serve_queue([str(origin)], queue, lambda host: ssh_command(host, ssh=fake_ssh), IH, "img.raw", size,
                         MIN_CHUNK_SIZE, stall_seconds=5)
    assert result["failed"] == [] and result["left"] == [] and result["closing"] == []
    assert sorted(map(tuple, result["sent"])) == sorted(queue)
    for host in ("hv01", "hv02"):
        assert (base / host / IH / "img.raw").read_bytes() == origin.read_bytes()
