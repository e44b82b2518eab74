# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection as users install it: `ansible-galaxy collection build` a tarball, install it into
a fresh collections path, and run a module and `ansible-doc` of every plugin from there, with
ANSIBLE_COLLECTIONS_PATH naming only that path (no checkout, no ansible.cfg of the repository)."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from tests.unit import index_factory as factory
from tests.unit import pki

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GALAXY = yaml.safe_load((REPO / "galaxy.yml").read_text())
PLUGIN_TYPES = {"modules": "module", "filter": "filter", "lookup": "lookup", "callback": "callback"}
# What must never ship: the test tooling's own trees and caches.
NOT_SHIPPED = ("tests/output", ".lab", ".venv", ".venv-hypervisor", ".cache", "collections", "lab", "molecule",
               "benchmarks", "tools", "dist", ".pytest_cache", ".ruff_cache", ".ansible", "reports", ".git")


def run(argv, env, cwd):
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{argv}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(collections path, environment) of a freshly built and installed vmcloud.fleet."""
    root = tmp_path_factory.mktemp("install")
    home = root / "home"
    home.mkdir()
    env = {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": str(home),
        "LC_ALL": "C.UTF-8",
        "ANSIBLE_CONFIG": str(root / "no-ansible.cfg"),  # absent: no configuration of the checkout
        "ANSIBLE_COLLECTIONS_PATH": str(root / "collections"),
        "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
        "ANSIBLE_LOCAL_TEMP": str(root / "tmp"),
        "ANSIBLE_NOCOLOR": "1",
    }
    run([str(BIN / "ansible-galaxy"), "collection", "build", str(REPO), "--output-path", str(root / "dist")],
        env, root)
    tarball = root / "dist" / f"{GALAXY['namespace']}-{GALAXY['name']}-{GALAXY['version']}.tar.gz"
    run([str(BIN / "ansible-galaxy"), "collection", "install", "--offline", str(tarball), "-p",
         str(root / "collections")], env, root)
    return root, env, tarball


def test_tarball_holds_the_collection_and_none_of_the_tooling(installed):
    _root, _env, tarball = installed
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    assert {"MANIFEST.json", "FILES.json", "plugins/modules/image_index.py",
            "plugins/module_utils/_requirements.py", "meta/runtime.yml"} <= set(names)
    shipped = [name for name in names if any(name == top or name.startswith(f"{top}/") for top in NOT_SHIPPED)]
    assert shipped == []
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_ansible_doc_of_every_plugin_from_the_installed_collection(installed):
    root, env, _tarball = installed
    fleet = root / "collections" / "ansible_collections" / "vmcloud" / "fleet"
    for directory, plugin_type in PLUGIN_TYPES.items():
        expected = sorted(f"vmcloud.fleet.{path.stem}" for path in (REPO / "plugins" / directory).glob("*")
                          if path.suffix in (".py", ".yml") and not path.name.startswith("_"))
        listed = run([str(BIN / "ansible-doc"), "-t", plugin_type, "-l", "--json", "vmcloud.fleet"], env, root)
        assert listed.stderr == ""
        assert sorted(json.loads(listed.stdout)) == expected
        docs = run([str(BIN / "ansible-doc"), "-t", plugin_type, "--json", *expected], env, root)
        assert docs.stderr == ""
        for name, doc in json.loads(docs.stdout).items():
            assert Path(doc["doc"]["filename"]).is_relative_to(fleet), name
            assert doc["doc"]["author"] == ["vmcloud team (@vmcloud)"], name
            if plugin_type == "module":
                assert doc["doc"]["description"] and doc["doc"].get("options") is not None, name


def test_image_index_runs_from_the_installed_collection(installed, tmp_path):
    root, env, _tarball = installed
    ca = pki.make_ca("install CA")
    endorser = pki.make_endorser(ca, "lab-endorser", key_type="ec")
    (tmp_path / "ca.pem").write_bytes(pki.pem(ca.cert))
    src = tmp_path / "index.yaml"
    src.write_bytes(factory.document(factory.signed_index([factory.image(1)], version=4), [endorser]))
    args = {"src": str(src), "trust_anchors": [str(tmp_path / "ca.pem")], "state_dir": str(tmp_path / "state"),
            "reference_time": factory.NOW}
    done = run([str(BIN / "ansible"), "localhost", "-c", "local", "-i", "localhost,", "--check",
                "-e", f"ansible_python_interpreter={sys.executable}", "-m", "vmcloud.fleet.image_index",
                "-a", json.dumps(args)], env, root)
    # The ad-hoc output: "localhost | CHANGED => {...}" (the json callback is ansible.posix's, not installed).
    assert done.stdout.startswith("localhost | CHANGED => "), done.stdout
    result = json.loads(done.stdout.split(" => ", 1)[1])
    assert result["changed"] is True and result["version"] == 4
    assert [image["uuid"] for image in result["images"]] == [factory.image(1)["uuid"]]
    assert not (tmp_path / "state").exists()  # check mode
