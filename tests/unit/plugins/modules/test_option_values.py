"""Option values in the modules: the shared validator (_options) fails them with option-invalid,
naming the option, before anything runs or changes."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.vmcloud.fleet.plugins.module_utils._options import TORRENT_DOWNLOAD_CHECKS
from ansible_collections.vmcloud.fleet.plugins.modules import image_index, image_sync, torrent_download
from tests.unit import index_factory as factory
from tests.unit import pki
from tests.unit.plugins.module_utils.test_index import snapshot
from tests.unit.plugins.module_utils.test_options import BAD_INDEX_OPTIONS, BAD_SYNC_OPTIONS


@pytest.fixture(scope="module")
def trust(tmp_path_factory):
    directory = tmp_path_factory.mktemp("trust")
    ca = pki.make_ca("options CA")
    endorser = pki.make_endorser(ca, "lab-endorser", key_type="ec")
    (directory / "ca.pem").write_bytes(pki.pem(ca.cert))
    return {"dir": directory, "endorser": endorser}


def run_module(capsys, module, **args):
    with patch_module_args(args), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(("option", "value", "fragment"), [bad for bad in BAD_INDEX_OPTIONS if bad[1] == bad[1]])
def test_image_index_refuses_bad_values(capsys, trust, tmp_path, option, value, fragment):
    src = tmp_path / "index.yaml"
    src.write_bytes(factory.document(factory.signed_index([factory.image(1)], version=2), [trust["endorser"]]))
    state = tmp_path / "state"
    args = {"src": str(src), "trust_anchors": [str(trust["dir"] / "ca.pem")], "state_dir": str(state),
            "reference_time": factory.NOW}
    run_module(capsys, image_index, **args)
    before = snapshot(state)
    result = run_module(capsys, image_index, **{**args, option: value})
    assert result["failed"] and result["rule"] == "option-invalid", result["msg"]
    assert f"option '{option}'" in result["msg"] and "\n" not in result["msg"]
    assert snapshot(state) == before


@pytest.mark.parametrize(("option", "value", "fragment"), BAD_SYNC_OPTIONS + BAD_INDEX_OPTIONS[:3])
def test_image_sync_refuses_bad_values_before_anything_runs(capsys, trust, tmp_path, option, value, fragment):
    store = tmp_path / "images"
    store.mkdir()
    (store / "kept.img").write_bytes(b"kept")
    result = run_module(capsys, image_sync, src=str(tmp_path / "absent.yaml"),
                        trust_anchors=[str(trust["dir"] / "ca.pem")], state_dir=str(tmp_path / "state"),
                        store_dir=str(store), approved=[], socket=str(tmp_path / "no.socket"), **{option: value})
    assert result["failed"] and result["rule"] == "option-invalid", result["msg"]
    assert fragment in result["msg"]
    assert sorted(p.name for p in store.iterdir()) == ["kept.img"] and not (tmp_path / "state").exists()


@pytest.mark.parametrize(("option", "value"), [("timeout", -1), ("timeout", 10**9), ("poll_interval", -1),
                                               ("poll_interval", 0), ("rpc_timeout", -1)])
def test_torrent_download_refuses_bad_values(capsys, tmp_path, option, value):
    result = run_module(capsys, torrent_download, info_hash="a" * 40, state="absent",
                        socket=str(tmp_path / "no.socket"), **{option: value})
    assert result["failed"] and result["rule"] == "option-invalid", result["msg"]
    assert f"option '{option}'" in result["msg"]


def test_torrent_download_checks_cover_its_own_timeout():
    assert set(TORRENT_DOWNLOAD_CHECKS) == {"timeout", "poll_interval", "rpc_timeout"}
