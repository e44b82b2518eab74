# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reconcile the image store with the host's desired set, step two: the plan.

Private to the collection; not a public API. Plain Python (no ansible): the module
``vmcloud.fleet.image_store`` and ``imgdist`` run it on hypervisors.

``plan_reconcile`` only reads. It returns a ``Plan``: the state of each desired image
(``present``, ``missing``, ``corrupt``), every unknown entry of the store directory, and the
``Action`` s a run takes, each with its path and reason:

- ``forget``: drop a manifest entry, touch no file (a corrupt copy, so the next distribution
  run fetches it again; an entry whose file now belongs to a desired image; an entry naming a
  path outside the store);
- ``retire``: a managed image that is no longer desired (``ImageStore.retire``, the one function that
  deletes a managed image; the image_sync module, ``imgdist sync`` and image_store all get here).
  Supersede, never strand: while a desired image of the same ``name`` is not verified in the store
  (a failed upgrade), the superseded one stays and is listed in ``pending`` with what it waits for,
  unless the caller names it in ``retire_now`` (blocked, or withdrawn from the index);
- ``quarantine`` / ``remove``: an unknown entry, by policy;
- ``evict``: a kept, no-longer-desired image removed because the store is over its quota;
- ``clean``: a ``.promote-*`` temporary file older than ``grace_seconds`` (a promotion killed
  between write and rename), removed whatever the unknown policy and never reported as unknown.

``apply_plan`` (``_reconcile_execute``) executes a plan; in check mode it returns the plan's actions as done and touches
nothing. Check mode and a real run call the same two functions, so what check mode and diff show
is what a real run does. Between planning and acting the store may change: every action checks
its precondition again (same inode, nothing holds it open, still inside the store) and is
deferred, never forced, when that no longer holds.

Mass-deletion guard: a plan that would retire more than ``retire_max_percent`` of the managed images
(default 50; a superseded image whose successors are all present does not count) raises
``retire-guard`` before anything changes, unless ``retire_confirm``. Two desired images stored under
one file name raise ``desired-conflict``.

Safety rules: nothing is ever followed through a symlink (entries are ``lstat``-ed; a symlink is
moved or removed as a link); every path acted on must resolve to a direct child of the store's
real path; an entry on another filesystem (a mount point, or a directory containing one) or that
cannot be read completely is reported and never touched; a file in use (``image-in-use``: a process
holds it open, or a libvirt domain - running, shut off or managed-saved - reads it as a disk or
through a qcow2 backing chain, see ``_inuse``; read by ``_reconcile_scan``) is never moved, removed or dropped from the
manifest: it is reported with the PIDs and the domain names. See docs/reconcile.md.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

from ._errors import StoreError
from ._inuse import RULE as IN_USE_RULE
from ._inuse import Libvirt
from ._reconcile_scan import (
    QUARANTINE_DIR,
    Entry,
    Holders,
    Identity,
    filesystem_usage,
    find_holders,
    is_plain_name,
    printable,
    survey,
)
from ._store import META_DIR, TEMP_GRACE_SECONDS, TEMP_PREFIX, ImageStore, file_stat_key, open_files, stored_file_name

POLICIES = ("report", "quarantine", "remove")
NOT_DESIRED = ("retire", "keep")
DEFAULT_GRACE_SECONDS = TEMP_GRACE_SECONDS
DEFAULT_RETIRE_MAX_PERCENT = 50

FilesystemUsage = Callable[[str], Tuple[int, int]]


def _clock() -> float:
    return time.time()


# --------------------------------------------------------------------------- the plan's records


