# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The image store on a hypervisor: verify-and-promote, retire, manifest.

Private to the collection; not a public API. Nothing reaches the store unverified: a
downloaded file is opened without following a symlink (``open_staged``: the engine's user
can write the staging directory), must be a regular file owned as expected, is read to
exactly its declared size and checked against a content hash (SHA-256, or for a legacy
entry the piece hashes of its verified .torrent) while it is copied (and unpacked, for
compressed images, after a first verifying pass and up to the declared unpacked size) into
a temporary file ``.promote-*`` in the store directory itself; only a match is fsynced and
renamed into place. A mismatch, a short or long read or a full disk (``store-full``)
removes the temporary file and leaves the store as it was.

The manifest (``.vmcloud/manifest.json`` in the store) records what vmcloud put there:
per uuid the stored file, its SHA-256 and the (size, mtime, inode) it had when
verified, so an unchanged image is never read again.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import hashlib
import json
import os
import pwd
import stat
import tempfile
import time
import zlib
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, List, Optional, Set, Tuple

from ._engine import DEFAULT_ENGINE, DEFAULT_USERS
from ._errors import StoreError
from ._inuse import Domains, libvirt_domains
from ._io import READ_FLAGS, fsync_directory, sha256_file, write_atomic  # sha256_file: re-exported for its callers
from ._time import TIMESTAMP_FORMAT
from ._torrent import TorrentError, bdecode, check_info_hash, parse_torrent

META_DIR = ".vmcloud"
MANIFEST = "manifest.json"
CHUNK = 1 << 20  # what one read or decompress step handles
TEMP_PREFIX = ".promote-"  # _copy_verified's temporary files in the store
TEMP_GRACE_SECONDS = 3600  # a temporary file older than this is an interrupted promotion's leftover
DEFAULT_STORE_DIR = "/var/lib/vmcloud/images"
DEFAULT_ENGINE_USER = DEFAULT_USERS[DEFAULT_ENGINE]  # who owns what the default engine downloads (its role's user)
GIB = 1 << 30


def stored_file_name(image: Dict[str, Any]) -> str:
    """The name an image has in the store: compressed images are kept unpacked."""
    name = image["file"]
    if image.get("compressed") and name.endswith(".gz"):
        return name[: -len(".gz")]
    return name


