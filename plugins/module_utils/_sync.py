# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pull path of a hypervisor as one call: what the image_sync module and ``imgdist sync`` share.

Private to the collection; not a public API. Plain Python (no ansible import): it runs on
hypervisors under Debian's python3.

``sync`` does what the hypervisor role's tasks do, in the same order and with the same paths:

1. fetch and verify the signed index (``fetch_and_accept``);
2. select the host's images (``selection_for``: endorsed, approved, targeted, not blocked), check
   the guards below, then advance the rollback mark (``commit_accepted``) and keep a copy of the
   index at ``<state_dir>/verified-index.yaml`` for offline checks;
3. per desired image: fetch its .torrent (size-capped), verify it against the index entry
   (SHA-256 of the file and info-hash; SHA-1 for legacy lists) and write it atomically to
   ``<torrent_dir>/<info_hash>.torrent``; hand it to the engine with its data in
   ``<staging_dir>/<info_hash>`` (``reconcile``: added when absent, restarted when stopped);
4. wait for the downloads (one deadline for all of them: the engine downloads them in
   parallel), and promote each into the store (``ImageStore.promote``: SHA-256 checked while
   copying or unpacking, atomic); while waiting (``_Watch``) a download the staging filesystem
   cannot hold fails at once (``staging-full``), one with no peers is announced again, and one
   stalled with no peers is loaded again once; a held image whose seeding copy went bad
   (``staged_copy_bad``) is loaded again so that its bad pieces are fetched again;
5. retire what is no longer desired with the same plan as the image_store module
   (``_reconcile_plan.plan_reconcile`` / ``_reconcile_execute.apply_plan``: plain names, confinement,
   identity recheck, in use, ``not_desired`` and the quota): a superseded image stays while a desired
   image of its name is not in the store (``superseded_pending``), unless it is blocked or withdrawn
   from the index; then
   drop from the engine, staging and .torrent files what no desired or still-held image uses.

Before anything changes (the rollback mark included), undefined approvals (``approvals-undefined``),
two desired images under one file name (``desired-conflict``) and a run that would retire more
than ``retire_max_percent`` of the managed images (``retire-guard``) stop the run. Everything from
the index fetch on runs under the host lock (``_lock``).

A failure on one image (a .torrent that does not verify or whose server answers garbage, a
download timeout, a SHA-256 mismatch) is recorded for that image (``failures``) and the others go
on; a refused index or malformed approvals stop the run before anything changes. Check mode reads
everything (the index, .torrent files, the engine, the store) and returns the same report a real
run would, changing nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Set

from ._approvals_record import check_config_current
from ._approvals_record import record as record_approvals
from ._engine import TorrentEngine, TorrentStatus, reconcile
from ._errors import ApprovalConfigError, VmcloudError
from ._fetch import read_source
from ._index_service import commit_accepted, fetch_and_accept, selection_for
from ._io import differs, fsync_directory, write_atomic
from ._lock import host_lock, lock_path
from ._methods import BAD_CONTENT_RULES, Method, method_for
from ._reconcile_execute import apply_plan
from ._reconcile_execute import report as reconcile_report
from ._reconcile_plan import DEFAULT_RETIRE_MAX_PERCENT, plan_reconcile
from ._reconcile_plan import Options as ReconcileOptions
from ._selection import is_blocked, parse_approvals
from ._store import ImageStore, sha256_file
from ._torrent import (
    MAX_TORRENT_BYTES,
    TorrentError,
    TorrentInfo,
    check_info_hash,
    parse_torrent,
    read_torrent_file,
    verify_torrent,
)

DEFAULT_STAGING_DIR = "/var/lib/vmcloud/staging"
DEFAULT_TORRENT_DIR = "/var/lib/vmcloud/torrents"
DEFAULT_DOWNLOAD_TIMEOUT = 3600
DEFAULT_POLL_INTERVAL = 2.0
VERIFIED_INDEX_NAME = "verified-index.yaml"

# The options of the pull path beyond the index trust, selection and fetch options of _argspec
# (documented in plugins/modules/image_sync.py; imgdist maps its config file onto them).

