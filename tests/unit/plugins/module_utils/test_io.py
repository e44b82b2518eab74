# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_io.differs: write only when the file does not already hold the bytes."""

from __future__ import annotations

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils._io import differs, write_atomic


def test_differs(tmp_path):
    path = str(tmp_path / "index.yaml")
    assert differs(path, b"")  # missing
    write_atomic(path, b"version: 3\n")
    assert not differs(path, b"version: 3\n")
    assert differs(path, b"version: 3")  # a prefix is not the same bytes
    assert differs(path, b"version: 3\n\n")


def test_differs_does_not_hide_other_errors(tmp_path):
    with pytest.raises(IsADirectoryError):
        differs(str(tmp_path), b"")