def file_stat_key(path: str) -> Dict[str, int]:
    """(size, mtime, inode) of ``path`` itself: a symlink is never followed."""
    st = os.lstat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def open_files(proc: str = "/proc") -> Dict[Tuple[int, int], List[int]]:
    """Every file some process holds open, as (dev, inode) -> PIDs, from one pass over /proc.

    Only open file descriptors count (a running VM holds its disk open); memory maps of closed
    descriptors and working directories do not.
    """
    holders: Dict[Tuple[int, int], List[int]] = {}
    try:
        pids = os.listdir(proc)
    except OSError:
        return holders
    for pid in pids:
        if not pid.isdigit():
            continue
        fd_dir = os.path.join(proc, pid, "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        seen: Set[Tuple[int, int]] = set()
        for fd in fds:
            try:
                st = os.stat(os.path.join(fd_dir, fd))
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key not in seen:
                seen.add(key)
                holders.setdefault(key, []).append(int(pid))
    return holders


def open_by_processes(path: str, proc: str = "/proc") -> List[int]:
    """PIDs of processes that hold ``path`` open (a running VM keeps its disk open)."""
    target = os.stat(path)
    return open_files(proc).get((target.st_dev, target.st_ino), [])


def gunzip_stream(chunks: Iterable[bytes], origin: str, limit: Optional[int] = None) -> Iterator[bytes]:
    """Unpack a gzip stream (several members allowed, as pigz writes) in bounded memory.

    With ``limit``, unpacking stops with ``unpacked-too-large`` before a byte beyond ``limit``
    is yielded: a gzip bomb never puts more than declared into the store.
    """
    unpack = zlib.decompressobj(wbits=31)
    members = 0
    total = 0
    mid_member = False  # bytes fed to the current member that has not ended yet
    try:
        for chunk in chunks:
            pending = chunk
            while pending:
                mid_member = True
                data = unpack.decompress(pending, CHUNK)
                if data:
                    total += len(data)
                    if limit is not None and total > limit:
                        raise StoreError("unpacked-too-large",
                                         f"{origin} unpacks to more than the {limit} bytes declared; not promoted")
                    yield data
                if unpack.eof:
                    members += 1
                    mid_member = False
                    pending = unpack.unused_data
                    unpack = zlib.decompressobj(wbits=31)
                else:
                    pending = unpack.unconsumed_tail
    except zlib.error as exc:
        raise StoreError("unpack-failed", f"{origin} is not a valid gzip stream ({exc})") from exc
    if mid_member or members == 0:
        raise StoreError("unpack-failed", f"{origin} ends before its gzip stream does")


def unpacked_limit(image: Dict[str, Any]) -> Optional[int]:
    """The most bytes a compressed image may unpack to: its declared ``unpacked_size`` (top level or
    among the index entry's extra keys), else its ``volume_size`` (the volume made from it must hold
    it: GB, counted as GiB, in v2 entries; bytes in legacy ones), else no declared bound."""
    for value in (image.get("unpacked_size"), (image.get("extra") or {}).get("unpacked_size")):
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise StoreError("entry-malformed", f"unpacked_size {value!r} of {image.get('uuid')} is not a "
                                 "size in bytes; fix the index entry")
            return value
    volume = image.get("volume_size")
    if isinstance(volume, int) and not isinstance(volume, bool) and volume > 0:
        return volume * GIB if image.get("sha256") else volume
    return None


def engine_uids(owner: None | int | str) -> Set[int]:
    """The owners a staged file may have: root, this process's user, and the engine's user
    (``owner``: a user name or uid; None: the default engine's user, ``DEFAULT_ENGINE_USER``, when it
    exists)."""
    uids = {0, os.geteuid()}
    if isinstance(owner, int) and not isinstance(owner, bool):
        return uids | {owner}
    if isinstance(owner, str) and owner.isdigit():
        return uids | {int(owner)}
    try:
        return uids | {pwd.getpwnam(owner or DEFAULT_ENGINE_USER).pw_uid}
    except KeyError as exc:
        if owner is None:
            return uids  # no such user here: only root's (and our own) files are accepted
        raise StoreError("option-invalid", f"engine user {owner!r} does not exist; give the user the engine "
                         "runs as") from exc


def _unsafe(path: str, what: str) -> StoreError:
    return StoreError("staged-unsafe", f"{path} {what}; not promoted (the engine's user can write the staging "
                      "directory: vmcloud follows nothing there)")


def open_staged(path: str, staging_dir: Optional[str] = None, owner: None | int | str = None) -> int:
    """Open the downloaded file for reading without following any symlink below ``staging_dir``.

    Every directory between ``staging_dir`` (trusted: the site's configuration) and the file is
    opened relative to its parent with ``O_NOFOLLOW``, so a link planted by the engine's user is
    refused, not followed; without ``staging_dir`` no component of the path may be a symlink. The
    file is opened ``O_NONBLOCK`` (a FIFO does not hang the open) and must be a regular file with
    one link, owned by root, this process's user or the engine's user. Returns the descriptor,
    blocking again.
    """
    uids = engine_uids(owner)
    absolute = os.path.abspath(path)
    base = os.path.abspath(staging_dir) if staging_dir else os.sep
    relative = os.path.relpath(absolute, base)
    if relative in (os.curdir, os.pardir) or relative.startswith(os.pardir + os.sep):
        raise _unsafe(path, f"is outside the staging directory {base}")
    parts = relative.split(os.sep)
    try:
        dir_fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise StoreError("staged-missing", f"{base}: {exc.strerror}; download it first") from exc
    try:
        walked = base
        for part in parts[:-1]:
            walked = os.path.join(walked, part)
            try:
                next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _unsafe(path, f"lies under {walked}, a symlink or not a directory") from exc
                raise StoreError("staged-missing", f"{walked}: {exc.strerror}; download it first") from exc
            os.close(dir_fd)
            dir_fd = next_fd
        try:
            fd = os.open(parts[-1], READ_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _unsafe(path, "is a symlink") from exc
            raise StoreError("staged-missing", f"{path}: {exc.strerror}; download it first") from exc
    finally:
        os.close(dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _unsafe(path, "is not a regular file")
        if st.st_uid not in uids:
            raise _unsafe(path, f"is owned by uid {st.st_uid}, not by the engine's user or root "
                          f"(uids {', '.join(map(str, sorted(uids)))})")
        if st.st_nlink != 1:
            raise _unsafe(path, f"is a hard link ({st.st_nlink} names): its content may be another file's")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


class _Verifier:
    """Checks what is read of a staged file against the index: its SHA-256 (v2 entries), or the
    SHA-1 of each piece of its verified torrent (legacy entries, which have no SHA-256)."""

    def __init__(self, image: Dict[str, Any], origin: str, pieces: Optional[bytes], piece_length: int) -> None:
        self.image = image
        self.origin = origin
        self.pieces = pieces
        self.piece_length = piece_length
        self.sha256 = hashlib.sha256()
        self.piece = hashlib.sha1()  # noqa: S324 - BitTorrent v1 piece hashes are SHA-1
        self.in_piece = 0
        self.index = 0

    def update(self, data: bytes) -> None:
        self.sha256.update(data)
        if self.pieces is None:
            return
        view = memoryview(data)
        while view:
            take = min(len(view), self.piece_length - self.in_piece)
            self.piece.update(view[:take])
            self.in_piece += take
            view = view[take:]
            if self.in_piece == self.piece_length:
                self._end_piece()

    def _end_piece(self) -> None:
        expected = self.pieces[self.index * 20:(self.index + 1) * 20] if self.pieces is not None else b""
        if self.piece.digest() != expected:
            raise StoreError("content-hash-mismatch", f"{self.origin}: piece {self.index} does not match the "
                             "torrent's piece hash; not promoted (the engine re-checks it on the next run)")
        self.index += 1
        self.piece = hashlib.sha1()  # noqa: S324 - BitTorrent v1 piece hashes are SHA-1
        self.in_piece = 0

    def finish(self) -> str:
        if self.pieces is not None and self.in_piece:
            self._end_piece()
        digest = self.sha256.hexdigest()
        expected = self.image.get("sha256")
        if expected and digest != expected:
            raise StoreError("sha256-mismatch", f"{self.origin} has sha256 {digest}, the index says {expected}; "
                             "not promoted")
        return digest


def _legacy_pieces(image: Dict[str, Any], torrent: Optional[bytes], origin: str) -> Tuple[int, bytes, int]:
    """(content length, piece hashes, piece length) of a legacy entry's torrent, which must be the
    one the entry names (its info-hash is the entry's ``torrent-content-hash``)."""
    if torrent is None:
        raise StoreError("content-unverifiable", f"{image['uuid']} has no sha256 (a legacy entry) and no .torrent "
                         "was given to check its pieces; not promoted unverified")
    try:
        info = parse_torrent(torrent)
        check_info_hash(info, (image.get("torrent") or {}).get("info_hash"))
    except TorrentError as exc:
        raise StoreError(exc.rule, f"{origin}: {exc.message}") from exc
    if not info.single_file or info.name != image["file"]:
        raise StoreError("torrent-name-mismatch", f"the .torrent of {image['uuid']} holds {info.name!r}, not the "
                         f"single file {image['file']!r}; not promoted")
    return info.length, bdecode(torrent)[b"info"][b"pieces"], info.piece_length


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def stale_temporary_files(root: str, now: float, grace: int = TEMP_GRACE_SECONDS) -> List[str]:
    """Regular ``.promote-*`` files in the store older than ``grace``: left by a promotion killed
    between writing and renaming. Younger ones may belong to a promotion still running."""
    stale = []
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(root):
            if not name.startswith(TEMP_PREFIX):
                continue
            path = os.path.join(root, name)
            with contextlib.suppress(FileNotFoundError):
                st = os.lstat(path)
                if stat.S_ISREG(st.st_mode) and now - st.st_mtime >= grace:
                    stale.append(path)
    return sorted(stale)


def _mode_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISLNK, "a symlink"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")):
        if test(mode):
            return kind
    return "not a file"


def check_manifest(data: Any, origin: str) -> Dict[str, Dict[str, Any]]:
    """The manifest's images by uuid, each with at least a ``file``; anything else is
    ``store-invalid`` (one line; nothing is deleted on a manifest vmcloud cannot read)."""

    def invalid(what: str) -> StoreError:
        return StoreError("store-invalid", f"{origin}: {what}; vmcloud wrote no such manifest: move it away "
                          "(nothing was deleted)")

    if not isinstance(data, dict):
        raise invalid(f"expected a mapping, found {type(data).__name__}")
    images = data.get("images", {})
    if not isinstance(images, dict):
        raise invalid(f"'images' is {type(images).__name__}, not a mapping of uuid to entry")
    for uuid, entry in images.items():
        if not isinstance(entry, dict):
            raise invalid(f"images[{uuid!r}] is not a mapping")
        if not isinstance(entry.get("file"), str) or not entry["file"]:
            raise invalid(f"images[{uuid!r}] has no 'file'")
    return images


@dataclass
class PromoteResult:
    changed: bool
    path: str
    sha256: str
    action: str  # "present" (already there), "promoted", "repaired"


class ImageStore:
    def __init__(self, root: str) -> None:
        self.root = root
        self.meta_dir = os.path.join(root, META_DIR)
        self.manifest_path = os.path.join(self.meta_dir, MANIFEST)

    # -------------------------------------------------------------- manifest

    def manifest(self) -> Dict[str, Dict[str, Any]]:
        try:
            fd = os.open(self.manifest_path, READ_FLAGS)  # a symlink or FIFO there: refused, no hang
        except FileNotFoundError:
            return {}
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise StoreError("manifest-unreadable", f"{self.manifest_path} cannot be read ({exc}); inspect it "
                                 "by hand") from exc
            fd = -1
        try:
            if fd < 0 or not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StoreError("store-invalid", f"{self.manifest_path} is not a regular file; vmcloud wrote no "
                                 "such manifest: move it away (nothing was deleted)")
            with os.fdopen(fd, "rb") as handle:
                fd = -1
                data = json.loads(handle.read().decode("utf-8"))
        except (OSError, ValueError) as exc:
            raise StoreError(
                "manifest-unreadable", f"{self.manifest_path} cannot be read ({exc}); inspect it by hand"
            ) from exc
        finally:
            if fd >= 0:
                os.close(fd)
        return check_manifest(data, self.manifest_path)

    def _save_manifest(self, images: Dict[str, Dict[str, Any]]) -> None:
        os.makedirs(self.meta_dir, mode=0o755, exist_ok=True)
        body = json.dumps({"format": 1, "images": images}, indent=1, sort_keys=True) + "\n"
        write_atomic(self.manifest_path, body.encode("utf-8"))

    def path_of(self, image: Dict[str, Any]) -> str:
        return os.path.join(self.root, stored_file_name(image))

    # -------------------------------------------------------------- state

    def is_current(self, image: Dict[str, Any], entry: Optional[Dict[str, Any]] = None) -> bool:
        """True when the store holds ``image`` as verified and the file has not changed since.

        The stored file is ``lstat``-ed first: a symlink, FIFO or device where the image was is not
        current, and is never opened (a FIFO would block the reader)."""
        entry = entry if entry is not None else self.manifest().get(image["uuid"])
        path = self.path_of(image)
        if not entry or entry.get("file") != stored_file_name(image):
            return False
        if image.get("sha256") and entry.get("source_sha256") != image["sha256"]:
            return False
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False
        if not stat.S_ISREG(st.st_mode):
            return False
        stat_key = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}
        if stat_key == entry.get("stat"):
            return True
        # Changed since it was verified (touched, rewritten, restored): read it again.
        try:
            return stat_key["size"] == entry.get("size") and sha256_file(path) == entry.get("sha256")
        except StoreError:
            return False  # replaced by something not a regular file since the lstat

    # -------------------------------------------------------------- promote

    def promote(self, image: Dict[str, Any], staged_path: str, check_mode: bool = False, *,
                staging_dir: Optional[str] = None, owner: None | int | str = None,
                torrent: Optional[bytes] = None) -> PromoteResult:
        """Verify the downloaded ``staged_path`` and copy (or unpack) it into the store.

        ``staging_dir``: the directory the engine downloads into; nothing below it is followed
        through a symlink (without it, no component of ``staged_path`` may be one). ``owner``: the
        engine's user (name or uid; default ``DEFAULT_ENGINE_USER``); root's files are accepted too.
        ``torrent``: the verified .torrent bytes, required for a legacy entry (no ``sha256``),
        whose content is then checked against the torrent's piece hashes.
        """
        manifest = self.manifest()
        entry = manifest.get(image["uuid"])
        final_path = self.path_of(image)
        if self.is_current(image, entry):
            return PromoteResult(False, final_path, entry["sha256"], "present")
        action = "repaired" if entry else "promoted"
        if check_mode:
            return PromoteResult(True, final_path, "", action)
        sha256, size, source_sha256 = self._copy_verified(image, staged_path, final_path, staging_dir, owner, torrent)
        manifest = self.manifest()
        manifest[image["uuid"]] = {
            "uuid": image["uuid"],
            "name": image.get("name"),
            "version": image.get("version"),
            "file": stored_file_name(image),
            "sha256": sha256,
            "size": size,
            "source_file": image["file"],
            "source_sha256": image.get("sha256") or None,
            "info_hash": (image.get("torrent") or {}).get("info_hash"),
            "stat": file_stat_key(final_path),
            "promoted_at": datetime.datetime.now(datetime.UTC).strftime(TIMESTAMP_FORMAT),
        }
        if not image.get("sha256"):
            manifest[image["uuid"]]["verified_by"] = "torrent-pieces"
            manifest[image["uuid"]]["content_sha256"] = source_sha256
        self._save_manifest(manifest)
        return PromoteResult(True, final_path, sha256, action)

    def clean_temporary_files(self, now: Optional[float] = None) -> List[str]:
        """Remove what promotions killed between write and rename left (older than the grace period,
        held open by nobody); return the paths removed."""
        stale = stale_temporary_files(self.root, time.time() if now is None else now)
        if not stale:
            return []
        holders = open_files()
        removed = []
        for path in stale:
            with contextlib.suppress(FileNotFoundError):
                st = os.lstat(path)
                if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in holders:
                    os.unlink(path)
                    removed.append(path)
        if removed:
            fsync_directory(self.root)
        return removed

    def _copy_verified(self, image: Dict[str, Any], staged_path: str, final_path: str,
                       staging_dir: Optional[str], owner: None | int | str, torrent: Optional[bytes]) -> tuple:
        """Read exactly the declared bytes of the staged file, verified, into a temporary file in
        the store; rename it into place only when every check passed. Returns (stored SHA-256,
        stored size, source SHA-256)."""
        declared = image.get("size")
        pieces: Optional[bytes] = None
        piece_length = 0
        if not image.get("sha256"):
            length, pieces, piece_length = _legacy_pieces(image, torrent, staged_path)
            if declared is not None and declared != length:
                raise StoreError("size-mismatch", f"the .torrent of {image['uuid']} holds {length} bytes, the "
                                 f"index says {declared}; not promoted")
            declared = length
        compressed = bool(image.get("compressed"))
        limit = unpacked_limit(image) if compressed else None

        def verifier() -> _Verifier:
            return _Verifier(image, staged_path, pieces, piece_length)

        source = open_staged(staged_path, staging_dir, owner)
        try:
            size = os.fstat(source).st_size
            declared = size if declared is None else declared
            if size != declared:
                raise StoreError("size-mismatch",
                                 f"{staged_path} is {size} bytes, the index says {declared}; not promoted")
            if compressed:
                # Verify the packed bytes before unpacking anything: an unendorsed gzip bomb never
                # writes a byte. The second pass verifies again (the file may change in between).
                check = verifier()
                for _chunk in self._read_exact(source, declared, check, staged_path):
                    pass
                check.finish()
                os.lseek(source, 0, os.SEEK_SET)
            os.makedirs(self.root, mode=0o755, exist_ok=True)
            self.clean_temporary_files()
            return self._stream(image, source, declared, verifier(), limit, final_path, staged_path)
        finally:
            os.close(source)

    @staticmethod
    def _read_exact(fd: int, declared: int, check: _Verifier, origin: str) -> Iterator[bytes]:
        remaining = declared
        while remaining:
            chunk = os.read(fd, min(CHUNK, remaining))
            if not chunk:
                raise StoreError("size-mismatch", f"{origin} ended after {declared - remaining} bytes, the index "
                                 f"says {declared}; not promoted")
            check.update(chunk)
            remaining -= len(chunk)
            yield chunk
        if os.read(fd, 1):
            raise StoreError("size-mismatch", f"{origin} has more than the {declared} bytes declared (it grew "
                             "while read); not promoted")

    def _stream(self, image: Dict[str, Any], source: int, declared: int, check: _Verifier, limit: Optional[int],
                final_path: str, origin: str) -> tuple:
        """Copy (and unpack) ``source`` into a temporary file, verify, rename into place."""
        fd, tmp_path = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=self.root)
        output_digest = hashlib.sha256()
        written = 0
        try:
            try:
                chunks: Iterable[bytes] = self._read_exact(source, declared, check, origin)
                if image.get("compressed"):
                    chunks = gunzip_stream(chunks, origin, limit)
                for data in chunks:
                    _write_all(fd, data)
                    output_digest.update(data)
                    written += len(data)
                source_sha256 = check.finish()
                os.fsync(fd)
                os.fchmod(fd, 0o644)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise StoreError("store-full", f"no space left in {self.root} while promoting "
                                     f"{image['uuid']}; nothing changed (free space and run again)") from exc
                raise
            finally:
                os.close(fd)
            os.replace(tmp_path, final_path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_path)
            raise
        fsync_directory(self.root)
        return output_digest.hexdigest(), written, source_sha256

    # -------------------------------------------------------------- retire

    def retire(self, uuid: str, check_mode: bool = False, domains: Optional[Domains] = None) -> Dict[str, Any]:
        """Remove a managed image that is no longer desired, unless it is in use: a process holds it
        open, or a libvirt domain reads it (``domains``, read from libvirt when not given; ``_inuse``).

        The one function that deletes a managed image; only the reconcile executor
        (``_reconcile_execute.apply_plan``) calls it, after its plan checked the name (a plain name in the
        store), the identity of the file and who holds it. Everything that retires (image_sync,
        ``imgdist sync``, image_store) goes through that plan."""
        manifest = self.manifest()
        entry = manifest.get(uuid)
        if entry is None:
            return {"changed": False, "uuid": uuid, "action": "absent"}
        path = os.path.join(self.root, entry["file"])
        if any(other["file"] == entry["file"] for key, other in manifest.items() if key != uuid):
            # A newer version kept the file name: the file is that image's now, only the entry goes.
            if not check_mode:
                del manifest[uuid]
                self._save_manifest(manifest)
            return {"changed": True, "uuid": uuid, "action": "forgotten", "path": path}
        if os.path.exists(path):
            holders = open_by_processes(path)
            domains = domains if domains is not None else libvirt_domains()
            st = os.stat(path)
            users = domains.by_identity().get((st.st_dev, st.st_ino), [])
            if holders or users or domains.unknown:
                held = {"changed": False, "uuid": uuid, "action": "held-open", "path": path, "pids": holders,
                        "domains": users}
                return dict(held, unknown=domains.unknown) if domains.unknown else held
        if check_mode:
            return {"changed": True, "uuid": uuid, "action": "removed", "path": path}
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        fsync_directory(self.root)
        del manifest[uuid]
        self._save_manifest(manifest)
        return {"changed": True, "uuid": uuid, "action": "removed", "path": path}

    def forget(self, uuids: Iterable[str], check_mode: bool = False) -> list:
        """Drop manifest entries without touching any file; return the uuids that were there.

        For a copy that no longer matches what was verified (the next promotion fetches it
        again) and for entries whose file belongs to another image or lies outside the store.
        """
        manifest = self.manifest()
        dropped = [uuid for uuid in sorted(set(uuids)) if uuid in manifest]
        if dropped and not check_mode:
            for uuid in dropped:
                del manifest[uuid]
            self._save_manifest(manifest)
        return dropped

    def holdings(self) -> list:
        """Every managed image with its state: present (verified, unchanged), corrupt or missing,
        and why. The stored file is ``lstat``-ed first: nothing is followed or opened that is not a
        regular file directly in the store (a FIFO there is "corrupt", not a hang)."""
        held = []
        for uuid, entry in sorted(self.manifest().items()):
            name = entry["file"]
            path = os.path.join(self.root, name)
            source = entry.get("source_file") or name
            image = {"uuid": uuid, "file": source, "compressed": name != source, "sha256": entry.get("source_sha256")}
            state, reason = "corrupt", ""
            if name in (".", "..", META_DIR) or "/" in name or "\0" in name:
                reason = f"the manifest names {name!r}, not a file in the store"
            else:
                try:
                    st: Optional[os.stat_result] = os.lstat(path)
                except FileNotFoundError:
                    st = None
                if st is None:
                    state, reason = "missing", "not in the store"
                elif not stat.S_ISREG(st.st_mode):
                    reason = "not a regular file (" + _mode_kind(st.st_mode) + ")"
                elif self.is_current(image, entry):
                    state, reason = "present", "verified, unchanged"
                else:
                    reason = "changed since it was verified"
            held.append({"uuid": uuid, "name": entry.get("name"), "version": entry.get("version"),
                         "path": path, "size": entry.get("size"), "sha256": entry.get("sha256"), "state": state,
                         "reason": reason})
        return held
