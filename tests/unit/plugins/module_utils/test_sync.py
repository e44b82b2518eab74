# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pull path as one call: planning, check mode = plan, per-image failures, retirement."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils import _sync
from ansible_collections.vmcloud.fleet.plugins.module_utils._engine import TorrentStatus
from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import IndexRefused, VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._store import ImageStore
from ansible_collections.vmcloud.fleet.plugins.module_utils._sync import (
    check_torrent_for,
    retired_info_hashes,
    sync,
)
from tests.unit.sync_world import FakeClock, FakeEngine, World, served_world, sha256_of, snapshot

ACTIONS = ("desired", "fetched", "added", "started", "promoted", "retired", "removed", "held", "held_before")
H1, H2, H3 = "1" * 40, "2" * 40, "3" * 40


def lists_of(report) -> dict:
    data = report.to_dict()
    return {key: data[key] for key in ACTIONS} | {
        "failed": [(f["uuid"], f["step"], f["rule"]) for f in data["failures"]],
        "changed": data["changed"],
        "images": [(i["uuid"], i["torrent"], i["engine"], i["store"]) for i in data["images"]],
    }


@pytest.fixture
def world(tmp_path, monkeypatch) -> World:
    return served_world(tmp_path, monkeypatch, index_version=1, fetches=[])


def host_state(world: World) -> dict:
    """The host's files, and of the approvals record only its digest: every real run refreshes the
    record's time (the inventory's word as of this run, which an older agent file must not undo)."""
    state = snapshot(world.root / "host")
    record = state.pop("index/ansible-approvals.json", None)
    if record is not None:
        state["index/ansible-approvals.json digest"] = json.loads(record)["digest"]
    return state


def status(info_hash: str, directory: str) -> TorrentStatus:
    return TorrentStatus(info_hash, "x", 1, 1, True, "seeding", 0, 0, 0, 0.0, 0, "", directory, directory + "/x")


# --------------------------------------------------------------------------- pure parts


def test_retirement_plan_takes_only_what_is_ours_and_not_desired():
    staging = "/var/lib/vmcloud/staging"
    planned = retired_info_hashes(
        desired_hashes=[H1],
        staged_names=[H1, H2, "lost+found", "ABC"],
        torrent_names=[f"{H1}.torrent", f"{H3}.torrent", "notes.txt", f"{H2}.torrent.tmp"],
        engine_statuses=[status(H1, f"{staging}/{H1}"), status("4" * 40, f"{staging}/{'4' * 40}/"),
                         status("5" * 40, "/srv/origin"), status("6" * 40, f"{staging}/{'7' * 40}")],
        staging_dir=staging + "/",
    )
    assert planned == [H2, H3, "4" * 40]


def test_torrent_checked_against_its_index_entry(world):
    alma = world.published["alma-9"]
    assert check_torrent_for(alma.entry, alma.torrent).info_hash == alma.info_hash
    with pytest.raises(Exception) as excinfo:
        check_torrent_for(alma.entry, alma.torrent + b" ")
    assert excinfo.value.rule == "torrent-sha256-mismatch"
    slc = world.published["slc-5"]
    with pytest.raises(Exception) as excinfo:
        check_torrent_for(dict(alma.entry, torrent=dict(alma.entry["torrent"], sha256=slc.entry["torrent"]["sha256"])),
                          slc.torrent)
    assert excinfo.value.rule == "torrent-info-hash-mismatch"


def test_legacy_entries_are_checked_by_sha1(world):
    import hashlib

    slc = world.published["slc-5"]
    legacy = dict(slc.entry, size=None, sha256=None,
                  torrent={"url": slc.entry["torrent"]["url"], "sha256": None, "info_hash": slc.info_hash,
                           "sha1": hashlib.sha1(slc.torrent, usedforsecurity=False).hexdigest()})
    assert check_torrent_for(legacy, slc.torrent).name == slc.entry["file"]
    with pytest.raises(Exception) as excinfo:
        check_torrent_for(dict(legacy, torrent=dict(legacy["torrent"], sha1="0" * 40)), slc.torrent)
    assert excinfo.value.rule == "torrent-sha1-mismatch"
    with pytest.raises(Exception) as excinfo:
        check_torrent_for(dict(legacy, file="other.img"), slc.torrent)
    assert excinfo.value.rule == "torrent-name-mismatch"


