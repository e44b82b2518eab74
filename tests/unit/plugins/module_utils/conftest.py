"""Shared fixtures of the module_utils tests: a host after a sync (a served catalogue, the fake
engine behind ``imgdist``), its imgdist.yml, and ``imgdist`` run in process."""

from __future__ import annotations

import io

import pytest
import yaml

from ansible_collections.vmcloud.fleet.plugins.module_utils import _imgdist, _imgdist_status
from tests.unit.sync_world import World, served_world


@pytest.fixture
def world(tmp_path, monkeypatch) -> World:
    """alma 9 (compressed) and slc 5 in index version 3, and one FakeEngine seeding both as the engine of
    ``imgdist sync`` (``_imgdist``) and of status and metrics (``_imgdist_status``)."""
    return served_world(tmp_path, monkeypatch, engine_for=(_imgdist, _imgdist_status))


def write_config(world: World, **overrides) -> str:
    """The host's imgdist.yml (as the vmic_agent role writes it) for ``world``, with ``overrides``."""
    document = {
        "index_url": str(world.index_path),
        "trust_anchors": [str(world.root / "trust" / "ca.pem")],
        "approved_images": [{"name": "alma", "version": "latest"}, {"name": "slc", "version": 5}],
        "host": "hv1",
        "store_dir": world.host_path("images"),
        "staging_dir": world.host_path("staging"),
        "torrent_dir": world.host_path("torrents"),
        "state_dir": world.host_path("index"),
        "disabled_flag": world.host_path("disabled"),
        "timeout": 5,
        "poll_interval": 0.01,
    }
    document.update(overrides)
    path = world.root / "imgdist.yml"
    path.write_text(yaml.safe_dump(document))
    return str(path)


def imgdist(*argv: str) -> tuple:
    """``imgdist ARGV`` in process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = _imgdist.main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()
