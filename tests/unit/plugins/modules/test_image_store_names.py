# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""vmcloud.fleet.image_store with a store entry whose name is not UTF-8 (issue 7's sweep): the
module returns its complete report, the name shown with \\x escapes, and removes only the unknowns."""

from __future__ import annotations

import json
import os

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.vmcloud.fleet.plugins.modules import image_store


def test_a_name_that_is_not_utf8_gets_a_complete_report(capsys, tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    with open(os.path.join(os.fsencode(root), b"caf\xe9.img"), "wb") as handle:
        handle.write(b"x")
    (root / "stray.img").write_bytes(b"y")
    with patch_module_args({"path": str(root), "desired": [], "unknown": "remove"}), pytest.raises(SystemExit):
        image_store.main()
    out = capsys.readouterr().out
    out.encode("utf-8")
    result = json.loads(out)
    assert "failed" not in result and result["changed"] is True
    assert result["removed"] == [str(root / "caf\\xe9.img"), str(root / "stray.img")]
    json.dumps(result, ensure_ascii=False).encode("utf-8")
    assert os.listdir(root) == []
