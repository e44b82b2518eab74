"""Crafted indexes through the image_index module: one line naming the rule, state_dir unchanged.

The cases are those of tests/unit/plugins/module_utils/test_crafted_indexes.py (imgdist sync).
"""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.vmcloud.fleet.plugins.modules import image_index
from tests.unit import index_factory as factory
from tests.unit import pki
from tests.unit.plugins.module_utils.test_crafted_indexes import CRAFTED
from tests.unit.plugins.module_utils.test_index import snapshot


@pytest.fixture(scope="module")
def trust(tmp_path_factory):
    directory = tmp_path_factory.mktemp("trust")
    ca = pki.make_ca("crafted CA")
    (directory / "ca.pem").write_bytes(pki.pem(ca.cert))
    return {"dir": directory, "endorser": pki.make_endorser(ca, "lab-endorser", key_type="ec")}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_image_index_refuses_crafted_indexes_with_one_line(capsys, trust, tmp_path, case):
    data, rule = CRAFTED[case]
    src = tmp_path / "index.yaml"
    src.write_bytes(factory.document(factory.signed_index([factory.image(1)], version=2), [trust["endorser"]]))
    state = tmp_path / "state"
    args = {"src": str(src), "trust_anchors": [str(trust["dir"] / "ca.pem")], "state_dir": str(state),
            "reference_time": factory.NOW}
    for crafted in (False, True):
        if crafted:
            before = snapshot(state)
            src.write_bytes(data)
        with patch_module_args(args), pytest.raises(SystemExit):
            image_index.main()
        result = json.loads(capsys.readouterr().out)
    assert result.get("failed") and result["rule"] == rule, result.get("msg")
    assert result["msg"].startswith(f"{rule}: ") and "\n" not in result["msg"]
    assert snapshot(state) == before
