# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The entry point of the hypervisor artifact (its ``__main__.py``; built by ``_artifact.py``).

Run by Debian's python3 on a hypervisor, with nothing but the archive and the standard library
on ``sys.path`` (``python3 -I /usr/lib/vmcloud/vmcloud-hypervisor.pyz ...``):

- ``imgdist ARGS...`` runs ``imgdist`` (``_imgdist.main``); so does the archive started under the
  name ``imgdist`` (a link named so);
- ``--self-check`` checks the archive: every entry has the SHA-256 its manifest lists, and every
  module of the library imports, from the archive itself, with this Python and its libraries
  (the agent role's ``validate:``, before the file replaces the installed one);
- ``--version`` prints the collection version and the archive's SHA-256.

Exit status: that of the command; 0 or 1 for ``--self-check``; 64 for a usage error.
"""

import hashlib
import importlib
import json
import os
import sys
import zipfile

PACKAGE = "ansible_collections.vmcloud.fleet.plugins.module_utils"
MANIFEST = "vmcloud_hypervisor.json"
# Command name -> module of the library whose main(argv) runs it.
COMMANDS = {"imgdist": "_imgdist"}
EXIT_USAGE = 64
USAGE = "usage: python3 vmcloud-hypervisor.pyz {imgdist [ARGS...] | --self-check | --version}"


class SelfCheckFailed(Exception):
    """The archive is damaged, or its library does not import here."""


def archive_path():
    """The archive this entry point runs from."""
    return os.path.dirname(os.path.abspath(__file__))


def read_manifest(archive):
    with zipfile.ZipFile(archive) as handle:
        return json.loads(handle.read(MANIFEST).decode("utf-8"))


def digest(path):
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            sha.update(block)
    return sha.hexdigest()


def self_check(archive):
    """A one-line summary, or SelfCheckFailed naming what is wrong."""
    try:
        with zipfile.ZipFile(archive) as handle:
            manifest = json.loads(handle.read(MANIFEST).decode("utf-8"))
            names = set(handle.namelist()) - {MANIFEST}
            listed = manifest["files"]
            if names != set(listed):
                extra, missing = sorted(names - set(listed)), sorted(set(listed) - names)
                raise SelfCheckFailed(f"entries not in the manifest {extra}, listed but absent {missing}")
            for name in sorted(listed):
                if hashlib.sha256(handle.read(name)).hexdigest() != listed[name]:
                    raise SelfCheckFailed(f"{name} does not have the SHA-256 the manifest lists")
            modules = manifest["modules"]
    except (OSError, KeyError, TypeError, ValueError, zipfile.BadZipFile) as exc:
        raise SelfCheckFailed(f"cannot read the archive ({type(exc).__name__}: {exc})") from exc
    for name in modules:
        qualified = f"{PACKAGE}.{name}"
        try:
            module = importlib.import_module(qualified)
        except Exception as exc:  # noqa: BLE001 - any failure to import is the finding, in one line
            raise SelfCheckFailed(f"{qualified} does not import with {sys.executable} "
                                  f"({type(exc).__name__}: {exc})") from exc
        where = os.path.abspath(getattr(module, "__file__", "") or "")
        if not where.startswith(archive + os.sep):
            raise SelfCheckFailed(f"{qualified} was imported from {where}, not from the archive")
    return (f"{manifest['name']} {manifest['version']}: {len(listed)} entries verified, "
            f"{len(modules)} modules import with Python {sys.version.split()[0]}")


def run_command(command, argv):
    module = importlib.import_module(f"{PACKAGE}.{COMMANDS[command]}")
    return module.main(argv)


def main(argv):
    command = os.path.basename(argv[0]) if argv else ""
    if command in COMMANDS:
        return run_command(command, argv[1:])
    args = argv[1:]
    if args and args[0] in COMMANDS:
        return run_command(args[0], args[1:])
    archive = archive_path()
    if args == ["--self-check"]:
        try:
            print(self_check(archive))
        except SelfCheckFailed as exc:
            print(f"artifact-self-check: {archive}: {exc}; rebuild the artifact on the controller, "
                  "or install the libraries it needs (vmic_agent_packages)", file=sys.stderr)
            return 1
        return 0
    if args == ["--version"]:
        try:
            manifest = read_manifest(archive)
            print(f"{manifest['name']} {manifest['version']} (sha256 {digest(archive)})")
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            print(f"artifact-self-check: cannot read {archive} ({exc}); rebuild the artifact", file=sys.stderr)
            return 1
        return 0
    if args in (["--help"], ["-h"]):
        print(USAGE)
        return 0
    print(USAGE, file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main(sys.argv))
