# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The hypervisor artifact: reproducible bytes, the whole library, and run by the hosts' Python.

The built file is executed as the agent role runs it: ``PYTHON -I FILE ...`` with the
hypervisor venv's Python (Debian bookworm's library versions) and with Debian's own
``/usr/bin/python3`` (``make setup`` installs the Debian packages a hypervisor has).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from ansible_collections.vmcloud.fleet.plugins.plugin_utils import _artifact

REPO = Path(__file__).resolve().parents[4]
MODULE_UTILS = REPO / "plugins" / "module_utils"
PACKAGE_DIR = "ansible_collections/vmcloud/fleet/plugins/module_utils"
HYPERVISOR_PYTHONS = {
    "venv-hypervisor": REPO / ".venv-hypervisor" / "bin" / "python",
    "debian": Path("/usr/bin/python3"),
}
# What a host's sync service and libvirt give a process: no PYTHONPATH, a small PATH.
HOST_ENV = {"LC_ALL": "C", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


def version() -> str:
    return yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]


def run(python: Path, artifact: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    assert python.exists(), f"{python} is missing (make setup)"
    return subprocess.run([str(python), "-I", str(artifact), *args], env=HOST_ENV, cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    return _artifact.build(tmp_path_factory.mktemp("artifact"))


def copy_sources(dest: Path) -> Path:
    dest.mkdir()
    for path in MODULE_UTILS.glob("*.py"):
        shutil.copy(path, dest / path.name)
    return dest


# --------------------------------------------------------------------------- the file


def test_named_after_the_collection_version(artifact):
    assert artifact.name == f"vmcloud-hypervisor-{version()}.pyz"
    assert artifact.read_bytes().startswith(b"#!/usr/bin/python3\n")


def test_holds_every_module_utils_file_as_it_is(artifact):
    with zipfile.ZipFile(artifact) as archive:
        packaged = {name[len(PACKAGE_DIR) + 1:]: archive.read(name) for name in archive.namelist()
                    if name.startswith(PACKAGE_DIR + "/") and name != f"{PACKAGE_DIR}/__init__.py"}
        names = archive.namelist()
        manifest = json.loads(archive.read("vmcloud_hypervisor.json"))
    sources = {path.name: path.read_bytes() for path in MODULE_UTILS.glob("*.py")}
    assert packaged == sources
    assert names == sorted(names)
    assert manifest["version"] == version()
    assert manifest["modules"] == sorted(name[:-3] for name in sources)
    assert set(manifest["files"]) == set(names) - {"vmcloud_hypervisor.json"}


def test_same_sources_give_the_same_bytes_whatever_the_files_mtime_mode_and_the_clock(tmp_path, artifact):
    sources = copy_sources(tmp_path / "module_utils")
    for index, path in enumerate(sorted(sources.iterdir())):
        os.utime(path, (1_000_000_000 + index * 7777, 1_000_000_000 + index * 7777))
        path.chmod(0o600 if index % 2 else 0o755)
    rebuilt = _artifact.build(tmp_path / "again.pyz", source_dir=sources)
    assert rebuilt.read_bytes() == artifact.read_bytes()
    # Another process, another time zone and umask: still the same bytes.
    code = ("import sys; from ansible_collections.vmcloud.fleet.plugins.plugin_utils import _artifact; "
            "_artifact.build(sys.argv[1], source_dir=sys.argv[2])")
    subprocess.run([sys.executable, "-c", f"import os; os.umask(0o077); {code}", str(tmp_path / "tz.pyz"),
                    str(sources)], env=dict(os.environ, TZ="America/Chicago", PYTHONPATH=str(REPO / "collections")),
                   check=True, timeout=60)
    assert (tmp_path / "tz.pyz").read_bytes() == artifact.read_bytes()
    with zipfile.ZipFile(artifact) as archive:
        assert {(i.date_time, i.external_attr >> 16, i.compress_type) for i in archive.infolist()} == {
            ((1980, 1, 1, 0, 0, 0), 0o100644, zipfile.ZIP_STORED)}


def test_other_content_gives_other_bytes(tmp_path, artifact):
    sources = copy_sources(tmp_path / "module_utils")
    with open(sources / "_io.py", "ab") as handle:
        handle.write(b"# changed\n")
    assert _artifact.build(tmp_path / "changed.pyz", source_dir=sources).read_bytes() != artifact.read_bytes()


# --------------------------------------------------------------------------- the cache (the lookup's)


def test_cache_builds_once_per_content_and_rebuilds_when_the_library_changes(tmp_path, artifact):
    cache = tmp_path / "cache"
    first = _artifact.cached(cache)
    assert first.read_bytes() == artifact.read_bytes()
    assert first.parent.name == hashlib.sha256(artifact.read_bytes()).hexdigest()
    inode = first.stat().st_ino
    assert _artifact.cached(cache) == first and first.stat().st_ino == inode  # not written again

    sources = copy_sources(tmp_path / "module_utils")
    with open(sources / "_io.py", "ab") as handle:
        handle.write(b"# changed\n")
    second = _artifact.cached(cache, source_dir=sources)
    assert second != first and second.name == first.name
    assert second.parent.name == hashlib.sha256(second.read_bytes()).hexdigest()
    assert first.read_bytes() == artifact.read_bytes()  # the other content's file is left as it is


def test_cache_replaces_a_damaged_file(tmp_path, artifact):
    path = _artifact.cached(tmp_path)
    path.write_bytes(b"truncated")
    assert _artifact.cached(tmp_path) == path and path.read_bytes() == artifact.read_bytes()


def test_an_unwritable_cache_names_the_rule(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(_artifact.ArtifactError) as caught:
        _artifact.cached(tmp_path / "file" / "cache")
    assert caught.value.rule == "artifact-unwritable" and str(tmp_path / "file") in caught.value.message


def test_sources_without_the_library_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(_artifact.ArtifactError) as caught:
        _artifact.build(tmp_path / "x.pyz", source_dir=tmp_path / "empty")
    assert caught.value.rule == "artifact-source-invalid" and not (tmp_path / "x.pyz").exists()


def test_version_comes_from_manifest_json_in_an_installed_collection(tmp_path):
    (tmp_path / "MANIFEST.json").write_text(json.dumps({"collection_info": {"version": "2.3.4"}}))
    assert _artifact.collection_version(tmp_path) == "2.3.4"
    (tmp_path / "MANIFEST.json").write_text(json.dumps({"collection_info": {"version": "../x"}}))
    with pytest.raises(_artifact.ArtifactError) as caught:
        _artifact.collection_version(tmp_path)
    assert caught.value.rule == "artifact-source-invalid"


# --------------------------------------------------------------------------- run by a hypervisor's Python


@pytest.mark.parametrize("python", sorted(HYPERVISOR_PYTHONS), ids=str)
def test_self_check_verifies_and_imports_everything_from_the_archive(artifact, python, tmp_path):
    # A directory with a stray copy of the library as cwd: -I keeps it off sys.path.
    shutil.copytree(REPO / "collections" / "ansible_collections" / "vmcloud" / "fleet" / "plugins",
                    tmp_path / "ansible_collections" / "vmcloud" / "fleet" / "plugins", symlinks=True)
    done = run(HYPERVISOR_PYTHONS[python], artifact, "--self-check", cwd=tmp_path)
    modules = len(list(MODULE_UTILS.glob("*.py")))
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith(f"vmcloud-hypervisor {version()}: ") and f"{modules} modules import" in done.stdout


@pytest.mark.parametrize("python", sorted(HYPERVISOR_PYTHONS), ids=str)
def test_imgdist_help_and_config_check(artifact, python, tmp_path):
    python = HYPERVISOR_PYTHONS[python]
    done = run(python, artifact, "imgdist", "--help")
    assert done.returncode == 0 and done.stdout.startswith("usage: imgdist [-c CONFIG]") and done.stderr == ""
    config = tmp_path / "imgdist.yml"
    config.write_text(yaml.safe_dump({
        "index_url": "http://catalogue/index.yaml", "trust_anchors": ["/etc/vmcloud/trust/anchors"],
        "approved_images": [{"name": "alma", "version": "latest"}],
        "approval_rules": ["images[?name == 'slc']"],  # jmespath, from the host's packages
    }))
    done = run(python, artifact, "imgdist", "-c", str(config), "config-check")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{config}: valid\n", "")
    config.write_text(yaml.safe_dump({"index_url": "http://catalogue/index.yaml", "trust_anchors": ["/a"],
                                      "surprise": 1}))
    done = run(python, artifact, "imgdist", "-c", str(config), "config-check")
    assert done.returncode == 4 and done.stderr.startswith("imgdist: config-invalid: ") and done.stdout == ""


def test_started_as_imgdist_it_is_imgdist(artifact, tmp_path):
    link = tmp_path / "imgdist"
    link.symlink_to(artifact)
    done = subprocess.run([str(HYPERVISOR_PYTHONS["debian"]), "-I", str(link), "--help"], env=HOST_ENV,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.startswith("usage: imgdist [-c CONFIG]")


def test_version_and_usage(artifact):
    done = run(HYPERVISOR_PYTHONS["debian"], artifact, "--version")
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert (done.returncode, done.stdout) == (0, f"vmcloud-hypervisor {version()} (sha256 {digest})\n")
    done = run(HYPERVISOR_PYTHONS["debian"], artifact, "sync")
    assert done.returncode == 64 and done.stderr.startswith("usage: python3 vmcloud-hypervisor.pyz") and not done.stdout


def test_self_check_refuses_a_library_that_does_not_import(tmp_path):
    sources = copy_sources(tmp_path / "module_utils")
    (sources / "_later.py").write_text("import vmcloud_no_such_library\n")
    broken = _artifact.build(tmp_path / "broken.pyz", source_dir=sources)
    done = run(HYPERVISOR_PYTHONS["debian"], broken, "--self-check")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(f"artifact-self-check: {broken}: ansible_collections.vmcloud.fleet.plugins."
                                  "module_utils._later does not import with /usr/bin/python3 (ModuleNotFoundError: ")
    assert done.stderr.count("\n") == 1


def test_self_check_refuses_an_entry_that_is_not_what_the_manifest_lists(tmp_path, artifact):
    tampered = tmp_path / "tampered.pyz"
    with zipfile.ZipFile(artifact) as source, zipfile.ZipFile(tampered, "w") as dest:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith("/_trust.py"):
                data += b"\nPINNED = ()\n"
            dest.writestr(info, data)
    done = run(HYPERVISOR_PYTHONS["debian"], tampered, "--self-check")
    assert done.returncode == 1 and done.stderr.startswith(
        f"artifact-self-check: {tampered}: {PACKAGE_DIR}/_trust.py does not have the SHA-256 the manifest lists")


def test_self_check_refuses_a_truncated_copy(tmp_path, artifact):
    truncated = tmp_path / "truncated.pyz"
    truncated.write_bytes(artifact.read_bytes()[: artifact.stat().st_size // 2])
    done = run(HYPERVISOR_PYTHONS["debian"], truncated, "--self-check")
    assert done.returncode != 0 and "Traceback" not in done.stderr
