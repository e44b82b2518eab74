# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""vmcloud.fleet.image_sync: check → apply → check → apply, diff, per-image failure, refusal."""

from __future__ import annotations

import hashlib
import os

import pytest

from ansible_collections.vmcloud.fleet.plugins.modules import image_sync
from tests.unit.sync_world import World, served_world, snapshot


@pytest.fixture
def world(tmp_path, monkeypatch) -> World:
    return served_world(tmp_path, monkeypatch, index_version=2, engine_for=[image_sync])


def module_args(world: World, **extra) -> dict:
    args = {
        "src": str(world.index_path),
        "trust_anchors": [str(world.root / "trust" / "ca.pem")],
        "state_dir": world.host_path("index"),
        "store_dir": world.host_path("images"),
        "staging_dir": world.host_path("staging"),
        "torrent_dir": world.host_path("torrents"),
        "approved": [{"name": "alma", "version": "latest"}, {"uuid": "slc-5"}],
        "host": "hv1",
        "download_timeout": 5,
        "poll_interval": 0.01,
    }
    args.update(extra)
    return args


def test_check_apply_check_apply(run_module, world):
    args = module_args(world)
    results = [
        run_module(image_sync, _ansible_check_mode=True, _ansible_diff=True, **args),
        run_module(image_sync, _ansible_diff=True, **args),
        run_module(image_sync, _ansible_check_mode=True, **args),
        run_module(image_sync, **args),
    ]
    assert [r["changed"] for r in results] == [True, True, False, False]
    assert results[0]["diff"] == results[1]["diff"] == {"before": {"held": []}, "after": {"held": ["alma-9", "slc-5"]}}
    for key in ("desired", "fetched", "added", "promoted", "retired", "held"):
        assert results[0][key] == results[1][key], key
    assert results[1]["promoted"] == ["alma-9", "slc-5"] and results[3]["promoted"] == []
    assert results[3]["diff"] == {"before": {"held": ["alma-9", "slc-5"]}, "after": {"held": ["alma-9", "slc-5"]}}
    assert results[3]["index"]["previous_version"] == 2


def test_unknown_files_by_policy_with_check_and_diff(run_module, world):
    """The image_store pass folded into the sync: check, apply, apply under unknown=quarantine."""
    args = module_args(world)
    run_module(image_sync, **args)
    stray = os.path.join(world.host_path("images"), "stray.img")
    with open(stray, "wb") as handle:
        handle.write(b"nobody declared me")
    reported = run_module(image_sync, _ansible_diff=True, **args)
    assert reported["changed"] is False and reported["store"]["unknown"] == [stray]
    assert reported["diff"]["before"]["unknown"] == reported["diff"]["after"]["unknown"] == [stray]
    args["unknown"] = "quarantine"
    results = [run_module(image_sync, _ansible_check_mode=True, _ansible_diff=True, **args),
               run_module(image_sync, _ansible_diff=True, **args), run_module(image_sync, **args)]
    assert [r["changed"] for r in results] == [True, True, False]
    assert results[0]["diff"] == results[1]["diff"]
    assert results[0]["diff"]["before"]["unknown"] == [stray] and results[0]["diff"]["after"]["unknown"] == []
    assert results[1]["store"]["quarantined"] == [stray] and not os.path.exists(stray)
    assert os.listdir(os.path.join(world.host_path("images"), ".vmcloud", "quarantine"))[0].endswith("-stray.img")


def test_a_failed_image_fails_the_task_after_the_others(run_module, world):
    del world.engine.swarm[world.published["alma-9"].info_hash]
    result = run_module(image_sync, **module_args(world, download_timeout=0))
    assert result["failed"] is True and result["rule"] == "images-failed"
    assert result["msg"].startswith("images-failed: 1 problem(s), the other images went on; first: alma-9: "
                                    "download-timeout: ")
    assert result["promoted"] == ["slc-5"] and result["changed"] is True
    assert [(f["uuid"], f["step"]) for f in result["failures"]] == [("alma-9", "download")]


def test_a_refused_index_fails_naming_the_rule(run_module, world):
    world.write_index(1, expires="2020-01-01T00:00:00Z", created="2019-12-01T00:00:00Z")
    result = run_module(image_sync, **module_args(world))
    assert result["failed"] is True and result["rule"] == "index-expired"
    assert result["msg"].startswith("index-expired: index version 1 expired at 2020-01-01T00:00:00Z")


