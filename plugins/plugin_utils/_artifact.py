# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The hypervisor artifact, built on the controller. Private to the collection; not a public API.

``imgdist``, the agent's timer service and the libvirt hook run on hypervisors from one file,
``vmcloud-hypervisor-<collection version>.pyz``: a Python zip application (PEP 441, the format of
the stdlib's ``zipapp``) holding the collection's ``plugins/module_utils`` as the package
``ansible_collections.vmcloud.fleet.plugins.module_utils`` (so the library's own absolute imports
work unchanged) and a ``__main__`` (``_artifact_main.py``) that dispatches ``imgdist`` and checks
the archive (``--self-check``).

Why a zipapp: hypervisors have no build toolchain and need none (no wheel to install, no .deb
to build and sign); Debian's ``python3`` runs the file as it is (``python3 FILE imgdist ...``) or
imports from it (the file on ``sys.path``); one file is one ``copy`` task that changes only when
the content does.

The bytes are a function of the sources alone: entries sorted by name, every timestamp
1980-01-01 00:00:00, every mode 0644, stored uncompressed (deflate output may differ between
zlib builds, so two controllers could otherwise disagree), no host-dependent fields. The same
sources give the same file on every controller, so the file is content-addressed: the cache
keeps it under its own SHA-256.

The zipapp module itself is not used to write the archive: ``zipapp.create_archive`` takes each
entry's timestamp and mode from the file system (local time), which is not reproducible. The
archive written here is what it writes (interpreter line, then the zip), with fixed fields.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import zipfile
from pathlib import Path
from typing import Dict, Optional

import yaml

from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._io import write_atomic

NAME = "vmcloud-hypervisor"
# Layout version of the archive; raise it when the layout or the entry point's contract changes.
FORMAT = 1
PACKAGE = "ansible_collections.vmcloud.fleet.plugins.module_utils"
MANIFEST = "vmcloud_hypervisor.json"
INTERPRETER = "/usr/bin/python3"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
ENTRY_MODE = stat.S_IFREG | 0o644

COLLECTION_ROOT = Path(__file__).resolve().parents[2]
MAIN_SOURCE = Path(__file__).resolve().with_name("_artifact_main.py")


class ArtifactError(VmcloudError):
    """The hypervisor artifact cannot be built from these sources, or not written there."""


def file_name(version: str) -> str:
    """``vmcloud-hypervisor-<version>.pyz``."""
    return f"{NAME}-{version}.pyz"


def collection_version(root: Path = COLLECTION_ROOT) -> str:
    """The collection's version: MANIFEST.json in an installed collection, galaxy.yml in a checkout."""
    manifest = root / "MANIFEST.json"
    try:
        if manifest.is_file():
            version = json.loads(manifest.read_text(encoding="utf-8"))["collection_info"]["version"]
        else:
            version = yaml.safe_load((root / "galaxy.yml").read_text(encoding="utf-8"))["version"]
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as exc:
        raise ArtifactError("artifact-source-invalid",
                            f"no collection version in {manifest} or {root / 'galaxy.yml'} ({exc}); "
                            "build from a checkout or an installed collection") from exc
    if not isinstance(version, str) or not version or "/" in version or version.startswith("."):
        raise ArtifactError("artifact-source-invalid",
                            f"collection version {version!r} cannot name a file; fix galaxy.yml")
    return version


def module_utils_sources(source_dir: Optional[Path] = None) -> Dict[str, bytes]:
    """File name -> bytes of every ``*.py`` file of module_utils (caches and other files stay out)."""
    source_dir = Path(source_dir) if source_dir is not None else COLLECTION_ROOT / "plugins" / "module_utils"
    try:
        paths = sorted(p for p in source_dir.glob("*.py") if p.is_file())
        sources = {p.name: p.read_bytes() for p in paths}
    except OSError as exc:
        raise ArtifactError("artifact-source-invalid",
                            f"cannot read the library in {source_dir} ({exc.strerror or exc}); "
                            "build from a checkout or an installed collection") from exc
    if "_imgdist.py" not in sources:
        raise ArtifactError("artifact-source-invalid",
                            f"{source_dir} holds no _imgdist.py; point the build at the collection's "
                            "plugins/module_utils")
    return sources


def _entries(sources: Dict[str, bytes], version: str, main_source: bytes) -> Dict[str, bytes]:
    package_dir = PACKAGE.replace(".", "/")
    entries: Dict[str, bytes] = {"__main__.py": main_source}
    # Regular packages (empty __init__.py): zipimport finds no namespace package without directory
    # entries, and a regular package first on sys.path cannot be mixed with another tree.
    parts = package_dir.split("/")
    for depth in range(1, len(parts) + 1):
        entries["/".join(parts[:depth]) + "/__init__.py"] = b""
    for name, data in sources.items():
        if name == "__init__.py":
            continue
        entries[f"{package_dir}/{name}"] = data
    manifest = {
        "format": FORMAT,
        "name": NAME,
        "version": version,
        "package": PACKAGE,
        "modules": sorted(name[:-3] for name in sources if name != "__init__.py"),
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(entries.items())},
    }
    entries[MANIFEST] = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode("utf-8")
    return entries


def build_bytes(sources: Dict[str, bytes], version: str, main_source: Optional[bytes] = None) -> bytes:
    """The artifact's bytes: the same for the same sources, version and entry point."""
    if main_source is None:
        main_source = MAIN_SOURCE.read_bytes()
    buffer = io.BytesIO()
    buffer.write(b"#!" + INTERPRETER.encode("ascii") + b"\n")
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in sorted(_entries(sources, version, main_source).items()):
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3  # unix, whatever the builder runs on
            info.external_attr = ENTRY_MODE << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def build(dest: Path, source_dir: Optional[Path] = None, version: Optional[str] = None) -> Path:
    """Write the artifact to ``dest`` (a file, or a directory that gets ``file_name(version)``)."""
    version = version or collection_version()
    data = build_bytes(module_utils_sources(source_dir), version)
    dest = Path(dest)
    if dest.is_dir():
        dest = dest / file_name(version)
    _write(dest, data)
    return dest


def cached(cache_dir: Path, source_dir: Optional[Path] = None, version: Optional[str] = None) -> Path:
    """The artifact of the current sources in ``cache_dir``: ``<sha256>/vmcloud-hypervisor-<version>.pyz``.

    Built in memory every time (milliseconds), and written only when the cache lacks these very
    bytes; a file is never rewritten with other content, so concurrent runs (forks, other
    checkouts) each get a complete file of their own sources.
    """
    version = version or collection_version()
    data = build_bytes(module_utils_sources(source_dir), version)
    path = Path(cache_dir).expanduser() / hashlib.sha256(data).hexdigest() / file_name(version)
    try:
        if path.read_bytes() == data:
            return path
    except OSError:
        pass
    _write(path, data)
    return path


def _write(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(os.fspath(path), data, mode=0o644)
    except OSError as exc:
        raise ArtifactError("artifact-unwritable",
                            f"cannot write {path} ({exc.strerror or exc}); give a writable cache "
                            "directory") from exc
