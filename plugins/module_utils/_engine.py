# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The BitTorrent engine interface used by modules, roles and the imgdist CLI.

Private to the collection; not a public API.

Callers talk to a ``TorrentEngine`` made by ``engine_for(name, **options)`` and
never to a daemon directly, so another engine (libtorrent-rasterbar) can be added
by writing one more implementation and one more line in ``engine_for``.

Conventions every engine follows:
- info-hashes are v1, 40 lowercase hex characters, in and out;
- ``add`` is idempotent (an already loaded torrent is not loaded again);
- ``remove`` never deletes downloaded data unless ``delete_data`` is true: the image
  store's lifecycle belongs to the caller;
- no method leaves files behind (no watch directories).
"""

from __future__ import annotations

import abc
import pwd
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional, Sequence

from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import EngineError

ENGINES = ("rtorrent", "libtorrent")
# The engine a caller gets when it names none (the modules' ``engine`` option, imgdist.yml's
# ``engine``): libtorrent, the vmcloud seeder, chosen by measurement (docs/performance.md), as the
# roles' ``vmcloud_engine``. Its socket and user below are the libtorrent_seeder role's defaults.
DEFAULT_ENGINE = "libtorrent"
# Seconds an engine call may take (rtorrent over SCGI, the vmcloud seeder over its socket).
DEFAULT_RPC_TIMEOUT = 30.0
# Each engine's control socket and the user its daemon runs as (the rtorrent and
# libtorrent_seeder roles' defaults): what a caller gets when it names only the engine.
DEFAULT_SOCKETS = {"rtorrent": "/run/rtorrent/rpc.socket", "libtorrent": "/run/vmcloud/seeder.socket"}
DEFAULT_USERS = {"rtorrent": "rtorrent", "libtorrent": "vmcloud-seeder"}
STATES = ("downloading", "seeding", "stopped", "checking", "error")


@dataclass(frozen=True)
class TorrentStatus:
    """One torrent as an engine sees it."""

    info_hash: str
    name: str
    size_bytes: int
    completed_bytes: int
    complete: bool
    state: str  # one of STATES
    down_rate: int  # bytes per second
    up_rate: int  # bytes per second
    uploaded_bytes: int  # total uploaded since the engine loaded it
    ratio: float  # uploaded / completed
    peers: int  # connected peers
    message: str
    directory: str
    base_path: str  # path of the content (the file, for a single-file torrent)

    @property
    def progress(self) -> float:
        return self.completed_bytes / self.size_bytes if self.size_bytes else 0.0

    def to_dict(self) -> dict[str, Any]:
        result = asdict(self)
        result["progress"] = round(self.progress, 4)
        return result


class DownloadTimeout(EngineError):
    """The download did not complete in time; it continues in the engine."""

    def __init__(self, message: str, status: Optional[TorrentStatus]) -> None:
        super().__init__("download-timeout", message)
        self.status = status


class TorrentEngine(abc.ABC):
    """What vmcloud needs from a BitTorrent engine."""

    name = "abstract"

    @abc.abstractmethod
    def add(self, torrent_bytes: bytes, directory: str, start: bool = True, web_seeds: Sequence[str] = ()) -> str:
        """Load a torrent with its content in ``directory``; return its info-hash.

        Content already in ``directory`` is hash-checked, so a complete copy seeds
        at once. Adding a torrent that is already loaded in the same directory
        changes nothing; in another directory it is refused. ``web_seeds`` are
        BEP 19 HTTP sources of the content; engines that cannot use them (rtorrent)
        ignore them.
        """

    @abc.abstractmethod
    def status(self, info_hash: str) -> Optional[TorrentStatus]:
        """The torrent's status, or None when the engine does not have it."""

    @abc.abstractmethod
    def list(self) -> list[TorrentStatus]:
        """Every torrent the engine has."""

    @abc.abstractmethod
    def remove(self, info_hash: str, delete_data: bool = False) -> bool:
        """Drop the torrent from the engine; return whether it was there.

        Downloaded data stays on disk unless ``delete_data`` is true.
        """

    @abc.abstractmethod
    def ensure_seeding(self, info_hash: str) -> bool:
        """Start the torrent if it is stopped or paused; return whether that changed anything."""

    @abc.abstractmethod
    def recheck(self, info_hash: str) -> None:
        """Hash-check the torrent's data again (after the store was touched)."""

    def announce(self, info_hash: str) -> bool:
        """Ask the torrent's trackers for peers now, not at the next interval (a tracker that
        restarted knows no peers until they announce again); return whether it was asked.

        The default asks nothing (an engine that re-announces by itself needs no more)."""
        del info_hash
        return False

    def wait_complete(
        self,
        info_hash: str,
        timeout: float,
        poll_interval: float = 1.0,
        on_progress: Optional[Callable[[TorrentStatus], None]] = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> TorrentStatus:
        """Poll until the torrent is complete; raise ``DownloadTimeout`` after ``timeout`` seconds.

        On timeout the torrent is left in the engine, so the download continues.
        """
        deadline = clock() + timeout
        status = None
        while True:
            status = self.status(info_hash)
            if status is None:
                raise EngineError(
                    "torrent-not-loaded", f"{info_hash} disappeared from the {self.name} engine while waiting"
                )
            if on_progress is not None:
                on_progress(status)
            if status.complete and status.state != "checking":
                return status
            if status.state == "error":
                raise EngineError(
                    "download-error",
                    f"{info_hash} is in error in the {self.name} engine: {status.message or 'no message'}",
                )
            remaining = deadline - clock()
            if remaining <= 0:
                raise DownloadTimeout(
                    f"{info_hash} is not complete after {timeout:g} s: {status.completed_bytes} of "
                    f"{status.size_bytes} bytes, {status.peers} peers, state {status.state}"
                    + (f", engine says {status.message!r}" if status.message else "")
                    + "; it stays in the engine and keeps downloading",
                    status,
                )
            sleep(min(poll_interval, remaining))


def default_socket(name: str) -> str:
    """The control socket of engine ``name`` where its role puts it."""
    if name not in DEFAULT_SOCKETS:
        raise EngineError("engine-unknown", f"unknown BitTorrent engine {name!r}; known: {', '.join(ENGINES)}")
    return DEFAULT_SOCKETS[name]


def default_engine_user(name: str, configured: Optional[str] = None) -> Optional[str]:
    """Who owns what engine ``name`` downloads: ``configured`` when given, else the user its role
    creates when that user exists here, else None (the store then accepts only root's files)."""
    if configured:
        return configured
    user = DEFAULT_USERS.get(name)
    try:
        return pwd.getpwnam(user).pw_name if user else None
    except KeyError:
        return None


def engine_for(name: str, **options: Any) -> TorrentEngine:
    """Make the engine called ``name`` (one of ``ENGINES``) with its own options.

    A ``socket`` of None (or none given) is the engine's default socket.
    """
    if options.get("socket") is None:
        options["socket"] = default_socket(name)
    if name == "rtorrent":
        from ansible_collections.vmcloud.fleet.plugins.module_utils._engine_rtorrent import RtorrentEngine

        return RtorrentEngine(**options)
    if name == "libtorrent":
        from ansible_collections.vmcloud.fleet.plugins.module_utils._engine_libtorrent import LibtorrentEngine

        return LibtorrentEngine(**options)
    raise EngineError("engine-unknown", f"unknown BitTorrent engine {name!r}; known: {', '.join(ENGINES)}")


@dataclass(frozen=True)
class Reconciled:
    """The outcome of ``reconcile``: what changed (or would), and the torrent's status after."""

    changed: bool
    action: str  # "none", "add", "start", "remove"
    before: dict
    after: dict
    status: Optional[TorrentStatus]


def _presence(status: Optional[TorrentStatus]) -> dict[str, Any]:
    if status is None:
        return {"present": False}
    return {"present": True, "directory": status.directory, "state": status.state}


def reconcile(
    engine: TorrentEngine,
    *,
    info_hash: str,
    state: str,
    directory: Optional[str] = None,
    torrent_bytes: Optional[bytes] = None,
    delete_data: bool = False,
    check_mode: bool = False,
    web_seeds: Sequence[str] = (),
) -> Reconciled:
    """Bring one torrent to ``state`` (present: loaded and started; absent: not loaded).

    In check mode only reading calls are made; ``after`` is the predicted state.
    The caller has already checked ``torrent_bytes`` against ``info_hash``. ``web_seeds``
    go with an add (engines without web-seed support ignore them).
    """
    current = engine.status(info_hash)
    before = _presence(current)
    if state == "absent":
        if current is None:
            return Reconciled(False, "none", before, before, None)
        if not check_mode:
            engine.remove(info_hash, delete_data=delete_data)
        return Reconciled(True, "remove", before, {"present": False}, None)
    if state != "present":
        raise EngineError("state-invalid", f"unknown state {state!r}; expected present or absent")
    if directory is None or torrent_bytes is None:
        raise EngineError("torrent-missing", "state=present needs the .torrent and a download directory")
    if current is None:
        if check_mode:
            return Reconciled(True, "add", before, {"present": True, "directory": directory, "state": "checking"}, None)
        engine.add(torrent_bytes, directory, start=True, web_seeds=web_seeds)
        status = engine.status(info_hash)
        return Reconciled(True, "add", before, _presence(status), status)
    if current.directory.rstrip("/") != directory.rstrip("/"):
        raise EngineError(
            "torrent-directory-conflict",
            f"{info_hash} is already loaded with its data in {current.directory}, not {directory}; "
            "remove it (state=absent) first to move it",
        )
    if current.state not in ("stopped", "error"):
        return Reconciled(False, "none", before, before, current)
    if check_mode:
        return Reconciled(True, "start", before, dict(before, state="checking"), current)
    engine.ensure_seeding(info_hash)
    status = engine.status(info_hash)
    return Reconciled(True, "start", before, _presence(status), status)