# --------------------------------------------------------------------------- check mode = plan


def test_check_apply_check_apply(world):
    engine = FakeEngine.serving(world)
    options = world.options()
    planned = sync(options, engine, check_mode=True)
    assert host_state(world) == {} and engine.calls == [] and engine.torrents == {}
    applied = sync(options, engine, check_mode=False)
    assert lists_of(planned) == lists_of(applied)
    assert applied.changed and applied.promoted == ["alma-9", "slc-5"] == applied.held
    assert applied.fetched == applied.added == ["alma-9", "slc-5"] and applied.failures == []

    for published in world.published.values():
        stored = ImageStore(options["store_dir"]).path_of(published.entry)
        assert sha256_of(stored) == published.content_sha256
        assert (world.root / "host/torrents" / f"{published.info_hash}.torrent").read_bytes() == published.torrent
        assert engine.torrents[published.info_hash]["directory"] == world.host_path(f"staging/{published.info_hash}")
    assert (world.root / "host/index/verified-index.yaml").read_bytes() == world.index_path.read_bytes()

    before = host_state(world)
    again_planned = sync(options, engine, check_mode=True)
    again = sync(options, engine, check_mode=False)
    assert lists_of(again_planned) == lists_of(again)
    assert not again.changed and again.fetched == again.added == again.promoted == again.retired == []
    assert [image.store for image in again.images] == ["present", "present"]
    assert host_state(world) == before
    assert len(world.fetches) == 2 + 2  # the first check mode reads the .torrents too, writes none


def test_check_mode_writes_no_mark(world):
    options = world.options()
    sync(options, FakeEngine.serving(world), check_mode=True)
    assert not os.path.exists(options["state_dir"])


def test_report_to_dict_has_the_documented_keys(world):
    report = sync(world.options(), FakeEngine.serving(world), check_mode=False).to_dict()
    assert set(report) == {"changed", "check_mode", "index", "index_saved", "desired", "fetched", "added",
                           "started", "promoted", "retired", "removed", "held_open", "superseded_pending", "kept",
                           "failures", "held",
                           "held_before", "selection", "desired_images", "images", "store"}
    assert [image["uuid"] for image in report["desired_images"]] == report["desired"]
    assert report["index"]["version"] == 1 and report["index"]["advanced"] is True
    assert report["images"][0]["status"]["state"] == "seeding"


def test_files_nobody_declared_are_handled_by_the_unknown_policy_in_the_same_plan(world):
    """image_sync's unknown option (reconcile.yml folds the image_store pass into the sync): the default
    reports a stray file, remove removes it once; the report carries image_store's result under store."""
    engine = FakeEngine.serving(world)
    assert sync(world.options(), engine, check_mode=False).changed
    stray = os.path.join(world.options()["store_dir"], "stray.img")
    with open(stray, "wb") as handle:
        handle.write(b"nobody declared me")
    reported = sync(world.options(), engine, check_mode=False)
    assert reported.store["unknown"] == [stray] and not reported.changed and os.path.exists(stray)
    checked = sync(world.options(unknown="remove"), engine, check_mode=True)
    assert checked.store["removed"] == [stray] and checked.changed and os.path.exists(stray)
    removed = sync(world.options(unknown="remove"), engine, check_mode=False)
    assert removed.store["removed"] == [stray] and removed.changed and not os.path.exists(stray)
    again = sync(world.options(unknown="remove"), engine, check_mode=False)
    assert again.store["removed"] == [] and not again.changed


