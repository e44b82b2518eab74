"""Crafted indexes through the image_index module: one line naming the rule, state_dir unchanged.

The cases are those of tests/unit/plugins/module_utils/test_crafted_indexes.py (imgdist sync).
"""

from __future__ import annotations

import pytest

from ansible_collections.vmcloud.fleet.plugins.modules import image_index
from tests.unit.plugins.module_utils.test_crafted_indexes import CRAFTED
from tests.unit.plugins.module_utils.test_index import snapshot

from .conftest import index_args, write_index


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_image_index_refuses_crafted_indexes_with_one_line(run_module, trust, tmp_path, case):
    data, rule = CRAFTED[case]
    src = tmp_path / "index.yaml"
    write_index(src, trust)
    state = tmp_path / "state"
    args = index_args(trust, src, state)
    for crafted in (False, True):
        if crafted:
            before = snapshot(state)
            src.write_bytes(data)
        result = run_module(image_index, **args)
    assert result.get("failed") and result["rule"] == rule, result.get("msg")
    assert result["msg"].startswith(f"{rule}: ") and "\n" not in result["msg"]
    assert snapshot(state) == before
