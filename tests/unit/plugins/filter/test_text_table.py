# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""vmcloud.fleet.text_table and _text_table: columns as wide as their widest cell."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.vmcloud.fleet.plugins.filter.text_table import FilterModule
from ansible_collections.vmcloud.fleet.plugins.module_utils._text_table import text_table

text_table_filter = FilterModule().filters()["text_table"]
LONG_UUID = "cern-it-alma9-x86_64-2026-12-03-build-4711-hardened-b1946ac9-2fb8-4c06-9b9d-0c7e6a1f2e3d"


def test_a_long_cell_widens_its_column_and_the_others_stay_in_line():
    assert text_table([["host", "image", "bytes", "state"],
                       ["hv1", LONG_UUID, 21474836480, "verified"],
                       ["hypervisor-17", "slc5", 7, "changed"]], right=[2]) == [
        "host           image" + " " * (len(LONG_UUID) - len("image")) + "        bytes  state",
        f"hv1            {LONG_UUID}  21474836480  verified",
        "hypervisor-17  slc5" + " " * (len(LONG_UUID) - len("slc5")) + "            7  changed",
    ]


def test_short_rows_none_and_line_breaks():
    assert text_table([["host", "image", "state"], ["hv3", "(no images)"], ["hv4", None, "two\nlines"]]) == [
        "host  image        state",
        "hv3   (no images)",
        "hv4                two lines",
    ]
    assert text_table([]) == []


def test_the_filter_is_the_library_and_refuses_what_is_not_rows():
    rows = [["host", "bytes"], ["hv1", 5]]
    assert text_table_filter(rows, right=[1]) == text_table(rows, right=[1]) == ["host  bytes", "hv1       5"]
    for bad in ("host", ["host"], [["a"], "b"]):
        with pytest.raises(AnsibleFilterError, match="list of rows"):
            text_table_filter(bad)
    with pytest.raises(AnsibleFilterError, match="column numbers"):
        text_table_filter(rows, right=["1"])
