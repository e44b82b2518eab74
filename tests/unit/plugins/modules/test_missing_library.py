# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A module whose Python library is missing on the host fails with ansible's missing_required_lib
message naming the Debian and pip packages (plugins/module_utils/_requirements.py), and a module
that does not need the missing library still works (image_index verifies without fastbencode).

Each module runs in its own Python process (as on a host) in which importing the library fails.
"""

from __future__ import annotations

import pytest

from ansible_collections.vmcloud.fleet.plugins.modules import image_index, image_store_info, torrent_create
from tests.unit import index_factory as factory

from .conftest import index_args, write_index

MODULES = {"image_index": image_index, "torrent_create": torrent_create, "image_store_info": image_store_info}


def index_args_for(trust, tmp_path):
    src = write_index(tmp_path / "index.yaml", trust, 3)
    return index_args(trust, src, tmp_path / "state", _ansible_check_mode=True)


@pytest.mark.parametrize(("module", "blocked", "package"), [
    ("image_index", ["cryptography"], "python3-cryptography"),
    ("image_index", ["yaml"], "python3-yaml"),
    ("torrent_create", ["fastbencode"], "python3-fastbencode"),
    ("image_store_info", ["fastbencode"], "python3-fastbencode"),
])
def test_missing_library_fails_with_missing_required_lib(run_module, tmp_path, trust, module, blocked, package):
    args = {
        "image_index": lambda: index_args_for(trust, tmp_path),
        "torrent_create": lambda: {"path": str(tmp_path / "a.img"), "dest": str(tmp_path / "a.torrent"),
                                   "announce": ["http://127.0.0.1:6969/announce"]},
        "image_store_info": lambda: {"store": str(tmp_path / "store")},
    }[module]()
    result = run_module(MODULES[module], without=blocked, **args)
    assert result["failed"] is True
    assert result["msg"].startswith(f"Failed to import the required Python library ({blocked[0]} (Debian package "
                                    f"{package}, pip package ")
    assert not (tmp_path / "state").exists() and not (tmp_path / "a.torrent").exists()


def test_image_index_verifies_without_fastbencode(run_module, tmp_path, trust):
    result = run_module(image_index, without=["fastbencode"], **index_args_for(trust, tmp_path))
    assert result.get("failed") is not True, result
    assert result["changed"] is True and result["version"] == 3
    assert [image["uuid"] for image in result["images"]] == [factory.image(1)["uuid"]]
