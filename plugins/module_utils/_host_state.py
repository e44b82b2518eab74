# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a host has of the things a role keeps there, in one look. Private to the collection.

A role that converges a hypervisor first asks, in one round trip (the ``host_state_info`` module), about
every path, user, group, systemd unit and package it keeps, then runs a write task only where the answer
differs from what it keeps: on a run with nothing to change, each role costs one round trip, not one per
task. Read-only: nothing here writes, so it runs in check mode too.

Paths are described as ``ansible.builtin.find`` describes them (``mode`` as four octal digits, ``pw_name``,
``gr_name``, ``isdir``/``isreg``/``islnk``, ``checksum`` the SHA-256 of a regular file), keyed by path; a
path that does not exist is absent. Symlinks are described, never followed.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess
from typing import Any, Callable, Dict, Iterable, List, Optional

from ._errors import VmcloudError
from ._io import sha256_file

# systemctl show's properties, in the vocabulary of `systemctl is-enabled` and `systemctl is-active`.
_UNIT_PROPERTIES = ("LoadState", "UnitFileState", "ActiveState")


def describe_path(path: str, checksum: bool = True) -> Optional[Dict[str, object]]:
    """``path`` itself (a symlink is not followed), or None when nothing is there."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    entry: Dict[str, object] = {
        "path": path,
        "mode": f"{stat.S_IMODE(st.st_mode):04o}",
        "uid": st.st_uid,
        "gid": st.st_gid,
        "pw_name": _user_name(st.st_uid),
        "gr_name": _group_name(st.st_gid),
        "size": st.st_size,
        "isdir": stat.S_ISDIR(st.st_mode),
        "isreg": stat.S_ISREG(st.st_mode),
        "islnk": stat.S_ISLNK(st.st_mode),
    }
    if checksum and entry["isreg"]:
        entry["checksum"] = sha256_file(path)
    return entry


def describe_tree(root: str, depth: int, checksum: bool = True) -> Dict[str, Dict[str, object]]:
    """``root`` and everything under it down to ``depth`` levels (1: its entries only); symlinked
    directories are described, not entered."""
    found: Dict[str, Dict[str, object]] = {}
    pending = [(root, 0)]
    while pending:
        path, level = pending.pop()
        entry = describe_path(path, checksum)
        if entry is None:
            continue
        found[path] = entry
        if entry["isdir"] and level < depth:
            try:
                names = os.listdir(path)
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed while we looked
            pending.extend((os.path.join(path, name), level + 1) for name in names)
    return found


def _entries(names: Iterable[str], lookup: Callable[[str], Any], fields: Callable[[Any], List[str]]):
    found: Dict[str, List[str]] = {}
    for name in names:
        try:
            found[name] = fields(lookup(name))
        except KeyError:
            found[name] = []
    return found


def users(names: Iterable[str]) -> Dict[str, List[str]]:
    """Each user's passwd entry as getent prints it, split on ':' ([] when there is none)."""
    return _entries(names, pwd.getpwnam, lambda entry: [
        entry.pw_name, entry.pw_passwd, str(entry.pw_uid), str(entry.pw_gid), entry.pw_gecos, entry.pw_dir,
        entry.pw_shell])


def groups(names: Iterable[str]) -> Dict[str, List[str]]:
    """Each group's entry as getent prints it, split on ':' ([] when there is none)."""
    return _entries(names, grp.getgrnam,
                    lambda entry: [entry.gr_name, entry.gr_passwd, str(entry.gr_gid), ",".join(entry.gr_mem)])