# --------------------------------------------------------------------------- failures stay per image


def test_a_download_timeout_fails_that_image_only(world):
    alma, slc = world.published["alma-9"], world.published["slc-5"]
    engine = FakeEngine.serving(world, slc)  # nobody seeds alma
    clock = FakeClock()
    report = sync(world.options(download_timeout=30), engine, check_mode=False, clock=clock, sleep=clock.sleep)
    assert [(f["uuid"], f["step"], f["rule"]) for f in report.failures] == [("alma-9", "download", "download-timeout")]
    assert report.promoted == ["slc-5"] and report.held == ["slc-5"]
    assert report.images[0].store == "pending" and report.images[0].status["state"] == "downloading"
    assert clock.now - 1000.0 >= 30
    # It stays in the engine; once peers have it, the next run promotes it.
    engine.swarm[alma.info_hash] = alma.path.read_bytes()
    later = sync(world.options(), engine, check_mode=False)
    assert later.failures == [] and later.promoted == ["alma-9"] and later.added == []


def test_one_deadline_for_all_downloads(world):
    engine = FakeEngine()  # nobody seeds anything
    clock = FakeClock()
    report = sync(world.options(download_timeout=30), engine, check_mode=False, clock=clock, sleep=clock.sleep)
    assert [f["rule"] for f in report.failures] == ["download-timeout", "download-timeout"]
    assert 30 <= clock.now - 1000.0 < 31


def test_a_tampered_torrent_fails_that_image_and_is_not_written(world, monkeypatch):
    monkeypatch.setattr(_sync, "read_source", world.fetcher(tampered=["alma-9"]))
    report = sync(world.options(), FakeEngine.serving(world), check_mode=False)
    assert [(f["uuid"], f["step"], f["rule"]) for f in report.failures] == [
        ("alma-9", "torrent", "torrent-sha256-mismatch")]
    assert report.promoted == ["slc-5"]
    assert sorted(os.listdir(world.host_path("torrents"))) == [world.published["slc-5"].info_hash + ".torrent"]


@pytest.mark.parametrize("error", [
    __import__("http.client").client.BadStatusLine("HTTP/1.1 five hundred"),  # urllib lets it through
    __import__("http.client").client.IncompleteRead(b"d8:announce", 4096),
    ValueError("a server bug nobody foresaw"),
])
def test_one_bad_torrent_server_fails_only_its_image(world, monkeypatch, error):
    alma, slc = world.published["alma-9"], world.published["slc-5"]
    good = world.fetcher()

    def read_source(src, max_size, **kwargs):
        if src == alma.entry["torrent"]["url"]:
            raise error
        return good(src, max_size, **kwargs)

    monkeypatch.setattr(_sync, "read_source", read_source)
    report = sync(world.options(), FakeEngine.serving(world), check_mode=False)
    assert [(f["uuid"], f["step"]) for f in report.failures] == [("alma-9", "torrent")]
    assert report.failures[0]["rule"] in ("fetch-protocol", "fetch-failed", "internal-error")
    assert report.promoted == ["slc-5"] and report.held == ["slc-5"]
    assert sha256_of(ImageStore(world.host_path("images")).path_of(slc.entry)) == slc.content_sha256


def test_a_content_sha256_mismatch_fails_at_promote(world):
    slc = world.published["slc-5"]
    engine = FakeEngine.serving(world)
    engine.swarm[slc.info_hash] = b"\0" * slc.entry["size"]  # what a broken endorser index would let through
    report = sync(world.options(), engine, check_mode=False)
    assert [(f["uuid"], f["step"], f["rule"]) for f in report.failures] == [("slc-5", "promote", "sha256-mismatch")]
    assert report.held == ["alma-9"]


