"""Option values in the modules: the shared validator (_options) fails them with option-invalid,
naming the option, before anything runs or changes."""

from __future__ import annotations

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils._options import TORRENT_DOWNLOAD_CHECKS
from ansible_collections.vmcloud.fleet.plugins.modules import image_index, image_sync, torrent_download
from tests.unit.plugins.module_utils.test_index import snapshot
from tests.unit.plugins.module_utils.test_options import BAD_INDEX_OPTIONS, BAD_SYNC_OPTIONS

from .conftest import index_args, write_index


@pytest.mark.parametrize(("option", "value", "fragment"), [bad for bad in BAD_INDEX_OPTIONS if bad[1] == bad[1]])
def test_image_index_refuses_bad_values(run_module, trust, tmp_path, option, value, fragment):
    state = tmp_path / "state"
    args = index_args(trust, write_index(tmp_path / "index.yaml", trust), state)
    run_module(image_index, **args)
    before = snapshot(state)
    result = run_module(image_index, **{**args, option: value})
    assert result["failed"] and result["rule"] == "option-invalid", result["msg"]
    assert f"option '{option}'" in result["msg"] and "\n" not in result["msg"]
    assert snapshot(state) == before


@pytest.mark.parametrize(("option", "value", "fragment"), BAD_SYNC_OPTIONS + BAD_INDEX_OPTIONS[:3])
def test_image_sync_refuses_bad_values_before_anything_runs(run_module, trust, tmp_path, option, value, fragment):
    store = tmp_path / "images"
    store.mkdir()
    (store / "kept.img").write_bytes(b"kept")
    result = run_module(image_sync, src=str(tmp_path / "absent.yaml"),
                        trust_anchors=trust["anchors"], state_dir=str(tmp_path / "state"),
                        store_dir=str(store), approved=[], socket=str(tmp_path / "no.socket"), **{option: value})
    assert result["failed"] and result["rule"] == "option-invalid", result["msg"]
    assert fragment in result["msg"]
    assert sorted(p.name for p in store.iterdir()) == ["kept.img"] and not (tmp_path / "state").exists()


@pytest.mark.parametrize(("option", "value"), [("timeout", -1), ("timeout", 10**9), ("poll_interval", -1),
                                               ("poll_interval", 0), ("rpc_timeout", -1)])
def test_torrent_download_refuses_bad_values(run_module, tmp_path, option, value):
    result = run_module(torrent_download, info_hash="a" * 40, state="absent",
                        socket=str(tmp_path / "no.socket"), **{option: value})
    assert result["failed"] and result["rule"] == "option-invalid", result["msg"]
    assert f"option '{option}'" in result["msg"]


def test_torrent_download_checks_cover_its_own_timeout():
    assert set(TORRENT_DOWNLOAD_CHECKS) == {"timeout", "poll_interval", "rpc_timeout"}
