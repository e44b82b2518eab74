# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Atomic file writes. Private to the collection; not a public API.

A write goes to a temporary file in the destination's own directory (so the
final rename never crosses a filesystem), is fsynced, renamed over the target,
and the directory is fsynced so the rename itself survives a crash.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import sys
import tempfile
from typing import Any, Optional, TextIO

from ._errors import StoreError

# Reads never follow a symlink, never block on a FIFO and never take a terminal.
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
_READ_CHUNK = 1 << 20


def fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def differs(path: str, data: bytes) -> bool:
    """Whether ``path`` does not hold exactly ``data`` (a missing file differs): write only then."""
    try:
        with open(path, "rb") as handle:
            return handle.read() != data
    except FileNotFoundError:
        return True


def write_atomic(path: str, data: bytes, mode: int = 0o644, owner: Optional[tuple] = None) -> None:
    """Replace ``path`` with ``data`` atomically (temp file, fsync, rename)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_path, mode)
        if owner is not None:
            os.chown(tmp_path, owner[0], owner[1])
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_path)
        raise
    fsync_directory(directory)


def promote_atomic(staged_path: str, final_path: str) -> None:
    """Move a fully written and verified file into place on the same filesystem."""
    with open(staged_path, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(staged_path, final_path)
    fsync_directory(os.path.dirname(os.path.abspath(final_path)))


def write_line(value: Any, file: Optional[TextIO] = None) -> None:
    """``print(value, file=file)`` for the commands that live in module_utils (imgdist, the seeder
    service): their output is lines on a stream, while a module's is exit_json."""
    (sys.stdout if file is None else file).write(f"{value}\n")


def sha256_file(path: str) -> str:
    """SHA-256 of the regular file at ``path``; a symlink, FIFO or device is refused, never opened
    for reading (``image-not-regular-file``), so nothing hangs on a FIFO."""
    try:
        fd = os.open(path, READ_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StoreError("image-not-regular-file", f"{path} is a symlink, not a regular file") from exc
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StoreError("image-not-regular-file", f"{path} is not a regular file")
        digest = hashlib.sha256()
        for chunk in iter(lambda: os.read(fd, _READ_CHUNK), b""):
            digest.update(chunk)
        return digest.hexdigest()
    finally:
        os.close(fd)
