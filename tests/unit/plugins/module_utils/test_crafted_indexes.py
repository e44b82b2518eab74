"""Crafted indexes through the real entry points: `imgdist sync` here, the image_index module in
tests/unit/plugins/modules/test_image_index_crafted.py.

Each ends in one line naming the rule; state_dir (and the store) stay byte for byte the same.
"""

from __future__ import annotations

import json

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils import _imgdist, _imgdist_status
from ansible_collections.vmcloud.fleet.plugins.module_utils._imgdist_config import EXIT_INDEX_REFUSED, EXIT_OK
from tests.unit.plugins.module_utils.test_index import snapshot
from tests.unit.sync_world import World, imgdist, served_world, write_imgdist_config

CRAFTED = {
    "json-5000-deep": (b'{"signed": ' + b"[" * 5000 + b"]" * 5000 + b', "signatures": []}', "index-too-deep"),
    "yaml-50000-flow": (b"signed: " + b"[" * 50000 + b"\n", "index-too-deep"),
    "yaml-3000-block": (b"signed:\n" + b"- " * 3000 + b"x\n", "index-too-deep"),
    "json-5000-digits": (b'{"signed": {"version": ' + b"7" * 5000 + b'}, "signatures": []}', "index-too-complex"),
    "yaml-5000-digits": (b"signed:\n  version: " + b"7" * 5000 + b"\nsignatures: []\n", "index-too-complex"),
    "json-tiny-nodes": (b'{"signed": [' + b"0," * 1_000_001 + b'0], "signatures": []}', "index-too-complex"),
    "json-lone-surrogate": (b'{"signed": {"url": "http://c/\\udc80"}, "signatures": []}', "text-invalid"),
    "yaml-lone-surrogate": (b'signed: {url: "http://c/\\udc80"}\nsignatures: []\n', "yaml-invalid"),
    "not-utf8": (b"signed: \xc0\xaf\n", "text-invalid"),
    "json-bom-duplicate": (b'\xef\xbb\xbf{"signed": {}, "signed": {}, "signatures": []}', "json-invalid"),
    "yaml-comment-duplicate": (b'# x\n{"signed": {}, "signed": {}, "signatures": []}', "yaml-invalid"),
    "yaml-merge": (b"signed:\n  <<: {version: 9}\nsignatures: []\n", "yaml-invalid"),
}


@pytest.fixture
def world(tmp_path, monkeypatch) -> World:
    return served_world(tmp_path, monkeypatch, published=[("alma", 9, True)], engine_for=(_imgdist, _imgdist_status))


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_imgdist_sync_refuses_crafted_indexes_with_one_line(world, case):
    data, rule = CRAFTED[case]
    config = write_imgdist_config(world, approved_images=[{"name": "alma", "version": "latest"}])
    assert imgdist("-c", config, "sync")[0] == EXIT_OK
    state, store = world.root / "host" / "index", world.root / "host" / "images"
    before = (snapshot(state), snapshot(store))
    world.index_path.write_bytes(data)
    code, out, err = imgdist("-c", config, "sync")
    assert code == EXIT_INDEX_REFUSED, err
    assert err.startswith(f"imgdist: {rule}: ") and err.count("\n") == 1
    after = snapshot(state)
    assert json.loads(after["last-sync.json"])["rule"] == rule  # the sync's record: the one file that changes
    after["last-sync.json"] = before[0]["last-sync.json"]
    assert (after, snapshot(store)) == before