_INFO_HASH_NAME = re.compile(r"\A[0-9a-f]{40}\Z")
_TORRENT_FILE_NAME = re.compile(r"\A([0-9a-f]{40})\.torrent\Z")

# Called with the image entry and the engine's status at each poll while waiting.
ProgressCallback = Callable[[Dict[str, Any], TorrentStatus], None]


# --------------------------------------------------------------------------- paths


def torrent_path(options: Mapping[str, Any], image: Dict[str, Any]) -> str:
    return os.path.join(options["torrent_dir"], image["torrent"]["info_hash"] + ".torrent")


def staging_path(options: Mapping[str, Any], image: Dict[str, Any]) -> str:
    return os.path.join(options["staging_dir"], image["torrent"]["info_hash"])


def staged_file(options: Mapping[str, Any], image: Dict[str, Any]) -> str:
    return os.path.join(staging_path(options, image), image["file"])


def verified_index_path(state_dir: str) -> str:
    return os.path.join(state_dir, VERIFIED_INDEX_NAME)


# --------------------------------------------------------------------------- report


@dataclass
class ImageOutcome:
    """What happened (or, in check mode, would happen) to one desired image."""

    uuid: str
    name: str
    version: Any
    info_hash: str
    path: str  # where the store keeps it
    torrent: str = "pending"  # present, fetched
    engine: str = "pending"  # none, add, start
    store: str = "pending"  # present, promoted, repaired
    status: Optional[Dict[str, Any]] = None  # the engine's view after the run
    failure: Optional[Dict[str, str]] = None  # {step, rule, message}

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass
class SyncReport:
    """The outcome of ``sync``: lists of uuids per action, failures, and the store before/after."""

    check_mode: bool
    index: Dict[str, Any]
    desired: List[str]
    selection: Dict[str, Any]  # what was left out, and why (not_endorsed, not_approved, ...)
    desired_images: List[Dict[str, Any]] = field(default_factory=list)  # their verified index entries
    images: List[ImageOutcome] = field(default_factory=list)
    index_saved: bool = False
    retired: List[str] = field(default_factory=list)  # uuids retired from the store
    removed: List[str] = field(default_factory=list)  # info-hashes dropped from engine/staging/torrents
    held_open: List[Dict[str, Any]] = field(default_factory=list)
    superseded_pending: List[Dict[str, Any]] = field(default_factory=list)  # kept until their successors arrive
    kept: List[str] = field(default_factory=list)  # no longer desired, kept (not_desired=keep)
    failures: List[Dict[str, Any]] = field(default_factory=list)  # not "failed": Ansible reserves that key
    held_before: List[str] = field(default_factory=list)
    held: List[str] = field(default_factory=list)  # uuids the store holds after the run
    store: Optional[Dict[str, Any]] = None  # the retirement plan's reconcile report (image_store's result)

    def _where(self, attribute: str, values: Iterable[str]) -> List[str]:
        wanted = set(values)
        return [image.uuid for image in self.images if getattr(image, attribute) in wanted]

    @property
    def fetched(self) -> List[str]:
        return self._where("torrent", ["fetched"])

    @property
    def added(self) -> List[str]:
        return self._where("engine", ["add"])

    @property
    def started(self) -> List[str]:
        return self._where("engine", ["start"])

    @property
    def promoted(self) -> List[str]:
        return self._where("store", ["promoted", "repaired"])

    @property
    def changed(self) -> bool:
        return bool(
            self.index.get("advanced")
            or self.index_saved
            or self.fetched
            or self.added
            or self.started
            or self.promoted
            or self.retired
            or self.removed
            or (self.store or {}).get("changed")
        )

    def fail(self, step: str, exc: BaseException, image: Optional[ImageOutcome] = None,
             info_hash: Optional[str] = None) -> None:
        rule, message = describe_error(exc)
        failure = {"uuid": image.uuid if image else None, "info_hash": image.info_hash if image else info_hash,
                   "step": step, "rule": rule, "message": message}
        if image is not None:
            image.failure = {"step": step, "rule": rule, "message": message}
        self.failures.append(failure)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "changed": self.changed,
            "check_mode": self.check_mode,
            "index": self.index,
            "index_saved": self.index_saved,
            "desired": self.desired,
            "fetched": self.fetched,
            "added": self.added,
            "started": self.started,
            "promoted": self.promoted,
            "retired": self.retired,
            "removed": self.removed,
            "held_open": self.held_open,
            "superseded_pending": self.superseded_pending,
            "kept": self.kept,
            "failures": self.failures,
            "held": self.held,
            "held_before": self.held_before,
            "selection": self.selection,
            "desired_images": self.desired_images,
            "images": [asdict(image) for image in self.images],
            "store": self.store,
        }