def units(names: List[str], systemctl: str = "systemctl",
          booted: str = "/run/systemd/system") -> Dict[str, Dict[str, str]]:
    """Each unit's ``enabled`` (what `systemctl is-enabled` says: enabled, disabled, static, masked...) and
    ``active`` (what `systemctl is-active` says); both empty for a unit systemd does not know, and for every
    unit on a host without systemd (no directory ``booted``: sd_booted's test). One `systemctl show` for all
    of them."""
    found = {name: {"enabled": "", "active": ""} for name in names}
    if not names or not os.path.isdir(booted):
        return found
    try:
        result = subprocess.run([systemctl, "show", "--property=" + ",".join(_UNIT_PROPERTIES), "--", *names],
                                capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return found
    if result.returncode != 0:
        raise VmcloudError("host-look-failed", f"systemctl show {' '.join(names)}: {result.stderr.strip()}")
    # One block per unit, in the order asked, separated by an empty line.
    blocks = result.stdout.split("\n\n")
    for name, block in zip(names, blocks + [""] * (len(names) - len(blocks))):  # noqa: B905 (3.8 targets)
        values = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if values.get("LoadState", "not-found") != "not-found":
            found[name] = {"enabled": values.get("UnitFileState", ""), "active": values.get("ActiveState", "")}
    return found


def packages(names: List[str], dpkg_query: str = "dpkg-query") -> Dict[str, str]:
    """Each package's dpkg status (``installed``, ``config-files``, ...; empty when dpkg does not know it, or
    the host has no dpkg). dpkg's own record answers in milliseconds; apt opens its whole cache."""
    found = {name: "" for name in names}
    if not names:
        return found
    try:
        result = subprocess.run([dpkg_query, "--show", "--showformat=${Package}\t${db:Status-Status}\n", "--", *names],
                                capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return found
    # dpkg-query exits 1 when some package is unknown, and still lists the others.
    for line in result.stdout.splitlines():
        package, _tab, status = line.partition("\t")
        if package in found:
            found[package] = status
    return found


def look(paths: Iterable[str] = (), trees: Iterable[str] = (), tree_depth: int = 2, checksum: bool = True,
         user_names: Iterable[str] = (), group_names: Iterable[str] = (), unit_names: Iterable[str] = (),
         package_names: Iterable[str] = ()) -> Dict[str, object]:
    """Everything asked for, in the shape the module returns."""
    files: Dict[str, Dict[str, object]] = {}
    for root in trees:
        files.update(describe_tree(root, tree_depth, checksum))
    for path in paths:
        if path not in files:
            entry = describe_path(path, checksum)
            if entry is not None:
                files[path] = entry
    return {
        "files": files,
        "users": users(user_names),
        "groups": groups(group_names),
        "units": units(list(unit_names)),
        "packages": packages(list(package_names)),
    }


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


# What a role keeps, compared with a look: the one comparison of the kept_differences and
# trust_store_changes filters (on the controller) and of image_sync's layout guard (on the host).
_KEPT_KEYS = {"path", "paths", "type", "mode", "owner", "group", "checksum", "checksums"}


def kept_paths(entry: Dict[str, Any]) -> List[tuple]:
    """(path, type, mode, owner, group, sha256 or None) for each path of one kept entry: C(path) or C(paths),
    C(mode), C(type) (file or directory), C(owner) and C(group) (root), C(checksum) or C(checksums)."""
    if not isinstance(entry, dict) or not set(entry) <= _KEPT_KEYS or ("path" in entry) == ("paths" in entry):
        raise VmcloudError("option-invalid", f"each kept entry has path or paths, and only keys of "
                           f"{sorted(_KEPT_KEYS)}; got {entry!r}")
    kind = entry.get("type", "file")
    if kind not in ("file", "directory") or "mode" not in entry:
        raise VmcloudError("option-invalid", f"kept entry {entry!r} needs a mode and a type of file or directory")
    paths = [entry["path"]] if "path" in entry else list(entry["paths"])
    contents = [key for key in ("checksum", "checksums") if key in entry]
    if len(contents) > 1 or (contents and kind != "file"):
        raise VmcloudError("option-invalid", f"kept entry {entry!r}: a file's content is one checksum")
    sums: List[Optional[str]] = [None] * len(paths)
    if contents:
        key = contents[0]
        sums = [entry[key]] if key == "checksum" else list(entry[key])
        if len(sums) != len(paths) or (key == "checksum") != ("path" in entry):
            raise VmcloudError("option-invalid", f"kept entry {entry!r}: one {key} for each path")
    owner, group = entry.get("owner", "root"), entry.get("group", "root")
    return [(path, kind, entry["mode"], owner, group, digest) for path, digest in zip(paths, sums)]  # noqa: B905


def kept_differences(found: Dict[str, Dict[str, Any]], kept: Iterable[Dict[str, Any]]) -> List[str]:
    """The kept paths that are missing on the host or differ from what is kept (type, mode, owner, group, or a
    regular file's SHA-256), in the order given."""
    differing = []
    for entry in kept:
        for path, kind, mode, owner, group, digest in kept_paths(entry):
            have = found.get(path)
            if (have is None or not have.get("isdir" if kind == "directory" else "isreg")
                    or have.get("mode") != mode or have.get("pw_name") != owner or have.get("gr_name") != group
                    or (digest is not None and have.get("checksum") != digest)):
                differing.append(path)
    return differing


def not_kept(found: Dict[str, Dict[str, Any]], only: Iterable[Dict[str, Any]]) -> List[str]:
    """Regular files directly in each C(dir) of ``only`` whose name is not one of its C(names), sorted: what a
    role that owns those directories withdraws."""
    extra = []
    for entry in only:
        if not (isinstance(entry, dict) and set(entry) == {"dir", "names"} and isinstance(entry["names"], list)):
            raise VmcloudError("option-invalid", f"each entry of only is {{dir, names}} (a list); got {entry!r}")
        directory, names = str(entry["dir"]).rstrip("/"), set(entry["names"])
        extra += [path for path, have in found.items()
                  if have.get("isreg") and os.path.dirname(path) == directory and os.path.basename(path) not in names]
    return sorted(extra)


def look_at_layout(paths: Iterable[str] = (), trees: Iterable[str] = (), kept: Iterable[Dict[str, Any]] = (),
                   only: Iterable[Dict[str, Any]] = (), absent: Iterable[str] = ()) -> Dict[str, Any]:
    """image_sync's guard: one look at what a caller keeps, and how the host differs from it (``differing``
    kept paths, ``withdrawn`` files in the ``only`` directories, ``present`` paths of ``absent``)."""
    absent = list(absent)
    files = look(paths=list(paths) + absent, trees=trees)["files"]
    return {"files": files, "differing": kept_differences(files, kept), "withdrawn": not_kept(files, only),
            "present": [path for path in absent if path in files]}