def test_a_corrupt_local_torrent_is_fetched_again(world):
    options = world.options()
    engine = FakeEngine.serving(world)
    sync(options, engine, check_mode=False)
    alma = world.published["alma-9"]
    (world.root / "host/torrents" / f"{alma.info_hash}.torrent").write_bytes(b"garbage")
    report = sync(options, engine, check_mode=False)
    assert report.fetched == ["alma-9"] and report.added == [] and report.changed


def test_a_refused_index_changes_nothing(world):
    options = world.options()
    engine = FakeEngine.serving(world)
    sync(options, engine, check_mode=False)
    before = host_state(world)
    world.write_index(1, [world.published["slc-5"].entry])  # same version, other content
    with pytest.raises(IndexRefused) as excinfo:
        sync(options, engine, check_mode=False)
    assert excinfo.value.rule == "rollback"
    assert host_state(world) == before and len(engine.torrents) == 2


# --------------------------------------------------------------------------- retirement


def test_withdrawn_approval_retires_everywhere(world):
    alma, slc = world.published["alma-9"], world.published["slc-5"]
    engine = FakeEngine.serving(world)
    sync(world.options(), engine, check_mode=False)
    stored = ImageStore(world.host_path("images")).path_of(slc.entry)

    options = world.options(approved=[{"name": "alma", "version": "latest"}])
    planned = sync(options, engine, check_mode=True)
    assert os.path.exists(stored) and slc.info_hash in engine.torrents
    applied = sync(options, engine, check_mode=False)
    assert lists_of(planned) == lists_of(applied)
    assert applied.retired == ["slc-5"] and applied.removed == [slc.info_hash]
    assert applied.held_before == ["alma-9", "slc-5"] and applied.held == ["alma-9"]
    assert applied.selection["not_approved"] == ["slc-5"]
    assert not os.path.exists(stored)
    assert not os.path.exists(world.host_path(f"staging/{slc.info_hash}"))
    assert not os.path.exists(world.host_path(f"torrents/{slc.info_hash}.torrent"))
    assert list(engine.torrents) == [alma.info_hash]
    assert ("remove", slc.info_hash) in engine.calls
    assert not sync(options, engine, check_mode=False).changed


def test_a_new_version_is_promoted_before_the_old_one_goes(world):
    engine = FakeEngine.serving(world)
    options = world.options(approved=[{"name": "alma", "version": "latest"}])
    sync(options, engine, check_mode=False)
    world.publish("alma", 10, compressed=True)
    world.write_index(2)
    engine.swarm.update(FakeEngine.serving(world).swarm)
    report = sync(options, engine, check_mode=False)
    assert report.promoted == ["alma-10"] and report.retired == ["alma-9"] and report.held == ["alma-10"]
    assert report.index["previous_version"] == 1 and report.index["version"] == 2


def test_nothing_approved_retires_everything_once_confirmed(world):
    engine = FakeEngine.serving(world)
    sync(world.options(), engine, check_mode=False)
    world.write_index(2)
    before = host_state(world)
    for approved in ([], [{"name": "nothing-by-this-name"}]):  # an explicit empty list counts too
        with pytest.raises(VmcloudError) as caught:
            sync(world.options(approved=approved), engine, check_mode=False)
        assert caught.value.rule == "retire-guard"
        assert "would retire 2 of the 2 images" in caught.value.message and "retire_confirm" in caught.value.message
        assert host_state(world) == before and len(engine.torrents) == 2  # not even the mark moved
    report = sync(world.options(approved=[], retire_confirm=True), engine, check_mode=False)
    assert report.desired == [] and report.retired == ["alma-9", "slc-5"] and report.held == []
    assert engine.torrents == {}
    assert os.listdir(world.host_path("staging")) == [] and os.listdir(world.host_path("torrents")) == []