def describe_error(exc: BaseException) -> tuple:
    """(rule, message) of an error, for the report; one line each."""
    if isinstance(exc, VmcloudError):
        return exc.rule, " ".join(exc.message.split())
    if isinstance(exc, http.client.HTTPException):  # a broken HTTP answer urllib lets through
        return "fetch-protocol", " ".join(f"{type(exc).__name__}: {exc}".split())
    if isinstance(exc, OSError):
        return "io-error", " ".join(str(exc).split())
    return "internal-error", f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- .torrent files


def check_torrent_for(image: Dict[str, Any], data: bytes, max_bytes: int = MAX_TORRENT_BYTES) -> TorrentInfo:
    """Verify .torrent bytes against the index entry of ``image``.

    v2 entries: SHA-256 of the file, single file, info-hash, content name and size
    (``verify_torrent``). Legacy entries carry the SHA-1 of the file instead and no exact size.
    """
    torrent = image["torrent"]
    if torrent.get("sha256"):
        return verify_torrent(data, sha256=torrent["sha256"], info_hash=torrent["info_hash"],
                              name=image["file"], size=image["size"], max_bytes=max_bytes)
    actual = hashlib.sha1(data).hexdigest()  # noqa: S324 - the 2010 index records SHA-1 of the .torrent
    if actual != torrent.get("sha1"):
        raise TorrentError(
            "torrent-sha1-mismatch",
            f"the .torrent's SHA-1 is {actual}, the legacy index says {torrent.get('sha1')}; refusing it",
        )
    info = parse_torrent(data, max_bytes=max_bytes)
    check_info_hash(info, torrent["info_hash"])
    if info.name != image["file"]:
        raise TorrentError(
            "torrent-name-mismatch", f"the .torrent names its file {info.name!r}, the index says {image['file']!r}"
        )
    return info


def local_torrent(path: str, image: Dict[str, Any], max_bytes: int) -> Optional[bytes]:
    """The .torrent already at ``path`` when it verifies against ``image``; None otherwise."""
    try:
        data = read_torrent_file(path, max_bytes=max_bytes)
    except TorrentError:
        return None
    try:
        check_torrent_for(image, data, max_bytes)
    except VmcloudError:
        return None
    return data


def obtain_torrent(options: Mapping[str, Any], image: Dict[str, Any], check_mode: bool) -> tuple:
    """(bytes, fetched): the verified .torrent of ``image``, fetched and written atomically when needed.

    In check mode a missing .torrent is still fetched and verified (a read), but not written.
    """
    path = torrent_path(options, image)
    max_bytes = options.get("torrent_max_size") or MAX_TORRENT_BYTES
    data = local_torrent(path, image, max_bytes)
    if data is not None:
        return data, False
    data, _unused = read_source(
        image["torrent"]["url"],
        max_size=max_bytes,
        timeout=options.get("timeout", 30),
        ca_path=options.get("ca_path"),
        validate_certs=options.get("validate_certs", True),
    )
    check_torrent_for(image, data, max_bytes)
    if not check_mode:
        os.makedirs(options["torrent_dir"], mode=0o755, exist_ok=True)
        write_atomic(path, data, mode=0o644)
    return data, True


# --------------------------------------------------------------------------- retirement plan