@dataclass(frozen=True)
class Options:
    """What a reconciliation does beyond the desired set (the module's options)."""

    unknown: str = "report"  # report | quarantine | remove
    not_desired: str = "retire"  # retire | keep (kept until the quota needs the space)
    max_bytes: Optional[int] = None
    high_watermark_percent: Optional[int] = None
    grace_seconds: int = DEFAULT_GRACE_SECONDS
    # The mass-deletion guard: a run that would retire more than this percentage of the managed
    # images (supersessions by a present newer version of the same name do not count) stops before
    # changing anything (rule retire-guard) unless retire_confirm. None: no guard.
    retire_max_percent: Optional[int] = DEFAULT_RETIRE_MAX_PERCENT
    retire_confirm: bool = False

    def validate(self) -> None:
        if self.unknown not in POLICIES:
            raise StoreError("option-invalid", f"unknown={self.unknown!r}; use one of {', '.join(POLICIES)}")
        if self.not_desired not in NOT_DESIRED:
            raise StoreError("option-invalid",
                             f"not_desired={self.not_desired!r}; use one of {', '.join(NOT_DESIRED)}")
        if self.max_bytes is not None and self.max_bytes < 0:
            raise StoreError("option-invalid", f"max_bytes={self.max_bytes} is negative; give 0 or more bytes")
        if self.high_watermark_percent is not None and not 1 <= self.high_watermark_percent <= 100:
            raise StoreError("option-invalid",
                             f"high_watermark_percent={self.high_watermark_percent}; give 1 to 100")
        if self.grace_seconds < 0:
            raise StoreError("option-invalid", f"grace_seconds={self.grace_seconds} is negative")
        if self.retire_max_percent is not None and (isinstance(self.retire_max_percent, bool)
                                                    or not 0 <= self.retire_max_percent <= 100):
            raise StoreError("option-invalid",
                             f"retire_max_percent={self.retire_max_percent!r}; give 0 to 100")

    @property
    def has_quota(self) -> bool:
        return self.max_bytes is not None or self.high_watermark_percent is not None


@dataclass(frozen=True)
class ImageState:
    uuid: str
    path: str
    state: str  # present | missing | corrupt
    reason: str

    def as_dict(self) -> Dict[str, Any]:
        return {"uuid": self.uuid, "path": self.path, "state": self.state, "reason": self.reason}


@dataclass(frozen=True)
class Action:
    kind: str  # forget | retire | quarantine | remove | evict | clean
    path: str
    reason: str
    uuid: Optional[str] = None  # a managed image (forget, retire, evict of a managed image)
    target: Optional[str] = None  # quarantine destination
    size: int = 0  # bytes the action frees (quarantine frees none: it stays in the store)
    mtime: Optional[float] = None
    identity: Optional[Identity] = None  # what was planned on; the action is deferred if it changed
    entry_kind: str = "file"

    def as_dict(self) -> Dict[str, Any]:
        return {"action": self.kind, "path": self.path, "reason": self.reason, "uuid": self.uuid,
                "to": self.target, "size": self.size}


@dataclass(frozen=True)
class Held:
    """Something the plan would act on, left alone because it is in use (``image-in-use``): a process
    holds it open, or libvirt domains read it as a disk."""

    path: str
    pids: Tuple[int, ...]
    reason: str
    uuid: Optional[str] = None
    domains: Tuple[str, ...] = ()

    @classmethod
    def of(cls, found: Entry, reason: str, uuid: Optional[str] = None) -> Held:
        return cls(found.path, found.pids, reason, uuid, found.domains)

    def as_dict(self) -> Dict[str, Any]:
        return {"path": self.path, "pids": list(self.pids), "reason": self.reason, "uuid": self.uuid,
                "domains": list(self.domains), "rule": IN_USE_RULE}


@dataclass(frozen=True)
class Pending:
    """A managed image no longer desired, kept because a desired image of its name is not in the store
    yet (supersede, never strand): retired by the run that finds all of them present."""

    uuid: str
    name: Optional[str]
    version: Any
    path: str
    waiting_for: Tuple[str, ...]

    def as_dict(self) -> Dict[str, Any]:
        return {"uuid": self.uuid, "name": self.name, "version": self.version, "path": self.path,
                "waiting_for": list(self.waiting_for)}


@dataclass(frozen=True)
class Quota:
    max_bytes: Optional[int]
    high_watermark_percent: Optional[int]
    store_bytes: int  # every regular file under the store, .vmcloud (manifest, quarantine) included
    store_bytes_after: int
    filesystem_bytes: Optional[int]
    filesystem_used_bytes: Optional[int]
    filesystem_used_bytes_after: Optional[int]
    over: bool
    over_after: bool

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Plan:
    """Everything a reconciliation found and will do; equal inputs give an equal plan."""

    root: str
    options: Options
    images: Tuple[ImageState, ...]
    unknown: Tuple[Entry, ...]
    actions: Tuple[Action, ...]
    held_open: Tuple[Held, ...]
    kept: Tuple[str, ...]  # uuids of no-longer-desired images kept (not_desired=keep)
    pending: Tuple[Pending, ...]  # superseded images kept until their successors are in the store
    in_progress: Tuple[str, ...]  # vmcloud temporary files younger than grace_seconds
    quota: Optional[Quota]
    files: Tuple[str, ...]  # names in the store before (the diff's "before"), .vmcloud left out
    managed: Tuple[str, ...]  # uuids in the manifest before
    libvirt: Dict[str, Any] = field(default_factory=dict)  # where "in use by a domain" came from (Holders.report)

    def uuids(self, state: str) -> List[str]:
        return [image.uuid for image in self.images if image.state == state]