def _sync_in_child(options, engine, results, name, waiting=None, go=None):
    """Run ``sync`` in a forked process; with ``waiting``/``go``, pause at the first refused lock attempt."""
    import fcntl

    if waiting is not None:
        real_flock = fcntl.flock

        def flock(fd, operation):
            try:
                return real_flock(fd, operation)
            except BlockingIOError:
                waiting.set()  # this run now waits for the host lock
                go.wait(60)
                raise

        fcntl.flock = flock
    try:
        report = sync(options, engine, check_mode=False, sleep=lambda _seconds: None)
        results.put((name, "ok", report.held))
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        results.put((name, "refused", getattr(exc, "rule", repr(exc))))


def test_an_older_run_cannot_converge_the_host_back(world, tmp_path):
    """A timer run that read index 1, waiting for the host lock behind a run that accepted index 2,
    must not converge the host back to index 1 once it gets the lock."""
    import fcntl
    import multiprocessing

    from ansible_collections.vmcloud.fleet.plugins.module_utils._store import ImageStore as Store

    latest = [{"name": "alma", "version": "latest"}, {"name": "slc", "version": "latest"}]
    engine = FakeEngine.serving(world)
    assert sync(world.options(approved=latest), engine, check_mode=False).held == ["alma-9", "slc-5"]
    older = tmp_path / "mirror-index-1.yaml"  # a mirror still serving index 1
    older.write_bytes(world.index_path.read_bytes())
    world.publish("alma", 10, compressed=True)
    world.write_index(2)
    engine = FakeEngine.serving(world)

    context = multiprocessing.get_context("fork")
    results, waiting, go = context.Queue(), context.Event(), context.Event()
    lock_file = os.path.join(world.host_path("index"), "sync.lock")
    with open(lock_file, "a") as third_run:  # an Ansible run holds the host
        fcntl.flock(third_run.fileno(), fcntl.LOCK_EX)
        timer_options = world.options(approved=latest, src=str(older))
        timer = context.Process(target=_sync_in_child, args=(timer_options, engine, results, "timer", waiting, go))
        timer.start()
        assert waiting.wait(60), "the timer run never waited for the lock"
        fcntl.flock(third_run.fileno(), fcntl.LOCK_UN)
    newer = context.Process(target=_sync_in_child, args=(world.options(approved=latest), engine, results, "newer"))
    newer.start()
    newer.join(60)
    go.set()
    timer.join(60)
    outcomes = dict((name, (state, detail)) for name, state, detail in (results.get(timeout=5) for _unused in range(2)))
    assert outcomes["newer"] == ("ok", ["alma-10", "slc-5"])
    assert outcomes["timer"] == ("refused", "rollback")
    assert sorted(Store(world.host_path("images")).manifest()) == ["alma-10", "slc-5"]


def test_undefined_approvals_are_an_error_not_approve_nothing(world):
    engine = FakeEngine.serving(world)
    sync(world.options(), engine, check_mode=False)
    before = host_state(world)
    for check_mode in (True, False):
        with pytest.raises(VmcloudError) as caught:
            sync(world.options(approved=None) | {"approved": None}, engine, check_mode=check_mode)
        assert caught.value.rule == "approvals-undefined" and "vmcloud_approved_images" in caught.value.message
    assert host_state(world) == before


def upgrade(world, serve_new: bool):
    """alma 9 and slc 5 held; alma 10 published in index 2, and in the swarm only when ``serve_new``."""
    latest = [{"name": "alma", "version": "latest"}, {"name": "slc", "version": "latest"}]
    engine = FakeEngine.serving(world)
    assert sync(world.options(approved=latest), engine, check_mode=False).held == ["alma-9", "slc-5"]
    new = world.publish("alma", 10, compressed=True)
    world.write_index(2)
    if serve_new:
        engine.swarm[new.info_hash] = new.path.read_bytes()
    return engine, latest


