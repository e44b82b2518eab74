# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The per-host lock: one writer of a hypervisor's vmcloud state at a time.

Private to the collection; not a public API. Plain Python (no ansible import).

Every writer of the rollback mark (``_index_state``), of the kept verified index and of the
store manifest takes it: ``_sync.sync`` (the image_sync module, ``imgdist sync``), the
image_store and image_promote modules, the image_index module when it persists state, and ``imgdist --enable`` /
``--disable``. The index is fetched and accepted inside it, so a run that waited can never
converge the host back to an older index than the run before it accepted (it is refused as a
rollback instead).

The lock is ``flock(2)`` on ``<state_dir>/sync.lock``: the kernel drops it when the holder dies,
so a killed run never leaves the host locked. It is re-entrant within one process (the image_index
path inside a sync, ``imgdist sync`` checking its disabled flag first): a nested ``host_lock`` on the
same file is a no-op.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from typing import Callable, Dict, Iterator, Optional, TextIO, Tuple

from ._errors import VmcloudError

LOCK_NAME = "sync.lock"
DEFAULT_LOCK_TIMEOUT = 3600.0
POLL_SECONDS = 0.5

_held: Dict[Tuple[int, str], list] = {}  # (pid, real path) -> [open handle, depth]: this process's locks


def lock_path(state_dir: str) -> str:
    """The host's lock file, in the index state directory every writer shares."""
    return os.path.join(state_dir, LOCK_NAME)


@contextlib.contextmanager
def host_lock(path: str, timeout: Optional[float] = None, clock: Callable[[], float] = time.monotonic,
              sleep: Callable[[float], None] = time.sleep) -> Iterator[None]:
    """Hold the host lock at ``path`` (created when missing) for the ``with`` block.

    Waits up to ``timeout`` seconds (default ``DEFAULT_LOCK_TIMEOUT``) for another holder; then
    raises ``lock-timeout``.
    """
    timeout = DEFAULT_LOCK_TIMEOUT if timeout is None else timeout
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    key = (os.getpid(), os.path.realpath(path))  # a forked child holds none of its parent's locks
    if key in _held:
        _held[key][1] += 1
        try:
            yield
        finally:
            _held[key][1] -= 1
        return
    deadline = clock() + timeout
    handle: TextIO = open(path, "a", encoding="ascii")  # noqa: SIM115 - held across the yield
    try:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if clock() >= deadline:
                    raise VmcloudError(
                        "lock-timeout",
                        f"another vmcloud run (imgdist sync, image_sync, image_store, imgdist --enable/--disable) "
                        f"has held {path} for more than {timeout:g} s; wait for it to finish "
                        "(systemctl status vmcloud-imgdist-sync.service) and run again",
                    ) from None
                sleep(POLL_SECONDS)
        _held[key] = [handle, 1]
        try:
            yield
        finally:
            del _held[key]
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()
