# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The image store on a hypervisor: verify-and-promote, retire, manifest.

Private to the collection; not a public API. Nothing reaches the store unverified: a
downloaded file is read once, its SHA-256 compared with the index while it is copied
(and unpacked, for compressed images) into a temporary file in the store directory
itself; only a match is fsynced and renamed into place. A mismatch, a short read or a
full disk removes the temporary file and leaves the store as it was.

The manifest (``.vmcloud/manifest.json`` in the store) records what vmcloud put there:
per uuid the stored file, its SHA-256 and the (size, mtime, inode) it had when
verified, so an unchanged image is never read again.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import hashlib
import json
import os
import tempfile
import zlib
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, List, Optional, Set, Tuple

from ._errors import StoreError
from ._io import fsync_directory, write_atomic

META_DIR = ".vmcloud"
MANIFEST = "manifest.json"
CHUNK = 1 << 20


def stored_file_name(image: Dict[str, Any]) -> str:
    """The name an image has in the store: compressed images are kept unpacked."""
    name = image["file"]
    if image.get("compressed") and name.endswith(".gz"):
        return name[: -len(".gz")]
    return name


def file_stat_key(path: str) -> Dict[str, int]:
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


def gunzip_stream(chunks: Iterable[bytes], origin: str) -> Iterator[bytes]:
    """Unpack a gzip stream (several members allowed, as pigz writes) in bounded memory."""
    unpack = zlib.decompressobj(wbits=31)
    members = 0
    mid_member = False  # bytes fed to the current member that has not ended yet
    try:
        for chunk in chunks:
            pending = chunk
            while pending:
                mid_member = True
                data = unpack.decompress(pending, CHUNK)
                if data:
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
            with open(self.manifest_path, "rb") as handle:
                data = json.loads(handle.read().decode("utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StoreError(
                "manifest-unreadable", f"{self.manifest_path} cannot be read ({exc}); inspect it by hand"
            ) from exc
        return data.get("images", {}) if isinstance(data, dict) else {}

    def _save_manifest(self, images: Dict[str, Dict[str, Any]]) -> None:
        os.makedirs(self.meta_dir, mode=0o755, exist_ok=True)
        body = json.dumps({"format": 1, "images": images}, indent=1, sort_keys=True) + "\n"
        write_atomic(self.manifest_path, body.encode("utf-8"))

    def path_of(self, image: Dict[str, Any]) -> str:
        return os.path.join(self.root, stored_file_name(image))

    # -------------------------------------------------------------- state

    def is_current(self, image: Dict[str, Any], entry: Optional[Dict[str, Any]] = None) -> bool:
        """True when the store holds ``image`` as verified and the file has not changed since."""
        entry = entry if entry is not None else self.manifest().get(image["uuid"])
        path = self.path_of(image)
        if not entry or entry.get("file") != stored_file_name(image):
            return False
        if image.get("sha256") and entry.get("source_sha256") != image["sha256"]:
            return False
        try:
            stat_key = file_stat_key(path)
        except FileNotFoundError:
            return False
        if stat_key == entry.get("stat"):
            return True
        # Changed since it was verified (touched, rewritten, restored): read it again.
        return stat_key["size"] == entry.get("size") and sha256_file(path) == entry.get("sha256")

    # -------------------------------------------------------------- promote

    def promote(self, image: Dict[str, Any], staged_path: str, check_mode: bool = False) -> PromoteResult:
        manifest = self.manifest()
        entry = manifest.get(image["uuid"])
        final_path = self.path_of(image)
        if self.is_current(image, entry):
            return PromoteResult(False, final_path, entry["sha256"], "present")
        action = "repaired" if entry else "promoted"
        if check_mode:
            return PromoteResult(True, final_path, "", action)
        sha256, size = self._copy_verified(image, staged_path, final_path)
        manifest = self.manifest()
        manifest[image["uuid"]] = {
            "uuid": image["uuid"],
            "name": image.get("name"),
            "version": image.get("version"),
            "file": stored_file_name(image),
            "sha256": sha256,
            "size": size,
            "source_file": image["file"],
            "source_sha256": image.get("sha256"),
            "info_hash": (image.get("torrent") or {}).get("info_hash"),
            "stat": file_stat_key(final_path),
            "promoted_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        self._save_manifest(manifest)
        return PromoteResult(True, final_path, sha256, action)

    def _copy_verified(self, image: Dict[str, Any], staged_path: str, final_path: str) -> tuple:
        expected_size = image.get("size")
        try:
            source_size = os.path.getsize(staged_path)
        except OSError as exc:
            raise StoreError("staged-missing", f"{staged_path}: {exc.strerror}; download it first") from exc
        if expected_size is not None and source_size != expected_size:
            raise StoreError(
                "size-mismatch",
                f"{staged_path} is {source_size} bytes, the index says {expected_size}; not promoted",
            )
        os.makedirs(self.root, mode=0o755, exist_ok=True)
        fd, tmp_path = tempfile.mkstemp(prefix=".promote-", dir=self.root)
        try:
            source_digest, output_digest, written = self._stream(image, staged_path, fd)
            if image.get("sha256") and source_digest != image["sha256"]:
                raise StoreError(
                    "sha256-mismatch",
                    f"{staged_path} has sha256 {source_digest}, the index says {image['sha256']}; not promoted",
                )
            os.chmod(tmp_path, 0o644)
            os.replace(tmp_path, final_path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_path)
            raise
        fsync_directory(self.root)
        return output_digest, written

    def _stream(self, image: Dict[str, Any], staged_path: str, fd: int) -> tuple:
        """Copy (and unpack) ``staged_path`` into ``fd``; return source and output digests."""
        source_digest = hashlib.sha256()
        output_digest = hashlib.sha256()
        written = 0

        def source_chunks(handle):
            for chunk in iter(lambda: handle.read(CHUNK), b""):
                source_digest.update(chunk)
                yield chunk

        try:
            with open(staged_path, "rb") as source, os.fdopen(fd, "wb") as output:
                chunks = source_chunks(source)
                for data in (gunzip_stream(chunks, staged_path) if image.get("compressed") else chunks):
                    output.write(data)
                    output_digest.update(data)
                    written += len(data)
                output.flush()
                os.fsync(output.fileno())
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise StoreError(
                    "disk-full", f"no space left in {self.root} while promoting {image['uuid']}; nothing changed"
                ) from exc
            raise
        return source_digest.hexdigest(), output_digest.hexdigest(), written

    # -------------------------------------------------------------- retire

    def retire(self, uuid: str, check_mode: bool = False) -> Dict[str, Any]:
        """Remove a managed image that is no longer desired, unless a process holds it open.

        The one function that deletes a managed image; only the reconcile executor
        (``_reconcile.apply_plan``) calls it, after its plan checked the name (a plain name in the
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
            if holders:
                return {"changed": False, "uuid": uuid, "action": "held-open", "path": path, "pids": holders}
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
        """Every managed image with its state: present (verified, unchanged), corrupt or missing."""
        held = []
        for uuid, entry in sorted(self.manifest().items()):
            path = os.path.join(self.root, entry["file"])
            image = {"uuid": uuid, "file": entry["source_file"], "compressed": entry["file"] != entry["source_file"],
                     "sha256": entry.get("source_sha256")}
            if not os.path.exists(path):
                state = "missing"
            elif self.is_current(image, entry):
                state = "present"
            else:
                state = "corrupt"
            held.append({"uuid": uuid, "name": entry.get("name"), "version": entry.get("version"),
                         "path": path, "size": entry.get("size"), "sha256": entry.get("sha256"), "state": state})
        return held