def test_a_failed_upgrade_keeps_the_version_the_host_holds(world):
    engine, latest = upgrade(world, serve_new=False)
    store = ImageStore(world.host_path("images"))
    old = world.published["alma-9"]
    held = Path(store.path_of(old.entry)).read_bytes()
    clock = FakeClock()
    options = world.options(approved=latest, download_timeout=30)
    planned = sync(options, engine, check_mode=True)
    report = sync(options, engine, check_mode=False, clock=clock, sleep=clock.sleep)
    assert [(f["uuid"], f["rule"]) for f in report.failures] == [("alma-10", "download-timeout")]
    assert report.retired == [] and report.held == ["alma-9", "slc-5"]
    assert report.to_dict()["superseded_pending"] == [
        {"uuid": "alma-9", "name": "alma", "version": 9, "path": store.path_of(old.entry), "waiting_for": ["alma-10"]}]
    assert Path(store.path_of(old.entry)).read_bytes() == held  # byte for byte
    assert old.info_hash in engine.torrents and os.path.isdir(world.host_path(f"staging/{old.info_hash}"))
    assert planned.retired == ["alma-9"]  # check mode cannot know a download will fail: it assumes success
    # Once alma 10 arrives, alma 9 goes.
    engine.swarm[world.published["alma-10"].info_hash] = world.published["alma-10"].path.read_bytes()
    later = sync(options, engine, check_mode=False)
    assert later.promoted == ["alma-10"] and later.retired == ["alma-9"] and later.held == ["alma-10", "slc-5"]
    assert later.to_dict()["superseded_pending"] == [] and old.info_hash not in engine.torrents


@pytest.mark.parametrize("how", ["blocked", "withdrawn"])
def test_a_blocked_or_withdrawn_image_goes_even_when_its_successor_failed(world, how):
    engine, latest = upgrade(world, serve_new=False)
    overrides = {}
    if how == "blocked":
        overrides["blocked"] = [{"uuid": "alma-9"}]
    else:
        world.write_index(3, [p.entry for p in world.published.values() if p.uuid != "alma-9"])
    clock = FakeClock()
    report = sync(world.options(approved=latest, download_timeout=30, **overrides), engine, check_mode=False,
                  clock=clock, sleep=clock.sleep)
    assert [(f["uuid"], f["rule"]) for f in report.failures] == [("alma-10", "download-timeout")]
    assert report.retired == ["alma-9"] and report.held == ["slc-5"]


def test_a_manifest_entry_pointing_outside_the_store_is_dropped_and_nothing_outside_is_touched(world):
    import json

    engine = FakeEngine.serving(world)
    sync(world.options(), engine, check_mode=False)
    victim = world.root / "outside" / "victim"
    victim.parent.mkdir()
    victim.write_bytes(b"not vmcloud's")
    manifest_path = world.root / "host/images/.vmcloud/manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["images"]["planted-1"] = dict(manifest["images"]["slc-5"], uuid="planted-1", name="planted",
                                           file="../../outside/victim")
    manifest_path.write_text(json.dumps(manifest))
    report = sync(world.options(), engine, check_mode=False)
    assert report.failures == [] and report.retired == ["planted-1"] and report.held == ["alma-9", "slc-5"]
    assert victim.read_bytes() == b"not vmcloud's"


def test_two_desired_images_with_one_file_name_are_refused(world):
    engine = FakeEngine.serving(world)
    sync(world.options(), engine, check_mode=False)
    twin = world.publish("twin", 1)
    world.publish("twin", 1, compressed=True, uuid="twin-1-gz")  # stored unpacked: twin_1.img as well
    world.write_index(2)
    engine = FakeEngine.serving(world)
    before = host_state(world)
    for check_mode in (True, False):
        with pytest.raises(VmcloudError) as caught:
            sync(world.options(), engine, check_mode=check_mode)
        assert caught.value.rule == "desired-conflict" and twin.entry["file"] in caught.value.message
    assert host_state(world) == before


