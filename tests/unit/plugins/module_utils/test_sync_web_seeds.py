# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sync hands each index entry's web seeds (BEP 19) to the engine with the torrent."""

from __future__ import annotations

from ansible_collections.vmcloud.fleet.plugins.module_utils import _sync
from ansible_collections.vmcloud.fleet.plugins.module_utils._engine import reconcile
from ansible_collections.vmcloud.fleet.plugins.module_utils._sync import sync
from tests.unit.sync_world import FakeClock, FakeEngine, World


def test_web_seeds_go_with_the_torrent(tmp_path, monkeypatch):
    world = World(tmp_path)
    seeded = world.publish("alma", 9, web_seeds=["http://catalogue/images/alma_9.img"])
    bare = world.publish("slc", 5)
    world.write_index(1)
    monkeypatch.setattr(_sync, "read_source", world.fetcher())
    engine = FakeEngine.serving(world)
    clock = FakeClock()
    report = sync(world.options(), engine, check_mode=False, clock=clock, sleep=clock.sleep)
    assert report.failures == [] and sorted(report.promoted) == sorted([seeded.uuid, bare.uuid])
    assert engine.web_seeds == {seeded.info_hash: ["http://catalogue/images/alma_9.img"], bare.info_hash: []}


def test_reconcile_passes_web_seeds_only_on_add(tmp_path):
    world = World(tmp_path)
    published = world.publish("alma", 9)
    engine = FakeEngine.serving(world)
    staging = str(tmp_path / "staging")
    reconcile(engine, info_hash=published.info_hash, state="present", directory=staging,
              torrent_bytes=published.torrent, web_seeds=["http://a/alma_9.img"])
    assert engine.web_seeds == {published.info_hash: ["http://a/alma_9.img"]}
    # Already loaded: nothing is added again.
    assert reconcile(engine, info_hash=published.info_hash, state="present", directory=staging,
                     torrent_bytes=published.torrent, web_seeds=["http://b/alma_9.img"]).action == "none"
    assert engine.web_seeds == {published.info_hash: ["http://a/alma_9.img"]}