def test_without_approved_the_task_fails_naming_the_variable_and_changes_nothing(run_module, world):
    args = module_args(world)
    del args["approved"]
    result = run_module(image_sync, **args)
    assert result["failed"] is True and result["rule"] == "approvals-undefined"
    assert "vmcloud_approved_images" in result["msg"] and "an explicit [] approves nothing" in result["msg"]
    assert not os.path.exists(world.host_path("images")) and world.engine.torrents == {}
    assert os.listdir(world.host_path("index")) == ["sync.lock"]  # no mark


def test_the_guard_fails_the_task_before_anything_changes(run_module, world):
    run_module(image_sync, **module_args(world))
    before = snapshot(world.root / "host")
    result = run_module(image_sync, **module_args(world, approved=[]))
    assert result["failed"] is True and result["rule"] == "retire-guard"
    assert "would retire 2 of the 2 images" in result["msg"]
    assert snapshot(world.root / "host") == before  # store, manifest, mark, kept index, .torrent files
    retired = run_module(image_sync, **module_args(world, approved=[], retire_confirm=True))["retired"]
    assert retired == ["alma-9", "slc-5"]


def layout_as_kept(world: World, tmp_path) -> dict:
    """A layout guard over a trust copy and the store directory, both as the guard keeps them."""
    trust = tmp_path / "host-trust"
    (trust / "anchors").mkdir(parents=True)
    anchor = (world.root / "trust" / "ca.pem").read_bytes()
    (trust / "anchors" / "ca.pem").write_bytes(anchor)
    (trust / "anchors" / "ca.pem").chmod(0o644)
    os.makedirs(world.host_path("images"), exist_ok=True)
    os.chmod(world.host_path("images"), 0o755)  # noqa: S103 - the mode the layout keeps
    os.chmod(trust / "anchors", 0o755)  # noqa: S103 - the mode the layout keeps
    return {
        "paths": [world.host_path("images")], "trees": [str(trust)],
        "kept": [{"path": world.host_path("images"), "type": "directory", "mode": "0755"},
                 {"path": str(trust / "anchors"), "type": "directory", "mode": "0755"},
                 {"path": str(trust / "anchors" / "ca.pem"), "mode": "0644",
                  "checksum": hashlib.sha256(anchor).hexdigest()}],
        "only": [{"dir": str(trust / "anchors"), "names": ["ca.pem"]}],
        "absent": [str(tmp_path / "disabled")],
    }


def test_a_host_as_the_layout_keeps_it_syncs_and_returns_the_look(run_module, world, tmp_path):
    layout = layout_as_kept(world, tmp_path)
    result = run_module(image_sync, **module_args(world, layout=layout))
    assert result["synced"] is True and result["promoted"] == ["alma-9", "slc-5"]
    assert result["layout"]["differing"] == result["layout"]["withdrawn"] == result["layout"]["present"] == []
    assert str(tmp_path / "host-trust" / "anchors" / "ca.pem") in result["layout"]["files"]


@pytest.mark.parametrize("drift", ["changed anchor", "withdrawn file", "disabled", "store mode"])
def test_a_host_other_than_the_layout_keeps_it_is_not_synced_and_nothing_changes(
        run_module, world, tmp_path, drift):
    """The sync would verify with the host's trust material: other than the controller's, nothing runs."""
    layout = layout_as_kept(world, tmp_path)
    anchors = tmp_path / "host-trust" / "anchors"
    if drift == "changed anchor":
        (anchors / "ca.pem").write_bytes(b"an anchor the controller no longer has")
    elif drift == "withdrawn file":
        (anchors / "old.pem").write_bytes(b"withdrawn")
    elif drift == "disabled":
        (tmp_path / "disabled").write_bytes(b"")
    else:
        os.chmod(world.host_path("images"), 0o700)
    before = snapshot(world.root / "host")
    result = run_module(image_sync, _ansible_check_mode=False, **module_args(world, layout=layout))
    assert result["synced"] is False and result["changed"] is False and "failed" not in result
    found = {"changed anchor": ("differing", [str(anchors / "ca.pem")]),
             "withdrawn file": ("withdrawn", [str(anchors / "old.pem")]),
             "disabled": ("present", [str(tmp_path / "disabled")]),
             "store mode": ("differing", [world.host_path("images")])}[drift]
    assert result["layout"][found[0]] == found[1]
    assert snapshot(world.root / "host") == before and world.engine.torrents == {}
    assert not os.path.exists(world.host_path("index"))  # not even the lock: the index was not fetched


def test_a_malformed_layout_entry_fails_naming_the_rule(run_module, world, tmp_path):
    result = run_module(image_sync, **module_args(world, layout={"kept": [{"path": "/x"}]}))
    assert result["failed"] is True and result["rule"] == "option-invalid" and "needs a mode" in result["msg"]
