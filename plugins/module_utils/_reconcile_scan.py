# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reconciliation, step one: read the image store as it is, following no symlink.

Private to the collection; not a public API. Plain Python (no ansible). ``survey`` lists what is
directly in the store directory (``Entry``: kind, size, identity, who holds it), ``find_holders``
who uses which file (processes holding it open, libvirt domains reading it as a disk, see
``_inuse``). The planner (``_reconcile_plan``) decides on what this finds; the executor
(``_reconcile_execute``) reads each entry again before acting on it.

Safety rules: nothing is ever followed through a symlink (entries are ``lstat``-ed; a symlink is
moved or removed as a link); an entry on another filesystem (a mount point, or a directory
containing one), deeper than ``MAX_DEPTH`` or that cannot be read completely carries a
``refusal`` and is never touched. See docs/reconcile.md.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple

from ._errors import StoreError
from ._inuse import Domains, Libvirt, libvirt_domains
from ._store import META_DIR, open_files

QUARANTINE_DIR = "quarantine"
MAX_DEPTH = 64  # directory levels below a store entry that are walked; deeper: reported, never touched

Identity = Tuple[int, int]  # (st_dev, st_ino) of an entry, not followed


def filesystem_usage(path: str) -> Tuple[int, int]:
    """Total and used bytes of the filesystem holding ``path`` (used includes root's reserve)."""
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize, (st.f_blocks - st.f_bfree) * st.f_frsize


def printable(text: str) -> str:
    """``text`` as a report can carry it: a file name that is not UTF-8 (decoded by Python with
    lone surrogates) shows its bytes as ``\\xNN`` escapes; any other name is unchanged."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    return text


def printable_all(value: Any) -> Any:
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(k) if isinstance(k, str) else k: printable_all(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [printable_all(item) for item in value]
    return value


def is_plain_name(name: Any) -> bool:
    """A name directly in the store: no separator, not ``.`` or ``..``, not the meta directory."""
    return (isinstance(name, str) and name not in ("", ".", "..", META_DIR)
            and "/" not in name and "\0" not in name)


def kind_of(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


# --------------------------------------------------------------------------- what is in use


@dataclass(frozen=True)
class Holders:
    """Who uses which file: processes holding it open, libvirt domains reading it as a disk."""

    pids: Mapping[Identity, List[int]] = field(default_factory=dict)
    domains: Mapping[Identity, List[str]] = field(default_factory=dict)
    unknown: Optional[str] = None  # the domains could not be read: every file counts as in use
    source: str = ""  # where the domains were read from ("none: libvirt is not installed ...")
    problems: Tuple[str, ...] = ()  # disk chains not followed to their end
    found: Optional[Domains] = None  # what _inuse found (ImageStore.retire asks again with it)

    def report(self) -> Dict[str, Any]:
        return {"source": self.source, "unknown": self.unknown, "problems": list(self.problems)}

    def of(self, identity: Identity) -> Tuple[Tuple[int, ...], Tuple[str, ...]]:
        return tuple(self.pids.get(identity, ())), tuple(self.domains.get(identity, ()))


def find_holders(proc: str = "/proc", libvirt: Optional[Libvirt] = None) -> Holders:
    """Open files (one pass over /proc) and the files libvirt's domains use (``_inuse``)."""
    domains = libvirt_domains(libvirt)
    return Holders(open_files(proc), domains.by_identity(), domains.unknown, domains.source, tuple(domains.problems),
                   domains)


@dataclass(frozen=True)
class Entry:
    """Something found directly in the store directory, inspected without following symlinks."""

    name: str
    path: str
    kind: str  # file | directory | symlink | other
    size: int  # a directory: every regular file under it; a symlink: 0 (the link, not its target)
    mtime: float
    identity: Identity
    pids: Tuple[int, ...] = ()  # processes holding it (or, for a directory, a file under it) open
    domains: Tuple[str, ...] = ()  # libvirt domains whose disks read it (or a file under it)
    use_unknown: Optional[str] = None  # libvirt's domains could not be read: counts as in use
    link_target: Optional[str] = None  # a symlink's text, for the report; never resolved
    refusal: Optional[str] = None  # why it can never be touched (another filesystem, unreadable)
    reason: str = ""  # why it is unknown

    @property
    def in_use(self) -> bool:
        return bool(self.pids or self.domains or self.use_unknown)

    @property
    def use(self) -> str:
        """How it is in use, for reasons: "held open", "in use by libvirt domain web1", ..."""
        parts = ["held open"] if self.pids else []
        if self.domains:
            parts.append(f"in use by libvirt domain{'s' if len(self.domains) > 1 else ''} {', '.join(self.domains)}")
        if self.use_unknown:
            parts.append(f"maybe in use ({self.use_unknown})")
        return " and ".join(parts)

    def as_dict(self) -> Dict[str, Any]:
        return {"path": self.path, "type": self.kind, "size": self.size, "mtime": self.mtime,
                "reason": self.reason, "pids": list(self.pids), "domains": list(self.domains),
                "link_target": self.link_target, "refusal": self.refusal}