def _desired_by_name(desired: Iterable[Mapping[str, Any]]) -> Dict[str, Mapping[str, Any]]:
    by_name: Dict[str, Mapping[str, Any]] = {}
    for position, image in enumerate(desired):
        if not isinstance(image, Mapping) or not isinstance(image.get("uuid"), str) \
                or not isinstance(image.get("file"), str):
            raise StoreError("desired-invalid",
                             f"desired[{position}] needs at least uuid and file (an entry of selection.desired)")
        name = stored_file_name(dict(image))
        if not is_plain_name(name):
            raise StoreError("desired-invalid",
                             f"desired[{position}] ({image['uuid']}) names {name!r}, not a file name in the store")
        other = by_name.get(name)
        if other is not None and other["uuid"] != image["uuid"]:
            raise StoreError("desired-conflict",
                             f"{other['uuid']} and {image['uuid']} are both stored as {name}; fix the selection")
        by_name[name] = image
    return by_name


# --------------------------------------------------------------------------- planning


class _Planner:
    """Builds one Plan; each method handles one rule of the module docstring."""

    def __init__(self, root: str, desired: Sequence[Mapping[str, Any]], options: Options, now: float,
                 holders: Holders, retire_now: Iterable[str] = (), arriving: Iterable[str] = ()) -> None:
        self.root = root
        self.retire_now = set(retire_now)
        self.arriving = set(arriving)
        self.pending: List[Pending] = []
        self.superseded: Set[str] = set()  # retirements a present newer version of the same name makes
        self.options = options
        self.now = now
        self.store = ImageStore(root)
        self.wanted = _desired_by_name(desired)
        self.wanted_uuids = {image["uuid"] for image in self.wanted.values()}
        self.manifest = self.store.manifest()
        self.survey = survey(root, holders)
        self.holders = holders
        self.entries = self.survey.entries
        self.images: List[ImageState] = []
        self.actions: List[Action] = []
        self.held: List[Held] = []
        self.unknown: List[Entry] = []
        self.in_progress: List[str] = []
        self.stale_temporary: List[Entry] = []
        self.keepable: List[Action] = []  # evictions ready, should the quota need them
        self.kept: List[Optional[str]] = []

    # ---------------------------------------------------------------- desired images

    def desired_images(self) -> None:
        for name, image in sorted(self.wanted.items(), key=lambda item: item[1]["uuid"]):
            self.images.append(self._image_state(name, image))

    def _image_state(self, name: str, image: Mapping[str, Any]) -> ImageState:
        uuid = image["uuid"]
        path = os.path.join(self.root, name)
        entry = self.manifest.get(uuid)
        verified = bool(entry) and entry.get("file") == name
        found = self.entries.get(name)
        if found is None:
            return ImageState(uuid, path, "missing", "not in the store")
        if found.kind != "file":
            if not verified:
                return ImageState(uuid, path, "missing", f"a {found.kind} has its name")
            reason = f"{path} is a {found.kind}, not the file vmcloud verified"
            self._forget(uuid, path, reason, None)
            return ImageState(uuid, path, "corrupt", reason)
        if not verified:
            if entry:
                return ImageState(uuid, path, "missing", f"the manifest holds it as {entry.get('file')}; "
                                  f"the next distribution run stores it as {name}")
            return ImageState(uuid, path, "missing", "an unverified file has its name (not in the manifest); "
                              "the next distribution run replaces it")
        return self._verify(uuid, path, dict(image), entry, found)

    def _verify(self, uuid: str, path: str, image: Dict[str, Any], entry: Dict[str, Any], found: Entry) -> ImageState:
        if image.get("sha256") and entry.get("source_sha256") != image["sha256"]:
            reason = (f"verified against SHA-256 {entry.get('source_sha256')}, the index now gives "
                      f"{image['sha256']}")
        else:
            cached = file_stat_key(path) == entry.get("stat")
            if self.store.is_current(image, entry):
                return ImageState(uuid, path, "present", "unchanged since verified (not read)" if cached
                                  else "size, mtime or inode changed since verified: read again, content matches")
            if found.size != entry.get("size"):
                reason = f"size is {found.size} bytes, was {entry.get('size')} when verified"
            else:
                reason = "content changed: same size, but the SHA-256 is not the verified one"
        if found.in_use:
            self.held.append(Held.of(found, f"corrupt ({reason}), {found.use}: left in the manifest", uuid))
        else:
            self._forget(uuid, path, reason, found.identity)
        return ImageState(uuid, path, "corrupt", reason)

    def _forget(self, uuid: str, path: str, reason: str, identity: Optional[Identity]) -> None:
        self.actions.append(Action("forget", path, f"{reason}; dropped from the manifest so the next "
                                   "distribution run fetches it again", uuid=uuid, identity=identity))

    # ---------------------------------------------------------------- managed, no longer desired

    def not_desired(self) -> None:
        for uuid, entry in sorted(self.manifest.items()):
            if uuid in self.wanted_uuids:
                continue
            name = entry.get("file") if isinstance(entry, dict) else None
            if not is_plain_name(name):
                self.actions.append(Action("forget", str(name), f"the manifest names {name!r}, not a file in the "
                                           "store: entry dropped, nothing touched", uuid=uuid))
                continue
            path = os.path.join(self.root, name)
            waiting = self._waiting_for(uuid, entry)
            if waiting:
                self.pending.append(Pending(uuid, entry.get("name"), entry.get("version"), path, waiting))
                continue
            if name in self.wanted:
                owner = self.wanted[name]["uuid"]
                self.actions.append(Action("forget", path, f"no longer desired, and its file now belongs to "
                                           f"desired image {owner}: entry dropped, the file kept", uuid=uuid))
                continue
            found = self.entries.get(name)
            if found is not None and found.kind != "file":
                self.actions.append(Action("forget", path, f"no longer desired, and its name now holds a "
                                           f"{found.kind}: entry dropped, the {found.kind} is unknown", uuid=uuid))
                continue
            self._retire(uuid, path, found)

    def _waiting_for(self, uuid: str, entry: Mapping[str, Any]) -> Tuple[str, ...]:
        """Desired images of the same name not yet verified in the store (nor, in a sync's check mode,
        about to be): while there is one, a superseded image stays. A blocked or withdrawn image
        (``retire_now``) waits for nothing."""
        family = entry.get("name")
        successors = [image for image in self.wanted.values() if family is not None and image.get("name") == family]
        states = {image.uuid: image.state for image in self.images}
        waiting = tuple(sorted(image["uuid"] for image in successors
                               if states.get(image["uuid"]) != "present" and image["uuid"] not in self.arriving))
        if successors and not waiting:
            self.superseded.add(uuid)  # replaced, not lost: the mass-deletion guard does not count it
        return () if uuid in self.retire_now else waiting

    def _retire(self, uuid: str, path: str, found: Optional[Entry]) -> None:
        if found is None:
            self.actions.append(Action("retire", path, "no longer desired; its file is already gone", uuid=uuid))
        elif found.in_use:
            self.held.append(Held.of(found, f"no longer desired, {found.use}: not retired", uuid))
        else:
            reason = "no longer desired"
            kind = "retire"
            if self.options.not_desired == "keep":
                reason, kind = "no longer desired, kept until the quota needs the space: evicted", "evict"
            action = Action(kind, path, reason, uuid=uuid, size=found.size, mtime=found.mtime,
                            identity=found.identity)
            (self.keepable if kind == "evict" else self.actions).append(action)

    # ---------------------------------------------------------------- unknown entries

    def unknown_entries(self) -> None:
        managed_names = {entry.get("file") for entry in self.manifest.values() if isinstance(entry, dict)}
        for name, found in self.entries.items():
            reason = self._unknown_reason(name, found, managed_names)
            if reason is not None:
                self.unknown.append(replace(found, reason=reason))
        for found in self.unknown:
            self._unknown_action(found)
        for found in self.stale_temporary:
            self._clean_action(found)

    def _clean_action(self, found: Entry) -> None:
        """An interrupted promotion's temporary file goes whatever the unknown policy: it is
        vmcloud's own, never an unknown image."""
        if found.refusal:
            return
        if found.in_use:
            self.held.append(Held.of(found, f"vmcloud temporary file, {found.use}: not removed"))
            return
        self.actions.append(Action("clean", found.path, f"vmcloud temporary file older than grace_seconds "
                                   f"({self.options.grace_seconds}), left by an interrupted promotion: removed",
                                   size=found.size, mtime=found.mtime, identity=found.identity))

    def _unknown_reason(self, name: str, found: Entry, managed_names: Set[Any]) -> Optional[str]:
        if name in self.wanted or name in managed_names:
            if found.kind == "file":
                return None
            return f"a {found.kind} where vmcloud keeps {self._declared_by(name)}" + self._link_note(found)
        if name.startswith(TEMP_PREFIX) and found.kind == "file":
            if self.now - found.mtime < self.options.grace_seconds:
                self.in_progress.append(found.path)
            else:
                self.stale_temporary.append(found)
            return None
        hidden = "hidden " if name.startswith(".") else ""
        odd = "" if printable(name) == name else ", its name is not UTF-8 (shown with \\x escapes)"
        return f"{hidden}{found.kind} nobody declared (not a desired image, not in the manifest)" \
            + odd + self._link_note(found)

    def _declared_by(self, name: str) -> str:
        if name in self.wanted:
            return f"desired image {self.wanted[name]['uuid']}"
        owners = sorted(uuid for uuid, entry in self.manifest.items()
                        if isinstance(entry, dict) and entry.get("file") == name)
        return "managed image " + ", ".join(owners)

    @staticmethod
    def _link_note(found: Entry) -> str:
        return f", pointing to {found.link_target} (never followed)" if found.kind == "symlink" else ""

    def _unknown_action(self, found: Entry) -> None:
        policy = self.options.unknown
        if policy == "report" or found.refusal:
            return
        verb = "quarantined" if policy == "quarantine" else "removed"
        if found.in_use:
            self.held.append(Held.of(found, f"unknown {found.kind}, {found.use}: not {verb}"))
            return
        target = self._quarantine_target(found.name) if policy == "quarantine" else None
        self.actions.append(Action(policy, found.path, f"{found.reason}: {verb}", target=target,
                                   size=found.size if policy == "remove" else 0, mtime=found.mtime,
                                   identity=found.identity, entry_kind=found.kind))

    def _quarantine_target(self, name: str) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.now))
        directory = os.path.join(self.root, META_DIR, QUARANTINE_DIR)
        taken = {action.target for action in self.actions}
        candidate = os.path.join(directory, f"{stamp}-{name}")
        serial = 0
        while candidate in taken or os.path.lexists(candidate):
            serial += 1
            candidate = os.path.join(directory, f"{stamp}-{serial}-{name}")
        return candidate

    # ---------------------------------------------------------------- quota

    def quota(self, fs_usage: FilesystemUsage) -> Optional[Quota]:
        options = self.options
        if not options.has_quota:
            self.kept = [action.uuid for action in self.keepable]
            return None
        store_bytes = sum(entry.size for entry in self.entries.values()) + self.survey.meta_bytes
        fs_total = fs_used = None
        if options.high_watermark_percent is not None and self.survey.root_dev is not None:
            fs_total, fs_used = fs_usage(self.root)
        freed = self._freed(self.actions)
        over = self._excess(store_bytes, fs_total, fs_used, 0) > 0
        excess = self._excess(store_bytes, fs_total, fs_used, freed)
        evicted: List[Action] = []
        for _path, group in self._candidates():
            if excess <= 0:
                break
            evicted.extend(group)
            freed += group[0].size
            excess -= group[0].size
        self.actions.extend(evicted)
        self.kept = [action.uuid for action in self.keepable if action not in evicted]
        return Quota(options.max_bytes, options.high_watermark_percent, store_bytes, store_bytes - freed,
                     fs_total, fs_used, None if fs_used is None else fs_used - freed, over, excess > 0)

    @staticmethod
    def _freed(actions: Iterable[Action]) -> int:
        freeing = {action.path: action.size for action in actions
                   if action.kind in ("retire", "remove", "evict", "clean")}
        return sum(freeing.values())

    def _excess(self, store_bytes: int, fs_total: Optional[int], fs_used: Optional[int], freed: int) -> int:
        excess = 0
        if self.options.max_bytes is not None:
            excess = store_bytes - freed - self.options.max_bytes
        if fs_total is not None and fs_used is not None and self.options.high_watermark_percent is not None:
            excess = max(excess, fs_used - freed - fs_total * self.options.high_watermark_percent // 100)
        return excess

    def _candidates(self) -> List[Tuple[str, List[Action]]]:
        """Kept images by file (uuids sharing a file go together), oldest mtime first."""
        groups: Dict[str, List[Action]] = {}
        for action in self.keepable:
            groups.setdefault(action.path, []).append(action)
        return sorted(groups.items(), key=lambda item: (item[1][0].mtime or 0.0, item[0]))

    # ---------------------------------------------------------------- result

    def guard(self) -> None:
        """Stop before anything changes when the run would retire too much (module docstring)."""
        limit, managed = self.options.retire_max_percent, len(self.manifest)
        if limit is None or self.options.retire_confirm or not managed:
            return
        retiring = sorted({action.uuid for action in self.actions if action.kind in ("retire", "evict")
                           and action.uuid and action.uuid not in self.superseded})
        if len(retiring) * 100 > limit * managed:
            shown = ", ".join(retiring[:5]) + (", ..." if len(retiring) > 5 else "")
            raise StoreError(
                "retire-guard",
                f"this run would retire {len(retiring)} of the {managed} images vmcloud manages in {self.root} "
                f"({shown}), more than retire_max_percent={limit}%; nothing was changed. Check the approvals "
                "(an undefined or empty vmcloud_approved_images approves nothing); if it is intended, confirm with "
                "retire_confirm: true (Ansible: -e vmcloud_retire_confirm=true; imgdist: retire_confirm in its "
                "configuration)",
            )

    def plan(self, fs_usage: FilesystemUsage) -> Plan:
        self.desired_images()
        self.not_desired()
        self.unknown_entries()
        quota = self.quota(fs_usage)
        self.guard()
        return Plan(
            root=self.root,
            options=self.options,
            images=tuple(self.images),
            unknown=tuple(self.unknown),
            actions=tuple(self.actions),
            held_open=tuple(self.held),
            kept=tuple(self.kept),
            pending=tuple(self.pending),
            in_progress=tuple(self.in_progress),
            quota=quota,
            files=tuple(self.entries),
            managed=tuple(sorted(self.manifest)),
            libvirt=self.holders.report(),
        )


@contextlib.contextmanager
def _unreadable_as_store_error() -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise StoreError("store-unreadable", f"{exc}; check the store path and its permissions") from exc


def plan_reconcile(
    root: str,
    desired: Sequence[Mapping[str, Any]],
    options: Optional[Options] = None,
    now: Optional[float] = None,
    proc: str = "/proc",
    fs_usage: FilesystemUsage = filesystem_usage,
    libvirt: Optional[Libvirt] = None,
    retire_now: Iterable[str] = (),
    arriving: Iterable[str] = (),
) -> Plan:
    """Read the store and return what a reconciliation does; changes nothing.

    ``retire_now``: uuids of managed images that are blocked or no longer in the verified index;
    they are retired (when not desired) even while a desired image of their name is missing.
    ``arriving``: uuids of desired images a sync's check mode expects to promote; they count as
    present for supersession. Raises ``retire-guard`` (see ``Options``) and ``desired-conflict``.
    """
    options = options if options is not None else Options()
    options.validate()
    with _unreadable_as_store_error():
        planner = _Planner(root, desired, options, _clock() if now is None else now, find_holders(proc, libvirt),
                           retire_now, arriving)
        return planner.plan(fs_usage)


def find_unknown(root: str, desired: Sequence[Mapping[str, Any]], grace_seconds: int = DEFAULT_GRACE_SECONDS,
                 now: Optional[float] = None, proc: str = "/proc") -> List[Entry]:
    """Unknown entries of the store (``imgdist --list_unknown_files``), without verifying any image.
    Nothing is acted on, so libvirt's domains are not read (the entries' ``domains`` are empty)."""
    with _unreadable_as_store_error():
        planner = _Planner(root, desired, Options(grace_seconds=grace_seconds), _clock() if now is None else now,
                           Holders(open_files(proc)))
        planner.unknown_entries()
        return planner.unknown


def find_pending(root: str, desired: Sequence[Mapping[str, Any]], retire_now: Iterable[str] = (),
                 now: Optional[float] = None) -> Dict[str, Pending]:
    """The managed images a sync keeps as ``superseded_pending`` (uuid -> Pending): the planner's own
    rule (``_Planner._waiting_for``), for the run guard (``imgdist check``, the libvirt hook, ``imgdist
    status``). Only reads: nobody's open files or libvirt domains are asked (a libvirt hook must not
    call back into libvirt), no action is planned and no guard raised. Raises ``desired-conflict`` and
    ``store-unreadable`` as ``plan_reconcile`` does."""
    with _unreadable_as_store_error():
        planner = _Planner(root, desired, Options(retire_max_percent=None), _clock() if now is None else now,
                           Holders(), retire_now)
        planner.desired_images()
        planner.not_desired()
    return {pending.uuid: pending for pending in planner.pending}
