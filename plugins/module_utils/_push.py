# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The push methods (scp_wave, scp_tsunami): the wave's planner, the restricted receiver, the sender.

Private to the collection; not a public API. Plain Python, standard library only: the receiver runs
on hypervisors as the forced command of the fleet-internal key.

- ``plan_wave(holders, lackers)``: rounds of (source, destination); in each round every holder sends
  the whole image to one host that lacks it, so ``ceil(log2((H + L) / H))`` rounds (``ceil(log2(N+1))``
  from one origin). A destination becomes a holder only for the rounds after it, and only when the
  caller says it verified what it received: the playbook replans after every round from the hosts
  whose promotion succeeded.
- scp_tsunami is pipelined, without rounds: its scheduler is ``_tsunami`` (``pass_queues`` and
  ``record_pass`` below carry its state from pass to pass); ``serve_queue`` is one sender's part of a pass.
- ``receive(root, command, stdin)``: the forced command (``restrict,command="vmcloud-push-receive
  <root>"``): ``put <info_hash> <file> <size>`` writes stdin as ``<root>/<info_hash>/<file>``;
  ``chunk <info_hash> <file> <size> <chunk_size> <index> <sha256>`` writes one chunk straight into
  ``.<file>.part`` at its offset while hashing it, marks it held (``.<file>.have/<index>``) only once its
  SHA-256 matched and the part file was fsynced, never writes a held chunk again, and renames the part
  file to ``<file>`` once every chunk is held (the staging's disk is the part file only). Nothing outside
  ``<root>`` can be named (a 40-hex info-hash, a plain file name: no ``/``, no ``..``, no leading dot),
  nothing below it is followed through a symlink (every open is relative to a directory descriptor
  with ``O_NOFOLLOW``), at most ``size`` bytes are written. It verifies the chunks only; the image is
  verified by ``ImageStore.promote`` against the signed index (the receiver trusts no sender).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import math
import os
import random
import re
import stat
import subprocess
import sys
import time
from typing import BinaryIO, Callable, Dict, List, Optional, Sequence, Set, Tuple

from ._errors import VmcloudError

DEFAULT_CHUNK_SIZE = 32 * 1024 * 1024
# A stream session turned away before its first answer is opened again once, after 0.5-1 s (serve_queue).
REOPEN_PAUSE_SECONDS = 0.5
MIN_CHUNK_SIZE = 1024 * 1024
MAX_CHUNK_SIZE = 1024 * 1024 * 1024
MAX_IMAGE_BYTES = 1 << 40
BLOCK = 1 << 20
_INFO_HASH = re.compile(r"\A[0-9a-f]{40}\Z")
_SHA256 = re.compile(r"\A[0-9a-f]{64}\Z")
_FILE_NAME = re.compile(r"\A[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,254}\Z")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class PushRefused(VmcloudError):
    """The receiver refuses a request (rule ``push-refused``) or it did not arrive in full."""


class ChunkMismatch(PushRefused):
    """A chunk arrived in full but its SHA-256 is not the announced one; it is not marked held."""


# --------------------------------------------------------------------------- planners


def wave_rounds(n_lackers: int, n_holders: int = 1) -> int:
    """How many rounds a wave needs: the holders double each round."""
    if n_lackers <= 0:
        return 0
    if n_holders <= 0:
        raise VmcloudError("push-no-source", "no host holds the verified image; obtain it on one host first")
    return math.ceil(math.log2((n_lackers + n_holders) / n_holders))


def plan_wave(holders: Sequence[str], lackers: Sequence[str]) -> List[List[Tuple[str, str]]]:
    """Rounds of (source, destination) pairs; see the module docstring. Every lacker appears once."""
    sources = list(dict.fromkeys(holders))
    waiting = [host for host in dict.fromkeys(lackers) if host not in set(sources)]
    if waiting and not sources:
        raise VmcloudError("push-no-source", "no host holds the verified image; obtain it on one host first")
    rounds = []
    while waiting:
        pairs = list(zip(sources, waiting, strict=False))
        waiting = waiting[len(pairs):]
        sources += [destination for _source, destination in pairs]
        rounds.append(pairs)
    return rounds


def chunk_count(size: int, chunk_size: int) -> int:
    return max(1, -(-size // chunk_size))


def chunk_hashes(path: str, chunk_size: int) -> List[str]:
    """The SHA-256 of every chunk of a verified image (the controller passes them to the receivers)."""
    hashes = []
    with open(path, "rb") as handle:
        while True:
            data = handle.read(chunk_size)
            if not data and hashes:
                return hashes
            hashes.append(hashlib.sha256(data).hexdigest())
            if len(data) < chunk_size:
                return hashes


# --------------------------------------------------------------------------- receiver


def _refuse(message: str) -> PushRefused:
    return PushRefused("push-refused", f"{message}; the receiver writes only <info_hash>/<file> in its staging area")


def _number(value: str, what: str, low: int, high: int) -> int:
    if not value.isdigit() or not low <= int(value) <= high:
        raise _refuse(f"{what} {value[:40]!r} is not a number from {low} to {high}")
    return int(value)


_ARGUMENTS = {"put": 3, "chunk": 6, "stream": 4}


def _parse(command: str) -> Tuple[str, str, str, List[str]]:
    words = command.split()
    if not words or words[0] not in _ARGUMENTS:
        raise _refuse(f"unknown request {command[:80]!r} (put, chunk or stream)")
    expected = _ARGUMENTS[words[0]] + 1
    if len(words) != expected:
        raise _refuse(f"{words[0]} takes {expected - 1} arguments, got {len(words) - 1}")
    verb, info_hash, name = words[0], words[1], words[2]
    if not _INFO_HASH.match(info_hash):
        raise _refuse(f"{info_hash[:80]!r} is not an info-hash (40 lower-case hex digits)")
    if not _FILE_NAME.match(name) or ".." in name:
        raise _refuse(f"{name[:80]!r} is not a plain file name (no /, no .., no leading dot)")
    return verb, info_hash, name, words[3:]


def _open_image_dir(root: str, info_hash: str) -> int:
    try:
        root_fd = os.open(root, _DIR_FLAGS)
    except OSError as exc:
        raise _refuse(f"the staging area {root} cannot be opened ({exc.strerror})") from exc
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(info_hash, 0o750, dir_fd=root_fd)
        try:
            return os.open(info_hash, _DIR_FLAGS, dir_fd=root_fd)
        except OSError as exc:
            raise _refuse(f"{root}/{info_hash} is a symlink or not a directory") from exc
    finally:
        os.close(root_fd)


def _copy_in(stdin: BinaryIO, fd: Optional[int], length: int, digest=None, exact_end: bool = True,
             offset: Optional[int] = None, sync: bool = True) -> None:
    """Read exactly ``length`` bytes of ``stdin``, hashing them into ``digest``: written to ``fd`` (at
    ``offset`` when given, else where it stands), or only read and dropped when ``fd`` is None."""
    left = length
    while left:
        data = stdin.read(min(BLOCK, left))
        if not data:
            raise PushRefused("push-refused", f"the sender stopped after {length - left} of {length} bytes; "
                              "nothing of it counts as received")
        if fd is not None and offset is None:
            os.write(fd, data)
        elif fd is not None:
            os.pwrite(fd, data, offset + length - left)
        if digest is not None:
            digest.update(data)
        left -= len(data)
    if exact_end and stdin.read(1):
        raise _refuse(f"the sender sent more than the {length} bytes it announced")
    if fd is not None and sync:
        os.fsync(fd)


def _new_file(name: str, dir_fd: int) -> int:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)  # a leftover (or a planted link) is replaced, never followed
    return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640, dir_fd=dir_fd)


def receive(root: str, command: str, stdin: BinaryIO, max_size: int = MAX_IMAGE_BYTES,
            answer: Optional[Callable[[str], None]] = None) -> str:
    """Carry out one request of the forced command; return what was done (one line). A ``stream`` answers
    each chunk through ``answer`` (the receiver's stdout, read by ``StreamSession``)."""
    verb, info_hash, name, rest = _parse(command or "")
    size = _number(rest[0], "size", 0, max_size)
    dir_fd = _open_image_dir(root, info_hash)
    try:
        if verb == "put":
            temporary = f".{name}.put"
            fd = _new_file(temporary, dir_fd)
            try:
                _copy_in(stdin, fd, size)
            except BaseException:
                os.close(fd)
                os.unlink(temporary, dir_fd=dir_fd)
                raise
            os.close(fd)
            os.replace(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            os.fsync(dir_fd)
            return f"received {info_hash}/{name} ({size} bytes)"
        if verb == "stream":
            return _receive_stream(dir_fd, info_hash, name, size, rest[1], stdin, answer or (lambda line: None))
        return _receive_chunk(dir_fd, info_hash, name, size, rest[1:], stdin)
    finally:
        os.close(dir_fd)


_STREAM_HEADER = 120  # "<index> <sha256>\n" is at most 11 + 1 + 64 + 1 bytes


def _receive_stream(dir_fd: int, info_hash: str, name: str, size: int, chunk_size: str, stdin: BinaryIO,
                    answer: Callable[[str], None]) -> str:
    """Many chunks over one session: each is a line ``<index> <sha256>`` then exactly its bytes, handled as
    a ``chunk`` request (same checks, same staging) and answered with one line, ``ok <what was done>`` or
    ``refused <rule>: <why>`` (a chunk whose SHA-256 differs is not marked held; the stream goes on). It ends
    at the end of the input between two chunks; a chunk cut short ends it, that chunk not marked held."""
    received = refused = 0
    while True:
        header = stdin.readline(_STREAM_HEADER)
        if not header:
            return f"stream of {info_hash}/{name} ended: {received} chunks received, {refused} refused"
        words = header.decode("ascii", "replace").split()
        if not header.endswith(b"\n") or len(words) != 2:
            raise _refuse(f"stream header {header[:80]!r} is not '<index> <sha256>'")
        try:
            message = _receive_chunk(dir_fd, info_hash, name, size, [chunk_size, *words], stdin, exact_end=False)
        except ChunkMismatch as exc:  # its bytes were read: the next header follows
            refused += 1
            answer(f"refused {exc}")
            continue
        received += 1
        answer(f"ok {message}")


def _is_complete(dir_fd: int, name: str) -> bool:
    """Whether the staging holds the assembled image ``<file>`` (a regular file; a planted link is not)."""
    try:
        return stat.S_ISREG(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def _locked_part(dir_fd: int, name: str) -> Optional[int]:
    """The image's ``.<file>.part``, open and locked (exclusive ``flock``); None once the image is complete.

    The lock is on the file the name ``.<file>.part`` still names once the lock is held: a request that
    waited for it while another completed the image (renaming the part file to ``<file>``) opens the name
    again, and must never write into what is now the complete image."""
    part = f".{name}.part"
    while not _is_complete(dir_fd, name):
        part_fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640, dir_fd=dir_fd)
        try:
            fcntl.flock(part_fd, fcntl.LOCK_EX)
            opened = os.fstat(part_fd)
            try:
                named = os.stat(part, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                named = None
        except BaseException:
            os.close(part_fd)
            raise
        if named is not None and (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino):
            return part_fd
        os.close(part_fd)
    return None


def _marked_held(have_fd: Optional[int], index: int) -> bool:
    if have_fd is None:
        return False
    try:
        os.stat(str(index), dir_fd=have_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _open_markers(dir_fd: int, have: str, create: bool) -> Optional[int]:
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(have, 0o750, dir_fd=dir_fd)
    try:
        return os.open(have, _DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        if create:
            raise
        return None


def _receive_chunk(dir_fd: int, info_hash: str, name: str, size: int, rest: List[str], stdin: BinaryIO,
                   exact_end: bool = True) -> str:
    """One chunk: written once, straight into ``.<file>.part`` at its offset while it is hashed; held (its
    marker ``.<file>.have/<index>``, what ``held_chunks`` and relaying senders read) only once its SHA-256
    matched and the part file was fsynced. A chunk held already is read and dropped, never written again."""
    chunk_size = _number(rest[0], "chunk size", MIN_CHUNK_SIZE, MAX_CHUNK_SIZE)
    total = chunk_count(size, chunk_size)
    index = _number(rest[1], "chunk", 0, total - 1)
    expected = rest[2]
    if not _SHA256.match(expected):
        raise _refuse(f"{expected[:80]!r} is not a SHA-256 (64 lower-case hex digits)")
    length = min(chunk_size, size - index * chunk_size)
    have = f".{name}.have"
    digest = hashlib.sha256()

    def check(what: str) -> None:
        if digest.hexdigest() != expected:
            raise ChunkMismatch("push-refused", f"chunk {index} of {info_hash}/{name} has SHA-256 "
                                f"{digest.hexdigest()}, the sender announced {expected}; {what}")

    def already(state: str) -> str:
        _copy_in(stdin, None, length, digest, exact_end)
        check("not held from this copy")
        return f"chunk {index} of {info_hash}/{name} already held ({state}); not written again"

    part_fd = _locked_part(dir_fd, name)
    if part_fd is None:
        return already("the image is complete")
    try:
        have_fd = _open_markers(dir_fd, have, create=False)
        try:
            if _marked_held(have_fd, index):
                return already("checked before")
        finally:
            if have_fd is not None:
                os.close(have_fd)
        # Written once, at its offset, as it arrives. Until its SHA-256 matched and the part file was
        # fsynced the chunk is not marked held: the bytes of a chunk cut short or with another SHA-256 stay
        # in the part file as space that is not valid yet (nobody reads them: held_chunks and the relays
        # go by the markers, and the image is renamed only once every chunk is marked), and the next copy
        # of the chunk overwrites them. Only this chunk's range is written: held chunks are never touched.
        _copy_in(stdin, part_fd, length, digest, exact_end, offset=index * chunk_size, sync=False)
        check("not marked held")
        os.fsync(part_fd)
        # The staging's peak for this chunk: the (sparse) part file, this chunk included; nothing beside it.
        disk = os.fstat(part_fd).st_blocks * 512
        have_fd = _open_markers(dir_fd, have, create=True)
        try:
            with contextlib.suppress(FileExistsError):
                os.close(os.open(str(index), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640,
                                 dir_fd=have_fd))
            held = {int(entry) for entry in os.listdir(have_fd) if entry.isdigit()}
            if held >= set(range(total)):
                os.ftruncate(part_fd, size)
                os.fsync(part_fd)
                os.replace(f".{name}.part", name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                for entry in os.listdir(have_fd):
                    os.unlink(entry, dir_fd=have_fd)
                os.rmdir(have, dir_fd=dir_fd)
                os.fsync(dir_fd)
                return (f"received chunk {index} of {info_hash}/{name}; complete ({size} bytes); "
                        f"staging held {disk} bytes")
        finally:
            os.close(have_fd)
        return f"received chunk {index} of {info_hash}/{name} ({len(held)} of {total}); staging held {disk} bytes"
    finally:
        os.close(part_fd)


def held_chunks(root: str, info_hash: str, name: str, size: int, chunk_size: int) -> List[int]:
    """The chunks a receiver holds (all of them once the image is complete)."""
    directory = os.path.join(root, info_hash)
    if os.path.isfile(os.path.join(directory, name)) and not os.path.islink(os.path.join(directory, name)):
        return list(range(chunk_count(size, chunk_size)))
    try:
        return sorted(int(entry) for entry in os.listdir(os.path.join(directory, f".{name}.have"))
                      if entry.isdigit())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _syslog(message: str) -> None:
    import syslog  # noqa: PLC0415 - POSIX only, and only the forced command on a host logs

    syslog.openlog("vmcloud-push-receive", 0, syslog.LOG_DAEMON)
    syslog.syslog(syslog.LOG_INFO, message)


def receiver_main(argv: Optional[Sequence[str]] = None, environ=None, stdin=None, stderr=None,
                  log: Optional[Callable[[str], None]] = None, stdout=None) -> int:
    """``vmcloud-push-receive <root>``: the forced command; the request is $SSH_ORIGINAL_COMMAND.
    Each request's answer goes back to the sender (stderr; a stream's per-chunk answers on stdout) and
    to ``log`` (syslog, tag ``vmcloud-push-receive``) with the sender's address from $SSH_CONNECTION."""
    argv = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if environ is None else environ
    stderr = stderr or sys.stderr
    stdout = stdout or sys.stdout
    log = log or _syslog
    sender = (environ.get("SSH_CONNECTION") or "?").split()[0]
    if argv == ["--help"]:
        stderr.write("usage: vmcloud-push-receive /absolute/staging/area (the request is $SSH_ORIGINAL_COMMAND: "
                     "put <info_hash> <file> <size> | chunk <info_hash> <file> <size> <chunk_size> <index> "
                     "<sha256> | stream <info_hash> <file> <size> <chunk_size>, then per chunk a line "
                     "'<index> <sha256>' and its bytes)\n")
        return 0
    if len(argv) != 1 or not os.path.isabs(argv[0]):
        stderr.write("push-refused: usage: vmcloud-push-receive /absolute/staging/area\n")
        return 2
    code = 0

    def answer(line: str) -> None:
        stdout.write(line + "\n")
        stdout.flush()
        with contextlib.suppress(OSError):
            log(f"from {sender}: {line.split(' ', 1)[1] if line.startswith('ok ') else line}")

    try:
        message = receive(argv[0], environ.get("SSH_ORIGINAL_COMMAND", ""), stdin or sys.stdin.buffer,
                          answer=answer)
    except VmcloudError as exc:
        message, code = str(exc), 1
    except OSError as exc:
        message, code = f"push-refused: {exc.strerror or exc}; nothing more was written", 1
    stderr.write(message + "\n")
    with contextlib.suppress(OSError):
        log(f"from {sender}: {message}")
    return code


# --------------------------------------------------------------------------- sender


def send(source: str, ssh: Sequence[str], request: str, offset: int = 0, length: Optional[int] = None) -> str:
    """Send ``length`` bytes of ``source`` from ``offset`` through ``ssh`` (the command line up to the
    host) with ``request`` as the remote command; return the receiver's answer or raise ``push-failed``."""
    with open(source, "rb") as handle:
        handle.seek(offset)
        left = os.fstat(handle.fileno()).st_size - offset if length is None else length
        process = subprocess.Popen([*ssh, request], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,  # noqa: S603
                                   stderr=subprocess.PIPE)
        try:
            while left > 0:
                data = handle.read(min(BLOCK, left))
                if not data:
                    break
                process.stdin.write(data)
                left -= len(data)
            process.stdin.close()
        except BrokenPipeError:
            pass
        answer = process.stderr.read().decode("utf-8", "replace").strip()
        if process.wait() != 0:
            raise VmcloudError("push-failed", f"{request.split()[0]} to {ssh[-1] if ssh else '?'} failed: "
                               f"{answer or 'exit ' + str(process.returncode)}")
    return answer


DEFAULT_KEY = "/etc/vmcloud/push/id_ed25519"
DEFAULT_KNOWN_HOSTS = "/etc/vmcloud/push/known_hosts"
_HOST = re.compile(r"\A[A-Za-z0-9_.:\[\]-]{1,253}\Z")


def ssh_command(destination: str, port: int = 22, user: str = "vmcloud-push", key: str = DEFAULT_KEY,
                known_hosts: str = DEFAULT_KNOWN_HOSTS, ssh: str = "ssh") -> List[str]:
    """The ssh command line to a receiver: the fleet key only, its known host keys only, no agent, no
    forwarding, no password prompt (the receiver's forced command does the rest)."""
    if not _HOST.match(destination or "") or destination.startswith("-"):
        raise VmcloudError("option-invalid", f"push destination {str(destination)[:80]!r} is not a host name or "
                           "address")
    return [ssh, "-i", key, "-p", str(int(port)), "-l", user, "-T", "-a", "-x",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={known_hosts}", "-o", "ClearAllForwardings=yes", destination]


def push_image(sources: Sequence[str], info_hash: str, name: str, size: int, ssh: Sequence[str],
               chunk: Optional[int] = None, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Dict[str, object]:
    """Send the whole image (``put``) or one chunk of it (``chunk``) from the first of ``sources`` that
    exists (a complete file, else a partial ``.part`` file that holds the chunk)."""
    _parse(f"put {info_hash} {name} 0")  # the same names the receiver accepts, refused before connecting
    source = next((path for path in sources if os.path.isfile(path)), None)
    if source is None:
        raise VmcloudError("staged-missing", f"none of {', '.join(sources)} exists on the sender; it holds nothing "
                           "to push")
    if chunk is None:
        if os.path.getsize(source) != size:
            raise VmcloudError("size-mismatch", f"{source} holds {os.path.getsize(source)} bytes, the index says "
                               f"{size}; not pushed")
        answer = send(source, ssh, f"put {info_hash} {name} {size}", 0, size)
        return {"source": source, "bytes": size, "answer": answer}
    if os.path.basename(source) == f".{name}.part" and not os.path.exists(
            os.path.join(os.path.dirname(source), f".{name}.have", str(chunk))):
        raise VmcloudError("staged-missing", f"{source} does not hold chunk {chunk} yet; not pushed")
    offset = chunk * chunk_size
    length = min(chunk_size, size - offset)
    with open(source, "rb") as handle:
        handle.seek(offset)
        data_digest = hashlib.sha256()
        left = length
        while left:
            data = handle.read(min(BLOCK, left))
            if not data:
                raise VmcloudError("staged-missing", f"{source} ends before chunk {chunk}; not pushed")
            data_digest.update(data)
            left -= len(data)
    request = f"chunk {info_hash} {name} {size} {chunk_size} {chunk} {data_digest.hexdigest()}"
    answer = send(source, ssh, request, offset, length)
    return {"source": source, "bytes": length, "answer": answer}


def _chunk_source(sources: Sequence[str], name: str, chunk: int) -> Optional[str]:
    """The file of ``sources`` that holds ``chunk`` now: a complete image, else a partial ``.part`` whose
    receiver acknowledged the chunk (``.<file>.have/<chunk>``)."""
    for path in sources:
        if os.path.basename(path) == f".{name}.part":
            if os.path.exists(os.path.join(os.path.dirname(path), f".{name}.have", str(chunk))) and \
                    os.path.isfile(path):
                return path
        elif os.path.isfile(path):
            return path
    return None


def _read_chunk(source: str, offset: int, length: int, chunk: int) -> bytes:
    with open(source, "rb") as handle:
        handle.seek(offset)
        data = handle.read(length)
    if len(data) != length:
        raise VmcloudError("staged-missing", f"{source} ends before chunk {chunk}; not pushed")
    return data


class StreamSession:
    """One ssh session to one receiver that carries many chunks (``stream``): no new connection, key
    exchange or receiver start per chunk. ``send(chunk)`` returns the receiver's answer or raises
    ``push-failed`` (the session is gone: the receiver, its host or the link failed) or ``push-refused``
    (the receiver refused this chunk; the session goes on)."""

    def __init__(self, ssh: Sequence[str], info_hash: str, name: str, size: int, chunk_size: int) -> None:
        _parse(f"stream {info_hash} {name} {size} {chunk_size}")  # refused before connecting, as the receiver would
        self.ssh, self.name, self.size, self.chunk_size = list(ssh), name, size, chunk_size
        self.destination = ssh[-1] if ssh else "?"
        self.process = subprocess.Popen([*ssh, f"stream {info_hash} {name} {size} {chunk_size}"],  # noqa: S603
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def _gone(self, what: str) -> VmcloudError:
        with contextlib.suppress(OSError, ValueError):
            self.process.stdin.close()
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        answer = self.process.stderr.read().decode("utf-8", "replace").strip()
        return VmcloudError("push-failed", f"stream to {self.destination} failed {what}: "
                            f"{answer or 'exit ' + str(code)}")

    def send(self, sources: Sequence[str], chunk: int) -> str:
        source = _chunk_source(sources, self.name, chunk)
        if source is None:
            raise VmcloudError("staged-missing", f"none of {', '.join(sources)} holds chunk {chunk}; not pushed")
        offset = chunk * self.chunk_size
        data = _read_chunk(source, offset, min(self.chunk_size, self.size - offset), chunk)
        try:
            self.process.stdin.write(f"{chunk} {hashlib.sha256(data).hexdigest()}\n".encode("ascii"))
            self.process.stdin.write(data)
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise self._gone(f"at chunk {chunk}") from exc
        line = self.process.stdout.readline().decode("utf-8", "replace").strip()
        if line.startswith("ok "):
            return line[3:]
        if line.startswith("refused "):
            raise VmcloudError("push-refused", f"{self.destination} refused chunk {chunk}: {line[8:]}")
        raise self._gone(f"at chunk {chunk}")

    def close(self) -> str:
        with contextlib.suppress(OSError, ValueError):
            self.process.stdin.close()
        code = self.process.wait()
        answer = self.process.stderr.read().decode("utf-8", "replace").strip()
        if code != 0:
            raise VmcloudError("push-failed", f"stream to {self.destination} ended with exit {code}: {answer}")
        return answer


def serve_queue(sources: Sequence[str], queue: Sequence[Tuple[str, int]], ssh_for: Callable[[str], List[str]],
                info_hash: str, name: str, size: int, chunk_size: int, stall_seconds: float = 120.0,
                poll_seconds: float = 0.1) -> Dict[str, object]:
    """One sender's part of a pipelined tsunami (``_tsunami.serve``): its queue of (destination, chunk), each
    sent as soon as this host holds the chunk, over one kept ``StreamSession`` per destination."""
    from ._tsunami import serve  # noqa: PLC0415 - the receiver's hosts need only this file and _errors

    sessions: Dict[str, StreamSession] = {}
    answered: Set[str] = set()  # destinations whose session answered a chunk
    reopened: Set[str] = set()

    def send_one(destination: str, chunk: int) -> None:
        if destination not in sessions:
            sessions[destination] = StreamSession(ssh_for(destination), info_hash, name, size, chunk_size)
        try:
            sessions[destination].send(sources, chunk)
        except VmcloudError as exc:
            session = sessions.pop(destination)
            with contextlib.suppress(VmcloudError, OSError):
                session.close()
            # A session gone before its first answer was most likely turned away at the handshake: sshd's
            # MaxStartups refuses connections beyond its limit when many senders reach one receiver at once.
            # Opened once more after a short, spread pause; a host that is really down fails again.
            if exc.rule != "push-failed" or destination in answered or destination in reopened:
                raise
            reopened.add(destination)
            time.sleep(REOPEN_PAUSE_SECONDS * (1 + random.random()))  # noqa: S311 - spreading, not secrecy
            sessions[destination] = StreamSession(ssh_for(destination), info_hash, name, size, chunk_size)
            send_one(destination, chunk)
            return
        answered.add(destination)

    try:
        result = serve(queue, lambda chunk: _chunk_source(sources, name, chunk) is not None, send_one,
                       stall_seconds=stall_seconds, poll_seconds=poll_seconds)
    finally:
        closing_errors = []
        for destination, session in sessions.items():
            try:
                session.close()
            except VmcloudError as exc:
                closing_errors.append({"destination": destination, "rule": exc.rule, "msg": str(exc)})
    result["closing"] = closing_errors
    return result


# --------------------------------------------------------------------------- round bookkeeping


def push_state(method: str, holders: Sequence[str], lackers: Sequence[str], size: int,
               chunk_size: int = DEFAULT_CHUNK_SIZE) -> Dict[str, object]:
    """The state a push carries from round to round (playbooks/push.yml): plain data, for set_fact."""
    if method not in ("scp_wave", "scp_tsunami"):
        raise VmcloudError("option-invalid", f"push method {method!r} is not scp_wave or scp_tsunami")
    lacking = [host for host in dict.fromkeys(lackers) if host not in set(holders)]
    if not chunk_size:  # 0: chosen from the image's size and the number of receivers
        from ._tsunami import choose_chunk_size  # noqa: PLC0415 - the receiver's hosts need only this file

        chunk_size = choose_chunk_size(size, len(lacking))
    return {"method": method, "holders": list(dict.fromkeys(holders)), "lackers": lacking,
            "chunks": chunk_count(size, chunk_size) if method == "scp_tsunami" else 1, "held": {},
            "chunk_size": int(chunk_size), "dead": []}


def pass_queues(state: Dict[str, object], addresses: Optional[Dict[str, str]] = None) -> Dict[str, List[Dict]]:
    """A pipelined tsunami pass (playbooks/tasks/push_pass.yml): every sender's queue of ``{destination, address,
    chunk}``, planned (``_tsunami.plan_queues``) from what the receivers hold now, the dead senders excluded;
    {} when nobody lacks a chunk or nobody left can send what is missing (the final check names the hosts)."""
    from ._tsunami import plan_queues  # noqa: PLC0415 - the receiver's hosts need only this file

    addresses = addresses or {}
    try:
        queues = plan_queues(int(state["chunks"]), state["holders"], state["lackers"], held=state["held"],
                             dead_senders=state.get("dead", []))
    except VmcloudError:
        if not state["held"]:
            raise  # the first pass: no host holds the image at all (push-no-source)
        return {}
    return {sender: [{"destination": dst, "address": addresses.get(dst) or dst, "chunk": chunk} for dst, chunk in queue]
            for sender, queue in queues.items()}


def record_pass(state: Dict[str, object], held: Dict[str, Sequence[int]],
                dead: Sequence[str] = ()) -> Dict[str, object]:
    """The state after a pass: what each receiver said it holds now (its receiver acknowledged those chunks;
    a host that said nothing keeps what it held before), and the senders whose run failed as a whole (they
    send nothing in the next pass)."""
    now = {host: sorted({int(c) for c in chunks}) for host, chunks in dict(held).items()}
    return {**state, "held": {**dict(state["held"]), **now}, "dead": sorted(set(state.get("dead", [])) | set(dead))}


def _wave_only(state: Dict[str, object], what: str) -> None:
    if state["method"] != "scp_wave":
        raise VmcloudError("option-invalid", f"{what} plans the rounds of scp_wave; {state['method']} is pipelined "
                           "(its passes: push_queues and push_record)")


def next_round(state: Dict[str, object]) -> List[Dict[str, object]]:
    """The pairs of a wave's next round, planned from who holds the image now; [] when nobody lacks it."""
    _wave_only(state, "push_round")
    rounds = plan_wave(state["holders"], state["lackers"])
    return [{"source": src, "destination": dst} for src, dst in (rounds[0] if rounds else [])]


def advance(state: Dict[str, object], pairs: Sequence[Dict[str, object]], delivered: Dict[str, bool],
            verified: Dict[str, bool]) -> Dict[str, object]:
    """A wave's state after a round. ``delivered``: by destination, whether its push succeeded; ``verified``:
    by host, whether its store holds the image now (the promotion checked it against the signed index).
    A receiver becomes a holder only when verified."""
    _wave_only(state, "push_advance")
    state = {**state, "holders": list(state["holders"]), "lackers": list(state["lackers"])}
    done = [pair["destination"] for pair in pairs if delivered.get(pair["destination"])
            and verified.get(pair["destination"])]
    state["holders"] += [host for host in done if host not in state["holders"]]
    # A receiver that failed this round goes to the back of the queue: planned first again, it would
    # take a source every round while the hosts behind it never get one.
    failed = [pair["destination"] for pair in pairs if pair["destination"] not in done]
    state["lackers"] = [host for host in state["lackers"] if host not in done and host not in failed] + [
        host for host in state["lackers"] if host in failed]
    return state