# --------------------------------------------------------------------------- reading the store


def _inspect_tree(path: str, root_dev: int, holders: Holders) -> Tuple[int, List[int], Optional[str], List[str]]:
    """Bytes of the regular files under a directory, PIDs holding one open, a refusal if the tree
    reaches another filesystem, is deeper than ``MAX_DEPTH`` or cannot be read completely, and the
    domains using a file under it. Iterative (no recursion, whatever the depth); symlinks are not followed."""
    size = 0
    pids: Set[int] = set()
    domains: Set[str] = set()
    problems: List[str] = []
    pending: List[Tuple[str, int]] = [(path, 0)]
    while pending and len(problems) < 3:
        directory, depth = pending.pop()
        try:
            with os.scandir(directory) as listing:
                children = list(listing)
        except OSError as exc:
            problems.append(f"{printable(directory)}: {exc.strerror}")
            continue
        for child in children:
            try:
                st = child.stat(follow_symlinks=False)
            except OSError as exc:
                problems.append(f"{printable(child.path)}: {exc.strerror}")
                continue
            if stat.S_ISDIR(st.st_mode):
                if st.st_dev != root_dev:
                    problems.append(f"{printable(child.path)}: another filesystem is mounted there")
                elif depth + 1 >= MAX_DEPTH:
                    problems.append(f"deeper than {MAX_DEPTH} levels")
                    break
                else:
                    pending.append((child.path, depth + 1))
                continue
            if stat.S_ISREG(st.st_mode):
                size += st.st_size
            held_by, used_by = holders.of((st.st_dev, st.st_ino))
            pids.update(held_by)
            domains.update(used_by)
    refusal = None
    if problems:
        refusal = "cannot be handled safely (" + "; ".join(problems[:3]) + "); never touched"
    return size, sorted(pids), refusal, sorted(domains)


def inspect_entry(root: str, name: str, root_dev: int, holders: Holders) -> Optional[Entry]:
    """``root/name`` as found (``lstat``), or None when there is nothing there."""
    path = os.path.join(root, name)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    kind = kind_of(st.st_mode)
    identity = (st.st_dev, st.st_ino)
    if kind == "symlink":
        try:
            target: Optional[str] = os.readlink(path)
        except OSError:
            target = None
        _unused, domains = holders.of(identity)  # a domain may name the link itself as its disk
        return Entry(name, path, kind, 0, st.st_mtime, identity, domains=domains, use_unknown=holders.unknown,
                     link_target=target)
    if st.st_dev != root_dev:
        return Entry(name, path, kind, 0, st.st_mtime, identity,
                     refusal="another filesystem is mounted here; never touched")
    if kind == "directory":
        size, pids, refusal, used_by = _inspect_tree(path, root_dev, holders)
        return Entry(name, path, kind, size, st.st_mtime, identity, tuple(pids), tuple(used_by), holders.unknown,
                     refusal=refusal)
    size = st.st_size if kind == "file" else 0
    pids, domains = holders.of(identity)
    return Entry(name, path, kind, size, st.st_mtime, identity, pids, domains, holders.unknown)


def check_meta(root: str) -> None:
    for relative in (META_DIR, os.path.join(META_DIR, QUARANTINE_DIR)):
        path = os.path.join(root, relative)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise StoreError(
                "store-meta-invalid",
                f"{path} is a {kind_of(st.st_mode)}, not a directory; vmcloud keeps its manifest and quarantine "
                "there and follows no symlink out of the store; move it away by hand",
            )


@dataclass
class Survey:
    entries: Dict[str, Entry]
    root_dev: Optional[int]
    meta_bytes: int


def survey(root: str, holders: Holders) -> Survey:
    if not os.path.lexists(root):
        return Survey({}, None, 0)
    if not os.path.isdir(root):
        raise StoreError("store-invalid", f"{root} is not a directory; give the image store directory")
    check_meta(root)
    root_dev = os.stat(root).st_dev
    entries = {}
    for name in sorted(os.listdir(root)):
        if name == META_DIR:
            continue
        entry = inspect_entry(root, name, root_dev, holders)
        if entry is not None:
            entries[name] = entry
    meta = os.path.join(root, META_DIR)
    meta_bytes = _inspect_tree(meta, root_dev, Holders())[0] if os.path.isdir(meta) else 0
    return Survey(entries, root_dev, meta_bytes)