def test_not_desired_keep_and_the_quota_reach_the_sync(world):
    engine, latest = upgrade(world, serve_new=True)
    report = sync(world.options(approved=latest, not_desired="keep"), engine, check_mode=False)
    assert report.promoted == ["alma-10"] and report.retired == [] and report.held == ["alma-10", "alma-9", "slc-5"]
    report = sync(world.options(approved=latest, not_desired="keep", max_bytes=1, retire_confirm=True), engine,
                  check_mode=False)
    assert report.retired == ["alma-9"] and report.held == ["alma-10", "slc-5"]


def test_one_sync_at_a_time(tmp_path):
    import fcntl

    from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError
    from ansible_collections.vmcloud.fleet.plugins.module_utils._lock import host_lock, lock_path

    path = lock_path(str(tmp_path / "index"))
    clock = FakeClock()
    with host_lock(path, timeout=1):
        with host_lock(path, timeout=1):  # re-entrant in one process
            pass
        # Another holder (the timer's imgdist sync, say) has its own open file description.
        with open(path, "a") as other, pytest.raises(OSError):
            fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(path, "a") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        with pytest.raises(VmcloudError) as caught, host_lock(path, timeout=5, clock=clock, sleep=clock.sleep):
            pass
        assert caught.value.rule == "lock-timeout" and path in caught.value.message
        fcntl.flock(other.fileno(), fcntl.LOCK_UN)
    with host_lock(path, timeout=0):
        pass


def test_a_sync_waits_for_the_lock_then_gives_up_changing_nothing(world):
    import fcntl

    options = world.options(download_timeout=5)
    os.makedirs(options["state_dir"])
    clock = FakeClock()
    with open(os.path.join(options["state_dir"], "sync.lock"), "a") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        with pytest.raises(Exception) as caught:
            sync(options, FakeEngine.serving(world), check_mode=False, clock=clock, sleep=clock.sleep)
    assert caught.value.rule == "lock-timeout"
    assert host_state(world) == {"index/sync.lock": b""}  # no mark, no index copy, nothing in the store


# --------------------------------------------------------------------------- stalls and full disks


def test_a_download_that_cannot_fit_in_staging_fails_at_once_naming_the_space(world, monkeypatch):
    alma = world.published["alma-9"]
    engine = FakeEngine()  # nobody seeds: the download makes no progress
    monkeypatch.setattr(_sync, "free_bytes", lambda path: 1000)
    clock = FakeClock()
    store_before = snapshot(world.options()["store_dir"])
    report = sync(world.options(download_timeout=300), engine, check_mode=False, clock=clock, sleep=clock.sleep)
    assert sorted((f["uuid"], f["step"], f["rule"]) for f in report.failures) == [
        ("alma-9", "download", "staging-full"), ("slc-5", "download", "staging-full")]
    alma_failure = next(f for f in report.failures if f["uuid"] == "alma-9")
    assert "1000 bytes free" in alma_failure["message"] and str(alma.path.stat().st_size) in alma_failure["message"]
    assert clock.now - 1000.0 < 300  # not after the whole timeout
    assert snapshot(world.options()["store_dir"]) == store_before


def test_a_timeout_with_room_to_spare_stays_a_download_timeout(world, monkeypatch):
    monkeypatch.setattr(_sync, "free_bytes", lambda path: 1 << 40)
    clock = FakeClock()
    report = sync(world.options(download_timeout=30), FakeEngine(), check_mode=False, clock=clock, sleep=clock.sleep)
    assert [f["rule"] for f in report.failures] == ["download-timeout", "download-timeout"]


def test_a_download_without_peers_is_announced_again_and_one_with_peers_is_not(world):
    alma, slc = world.published["alma-9"], world.published["slc-5"]
    engine = FakeEngine.serving(world, slc)  # nobody seeds alma
    clock = FakeClock()
    sync(world.options(download_timeout=100), engine, check_mode=False, clock=clock, sleep=clock.sleep)
    announced = [call[1] for call in engine.calls if call[0] == "announce"]
    assert set(announced) == {alma.info_hash}
    # at once and at 30 s; at 33 s (a third of the wait) it was added again instead; then at 63 s and 93 s
    assert len(announced) == 4