def retired_info_hashes(
    desired_hashes: Iterable[str],
    staged_names: Iterable[str],
    torrent_names: Iterable[str],
    engine_statuses: Iterable[TorrentStatus],
    staging_dir: str,
) -> List[str]:
    """Info-hashes whose torrent, staging directory or .torrent file must go.

    Ours are what has a staging directory (``<staging_dir>/<info_hash>``), a .torrent file
    (``<info_hash>.torrent``) or an engine entry downloading into its own staging directory;
    those of no desired image go. Anything else (other names, other engine directories) is
    not ours and is left alone.
    """
    staging_dir = os.path.normpath(staging_dir)
    ours: Set[str] = {name for name in staged_names if _INFO_HASH_NAME.match(name)}
    ours.update(match.group(1) for match in map(_TORRENT_FILE_NAME.match, torrent_names) if match)
    ours.update(
        status.info_hash for status in engine_statuses
        if os.path.normpath(status.directory) == os.path.join(staging_dir, status.info_hash)
    )
    return sorted(ours - set(desired_hashes))


def _list_dir(path: str) -> List[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _staged_names(staging_dir: str) -> List[str]:
    return [name for name in _list_dir(staging_dir) if os.path.isdir(os.path.join(staging_dir, name))]


# --------------------------------------------------------------------------- the pull path


def save_verified_index(state_dir: str, data: bytes, check_mode: bool) -> bool:
    """Keep the verified index for offline checks (``imgdist check``); return whether it changed."""
    path = verified_index_path(state_dir)
    changed = differs(path, data)
    if changed and not check_mode:
        os.makedirs(state_dir, mode=0o755, exist_ok=True)
        write_atomic(path, data, mode=0o644)
    return changed


def _outcome_for(store: ImageStore, image: Dict[str, Any]) -> ImageOutcome:
    return ImageOutcome(
        uuid=image["uuid"], name=image["name"], version=image["version"],
        info_hash=image["torrent"]["info_hash"], path=store.path_of(image),
    )


def _hand_to_engine(options, engine, image, outcome, check_mode) -> None:
    data, fetched = obtain_torrent(options, image, check_mode)
    outcome.torrent = "fetched" if fetched else "present"
    reconciled = reconcile(
        engine,
        info_hash=outcome.info_hash,
        state="present",
        directory=staging_path(options, image),
        torrent_bytes=data,
        check_mode=check_mode,
        web_seeds=image.get("web_seeds") or (),  # BEP 19: the catalogue's HTTP copy (libtorrent uses it)
    )
    outcome.engine = reconciled.action


def _without_engine(options, image, outcome, check_mode) -> None:
    """The hand-off of a method other than bittorrent: no engine; a legacy entry still needs its verified
    .torrent (its piece hashes are the content check)."""
    outcome.engine = "none"
    if image.get("sha256"):
        outcome.torrent = "unused"
        return
    _data, fetched = obtain_torrent(options, image, check_mode)
    outcome.torrent = "fetched" if fetched else "present"


def _obtain_and_promote(options, method: Method, store, image, outcome, deadline, clock) -> None:
    """The pull path of a method other than bittorrent: obtain the bytes (``_methods``), then the same
    promote; bytes that do not verify are dropped (``Method.rejected``) so the next run starts over."""
    if store.is_current(image):
        outcome.store = "present"
        return
    staged = method.obtain(image, timeout=max(0.0, deadline - clock()))
    outcome.store = "downloaded"
    arguments = promote_arguments(options, image)
    arguments.update(staging_dir=staged.staging_dir, owner=staged.owner)
    try:
        outcome.store = store.promote(image, staged.path, **arguments).action
    except VmcloudError as exc:
        if exc.rule in BAD_CONTENT_RULES:
            method.rejected(image)
        raise


def free_bytes(path: str) -> int:
    """Bytes an unprivileged writer (the engine) can still write on the filesystem of ``path``."""
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def staging_shortfall(options: Mapping[str, Any], image: Dict[str, Any],
                      status: Optional[TorrentStatus]) -> Optional[VmcloudError]:
    """``staging-full`` when the staging filesystem has less room than the download still needs (its
    size less what is already allocated on disk: preallocated or downloaded); None otherwise."""
    if status is None or status.complete:
        return None
    directory = staging_path(options, image)
    try:
        free = free_bytes(directory if os.path.isdir(directory) else options["staging_dir"])
        try:
            allocated = os.stat(staged_file(options, image)).st_blocks * 512
        except FileNotFoundError:
            allocated = 0
    except OSError:
        return None
    needed = max(0, status.size_bytes - max(allocated, status.completed_bytes))
    if free >= needed:
        return None
    return VmcloudError(
        "staging-full",
        f"the staging filesystem of {directory} has {free} bytes free and the download of {image['file']} "
        f"({status.size_bytes} bytes, {status.completed_bytes} done) still needs {needed}; free space there "
        "and run again",
    )


def staged_copy_bad(options: Mapping[str, Any], store: ImageStore, image: Dict[str, Any]) -> bool:
    """Whether the seeding copy in staging changed after the store took its verified copy: newer than the
    store's file and no longer of the index's sha256. An intact newer copy (downloaded again) gets the
    store file's mtime, so it is hashed once, not on every run. Legacy entries (no sha256) are not checked."""
    expected = image.get("sha256")
    path = staged_file(options, image)
    try:
        staged, held = os.stat(path), os.stat(store.path_of(image))
    except FileNotFoundError:
        return False
    if not expected or staged.st_mtime_ns <= held.st_mtime_ns:
        return False
    if sha256_file(path) != expected:
        return True
    os.utime(path, ns=(staged.st_atime_ns, held.st_mtime_ns))
    return False


class _Watch:
    """What the sync does at each poll of a download it waits for: fail at once when the staging
    filesystem cannot hold the rest (``staging-full``); announce again while it has no peers (a
    restarted tracker knows none until they announce); and once, after ``stall_seconds``
    with no peers and no progress (60 s, or a third of a shorter wait), drop the torrent and add it
    again with its data kept (rtorrent does not resume some downloads it closed, e.g. on a full disk)."""

    ANNOUNCE_EVERY = 30.0
    STALL_SECONDS = 60.0
    STALL_SHARE = 3  # a stall is at most a third of the wait, and at least 5 s: a short wait re-adds in time

    def __init__(self, options, engine, image, progress, clock) -> None:
        self.options, self.engine, self.image, self.progress, self.clock = options, engine, image, progress, clock
        timeout = float(options.get("download_timeout") or DEFAULT_DOWNLOAD_TIMEOUT)
        self.stall_seconds = min(self.STALL_SECONDS, max(5.0, timeout / self.STALL_SHARE))
        self.announced_at: Optional[float] = None
        self.progress_at = clock()
        self.completed = -1
        self.readded = False
        self.last: Optional[TorrentStatus] = None

    def __call__(self, status: TorrentStatus) -> None:
        self.last = status
        if self.progress is not None:
            self.progress(self.image, status)
        shortfall = staging_shortfall(self.options, self.image, status)
        if shortfall is not None:
            raise shortfall
        now = self.clock()
        if status.completed_bytes != self.completed or status.peers:
            self.completed, self.progress_at = status.completed_bytes, now
        if status.complete or status.peers:
            return
        if not self.readded and now - self.progress_at >= self.stall_seconds:
            self.readd()
            self.progress_at, self.announced_at = now, now
            return
        if self.announced_at is None or now - self.announced_at >= self.ANNOUNCE_EVERY:
            self.announced_at = now
            with contextlib.suppress(VmcloudError, OSError):  # best effort: the wait goes on either way
                self.engine.announce(status.info_hash)

    def readd(self) -> None:
        """Drop the torrent from the engine and load it again, data kept (once per wait)."""
        self.readded = True
        max_bytes = self.options.get("torrent_max_size") or MAX_TORRENT_BYTES
        data = local_torrent(torrent_path(self.options, self.image), self.image, max_bytes)
        if data is None:
            return
        info_hash = self.image["torrent"]["info_hash"]
        self.engine.remove(info_hash, delete_data=False)
        self.engine.add(data, staging_path(self.options, self.image), start=True,
                        web_seeds=self.image.get("web_seeds") or ())


def _wait_and_promote(options, engine, store, image, outcome, deadline, progress, clock, sleep) -> None:
    """Wait for the download unless the store already holds the image, then promote it.

    ``outcome.store`` is "downloaded" between the two, so a failure names its step. A download that
    times out or fails while the staging filesystem cannot hold it fails with ``staging-full``.
    """
    if store.is_current(image):
        outcome.store = "present"
        if not staged_copy_bad(options, store, image):
            return
        # The seeding copy went bad after promotion: load it again (a fresh load hash-checks the data, and
        # the bad pieces are fetched again; a re-check of the loaded torrent only closes it in rtorrent).
        watch = _Watch(options, engine, image, progress, clock)
        watch.readd()
        outcome.engine = "add"
        engine.wait_complete(outcome.info_hash, timeout=max(0.0, deadline - clock()),
                             poll_interval=options.get("poll_interval") or DEFAULT_POLL_INTERVAL,
                             on_progress=watch, clock=clock, sleep=sleep)
        return
    watch = _Watch(options, engine, image, progress, clock)
    try:
        engine.wait_complete(
            outcome.info_hash,
            timeout=max(0.0, deadline - clock()),
            poll_interval=options.get("poll_interval") or DEFAULT_POLL_INTERVAL,
            on_progress=watch,
            clock=clock,
            sleep=sleep,
        )
    except VmcloudError as exc:
        shortfall = None if exc.rule == "staging-full" else staging_shortfall(options, image, watch.last)
        if shortfall is not None:
            raise shortfall from exc
        raise
    outcome.store = "downloaded"
    outcome.store = store.promote(image, staged_file(options, image), **promote_arguments(options, image)).action


def promote_arguments(options: Mapping[str, Any], image: Dict[str, Any]) -> Dict[str, Any]:
    """How ``ImageStore.promote`` opens a staged file: nothing followed below ``staging_dir``, owned by
    the engine's user (or root), and for a legacy entry (no sha256) the verified .torrent, whose piece
    hashes are then the content check."""
    torrent = None
    if not image.get("sha256"):
        torrent = read_torrent_file(torrent_path(options, image),
                                    max_bytes=int(options.get("torrent_max_size") or MAX_TORRENT_BYTES))
    return {"staging_dir": options["staging_dir"], "owner": options.get("engine_user"), "torrent": torrent}


def retire_options(options: Mapping[str, Any]) -> ReconcileOptions:
    """The retirement policy of a sync (RETIRE_ARGSPEC): the image_store module's; entries nobody declared
    are handled by ``unknown`` (image_sync's option; imgdist only reports them)."""
    return ReconcileOptions(
        # Every promotion holds the host lock the sync holds: a .promote-* file it finds is a killed
        # promotion's leftover, however fresh.
        grace_seconds=0,
        unknown=options.get("unknown") or "report",
        not_desired=options.get("not_desired") or "retire",
        max_bytes=options.get("max_bytes"),
        high_watermark_percent=options.get("high_watermark_percent"),
        retire_max_percent=options.get("retire_max_percent", DEFAULT_RETIRE_MAX_PERCENT),
        retire_confirm=bool(options.get("retire_confirm")),
    )


def retire_now(store: ImageStore, index_images: Iterable[Dict[str, Any]], options: Mapping[str, Any]) -> List[str]:
    """Managed uuids that go without waiting for a successor: withdrawn from the verified index, or blocked."""
    endorsed = {image["uuid"] for image in index_images}
    blocked = parse_approvals(None, options.get("blocked")).blocked
    found = []
    for uuid, entry in store.manifest().items():
        held = {"uuid": uuid, "name": entry.get("name") if isinstance(entry, dict) else None,
                "version": entry.get("version") if isinstance(entry, dict) else None}
        if uuid not in endorsed or is_blocked(held, blocked):
            found.append(uuid)
    return sorted(found)


def _retire(options, engine, store, report, desired, withdrawn, check_mode, extra_roots=()) -> None:
    """Retire what is no longer desired with the reconcile plan (``_reconcile``: the one retirement, with
    its name, confinement, identity, in-use and quota checks), then drop from the engine, staging and
    .torrent files every info-hash of ours that no desired or still-held superseded image uses."""
    arriving = [image.uuid for image in report.images
                if check_mode and image.ok and image.store in ("promoted", "repaired")]
    keep_hashes = {image["torrent"]["info_hash"] for image in desired}
    try:
        plan = plan_reconcile(store.root, desired, retire_options(options), retire_now=withdrawn, arriving=arriving)
        done = apply_plan(plan, check_mode=check_mode)
        report.store = reconcile_report(done)
    except (VmcloudError, OSError) as exc:
        report.fail("retire", exc)
        keep_hashes.update(entry.get("info_hash") for entry in store.manifest().values() if isinstance(entry, dict))
    else:
        wanted = {image["uuid"] for image in desired}
        report.retired = sorted({action.uuid for action in done.done if action.uuid and action.uuid not in wanted
                                 and action.kind in ("retire", "evict", "forget")})
        report.superseded_pending = [pending.as_dict() for pending in plan.pending]
        report.kept = list(plan.kept)
        report.held_open = [{"uuid": held.uuid, "path": held.path, "pids": list(held.pids), "reason": held.reason}
                            for held in done.held_open if held.uuid]
        for action, error in done.failures:
            report.fail("retire", VmcloudError("retire-failed", f"{action.kind} {action.path}: {error}"),
                        info_hash=None)
        manifest = store.manifest()
        keep_hashes.update(manifest.get(pending.uuid, {}).get("info_hash") for pending in plan.pending)
        keep_hashes.update(manifest.get(held.uuid, {}).get("info_hash") for held in done.held_open if held.uuid)
    _drop_from_engine(options, engine, report, keep_hashes, check_mode, extra_roots)


def _drop_from_engine(options, engine, report, keep_hashes, check_mode, extra_roots=()) -> None:
    """Drop every info-hash of no kept image from the engine (None: a method without one), the staging
    directories (``staging_dir`` and a method's own, e.g. ``push_dir``) and the .torrent files."""
    staging_dir, torrent_dir = options["staging_dir"], options["torrent_dir"]
    statuses = []
    if engine is not None:
        try:
            statuses = engine.list()
        except (VmcloudError, OSError) as exc:
            report.fail("retire", exc)
    staged = _staged_names(staging_dir)
    for root in extra_roots:
        staged += _staged_names(root)
    for info_hash in retired_info_hashes(
        [value for value in keep_hashes if value], staged, _list_dir(torrent_dir), statuses, staging_dir,
    ):
        try:
            if engine is not None:
                reconcile(engine, info_hash=info_hash, state="absent", check_mode=check_mode)
            if not check_mode:
                for root in (staging_dir, *extra_roots):
                    _remove_tree(os.path.join(root, info_hash))
                _unlink(os.path.join(torrent_dir, info_hash + ".torrent"))
        except (VmcloudError, OSError) as exc:
            report.fail("retire", exc, info_hash=info_hash)
            continue
        report.removed.append(info_hash)


def _remove_tree(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    fsync_directory(os.path.dirname(path))


def _index_summary(accepted) -> Dict[str, Any]:
    index = accepted.index
    return {"format": index.format, "url": index.url, "version": index.version,
            "previous_version": accepted.previous_version, "advanced": accepted.advanced,
            "expires": index.expires, "digest": index.digest}


def _left_out(selection: Mapping[str, Any]) -> Dict[str, Any]:
    return {key: selection[key] for key in ("host", "not_endorsed", "not_approved", "not_targeted", "blocked")}


def sync(
    config: Mapping[str, Any],
    engine: TorrentEngine,
    check_mode: bool,
    progress: Optional[ProgressCallback] = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> SyncReport:
    """Bring the host to its desired image set; see the module docstring for the sequence.

    ``config`` uses the option names of _argspec (``src``, ``trust_anchors``, ``approved``,
    ``host``, ...) and of ``SYNC_ARGSPEC``. Raises ``IndexRefused`` (nothing changed) when the
    index fails verification and ``ApprovalConfigError`` when the approvals are malformed;
    every per-image problem is in the report's ``failures`` instead. A real run holds the host
    lock (``_lock.host_lock``) from before the index is fetched to the end, so the index it
    converges to is never older than the one the run before it accepted; check mode takes no
    lock (it changes nothing).
    """
    options = dict(config)
    if check_mode:
        return _accept_and_converge(options, engine, check_mode, progress, clock, sleep)
    timeout = float(options.get("download_timeout", DEFAULT_DOWNLOAD_TIMEOUT))
    with host_lock(lock_path(options["state_dir"]), timeout, clock, sleep):
        return _accept_and_converge(options, engine, check_mode, progress, clock, sleep)


def _accept_and_converge(options, engine, check_mode, progress, clock, sleep) -> SyncReport:
    if options.get("approved") is None:
        raise ApprovalConfigError(
            "approvals-undefined",
            "the approved images are not defined (the image_sync option approved, vmcloud_approved_images in the "
            "inventory, approved_images in imgdist.yml); refusing to treat that as approve nothing. Set them: an "
            "explicit [] approves nothing",
        )
    agent_config = options.get("agent_config")  # (path, mtime) when imgdist runs, None for image_sync
    if agent_config is not None:
        check_config_current(options["state_dir"], options, *agent_config)
    accepted, data = fetch_and_accept(options, persist=False)
    selection = selection_for(accepted.index.images, options)
    store = ImageStore(options["store_dir"])
    withdrawn = retire_now(store, accepted.index.images, options)
    # Before anything changes (the mark included): two desired images under one file name
    # (desired-conflict) and a run that would retire too much (retire-guard) stop here. Planned as if
    # every download succeeds: what the run can retire at most.
    plan_reconcile(store.root, selection["desired"], retire_options(options), retire_now=withdrawn,
                   arriving=selection["desired_uuids"])
    if not check_mode:
        accepted = commit_accepted(options, accepted)
        if agent_config is None:  # the inventory's word, which a timed sync with an older file must not undo
            record_approvals(options["state_dir"], options)
    return _converge(options, accepted, data, selection, engine, check_mode, progress, clock, sleep, withdrawn)


def _converge(
    options: Dict[str, Any],
    accepted: Any,
    data: bytes,
    selection: Dict[str, Any],
    engine: TorrentEngine,
    check_mode: bool,
    progress: Optional[ProgressCallback],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    withdrawn: List[str],
) -> SyncReport:
    store = ImageStore(options["store_dir"])
    held_before = sorted(store.manifest())
    report = SyncReport(
        check_mode=check_mode,
        index=_index_summary(accepted),
        desired=list(selection["desired_uuids"]),
        selection=_left_out(selection),
        desired_images=list(selection["desired"]),
        held_before=held_before,
    )
    report.index_saved = save_verified_index(options["state_dir"], data, check_mode)
    desired = selection["desired"]
    report.images = [_outcome_for(store, image) for image in desired]

    # Whatever goes wrong with one image (a .torrent server that answers garbage, say) fails that
    # image only: the others go on.
    method = method_for(options)
    for image, outcome in zip(desired, report.images, strict=True):
        try:
            if method.uses_engine:
                _hand_to_engine(options, engine, image, outcome, check_mode)
            else:
                _without_engine(options, image, outcome, check_mode)
        except Exception as exc:  # noqa: BLE001 - recorded per image with its rule
            report.fail("torrent" if outcome.torrent == "pending" else "engine", exc, outcome)

    deadline = clock() + float(options.get("download_timeout", DEFAULT_DOWNLOAD_TIMEOUT))
    for image, outcome in zip(desired, report.images, strict=True):
        if not outcome.ok:
            continue
        try:
            if check_mode:
                outcome.store = store.promote(image, staged_file(options, image), check_mode=True,
                                              **promote_arguments(options, image)).action
            elif method.uses_engine:
                _wait_and_promote(options, engine, store, image, outcome, deadline, progress, clock, sleep)
            else:
                _obtain_and_promote(options, method, store, image, outcome, deadline, clock)
        except Exception as exc:  # noqa: BLE001 - recorded per image with its rule
            report.fail("download" if outcome.store == "pending" else "promote", exc, outcome)
            if outcome.store == "downloaded":
                outcome.store = "pending"

    _retire(options, engine if method.uses_engine else None, store, report, desired, withdrawn, check_mode,
            method.staging_roots())

    for outcome in report.images:
        try:
            status = engine.status(outcome.info_hash) if method.uses_engine else None
        except (VmcloudError, OSError):
            status = None
        outcome.status = status.to_dict() if status else None
    if check_mode:
        report.held = sorted((set(held_before) | set(report.promoted)) - set(report.retired))
    else:
        report.held = sorted(store.manifest())
    return report
