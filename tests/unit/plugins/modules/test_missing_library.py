# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A module whose Python library is missing on the host fails with ansible's missing_required_lib
message naming the Debian and pip packages (plugins/module_utils/_requirements.py), and a module
that does not need the missing library still works (image_index verifies without fastbencode).

Each module runs in its own Python process (as on a host) in which importing the library fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.unit import index_factory as factory
from tests.unit import pki

REPO = Path(__file__).resolve().parents[4]

# Runs a module as Ansible would (args file as argv[1]) with the named top-level imports failing.
RUNNER = textwrap.dedent("""
    import runpy, sys
    blocked = set(sys.argv.pop(1).split(","))
    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in blocked:
                raise ImportError(f"No module named {name!r}")
            return None
    sys.meta_path.insert(0, Blocker())
    runpy.run_module(sys.argv.pop(1), run_name="__main__")
""")


def run_module(tmp_path, module, blocked, args):
    args_file = tmp_path / f"{module}-args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, ",".join(blocked), f"ansible_collections.vmcloud.fleet.plugins.modules.{module}",
         str(args_file)],
        capture_output=True, text=True, timeout=120, check=False,
        env={"PYTHONPATH": f"{REPO / 'collections'}:{REPO}", "PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
    )
    assert done.stdout, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def trust(tmp_path_factory):
    directory = tmp_path_factory.mktemp("trust")
    ca = pki.make_ca("missing library CA")
    endorser = pki.make_endorser(ca, "lab-endorser", key_type="ec")
    (directory / "ca.pem").write_bytes(pki.pem(ca.cert))
    return {"dir": directory, "endorser": endorser}


def index_args(trust, tmp_path):
    src = tmp_path / "index.yaml"
    src.write_bytes(factory.document(factory.signed_index([factory.image(1)], version=3), [trust["endorser"]]))
    return {"src": str(src), "trust_anchors": [str(trust["dir"] / "ca.pem")], "state_dir": str(tmp_path / "state"),
            "reference_time": factory.NOW, "_ansible_check_mode": True}


@pytest.mark.parametrize(("module", "blocked", "package"), [
    ("image_index", ["cryptography"], "python3-cryptography"),
    ("image_index", ["yaml"], "python3-yaml"),
    ("torrent_create", ["fastbencode"], "python3-fastbencode"),
    ("image_store_info", ["fastbencode"], "python3-fastbencode"),
])
def test_missing_library_fails_with_missing_required_lib(tmp_path, trust, module, blocked, package):
    args = {
        "image_index": lambda: index_args(trust, tmp_path),
        "torrent_create": lambda: {"path": str(tmp_path / "a.img"), "dest": str(tmp_path / "a.torrent"),
                                   "announce": ["http://127.0.0.1:6969/announce"]},
        "image_store_info": lambda: {"store": str(tmp_path / "store")},
    }[module]()
    result = run_module(tmp_path, module, blocked, args)
    assert result["failed"] is True
    assert result["msg"].startswith(f"Failed to import the required Python library ({blocked[0]} (Debian package "
                                    f"{package}, pip package ")
    assert not (tmp_path / "state").exists() and not (tmp_path / "a.torrent").exists()


def test_image_index_verifies_without_fastbencode(tmp_path, trust):
    result = run_module(tmp_path, "image_index", ["fastbencode"], index_args(trust, tmp_path))
    assert result.get("failed") is not True, result
    assert result["changed"] is True and result["version"] == 3
    assert [image["uuid"] for image in result["images"]] == [factory.image(1)["uuid"]]
