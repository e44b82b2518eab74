# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which files libvirt domains use as disks, and the qcow2 backing chains behind them.

Private to the collection; not a public API. Plain Python 3.11 standard library: the reconcile
planner (``_reconcile``), ``imgdist`` and the libvirt qemu hook (the run guard) call it on
hypervisors. This is the one implementation of "what does a domain's disk read": the hook
checks those files, the store never retires, evicts or quarantines them.

A store file is *in use* when a process holds it open (``_store.open_files``) or when any libvirt
domain - running, defined but shut off, or managed-saved - names it as a disk: its
``<source file>``, a ``<backingStore>`` source, or a file of the disk's qcow2 backing chain
(read from the qcow2 headers, since libvirt's inactive XML names only the top overlay).

Domains come from ``virsh`` (``list --all``, ``dumpxml --inactive``, the live XML of a running
domain, ``managedsave-dumpxml`` of a managed save). When virsh is absent or cannot reach
libvirtd, the persistent definitions libvirt keeps in ``/etc/libvirt/qemu/*.xml`` are read
instead (a running guest holds its disks open, so the process check covers it). When neither
can be read the answer is *unknown*, and the caller must treat every file as in use.

qcow2 headers are read without trusting them: the chain is bounded (``MAX_CHAIN`` files), a loop
is refused, a backing name is bounded as qemu bounds it (1023 bytes, inside the first cluster),
and a relative backing name is resolved against the directory of the overlay that names it (as
qemu does). A disk whose driver is not qcow2 is never parsed: qemu does not read its header
either, and a guest may write anything into a raw disk.
"""

from __future__ import annotations

import os
import shutil
import stat
import struct
import subprocess
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple
from xml.etree import ElementTree

QCOW2_MAGIC = b"QFI\xfb"
MAX_CHAIN = 32  # files in one disk's chain, the disk itself included
MAX_BACKING_NAME = 1023  # qemu refuses a longer backing file name
MAX_EXTENSIONS = 64
EXT_END = 0x00000000
EXT_BACKING_FORMAT = 0xE2792ACA
EXT_DATA_FILE = 0x44415441
DEFAULT_URI = "qemu:///system"
DEFAULT_CONFIG_DIR = "/etc/libvirt/qemu"
VIRSH_TIMEOUT = 60
RULE = "image-in-use"
DomainXmlError = ElementTree.ParseError  # what domain_disks raises for XML that does not parse

Identity = Tuple[int, int]


# --------------------------------------------------------------------------- qcow2 headers


class Qcow2Malformed(Exception):
    """The file starts like a qcow2 image but its header cannot be what qemu opens."""


@dataclass(frozen=True)
class Qcow2Header:
    version: int
    backing: Optional[str]  # as written in the header (may be relative), None: no backing file
    backing_format: Optional[str]  # the backing format header extension, None when absent
    data_file: Optional[str]  # the external data file extension (qcow2 v3), None when absent


def _read_exact(fd: int, offset: int, size: int, what: str) -> bytes:
    data = os.pread(fd, size, offset)
    if len(data) != size:
        raise Qcow2Malformed(f"{what} ends at byte {offset + len(data)}, before its {size} bytes")
    return data


def _extensions(fd: int, start: int, end: int) -> Dict[int, bytes]:
    """Header extensions between ``start`` and ``end`` (type -> data), bounded in count and size."""
    found: Dict[int, bytes] = {}
    offset = start
    for _unused in range(MAX_EXTENSIONS):
        if offset + 8 > end:
            return found  # no room for another extension: qemu stops there too
        kind, length = struct.unpack(">II", _read_exact(fd, offset, 8, "a header extension"))
        if kind == EXT_END:
            return found
        offset += 8
        if offset + length > end:
            raise Qcow2Malformed(f"header extension {kind:#x} of {length} bytes runs past the header")
        found.setdefault(kind, _read_exact(fd, offset, length, "a header extension"))
        offset += (length + 7) & ~7
    raise Qcow2Malformed(f"more than {MAX_EXTENSIONS} header extensions")


def _text(data: bytes, what: str) -> str:
    if b"\0" in data:
        raise Qcow2Malformed(f"the {what} contains a NUL byte")
    return os.fsdecode(data)


def read_qcow2_header(fd: int) -> Optional[Qcow2Header]:
    """The backing references in the qcow2 header of the open file ``fd``; None: not qcow2."""
    head = os.pread(fd, 104, 0)
    if head[:4] != QCOW2_MAGIC:
        return None
    if len(head) < 72:
        raise Qcow2Malformed(f"a qcow2 header is at least 72 bytes, the file has {len(head)}")
    version, offset, size, cluster_bits = struct.unpack(">IQII", head[4:24])
    if version not in (2, 3):
        raise Qcow2Malformed(f"qcow2 version {version} (qemu opens 2 and 3)")
    if not 9 <= cluster_bits <= 21:
        raise Qcow2Malformed(f"cluster_bits {cluster_bits} (qemu accepts 9 to 21)")
    cluster = 1 << cluster_bits
    header_length = 72
    if version == 3:
        if len(head) < 104:
            raise Qcow2Malformed(f"a qcow2 v3 header is at least 104 bytes, the file has {len(head)}")
        header_length = struct.unpack(">I", head[100:104])[0]
        if header_length < 104 or header_length > cluster:
            raise Qcow2Malformed(f"header_length {header_length} (104 to the cluster size {cluster})")
    backing = None
    ext_end = cluster
    if offset:
        if size > MAX_BACKING_NAME:
            raise Qcow2Malformed(f"a backing file name of {size} bytes (qemu allows {MAX_BACKING_NAME})")
        if offset < header_length or offset + size > cluster:
            raise Qcow2Malformed(f"the backing file name at {offset} (+{size}) is not inside the first cluster "
                                 f"after the header")
        backing = _text(_read_exact(fd, offset, size, "the backing file name"), "backing file name") or None
        ext_end = offset
    extensions = _extensions(fd, header_length, ext_end)
    backing_format = extensions.get(EXT_BACKING_FORMAT)
    data_file = extensions.get(EXT_DATA_FILE)
    return Qcow2Header(
        version, backing,
        _text(backing_format, "backing format").rstrip() if backing_format is not None else None,
        (_text(data_file, "data file name") or None) if data_file is not None else None,
    )


@dataclass(frozen=True)
class Chain:
    """The files one disk reads: the disk first, then each backing (and external data) file."""

    files: Tuple[str, ...]
    problem: Optional[str] = None  # why the chain was not followed to its end
    complete: bool = True  # False: files past the problem may be read too (too long, unreadable)


def _resolve(name: str, overlay: str) -> Optional[str]:
    """A backing name as a local path (relative: against the overlay's directory), or None for a
    network protocol (``nbd://``, ``rbd:``...). ``json:`` names raise (not parsed here)."""
    if name.startswith("json:"):
        raise ValueError("json")
    if name.startswith("file:"):
        name = name[len("file:"):]
    elif "://" in name:
        return None
    return name if os.path.isabs(name) else os.path.join(os.path.dirname(overlay), name)


def backing_chain(path: str, fmt: Optional[str] = "qcow2", max_files: int = MAX_CHAIN) -> Chain:
    """The files a disk of format ``fmt`` at ``path`` reads (see the module docstring)."""
    files: List[str] = []
    seen: Dict[Identity, str] = {}
    current: Optional[str] = path
    current_fmt = fmt
    while current is not None:
        if len(files) >= max_files:
            return Chain(tuple(files), f"the backing chain of {path} is longer than {max_files} files "
                                       f"(at {current})", complete=False)
        files.append(current)
        if current_fmt not in (None, "qcow2"):
            break  # raw (or another format): qemu reads no qcow2 header from it
        try:
            fd = os.open(current, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            break  # qemu cannot open it either: nothing further is read
        except OSError as exc:
            return Chain(tuple(files), f"{current} cannot be read ({exc.strerror})", complete=False)
        try:
            st = os.fstat(fd)
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
                break
            identity = (st.st_dev, st.st_ino)
            if identity in seen:
                files.pop()
                return Chain(tuple(files), f"the backing chain of {path} loops: {current} is {seen[identity]} "
                                           "again (qemu refuses it)")
            seen[identity] = current
            header = read_qcow2_header(fd)
        except Qcow2Malformed as exc:
            return Chain(tuple(files), f"{current} has a malformed qcow2 header: {exc}")
        except OSError as exc:
            return Chain(tuple(files), f"{current} cannot be read ({exc.strerror})", complete=False)
        finally:
            os.close(fd)
        if header is None:
            break  # not qcow2: a raw image (probed as qemu would), the end of the chain
        try:
            if header.data_file:
                data_file = _resolve(header.data_file, current)
                if data_file is not None and data_file not in files:
                    files.append(data_file)
            current = _resolve(header.backing, current) if header.backing else None
        except ValueError:
            return Chain(tuple(files), f"{current} names a json: backing or data file, which is not followed",
                         complete=False)
        current_fmt = header.backing_format
    return Chain(tuple(files))


# --------------------------------------------------------------------------- domain XML


@dataclass(frozen=True)
class DiskFiles:
    """Every file the disks of one domain definition read, and the chains that could not be
    followed to their end."""

    name: str
    files: Tuple[str, ...]
    problems: Tuple[str, ...] = ()
    complete: bool = True


def _source_file(element: ElementTree.Element) -> Optional[str]:
    source = element.find("source")
    if source is None:
        return None
    return source.get("file") or source.get("dev") or None


def _format(element: ElementTree.Element, tag: str) -> Optional[str]:
    node = element.find(tag)
    return node.get("type") if node is not None else None


def domain_disks(domain_xml: str | bytes, follow: Callable[..., Chain] = backing_chain) -> DiskFiles:
    """The files the disks of a domain read (every device: disks, cdroms, floppies).

    Only parses: it never calls libvirt (the qemu hook runs it inside libvirtd's start of a guest,
    where calling back would deadlock). Raises ``DomainXmlError`` for XML that does not parse.
    """
    root = ElementTree.fromstring(domain_xml)  # noqa: S314 - libvirt's own XML (virsh or its config dir)
    name = root.findtext("name") or ""
    files: List[str] = []
    problems: List[str] = []
    complete = True
    for disk in root.iter("disk"):
        # No format given is raw for libvirt (it probes no format): its header is never read.
        layers = [(_source_file(disk), _format(disk, "driver") or "raw")]
        for store in disk.iter("backingStore"):
            layers.append((_source_file(store), _format(store, "format") or "raw"))
        for path, fmt in layers:
            if not path:
                continue
            chain = follow(path, fmt)
            files.extend(p for p in chain.files if p not in files)
            if chain.problem:
                problems.append(chain.problem)
                complete = complete and chain.complete
    return DiskFiles(name, tuple(files), tuple(problems), complete)


# --------------------------------------------------------------------------- libvirt's domains


@dataclass(frozen=True)
class Libvirt:
    """Where the domains are read from (the defaults are a hypervisor's)."""

    uri: str = DEFAULT_URI
    virsh: str = "virsh"
    config_dir: str = DEFAULT_CONFIG_DIR
    env: Optional[Dict[str, str]] = None  # virsh's environment; None: LC_ALL=C and a system PATH


@dataclass
class Domains:
    """Every domain found, with the files its disks read."""

    disks: Dict[str, Tuple[str, ...]] = field(default_factory=dict)  # domain name -> files
    source: str = ""  # where they were read from, for reports
    unknown: Optional[str] = None  # why the domains could not be read: treat every file as in use
    problems: List[str] = field(default_factory=list)  # chains not followed to their end (said, not fatal)

    def add(self, found: DiskFiles) -> None:
        known = self.disks.get(found.name, ())
        self.disks[found.name] = known + tuple(p for p in found.files if p not in known)
        self.problems.extend(f"domain {found.name}: {problem}" for problem in found.problems)
        if not found.complete and self.unknown is None:
            self.unknown = (f"cannot tell every file domain {found.name} uses ({found.problems[-1]}); "
                            "nothing is retired, evicted or quarantined until that chain is fixed")

    def by_identity(self) -> Dict[Identity, List[str]]:
        """(st_dev, st_ino) -> the names of the domains whose disks read that file."""
        users: Dict[Identity, List[str]] = {}
        for name, paths in sorted(self.disks.items()):
            for path in paths:
                for look in (os.lstat, os.stat):  # a symlink named as a disk, and the file behind it
                    try:
                        st = look(path)
                    except OSError:
                        continue
                    names = users.setdefault((st.st_dev, st.st_ino), [])
                    if name not in names:
                        names.append(name)
        return users


class _VirshFailed(Exception):
    pass


def _virsh(libvirt: Libvirt, *args: str) -> str:
    env = libvirt.env if libvirt.env is not None else {
        "LC_ALL": "C", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    try:
        done = subprocess.run([libvirt.virsh, "-q", "-c", libvirt.uri, *args], env=env, capture_output=True,
                              stdin=subprocess.DEVNULL, timeout=VIRSH_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _VirshFailed(f"virsh {args[0]}: {exc}") from exc
    if done.returncode != 0:
        message = " ".join(done.stderr.decode("utf-8", "replace").split()) or f"exit status {done.returncode}"
        raise _VirshFailed(f"virsh -c {libvirt.uri} {args[0]}: {message}")
    return done.stdout.decode("utf-8", "replace")


def _from_virsh(libvirt: Libvirt) -> Domains:
    domains = Domains(source=f"virsh -c {libvirt.uri}")
    uuids = _virsh(libvirt, "list", "--all", "--uuid").split()
    running = set(_virsh(libvirt, "list", "--uuid").split())
    saved = set(_virsh(libvirt, "list", "--all", "--uuid", "--with-managed-save").split())
    for uuid in uuids:
        try:
            documents = [_virsh(libvirt, "dumpxml", "--inactive", uuid)]
            if uuid in running:  # its live XML may differ (a disk changed until the next start)
                documents.append(_virsh(libvirt, "dumpxml", uuid))
            if uuid in saved:
                documents.append(_virsh(libvirt, "managedsave-dumpxml", uuid))
        except _VirshFailed:
            if uuid not in _virsh(libvirt, "list", "--all", "--uuid").split():
                continue  # undefined since listed: it uses nothing now
            raise
        for document in documents:
            domains.add(domain_disks(document))
    return domains


def _from_config_dir(directory: str, why: str) -> Domains:
    domains = Domains(source=f"{directory}/*.xml ({why})")
    for entry in sorted(os.listdir(directory)):
        path = os.path.join(directory, entry)
        if entry.endswith(".xml") and os.path.isfile(path):
            with open(path, "rb") as handle:
                domains.add(domain_disks(handle.read()))
    return domains


def libvirt_domains(libvirt: Optional[Libvirt] = None) -> Domains:
    """Every libvirt domain and the files its disks read (see the module docstring); never raises."""
    libvirt = libvirt or Libvirt()
    why = None
    if shutil.which(libvirt.virsh) is None:
        why = "virsh not found"
    else:
        try:
            return _from_virsh(libvirt)
        except _VirshFailed as exc:
            why = str(exc)
        except ElementTree.ParseError as exc:
            return Domains(source=f"virsh -c {libvirt.uri}",
                           unknown=f"virsh gave domain XML that does not parse ({exc}); every file counts as in use")
    if not os.path.lexists(libvirt.config_dir):
        return Domains(source=f"none: libvirt is not installed ({why}, no {libvirt.config_dir})")
    try:
        return _from_config_dir(libvirt.config_dir, why)
    except (OSError, ElementTree.ParseError) as exc:
        return Domains(source=libvirt.config_dir,
                       unknown=f"libvirt's domains cannot be read ({why}; {libvirt.config_dir}: {exc}); "
                               "every file counts as in use: start libvirtd or fix its configuration")
