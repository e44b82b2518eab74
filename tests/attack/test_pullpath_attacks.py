# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pull-path defects of issue 7 (1, 2, 9) driven through the real ``imgdist sync`` and image_sync,
with opentracker and rtorrent on loopback: nothing approved is lost, nothing outside the store goes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.attack.conftest import EXIT_CONFIG, EXIT_IMAGES_FAILED
from tests.unit.sync_world import World


def _store_view(fleet) -> dict:
    return {path: entry for path, entry in fleet.host.snapshot().items() if path.split(os.sep)[0] == "images"}


def _rules(run) -> set:
    """Every rule a run names: its error line, or its failures."""
    rules = {f["rule"] for f in run.result.get("failures", [])} if run.out.strip().startswith("{") else set()
    if run.err.startswith("imgdist: "):
        rules.add(run.err.split(":")[1].strip())
    if run.out.strip().startswith("{") and run.result.get("rule"):
        rules.add(run.result["rule"])
    return rules


def test_failed_upgrade_keeps_the_held_version(fleet):
    """Defect 1: version 2 cannot arrive (nobody seeds it); version 1 stays in the store."""
    v1 = fleet.publish("alma", 1)
    fleet.index(1, v1)
    latest = [{"name": "alma", "version": "latest"}]
    assert fleet.converge(latest)["held"] == [v1.uuid]
    v2 = fleet.publish("alma", 2, seed=False)
    fleet.index(2, v1, v2)
    store = _store_view(fleet)
    run = fleet.sync(latest, download_timeout=3)
    assert run.code == EXIT_IMAGES_FAILED, run
    assert [(f["uuid"], f["step"], f["rule"]) for f in run.result["failures"]] == [(v2.uuid, "download",
                                                                                    "download-timeout")]
    assert run.result["retired"] == [] and run.result["held"] == [v1.uuid], run.result
    assert _store_view(fleet) == store


def test_missing_approval_variable_retires_nothing(fleet):
    """Defect 2: an imgdist.yml without approved_images (a host that missed its group_vars)."""
    a, b = fleet.publish("alma", 9), fleet.publish("slc", 6)
    fleet.index(1, a, b)
    assert fleet.converge([{"uuid": a.uuid}, {"uuid": b.uuid}])["held"] == [a.uuid, b.uuid]
    before = fleet.host.snapshot()
    # imgdist names the missing key of its configuration file (its rule for imgdist.yml problems).
    run = fleet.host.imgdist("sync", "--json", config=fleet.host.imgdist_config(omit=("approved_images",)))
    assert run.code == EXIT_CONFIG and run.err.startswith("imgdist: config-invalid: "), run
    assert "'approved_images'" in run.err
    assert fleet.host.snapshot() == before

    args = fleet.host.sync_options()
    del args["approved"]
    result = fleet.host.module("image_sync", **args)
    assert result.get("failed") is True and result["rule"] == "approvals-undefined", result
    assert fleet.host.snapshot() == before


def test_emptied_approvals_stop_at_the_retire_guard(fleet):
    """An explicit empty approval list would retire every image: the guard stops before any change."""
    a, b = fleet.publish("alma", 9), fleet.publish("slc", 6)
    fleet.index(1, a, b)
    assert fleet.converge([{"uuid": a.uuid}, {"uuid": b.uuid}])["held"] == [a.uuid, b.uuid]
    before = fleet.host.snapshot()
    run = fleet.sync([])
    assert run.code != 0 and "retire-guard" in _rules(run), run
    assert fleet.host.snapshot() == before


def test_two_desired_images_with_one_file_name_do_not_overwrite_each_other(fleet, site, tmp_path):
    """Defect 9: a respin under another uuid keeps the file name; promoting it would replace the held image."""
    a = fleet.publish("alma", 9)
    fleet.index(1, a)
    assert fleet.converge([{"uuid": a.uuid}])["held"] == [a.uuid]
    respins = World(tmp_path / "respin", base_url=site.url("respin").rstrip("/"),
                    announce=fleet.swarm.tracker.announce)
    respin = fleet.publish("alma", 9, world=respins, uuid="alma-9-respin")
    respin.entry["name"] = "alma-respin"
    site.serve(f"respin/torrents/{respin.torrent_name}", respin.torrent)
    assert respin.entry["file"] == a.entry["file"]
    fleet.index(2, a, respin)
    store = _store_view(fleet)
    run = fleet.sync([{"uuid": a.uuid}, {"uuid": respin.uuid}])
    assert run.code != 0 and "desired-conflict" in _rules(run), run
    assert _store_view(fleet) == store


def test_retirement_never_unlinks_outside_the_store(fleet):
    """Defect 9: a manifest entry naming ../victim (a damaged manifest) must not delete that file."""
    a = fleet.publish("alma", 9)
    fleet.index(1, a)
    assert fleet.converge([{"uuid": a.uuid}])["held"] == [a.uuid]
    victim = Path(fleet.host.dir, "victim")
    victim.write_bytes(b"not an image")
    manifest_path = Path(fleet.host.store_dir, ".vmcloud", "manifest.json")
    manifest = json.loads(manifest_path.read_text())
    ghost = dict(manifest["images"][a.uuid], uuid="ghost-1", file="../victim", source_file="../victim")
    manifest["images"]["ghost-1"] = ghost
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    held = {path: entry for path, entry in _store_view(fleet).items() if not path.endswith("manifest.json")}
    run = fleet.sync([{"uuid": a.uuid}])
    assert victim.exists() and victim.read_bytes() == b"not an image", run
    assert run.code == 0 and run.result["held"] == [a.uuid], run
    assert {path: entry for path, entry in _store_view(fleet).items() if not path.endswith("manifest.json")} == held
