"""Shared fixtures of the module_utils tests: a host after a sync (a served catalogue, the fake
engine behind ``imgdist``); its imgdist.yml and ``imgdist`` in process are in tests/unit/sync_world.py."""

from __future__ import annotations

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils import _imgdist, _imgdist_status
from tests.unit.sync_world import World, served_world


@pytest.fixture
def world(tmp_path, monkeypatch) -> World:
    """alma 9 (compressed) and slc 5 in index version 3, and one FakeEngine seeding both as the engine of
    ``imgdist sync`` (``_imgdist``) and of status and metrics (``_imgdist_status``)."""
    return served_world(tmp_path, monkeypatch, engine_for=(_imgdist, _imgdist_status))