def test_a_stalled_download_is_dropped_and_added_again_once_keeping_its_data(world):
    alma = world.published["alma-9"]
    engine = FakeEngine.serving(world, world.published["slc-5"])  # nobody seeds alma
    clock = FakeClock()
    report = sync(world.options(download_timeout=300), engine, check_mode=False, clock=clock, sleep=clock.sleep)
    readded = [call[0] for call in engine.calls if call[1] == alma.info_hash and call[0] in ("add", "remove")]
    assert readded == ["add", "remove", "add"]
    assert report.failures[0]["rule"] == "download-timeout"
    engine.swarm[alma.info_hash] = alma.path.read_bytes()
    later = sync(world.options(), engine, check_mode=False)
    assert later.failures == [] and later.promoted == ["alma-9"]


def test_a_short_wait_drops_and_adds_a_stalled_download_within_its_timeout(world):
    """A stall is judged against the wait: with a 15 s timeout (the fault suite's imgdist-short.yml) the
    re-add comes after 5 s, not after the 60 s that suit a long wait, so a download rtorrent closed on a
    full disk resumes within the run that frees the space."""
    engine = FakeEngine.serving(world, world.published["slc-5"])
    clock = FakeClock()
    started = clock()
    readded_at = []
    real_remove = engine.remove

    def remove(info_hash, delete_data=False):
        readded_at.append(clock() - started)
        return real_remove(info_hash, delete_data)

    engine.remove = remove
    sync(world.options(download_timeout=15), engine, check_mode=False, clock=clock, sleep=clock.sleep)
    assert len(readded_at) == 1 and 5 <= readded_at[0] < 6


def test_a_seeding_copy_changed_after_promotion_is_checked_again_and_the_run_converges(world):
    alma = world.published["alma-9"]
    engine = FakeEngine.serving(world)
    options = world.options()
    first = sync(options, engine, check_mode=False)
    assert first.failures == [] and "alma-9" in first.promoted
    store_before = snapshot(options["store_dir"])
    staged = Path(options["staging_dir"]) / alma.info_hash / alma.path.name
    staged.write_bytes(b"\0" * staged.stat().st_size)  # the seeding copy goes bad (newer than the store's)
    os.utime(staged, ns=(staged.stat().st_mtime_ns + 10**9,) * 2)
    engine.calls.clear()
    healed = sync(options, engine, check_mode=False)
    assert healed.failures == [] and healed.changed
    assert [call[0] for call in engine.calls if call[1] == alma.info_hash and call[0] in ("add", "remove")] == [
        "remove", "add"]
    assert staged.read_bytes() == alma.path.read_bytes()
    assert snapshot(options["store_dir"]) == store_before  # the store copy was never touched
    engine.calls.clear()
    again = sync(options, engine, check_mode=False)
    assert again.failures == [] and not again.changed
    assert [call for call in engine.calls if call[0] in ("add", "remove")] == []


def test_a_sync_removes_a_killed_promotions_leftover_at_once(world):
    """Every promotion runs under the host lock the sync holds: a ``.promote-*`` file it finds, however
    fresh, is a killed promotion's leftover (seen in the fault suite's promotion_killed case)."""
    engine = FakeEngine.serving(world)
    options = world.options()
    assert sync(options, engine, check_mode=False).failures == []
    leftover = Path(options["store_dir"]) / ".promote-7ao47it5"
    leftover.write_bytes(b"half a copy")
    again = sync(options, engine, check_mode=False)
    assert again.failures == [] and not leftover.exists()
    store = ImageStore(options["store_dir"])
    assert sorted(os.listdir(options["store_dir"])) == sorted(
        [".vmcloud"] + [os.path.basename(store.path_of(p.entry)) for p in world.published.values()])
