# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Atomic file writes. Private to the collection; not a public API.

A write goes to a temporary file in the destination's own directory (so the
final rename never crosses a filesystem), is fsynced, renamed over the target,
and the directory is fsynced so the rename itself survives a crash.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Any, Optional, TextIO


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
