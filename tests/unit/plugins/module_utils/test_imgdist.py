# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The imgdist command: parsing, the seed's enable/disable output, configuration, check's exit codes."""

from __future__ import annotations

import datetime
import hashlib
import http.server
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from ansible_collections.vmcloud.fleet.plugins.module_utils import (
    _imgdist,
    _imgdist_config,
    _imgdist_status,
    _sync,
    _trust,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._imgdist import build_parser
from ansible_collections.vmcloud.fleet.plugins.module_utils._imgdist_config import (
    EXIT_CONFIG,
    EXIT_DISABLED,
    EXIT_IMAGES_FAILED,
    EXIT_INDEX_REFUSED,
    EXIT_NOT_APPROVED,
    EXIT_NOT_ENDORSED,
    EXIT_NOT_VERIFIED,
    EXIT_OK,
    EXIT_USAGE,
    check_config,
    options_from,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._imgdist_status import image_state, progress_bar
from ansible_collections.vmcloud.fleet.plugins.module_utils._index_service import build_policy
from ansible_collections.vmcloud.fleet.plugins.module_utils._index_state import accept_index
from ansible_collections.vmcloud.fleet.plugins.module_utils._store import ImageStore
from tests.unit import pki
from tests.unit.sync_world import FakeClock, World, imgdist, now, snapshot, utc, write_imgdist_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("argv", "action", "command"),
    [
        (["--enable"], "enable", None),
        (["--disable"], "disable", None),
        (["--list_unknown_files"], "list_unknown_files", None),
        (["--list-unknown-files", "--json"], "list_unknown_files", None),
        (["status"], None, "status"),
        (["--json", "status"], None, "status"),
        (["sync", "--check"], None, "sync"),
        (["-c", "/etc/x.yml", "check", "img-1", "--json"], None, "check"),
    ],
)
def test_parses_seed_flags_and_commands(argv, action, command):
    args = build_parser().parse_args(argv)
    assert (args.action, args.command) == (action, command)


def test_json_and_config_go_before_or_after_the_command():
    parser = build_parser()
    assert parser.parse_args(["status", "--json"]).json is True
    assert parser.parse_args(["--json", "status"]).json is True
    assert parser.parse_args(["status"]).json is False
    assert parser.parse_args(["check", "x", "-c", "/a.yml"]).config == "/a.yml"
    assert parser.parse_args(["-c", "/b.yml", "check", "x"]).config == "/b.yml"
    assert parser.parse_args(["check", "x"]).config is None  # then /etc/vmcloud/imgdist.yml, which may be absent
    assert parser.parse_args(["sync"]).check is False


@pytest.mark.parametrize(
    "argv",
    [[], ["--enable", "--disable"], ["--enable", "status"], ["check"], ["frobnicate"], ["sync", "--force"]],
)
def test_usage_errors_exit_64_not_2(argv):
    code, out, err = imgdist(*argv)
    assert code == EXIT_USAGE and out == ""
    assert err.startswith("usage: imgdist") and re.search(r"^imgdist( check| sync)?: error: ", err, re.MULTILINE)


def test_help_lists_the_exit_codes():
    code, text, _unused = imgdist("--help")
    assert code == EXIT_OK
    assert text.startswith("usage: imgdist [-c CONFIG] [--json] {--enable | --disable | --list_unknown_files}")
    assert "  3   sync: imgdist is disabled on this host" in text and "  12  check:" in text


# --------------------------------------------------------------------------- enable / disable, as the seed


@pytest.fixture
def flag_config(tmp_path):
    path = tmp_path / "imgdist.yml"
    path.write_text(yaml.safe_dump({"disabled_flag": str(tmp_path / "state" / "disabled"),
                                    "state_dir": str(tmp_path / "index"), "timeout": 0}))
    return str(path), tmp_path / "state" / "disabled"


def test_disable_prints_the_seed_lines(flag_config):
    config, flag = flag_config
    assert imgdist("-c", config, "--disable") == (EXIT_OK, "current state: enable\ndisable\n", "")
    assert flag.read_text().startswith("disabled by imgdist at ")
    assert [p.name for p in flag.parent.iterdir()] == ["disabled"]  # no temporary left behind
    assert imgdist("-c", config, "--disable") == (EXIT_OK, "current state: disable\ndisable\n", "")
    assert imgdist("-c", config, "--enable") == (EXIT_OK, "current state: disable\nenable\n", "")
    assert not flag.exists()
    assert imgdist("-c", config, "--enable") == (EXIT_OK, "current state: enable\nenable\n", "")


def test_enable_and_disable_wait_for_the_host_lock(flag_config, tmp_path):
    import fcntl

    config, flag = flag_config
    (tmp_path / "index").mkdir()
    with open(tmp_path / "index" / "sync.lock", "a") as running_sync:
        fcntl.flock(running_sync.fileno(), fcntl.LOCK_EX)
        code, out, err = imgdist("-c", config, "--disable")
        assert (code, out) == (5, "") and err.startswith("imgdist: lock-timeout: ") and err.count("\n") == 1
        assert not flag.exists()
        fcntl.flock(running_sync.fileno(), fcntl.LOCK_UN)
    assert imgdist("-c", config, "--disable")[0] == EXIT_OK and flag.exists()


def test_disable_json(flag_config):
    config, _unused = flag_config
    code, out, _unused = imgdist("-c", config, "--disable", "--json")
    assert code == EXIT_OK and json.loads(out) == {"previous": "enable", "state": "disable"}


def test_a_missing_default_config_is_fine_for_status_but_not_for_sync(tmp_path, monkeypatch):
    monkeypatch.setattr(_imgdist, "DEFAULT_CONFIG", str(tmp_path / "absent.yml"))
    monkeypatch.setattr(_imgdist, "collect_status", lambda config: {
        "host": config["host"], "enabled": True, "index": None, "problems": [], "images": []})
    assert imgdist("status") == (EXIT_OK, f"host {socket.gethostname()}: enabled\nno images desired or held\n", "")
    code, _unused, err = imgdist("sync")
    assert code == EXIT_CONFIG
    assert err == f"imgdist: config-missing: {tmp_path}/absent.yml does not exist; the agent role writes it " \
                  "(or pass --config)\n"
    code, _unused, err = imgdist("-c", str(tmp_path / "other.yml"), "status")  # an explicit --config must exist
    assert code == EXIT_CONFIG and "config-missing" in err


# --------------------------------------------------------------------------- configuration


def test_config_defaults_and_mapping():
    config = check_config({"index_url": "http://c/index.yaml", "trust_anchors": "/etc/vmcloud/trust/anchors"}, "f")
    assert config["host"] == socket.gethostname()
    assert config["trust_anchors"] == ["/etc/vmcloud/trust/anchors"]
    options = options_from(config)
    assert options["src"] == "http://c/index.yaml"
    assert options["download_timeout"] == 3600 and options["timeout"] == 30
    assert options["store_dir"] == "/var/lib/vmcloud/images"
    assert options["staging_dir"] == "/var/lib/vmcloud/staging"
    assert options["torrent_dir"] == "/var/lib/vmcloud/torrents"
    assert options["state_dir"] == "/var/lib/vmcloud/index"
    assert options["approved"] is None and options["rules"] == []  # missing: sync and config-check refuse
    assert options["retire_max_percent"] == 50 and options["retire_confirm"] is False
    assert options["not_desired"] == "retire" and options["max_bytes"] is None
    assert config["disabled_flag"] == "/var/lib/vmcloud/disabled"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"approved": []}, "unknown key 'approved'; did you mean 'approved_images'?"),
        ({"zzz": 1}, "unknown key 'zzz'; known keys: index_url, trust_anchors"),
        ({"threshold": "two"}, "key 'threshold' must be an integer, got 'two'"),
        ({"threshold": True}, "key 'threshold' must be an integer, got True"),
        ({"store_dir": "images"}, "key 'store_dir' must be an absolute path, got 'images'"),
        ({"trust_anchors": ["ca.pem"]}, "key 'trust_anchors' must be a list of absolute paths"),
        ({"engine": "transmission"}, "key 'engine' must be one of rtorrent, libtorrent, got 'transmission'"),
        ({"approved_images": {"name": "x"}}, "key 'approved_images' must be a list"),
        ({"legacy": "yes"}, "key 'legacy' must be true or false"),
        (["index_url"], "expected a mapping of keys, got list"),
    ],
)
def test_config_refusals_name_the_key(tmp_path, document, message):
    path = tmp_path / "imgdist.yml"
    path.write_text(yaml.safe_dump(document))
    code, out, err = imgdist("-c", str(path), "status")
    assert code == EXIT_CONFIG and out == ""
    assert err.startswith(f"imgdist: config-invalid: {path}: ") and message in err
    assert err.count("\n") == 1


def test_config_needs_the_index_keys_for_sync(tmp_path):
    path = tmp_path / "imgdist.yml"
    path.write_text("store_dir: /tmp/x\n")
    code, _unused, err = imgdist("-c", str(path), "sync")
    assert code == EXIT_CONFIG and "key 'index_url' is required for this command" in err


def test_config_check_valid(tmp_path):
    path = tmp_path / "imgdist.yml"
    path.write_text(yaml.safe_dump({
        "index_url": "http://c/index.yaml", "trust_anchors": ["/etc/vmcloud/trust/anchors"],
        "approved_images": [{"name": "alma", "version": "latest"}], "blocked_images": [{"uuid": "alma-8"}],
        "approval_rules": ["images[?name == 'slc']"], "subcluster": None,
    }))
    assert imgdist("-c", str(path), "config-check") == (EXIT_OK, f"{path}: valid\n", "")
    code, out, err = imgdist("config-check", "-c", str(path), "--json")
    assert (code, json.loads(out), err) == (EXIT_OK, {"ok": True, "config": str(path)}, "")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"index_url": None}, "key 'index_url' is required for this command"),
        ({"trust_anchors": []}, "key 'trust_anchors' is required for this command"),
        ({"approved_images": [{"name": "x", "colour": "red"}]}, "unknown key 'colour' in vmcloud_approved_images"),
        ({"blocked_images": [{"name": "x", "version": "latest"}]}, "vmcloud_blocked_images[0]"),
        ({"approval_rules": ["images[?"]}, "vmcloud_approval_rules[0]: invalid jmespath expression"),
        ({"timeout": "1h"}, "key 'timeout' must be an integer, got '1h'"),
        ({"endorser_pins": [{"subject": "CN=endorser"}]}, "endorser_pins[0]"),
    ],
)
def test_config_check_refusals_exit_4_naming_the_problem(tmp_path, document, message):
    path = tmp_path / "imgdist.yml"
    path.write_text(yaml.safe_dump({"index_url": "http://c/index.yaml", "trust_anchors": ["/a"],
                                    "approved_images": [], **document}))
    code, out, err = imgdist("-c", str(path), "config-check")
    assert code == EXIT_CONFIG and out == ""
    assert err.startswith(f"imgdist: config-invalid: {path}: ") and message in err and err.count("\n") == 1


def test_a_config_without_approved_images_is_refused_not_read_as_approve_nothing(world):
    config = write_imgdist_config(world)
    assert imgdist("-c", config, "sync")[0] == EXIT_OK
    before = {p: p.read_bytes() for p in sorted(Path(world.host_path("")).rglob("*")) if p.is_file()}
    document = yaml.safe_load(Path(config).read_text())
    del document["approved_images"]
    Path(config).write_text(yaml.safe_dump(document))
    for command in ("sync", "config-check"):
        code, out, err = imgdist("-c", config, command)
        assert (code, out) == (EXIT_CONFIG, "")
        assert err.startswith(f"imgdist: config-invalid: {config}: key 'approved_images' is missing") and \
            "an explicit [] approves nothing" in err and err.count("\n") == 1
    assert {p: p.read_bytes() for p in sorted(Path(world.host_path("")).rglob("*")) if p.is_file()} == before
    # An explicit empty list is valid, and meets the mass-deletion guard.
    config = write_imgdist_config(world, approved_images=[])
    assert imgdist("-c", config, "config-check")[0] == EXIT_OK
    code, out, err = imgdist("-c", config, "sync")
    assert (code, out) == (5, "") and err.startswith("imgdist: retire-guard: this run would retire 2 of the 2 images")
    record = Path(world.host_path("index"), "last-sync.json")
    assert json.loads(record.read_text())["rule"] == "retire-guard"  # the one file the refusal writes: its record
    before[record] = record.read_bytes()
    assert {p: p.read_bytes() for p in sorted(Path(world.host_path("")).rglob("*")) if p.is_file()} == before
    config = write_imgdist_config(world, approved_images=[], retire_confirm=True)
    code, out, _unused = imgdist("-c", config, "sync", "--json")
    assert code == EXIT_OK and json.loads(out)["retired"] == ["alma-9", "slc-5"]


def test_config_check_needs_the_file(tmp_path):
    code, _unused, err = imgdist("-c", str(tmp_path / "absent.yml"), "config-check")
    assert code == EXIT_CONFIG and "absent.yml does not exist" in err


def test_malformed_yaml_is_one_line(tmp_path):
    path = tmp_path / "imgdist.yml"
    path.write_text("index_url: [unclosed\n")
    code, _unused, err = imgdist("-c", str(path), "status")
    assert code == EXIT_CONFIG and err.startswith("imgdist: config-invalid: ") and err.count("\n") == 1


# --------------------------------------------------------------------------- a host after a sync


def test_sync_then_check_each_condition(world):
    config = write_imgdist_config(world)
    code, out, err = imgdist("-c", config, "sync")
    assert (code, err) == (EXIT_OK, "")
    assert "alma-9: .torrent fetched, added to the engine, promoted to " in out
    assert out.endswith("2 ok, 0 failed; changed\n")
    store = ImageStore(world.host_path("images"))
    alma = world.published["alma-9"]

    assert imgdist("-c", config, "check", "alma-9")[0] == EXIT_OK
    code, out, _unused = imgdist("-c", config, "check", store.path_of(alma.entry))
    assert code == EXIT_OK and out.startswith("ok: alma-9 is endorsed (the verified index version 3), approved")

    code, out, _unused = imgdist("-c", config, "check", "centos-7")
    assert (code, out) == (EXIT_NOT_ENDORSED, "not-endorsed: centos-7 is not in the verified index version 3\n")

    blocked = write_imgdist_config(world, blocked_images=[{"name": "slc"}])
    code, out, _unused = imgdist("-c", blocked, "check", "slc-5")
    assert code == EXIT_NOT_APPROVED
    assert out == "not-approved: slc-5 is approved by vmcloud_approved_images[1] but blocked by " \
                  "vmcloud_blocked_images[0]\n"
    unapproved = write_imgdist_config(world, approved_images=[{"name": "alma"}])
    code, out, _unused = imgdist("-c", unapproved, "check", "slc-5")
    assert code == EXIT_NOT_APPROVED and "slc-5 is endorsed but not approved for host hv1" in out

    config = write_imgdist_config(world)
    path = store.path_of(alma.entry)
    with open(path, "r+b") as handle:
        handle.write(b"\xff")
    code, out, _unused = imgdist("-c", config, "check", "alma-9", "--json")
    result = json.loads(out)
    assert code == EXIT_NOT_VERIFIED
    assert (result["endorsed"], result["approved"], result["verified"], result["ok"]) == (True, True, False, False)
    assert result["rule"] == "not-verified" and "changed since it was verified" in result["reason"]
    os.unlink(path)
    code, out, _unused = imgdist("-c", config, "check", "alma-9")
    assert code == EXIT_NOT_VERIFIED and "is not in the store" in out


def test_check_without_a_kept_index(world):
    code, out, _unused = imgdist("-c", write_imgdist_config(world), "check", "alma-9")
    assert code == EXIT_NOT_ENDORSED and out.startswith("index-missing: there is no verified index at ")


def test_check_reverifies_the_kept_index_and_never_advances_the_mark(world):
    config = write_imgdist_config(world)
    kept = world.root / "host" / "index" / "verified-index.yaml"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(world.index_document(7, [p.entry for p in world.published.values()]))
    assert imgdist("-c", config, "check", "alma-9")[0] == EXIT_NOT_VERIFIED  # endorsed and approved, not stored
    assert os.listdir(kept.parent) == ["verified-index.yaml"]  # no rollback mark written

    kept.write_bytes(kept.read_bytes().replace(b"alma", b"alma", 1).replace(b"version: 9", b"version: 8", 1))
    code, out, err = imgdist("-c", config, "check", "alma-9")
    assert code == EXIT_INDEX_REFUSED and out.startswith("threshold-not-met: ")

    kept.write_bytes(world.index_document(7, [], expires="2020-01-01T00:00:00Z", created="2019-12-01T00:00:00Z"))
    code, out, _unused = imgdist("-c", config, "check", "alma-9", "--json")
    assert code == EXIT_INDEX_REFUSED and json.loads(out)["rule"] == "index-expired"


def test_check_refuses_a_kept_index_older_than_the_mark(world):
    config = write_imgdist_config(world)
    assert imgdist("-c", config, "sync")[0] == EXIT_OK  # mark at version 3
    kept = world.root / "host" / "index" / "verified-index.yaml"
    kept.write_bytes(world.index_document(2, [p.entry for p in world.published.values()]))
    code, out, _unused = imgdist("-c", config, "check", "alma-9")
    assert code == EXIT_INDEX_REFUSED and out.startswith("rollback: index version 2 is lower than")


# --------------------------------------------------------------------------- a failed upgrade


def failed_upgrade(world: World) -> str:
    """alma 9 and slc 5 held; alma 10 published in index 4 but nobody seeds it: the sync keeps alma 9."""
    config = write_imgdist_config(world, timeout=1)
    assert imgdist("-c", config, "sync")[0] == EXIT_OK
    world.publish("alma", 10, compressed=True)
    world.write_index(4)
    code, out, _unused = imgdist("-c", config, "sync", "--json")
    report = json.loads(out)
    assert code == EXIT_IMAGES_FAILED and [f["rule"] for f in report["failures"]] == ["download-timeout"]
    assert [p["uuid"] for p in report["superseded_pending"]] == ["alma-9"] and "alma-9" in report["held"]
    return config


def test_a_superseded_image_kept_by_a_failed_upgrade_starts_loudly(world):
    config = failed_upgrade(world)
    store = ImageStore(world.host_path("images"))
    path = store.path_of(world.published["alma-9"].entry)
    for target in ("alma-9", path):
        code, out, err = imgdist("-c", config, "check", target, "--json")
        result = json.loads(out)
        assert code == EXIT_OK and result["ok"] is True and result["rule"] == "superseded-pending"
        assert (result["endorsed"], result["verified"], result["uuid"]) == (True, True, "alma-9")
        assert result["superseded_pending"]["waiting_for"] == ["alma-10"]
        assert err.startswith("imgdist: warning: superseded-pending: alma-9 is superseded by alma-10, which is not "
                              "verified in the store yet") and err.count("\n") == 1
        assert result["warnings"] == [result["warning"]] and result["warning"].startswith("superseded-pending: ")
    code, out, _unused = imgdist("-c", config, "check", "alma-9")
    assert code == EXIT_OK and out.startswith("superseded-pending: alma-9 is superseded by alma-10")
    assert imgdist("-c", config, "check", "slc-5")[1].startswith("ok: ")  # nothing to say about the others

    report = json.loads(imgdist("-c", config, "status", "--json")[1])
    rows = {row["uuid"]: row for row in report["images"]}
    assert (rows["alma-9"]["state"], rows["alma-9"]["desired"]) == ("superseded-pending", False)
    assert rows["alma-9"]["waiting_for"] == ["alma-10"]
    assert any(p.startswith("superseded-pending: alma-9 ") for p in report["problems"])
    lines = imgdist("-c", config, "status")[1].splitlines()
    assert "alma-9   superseded-pending  kept until alma-10 is in the store" in lines

    # Changed since it was verified: not verified, whatever its supersession.
    with open(path, "r+b") as handle:
        handle.write(b"\xff")
    code, out, _unused = imgdist("-c", config, "check", "alma-9")
    assert code == EXIT_NOT_VERIFIED and "changed since it was verified" in out


def test_a_blocked_superseded_image_never_starts(world):
    failed_upgrade(world)
    blocked = write_imgdist_config(world, blocked_images=[{"name": "alma", "version": 9}])
    code, out, err = imgdist("-c", blocked, "check", "alma-9")
    assert code == EXIT_NOT_APPROVED and out.startswith("not-approved: alma-9 is endorsed but not approved")
    assert err == ""
    assert imgdist("-c", write_imgdist_config(world, timeout=1), "check", "alma-9")[0] == EXIT_OK  # unblocked again


def test_a_withdrawn_superseded_image_never_starts(world):
    config = failed_upgrade(world)
    store = ImageStore(world.host_path("images"))
    path = store.path_of(world.published["alma-9"].entry)
    kept = world.root / "host" / "index" / "verified-index.yaml"
    world.write_index(5, [world.published[uuid].entry for uuid in ("alma-10", "slc-5")])
    with open(path, "rb"):  # a guest holds it: the sync cannot retire it
        code, out, _unused = imgdist("-c", config, "sync", "--json")
    assert code == EXIT_IMAGES_FAILED and json.loads(out)["superseded_pending"] == []
    assert os.path.exists(path) and kept.read_bytes() == world.index_path.read_bytes()
    code, out, _unused = imgdist("-c", config, "check", path)
    assert code == EXIT_NOT_ENDORSED and "alma-9, which is not in the verified index version 5" in out


def test_once_the_successor_is_in_the_store_the_superseded_image_is_refused(world):
    config = failed_upgrade(world)
    store = ImageStore(world.host_path("images"))
    path = store.path_of(world.published["alma-9"].entry)
    alma10 = world.published["alma-10"]
    world.engine.swarm[alma10.info_hash] = alma10.path.read_bytes()
    with open(path, "rb"):  # a guest holds alma 9: the sync promotes alma 10 but cannot retire alma 9 yet
        code, out, _unused = imgdist("-c", config, "sync", "--json")
    report = json.loads(out)
    assert code == EXIT_OK and report["promoted"] == ["alma-10"] and report["superseded_pending"] == []
    assert os.path.exists(path) and "alma-9" in report["held"]
    code, out, err = imgdist("-c", config, "check", "alma-9")
    assert code == EXIT_NOT_APPROVED and out.startswith("not-approved: alma-9 is endorsed but not approved")
    assert err == ""
    rows = {row["uuid"]: row["state"] for row in json.loads(imgdist("-c", config, "status", "--json")[1])["images"]}
    assert rows["alma-9"] == "retiring" and rows["alma-10"] == "ready"


# --------------------------------------------------------------------------- the run guard's grace


DAY = datetime.timedelta(days=1)


def accepted_in_the_past(world: World, config: str, data: bytes, accepted_at: datetime.datetime) -> None:
    """What a sync at ``accepted_at`` left behind: the mark (with accepted_at) and the kept index."""
    document = yaml.safe_load(Path(config).read_text())
    options = world.options(state_dir=document["state_dir"], crl=document.get("crl") or [],
                            reference_time=accepted_at.strftime("%Y-%m-%dT%H:%M:%SZ"))
    accept_index(data, build_policy(options, None), options["state_dir"], persist=True)
    _sync.save_verified_index(options["state_dir"], data, check_mode=False)


def expired_index(world: World, version: int, expired: datetime.timedelta) -> bytes:
    """A signed index of every published image that expired ``expired`` ago (valid for 20 days before)."""
    expires = now() - expired
    return world.index_document(version, [p.entry for p in world.published.values()],
                                created=utc(expires - 20 * DAY), expires=utc(expires))


def test_a_recently_expired_index_still_starts_guests_loudly(world):
    config = write_imgdist_config(world)
    assert imgdist("-c", config, "sync")[0] == EXIT_OK
    data = expired_index(world, 4, DAY)
    accepted_at = now() - 10 * DAY
    accepted_in_the_past(world, config, data, accepted_at)
    expires = yaml.safe_load(data)["signed"]["expires"]
    deadline = utc(datetime.datetime.fromisoformat(expires.replace("Z", "+00:00")) + 7 * DAY)

    code, out, err = imgdist("-c", config, "check", "alma-9", "--json")
    result = json.loads(out)
    assert code == EXIT_OK and result["ok"] is True and result["index_version"] == 4
    guard = result["run_guard"]
    assert (guard["state"], guard["rule"], guard["failing_rule"]) == ("grace", "run-guard-grace", "index-expired")
    assert (guard["failing_since"], guard["deadline"], guard["grace_seconds"]) == (expires, deadline, 604800)
    assert guard["accepted_at"] == utc(accepted_at)
    assert err.startswith("imgdist: warning: run-guard-grace: the kept index version 4 fails index-expired since ")
    assert f"until {deadline} (grace 604800 s)" in err

    code, out, _unused = imgdist("-c", config, "status", "--json")
    report = json.loads(out)
    assert code == EXIT_OK and report["run_guard"]["state"] == "grace"
    assert report["run_guard"]["deadline"] == deadline and report["index"]["version"] == 4
    assert any(p.startswith("run-guard-grace: ") and deadline in p for p in report["problems"])
    code, out, _unused = imgdist("-c", config, "status")
    assert f"problem: run-guard-grace: the kept index version 4 fails index-expired since {expires}" in out

    # The pull path is unchanged: a sync of an expired index fails closed.
    world.index_path.write_bytes(data)
    code, _unused, err = imgdist("-c", config, "sync")
    assert code == EXIT_INDEX_REFUSED and err.startswith("imgdist: index-expired: ")


def test_after_the_grace_the_expired_index_refuses(world):
    config = write_imgdist_config(world)
    assert imgdist("-c", config, "sync")[0] == EXIT_OK
    accepted_in_the_past(world, config, expired_index(world, 4, 8 * DAY), now() - 20 * DAY)
    code, out, _unused = imgdist("-c", config, "check", "alma-9", "--json")
    result = json.loads(out)
    assert code == EXIT_INDEX_REFUSED and result["rule"] == "index-expired"
    assert "the run guard's grace of 604800 s after that has passed" in result["reason"]
    assert result["run_guard"] == {"state": "refused", "rule": "index-expired"} and result["warning"] is None
    report = json.loads(imgdist("-c", config, "status", "--json")[1])
    assert report["run_guard"] == {"state": "refused", "rule": "index-expired"}


def test_a_grace_of_zero_refuses_at_once(world):
    config = write_imgdist_config(world, run_guard_grace_seconds=0)
    assert imgdist("-c", config, "sync")[0] == EXIT_OK
    accepted_in_the_past(world, config, expired_index(world, 4, datetime.timedelta(minutes=1)), now() - DAY)
    code, out, _unused = imgdist("-c", config, "check", "alma-9")
    assert code == EXIT_INDEX_REFUSED and out.startswith("index-expired: index version 4 expired at ")


def test_the_grace_needs_the_mark_of_these_bytes(world):
    config = write_imgdist_config(world)
    assert imgdist("-c", config, "sync")[0] == EXIT_OK  # mark: version 3, accepted now
    kept = world.root / "host" / "index" / "verified-index.yaml"
    kept.write_bytes(expired_index(world, 4, DAY))  # never accepted: a hand-placed file gets no grace
    code, out, _unused = imgdist("-c", config, "check", "alma-9")
    assert code == EXIT_INDEX_REFUSED and out.startswith("index-expired: ")


def test_revocation_and_blocking_are_never_graced(world):
    config = write_imgdist_config(world, crl=[str(world.root / "trust" / "ca.crl")])
    crl = world.root / "trust" / "ca.crl"
    crl.write_bytes(pki.pem(pki.make_crl(world.ca, [], last_update=now() - 30 * DAY, next_update=now() + 30 * DAY)))
    assert imgdist("-c", config, "sync")[0] == EXIT_OK
    accepted_in_the_past(world, config, expired_index(world, 4, DAY), now() - 10 * DAY)
    assert imgdist("-c", config, "check", "alma-9")[0] == EXIT_OK  # in grace

    blocked = write_imgdist_config(world, crl=[str(crl)], blocked_images=[{"name": "alma"}])
    code, out, _unused = imgdist("-c", blocked, "check", "alma-9")
    assert code == EXIT_NOT_APPROVED and "blocked by vmcloud_blocked_images[0]" in out

    config = write_imgdist_config(world, crl=[str(crl)])
    revoked = pki.make_crl(world.ca, [world.endorser.cert.serial_number], last_update=now() - DAY,
                           next_update=now() + 30 * DAY)
    crl.write_bytes(pki.pem(revoked))
    code, out, _unused = imgdist("-c", config, "check", "alma-9", "--json")
    result = json.loads(out)
    assert code == EXIT_INDEX_REFUSED and result["rule"] == "threshold-not-met"
    assert "certificate-revoked" in result["reason"] and "grace" not in result["reason"]


def test_a_stale_crl_is_graced_from_its_next_update(world):
    crl = world.root / "trust" / "ca.crl"
    next_update = now() - 2 * DAY
    crl.write_bytes(pki.pem(pki.make_crl(world.ca, [], last_update=now() - 20 * DAY, next_update=next_update)))
    config = write_imgdist_config(world, crl=[str(crl)])
    accepted_in_the_past(world, config, world.index_document(4, [p.entry for p in world.published.values()],
                                                             created=utc(now() - 6 * DAY)),
                         now() - 5 * DAY)
    code, out, _unused = imgdist("-c", config, "check", "alma-9", "--json")
    guard = json.loads(out)["run_guard"]
    assert code == EXIT_NOT_VERIFIED  # endorsed and approved (in grace), just not downloaded here
    assert (guard["state"], guard["failing_rule"]) == ("grace", "crl-stale")
    assert guard["failing_since"] == utc(next_update + datetime.timedelta(seconds=1))  # stale once past it
    assert guard["deadline"] == utc(next_update + datetime.timedelta(seconds=1) + 7 * DAY)


def test_an_expired_endorser_certificate_is_graced(world):
    world.endorser = pki.make_endorser(world.ca, "short-lived", key_type="ec", not_before=now() - 20 * DAY,
                                       not_after=now() - 3 * DAY)
    config = write_imgdist_config(world)
    accepted_in_the_past(world, config, world.index_document(4, [p.entry for p in world.published.values()],
                                                             created=utc(now() - 11 * DAY)),
                         now() - 10 * DAY)
    guard = json.loads(imgdist("-c", config, "check", "alma-9", "--json")[1])["run_guard"]
    assert (guard["state"], guard["failing_rule"]) == ("grace", "certificate-expired")
    not_after = _trust.not_after(world.endorser.cert)
    assert guard["failing_since"] == utc(not_after + datetime.timedelta(seconds=1))


@pytest.mark.parametrize("value", [-1, "7d", True])
def test_the_grace_must_be_seconds(world, value):
    code, _unused, err = imgdist("-c", write_imgdist_config(world, run_guard_grace_seconds=value), "config-check")
    assert code == EXIT_CONFIG and err.startswith("imgdist: config-invalid: ") and "unknown key" not in err
    assert "run_guard_grace_seconds" in err and f"got {value!r}" in err


# --------------------------------------------------------------------------- reset-mark (fast-forward recovery)


def fast_forwarded(world: World) -> tuple:
    """A host that accepted a forged index version 1000 after the genuine version 3: (config, mark path)."""
    config = write_imgdist_config(world, timeout=1)
    assert imgdist("-c", config, "sync")[0] == EXIT_OK  # genuine: version 3
    world.write_index(1000)  # signed with the endorser's key, as a stolen key would
    assert imgdist("-c", config, "sync")[0] == EXIT_OK
    world.write_index(4)
    code, _unused, err = imgdist("-c", config, "sync")
    assert code == EXIT_INDEX_REFUSED and err.startswith("imgdist: rollback: index version 4 is lower than the last "
                                                         "accepted version 1000")
    marks = [p for p in (world.root / "host" / "index").iterdir() if p.name.startswith("index-")]
    assert len(marks) == 1
    return config, marks[0]


def test_reset_mark_recovers_from_a_fast_forward(world):
    config, mark = fast_forwarded(world)
    code, out, err = imgdist("-c", config, "reset-mark", "--url", world.index_url, "--to-version", "3", "--confirm")
    assert (code, err) == (EXIT_OK, "")
    assert out == f"high-water mark for {world.index_url}: previous version 1000, new version 3\n"
    record = json.loads(mark.read_text())
    assert (record["url"], record["version"], record["digest"], record["reset_from"]) == (
        world.index_url, 3, None, 1000)
    assert [p.name for p in mark.parent.iterdir() if p.name.startswith(".")] == []  # written atomically
    code, out, _unused = imgdist("-c", config, "sync", "--json")  # the genuine version 4 is accepted again
    assert code == EXIT_OK and json.loads(out)["index"]["version"] == 4
    assert json.loads(mark.read_text())["version"] == 4


def test_reset_mark_json_and_the_index_url_by_default(world):
    config, mark = fast_forwarded(world)
    code, out, _unused = imgdist("-c", config, "reset-mark", "--to-version", "3", "--confirm", "--json")
    assert code == EXIT_OK
    assert json.loads(out) == {"url": world.index_url, "previous": 1000, "new": 3, "path": str(mark)}


@pytest.mark.parametrize("version", ["1000", "1001"])
def test_reset_mark_never_raises_the_mark_or_resets_it_to_itself(world, version):
    config, mark = fast_forwarded(world)
    before = mark.read_bytes()
    code, out, err = imgdist("-c", config, "reset-mark", "--url", world.index_url, "--to-version", version, "--confirm")
    assert code == _imgdist_config.EXIT_ERROR and out == ""
    assert err.startswith(f"imgdist: mark-reset-refused: the accepted version for {world.index_url} is 1000, not "
                          f"greater than {version}") and err.count("\n") == 1
    assert mark.read_bytes() == before


def test_reset_mark_needs_confirm_a_mark_and_a_version(world):
    config, mark = fast_forwarded(world)
    before = mark.read_bytes()
    code, _unused, err = imgdist("-c", config, "reset-mark", "--to-version", "3")
    assert code == EXIT_USAGE and "mark-reset-refused: " in err and "--confirm" in err
    assert "previous version 1000, new version 3" in err
    for bad in ("0", "-2", "three"):
        code, _unused, err = imgdist("-c", config, "reset-mark", "--to-version", bad, "--confirm")
        assert code == EXIT_USAGE and mark.read_bytes() == before
    code, _unused, err = imgdist("-c", config, "reset-mark", "--url", "https://elsewhere/index.yaml", "--to-version",
                                 "3", "--confirm")
    assert code == _imgdist_config.EXIT_ERROR
    assert err.startswith("imgdist: mark-reset-refused: there is no high-water mark for https://elsewhere/index.yaml")
    assert mark.read_bytes() == before


def test_reset_mark_waits_for_the_host_lock(world):
    import fcntl

    config, mark = fast_forwarded(world)
    before = mark.read_bytes()
    with open(mark.parent / "sync.lock", "a") as running_sync:
        fcntl.flock(running_sync.fileno(), fcntl.LOCK_EX)
        code, _unused, err = imgdist("-c", config, "reset-mark", "--to-version", "3", "--confirm")
        assert code == _imgdist_config.EXIT_ERROR and err.startswith("imgdist: lock-timeout: ")
        assert mark.read_bytes() == before
    assert imgdist("-c", config, "reset-mark", "--to-version", "3", "--confirm")[0] == EXIT_OK


def test_reset_mark_refuses_a_damaged_mark(world):
    config, mark = fast_forwarded(world)
    mark.write_text(json.dumps({"url": world.index_url, "version": True}))
    before = mark.read_bytes()
    code, _unused, err = imgdist("-c", config, "reset-mark", "--to-version", "3", "--confirm")
    assert code != EXIT_OK and err.startswith("imgdist: state-unreadable: ") and mark.read_bytes() == before


# --------------------------------------------------------------------------- crl-refresh (the timer)


@pytest.fixture
def crl_server():
    """A real HTTP server on loopback serving ``files`` (path -> bytes); other paths answer 404."""
    files: dict = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server interface
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.files = files
    server.url = f"http://127.0.0.1:{server.server_port}"
    yield server
    server.shutdown()
    server.server_close()


def crl_config(world: World, server, names=("ca.crl",)) -> str:
    crl_dir = world.root / "trust" / "crl"
    crl_dir.mkdir(exist_ok=True)
    sources = [{"url": f"{server.url}/{name}", "path": str(crl_dir / name)} for name in names]
    return write_imgdist_config(world, crl=[str(crl_dir)], crl_sources=sources)


def test_crl_refresh_installs_a_fresh_crl_atomically(world, crl_server):
    config = crl_config(world, crl_server)
    installed = world.root / "trust" / "crl" / "ca.crl"
    fresh = pki.pem(pki.make_crl(world.ca, [], last_update=now() - DAY, next_update=now() + 7 * DAY))
    crl_server.files["/ca.crl"] = fresh
    code, out, err = imgdist("-c", config, "crl-refresh")
    assert (code, out, err) == (EXIT_OK, f"crl {crl_server.url}/ca.crl -> {installed}: installed\n", "")
    assert installed.read_bytes() == fresh and os.listdir(installed.parent) == ["ca.crl"]
    assert imgdist("-c", config, "crl-refresh")[1].endswith(": unchanged\n")
    # A revocation published later reaches the host on the next timer run, and the sync uses it.
    revoked = pki.pem(pki.make_crl(world.ca, [world.endorser.cert.serial_number], last_update=now(),
                                   next_update=now() + 7 * DAY))
    crl_server.files["/ca.crl"] = revoked
    assert imgdist("-c", config, "crl-refresh")[0] == EXIT_OK and installed.read_bytes() == revoked
    code, _unused, err = imgdist("-c", config, "sync")
    assert code == EXIT_INDEX_REFUSED and "certificate-revoked" in err


@pytest.mark.parametrize(
    ("served", "rule"),
    [
        ("stale", "crl-stale"),
        ("older", "crl-rollback"),
        ("forged", "crl-signature-invalid"),
        ("garbage", "crl-malformed"),
        (None, "fetch-failed"),
    ],
)
def test_crl_refresh_refuses_and_keeps_the_installed_crl(world, crl_server, served, rule):
    config = crl_config(world, crl_server, names=("ca.crl", "other.crl"))
    installed = world.root / "trust" / "crl" / "ca.crl"
    current = pki.pem(pki.make_crl(world.ca, [], last_update=now() - DAY, next_update=now() + 7 * DAY))
    installed.write_bytes(current)
    impostor = pki.make_ca("sync test CA")  # the same name, another key
    crl_server.files["/ca.crl"] = {
        "stale": pki.pem(pki.make_crl(world.ca, [], last_update=now() - 9 * DAY, next_update=now() - DAY)),
        "older": pki.pem(pki.make_crl(world.ca, [], last_update=now() - 2 * DAY, next_update=now() + 5 * DAY)),
        "forged": pki.pem(pki.make_crl(impostor, [], last_update=now(), next_update=now() + 7 * DAY)),
        "garbage": b"<html>not a CRL</html>",
        None: None,
    }[served]
    if crl_server.files["/ca.crl"] is None:
        del crl_server.files["/ca.crl"]
    other = pki.make_ca("another CA")
    other_crl = pki.make_crl(other, [], last_update=now(), next_update=now() + DAY)
    crl_server.files["/other.crl"] = other_crl.public_bytes(serialization.Encoding.DER)
    code, out, _unused = imgdist("-c", config, "crl-refresh", "--json")
    results = json.loads(out)
    assert code == _imgdist_config.EXIT_ERROR
    assert results[0]["rule"] == rule and results[0]["changed"] is False
    assert installed.read_bytes() == current  # nothing lost
    assert (results[1]["rule"], results[1]["changed"]) == (None, True)  # the other source went on
    assert sorted(os.listdir(installed.parent)) == ["ca.crl", "other.crl"]


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        ([{"url": "ftp://127.0.0.1/ca.crl", "path": "/etc/vmcloud/trust/crl/ca.crl"}], "must be an http(s) URL"),
        ([{"url": "http://127.0.0.1/ca.crl"}], "with the keys url and path"),
        ([{"url": "http://127.0.0.1/ca.crl", "path": "/etc/vmcloud/elsewhere/ca.crl"}], "is not read by the verifier"),
        ([{"url": "http://127.0.0.1/ca.crl", "path": "ca.crl"}], "must be an absolute path"),
        ({"url": "http://127.0.0.1/ca.crl"}, "must be a list"),
    ],
)
def test_crl_sources_are_checked(world, sources, message):
    config = write_imgdist_config(world, crl=["/etc/vmcloud/trust/crl"], crl_sources=sources)
    code, _unused, err = imgdist("-c", config, "config-check")
    assert code == EXIT_CONFIG and err.startswith("imgdist: config-invalid: ") and message in err
    assert imgdist("-c", config, "crl-refresh")[0] == EXIT_CONFIG


def test_sync_refuses_when_disabled(world):
    config = write_imgdist_config(world)
    imgdist("-c", config, "--disable")
    code, out, err = imgdist("-c", config, "sync")
    assert (code, out) == (EXIT_DISABLED, "")
    assert err == f"imgdist: host-disabled: imgdist is disabled on this host ({world.host_path('disabled')} " \
                  "exists); run imgdist --enable to sync\n"
    assert not os.path.exists(world.host_path("images"))


def test_a_timer_sync_with_older_approvals_never_undoes_the_ansible_run(world):
    """site.yml converges a host (hypervisor play) before it writes the agent's imgdist.yml (agent
    play): a timed sync in between, or one that read its file before and waited for the lock, must
    not converge the host back to the approvals the inventory just replaced."""
    old_approvals = [{"name": "slc", "version": 5}]
    new_approvals = [{"name": "alma", "version": "latest", "comment": "from the inventory"},
                     {"name": "slc", "version": 5}]
    config = write_imgdist_config(world, approved_images=old_approvals)
    written = os.stat(config).st_mtime - 600  # the agent play of the run before
    os.utime(config, (written, written))
    ansible = _sync.sync(world.options(approved=new_approvals), world.engine, check_mode=False)
    assert not ansible.failures and ansible.held == ["alma-9", "slc-5"]
    store_before = snapshot(Path(world.host_path("images")))

    code, out, err = imgdist("-c", config, "sync")
    assert (code, out) == (_imgdist_config.EXIT_CONFIG_BEHIND, "")
    assert re.fullmatch(
        rf"imgdist: config-behind: {re.escape(config)} \(written [0-9T:-]+Z\) is older than the approvals an "
        r"Ansible run converged this host to at [0-9T:-]+Z, and its approvals differ; the host stays as that run "
        r"left it until the vmic_agent role writes them \(run site\.yml, or the vmic_agent role\)\n", err)
    assert snapshot(Path(world.host_path("images"))) == store_before
    assert "alma-9" in ImageStore(world.host_path("images")).manifest()
    problems = json.loads(imgdist("-c", config, "status", "--json")[1])["problems"]
    assert [p for p in problems if p.startswith("config: config-behind: ")] != []

    # The agent play then writes the same approvals (comments and order do not count): the timer runs.
    config = write_imgdist_config(world, approved_images=list(reversed(new_approvals)))
    os.utime(config, (written, written))
    code, out, err = imgdist("-c", config, "sync")
    assert (code, err) == (EXIT_OK, "") and out.endswith("; no change\n")
    assert not any("config-behind" in p for p in json.loads(imgdist("-c", config, "status", "--json")[1])["problems"])

    # An operator who edits imgdist.yml after the Ansible run is followed: the file is the newer word.
    config = write_imgdist_config(world, approved_images=old_approvals)
    code, out, err = imgdist("-c", config, "sync", "--json")
    assert (code, err) == (EXIT_OK, "") and json.loads(out)["retired"] == ["alma-9"]


@pytest.mark.parametrize("record", [b"{not json", b'{"digest": 1, "converged_at": 2}', b'[]',
                                    b'{"digest": "x", "converged_at": true}'])
def test_an_unreadable_approvals_record_stops_the_timer_naming_it(world, record):
    config = write_imgdist_config(world)
    os.makedirs(world.host_path("index"))
    Path(world.host_path("index"), "ansible-approvals.json").write_bytes(record)
    code, out, err = imgdist("-c", config, "sync")
    assert (code, out) == (_imgdist_config.EXIT_ERROR, "")
    assert err.startswith("imgdist: state-unreadable: ") and err.count("\n") == 1
    assert f"{world.host_path('index')}/ansible-approvals.json" in err
    assert not os.path.exists(world.host_path("images"))


def test_a_check_mode_ansible_run_records_no_approvals(world):
    config = write_imgdist_config(world, approved_images=[{"name": "slc", "version": 5}])
    written = os.stat(config).st_mtime - 600
    os.utime(config, (written, written))
    _sync.sync(world.options(approved=[{"name": "alma", "version": "latest"}]), world.engine, check_mode=True)
    code, _unused, err = imgdist("-c", config, "sync")
    assert (code, err) == (EXIT_OK, "")


def test_sync_exit_2_on_a_refused_index_printing_the_rule(world):
    config = write_imgdist_config(world)
    world.write_index(1, expires="2020-01-01T00:00:00Z", created="2019-12-01T00:00:00Z")
    code, out, err = imgdist("-c", config, "sync", "--json")
    assert code == EXIT_INDEX_REFUSED
    assert err.startswith("imgdist: index-expired: index version 1 expired at 2020-01-01T00:00:00Z")
    assert json.loads(out)["rule"] == "index-expired"
    assert sorted(os.listdir(world.host_path("index"))) == ["last-sync.json", "sync.lock"]  # no mark, no kept index


def test_sync_exit_5_when_the_index_is_unreachable(world):
    config = write_imgdist_config(world, index_url=str(world.root / "nowhere.yaml"))
    code, out, err = imgdist("-c", config, "sync")
    assert (code, out) == (5, "")
    assert err == f"imgdist: fetch-failed: cannot read {world.root}/nowhere.yaml: No such file or directory\n"


def test_progress_line_on_a_terminal(world):
    stream = io.StringIO()
    line = _imgdist.ProgressLine(stream)
    slc = world.published["slc-5"]
    world.engine.add(slc.torrent, world.host_path("staging/x"))
    status = world.engine.status(slc.info_hash)
    line(slc.entry, status.__class__(**{**status.__dict__, "completed_bytes": 0, "complete": False}))
    line.close()
    line(slc.entry, status)
    line.close()
    assert stream.getvalue() == ("\rslc-5 [------------------------]   0.0% 0 B/s 1 peer(s)\n"
                                 "\rslc-5 [########################] 100.0% 0 B/s 1 peer(s)\n")


def test_sync_exit_1_when_an_image_failed(world, monkeypatch):
    config = write_imgdist_config(world, timeout=1)
    del world.engine.swarm[world.published["alma-9"].info_hash]
    clock = FakeClock()
    real_sync = _sync.sync
    monkeypatch.setattr(_imgdist, "sync", lambda *a, **k: real_sync(*a, **k, clock=clock, sleep=clock.sleep))
    code, out, _unused = imgdist("-c", config, "sync", "--json")
    report = json.loads(out)
    assert code == EXIT_IMAGES_FAILED
    assert [(f["uuid"], f["rule"]) for f in report["failures"]] == [("alma-9", "download-timeout")]
    assert report["promoted"] == ["slc-5"]


def test_sync_check_changes_nothing(world):
    config = write_imgdist_config(world)
    code, out, _unused = imgdist("-c", config, "sync", "--check")
    assert code == EXIT_OK and "would be promoted" in out and out.endswith("would change\n")
    assert not os.path.exists(world.host_path("images")) and world.engine.torrents == {}


def test_approval_errors_are_config_errors(world):
    config = write_imgdist_config(world, approved_images=[{"name": "alma", "verison": 3}])
    code, _unused, err = imgdist("-c", config, "sync")
    assert code == EXIT_CONFIG and err.startswith("imgdist: approval-invalid: vmcloud_approved_images[0]: unknown key")


# --------------------------------------------------------------------------- status


def test_status_per_image(world):
    config = write_imgdist_config(world)
    imgdist("-c", config, "sync")
    world.publish("alma", 10, compressed=True)
    world.write_index(4)
    kept = world.root / "host" / "index" / "verified-index.yaml"
    kept.write_bytes(world.index_path.read_bytes())  # as if the next sync had verified it, not downloaded yet
    alma10 = world.published["alma-10"]
    world.engine.add(alma10.torrent, world.host_path(f"staging/{alma10.info_hash}"))  # nobody seeds it yet
    code, out, _unused = imgdist("-c", config, "status", "--json")
    report = json.loads(out)
    assert code == EXIT_OK and report["enabled"] is True and report["index"]["version"] == 4
    states = {row["uuid"]: (row["state"], row["desired"]) for row in report["images"]}
    assert states == {"alma-10": ("downloading", True), "slc-5": ("ready", True),
                      "alma-9": ("superseded-pending", False)}  # kept until alma 10 is in the store

    code, out, _unused = imgdist("-c", config, "status")
    lines = out.splitlines()
    assert lines[0] == "host hv1: enabled"
    assert lines[1].startswith("index: version 4 from ")
    assert any(line.startswith("alma-10  downloading  [------------------------]   0.0%") for line in lines)
    assert any(line.startswith("slc-5    ready        seeding, ratio 0.00, 1 peer(s)") for line in lines)


def test_status_reports_problems_without_failing(world):
    config = write_imgdist_config(world)
    imgdist("-c", config, "--disable")
    code, out, _unused = imgdist("-c", config, "status")
    assert code == EXIT_OK
    assert out.splitlines()[:2] == ["host hv1: DISABLED (imgdist --enable)",
                                    "problem: index: index-missing: there is no verified index at "
                                    f"{world.host_path('index')}/verified-index.yaml; run imgdist sync first"]


def test_progress_bar_and_states():
    assert progress_bar(0.5, width=10) == "[#####-----]"
    assert progress_bar(1.7, width=4) == "[####]"
    assert image_state("present", None, True) == "ready"
    assert image_state(None, None, True) == "pending"
    assert image_state("present", None, False) == "retiring"


# --------------------------------------------------------------------------- unknown files


def test_list_unknown_files_lists_what_nobody_declared(tmp_path):
    store_dir = tmp_path / "images"
    state_dir = tmp_path / "index"
    staged = tmp_path / "disk.img"
    staged.write_bytes(b"x" * 4096)
    image = {"uuid": "disk-1", "file": "disk.img", "compressed": False, "size": 4096,
             "sha256": hashlib.sha256(staged.read_bytes()).hexdigest()}
    ImageStore(str(store_dir)).promote(image, str(staged))  # managed: never unknown
    (store_dir / "isfvm64slc5_1276695175.img.gz").write_bytes(b"stray")
    (store_dir / ".hidden").write_bytes(b"stray")
    config = tmp_path / "imgdist.yml"
    config.write_text(yaml.safe_dump({
        "index_url": "http://catalogue/index.yaml", "trust_anchors": [str(tmp_path / "ca.pem")],
        "store_dir": str(store_dir), "state_dir": str(state_dir)}))
    code, out, err = imgdist("-c", str(config), "--list_unknown_files")
    assert (code, err) == (EXIT_OK, "")
    assert out.splitlines() == [".hidden", "isfvm64slc5_1276695175.img.gz"]
    code, out, _unused = imgdist("-c", str(config), "--list_unknown_files", "--json")
    assert code == EXIT_OK and json.loads(out) == [".hidden", "isfvm64slc5_1276695175.img.gz"]


# --------------------------------------------------------------------------- as installed on a hypervisor


def test_runs_as_a_module_without_ansible(tmp_path, flag_config):
    """``python3 -m`` from a directory holding ansible_collections/, with ansible not importable."""
    config, _unused = flag_config
    env = {"PYTHONPATH": os.path.join(REPO, "collections"), "PATH": os.environ.get("PATH", "/usr/bin")}
    probe = "import sys; sys.modules['ansible'] = None; import runpy; sys.argv = ['imgdist'] + sys.argv[1:]; " \
            "runpy.run_module('ansible_collections.vmcloud.fleet.plugins.module_utils._imgdist', run_name='__main__')"
    done = subprocess.run([sys.executable, "-c", probe, "-c", config, "--disable"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "current state: enable\ndisable\n", "")


def test_the_timer_honours_the_distribution_method(world):
    # sharedfs: the images come from the shared directory, the engine is never asked.
    world.engine = None
    config = write_imgdist_config(world, distribution_method="sharedfs", sharedfs_dir=str(world.root / "origin"))
    code, out, err = imgdist("-c", config, "sync")
    assert (code, err) == (EXIT_OK, "")
    assert sorted(ImageStore(world.host_path("images")).manifest()) == sorted(world.published)


def test_config_refuses_an_unknown_distribution_method(tmp_path):
    config = tmp_path / "imgdist.yml"
    config.write_text(yaml.safe_dump({"distribution_method": "floppy"}))
    code, out, err = imgdist("-c", str(config), "config-check")
    assert code != EXIT_OK
    assert "distribution_method" in out + err


# --------------------------------------------------------------------------- metrics


def test_a_sync_writes_the_textfile_and_last_sync(world):
    from tests.unit.plugins.module_utils.test_metrics import parse, value

    textfiles = world.root / "textfile"
    textfiles.mkdir()
    config = write_imgdist_config(world, metrics_textfile_dir=str(textfiles))
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    assert imgdist("-c", config, "sync")[0] == EXIT_OK
    assert os.listdir(textfiles) == ["vmcloud_imgdist.prom"]  # no temp file left for node_exporter to read
    families = parse((textfiles / "vmcloud_imgdist.prom").read_text())
    assert value(families, "images_present") == 2 and value(families, "images_missing") == 0
    assert value(families, "image_present", name="alma", version="9") == 1
    assert value(families, "image_present", name="slc", version="5") == 1
    assert value(families, "last_sync_success") == 1
    assert value(families, "last_success_timestamp_seconds") >= before.timestamp()
    assert value(families, "index_version") == 3
    assert value(families, "run_guard_denials_total") == 0
    expires = yaml.safe_load(world.index_path.read_bytes())["signed"]["expires"]
    assert value(families, "index_expiry_timestamp_seconds") == datetime.datetime.fromisoformat(
        expires.replace("Z", "+00:00")).timestamp()
    record = json.loads(Path(world.host_path("index"), "last-sync.json").read_text())
    assert (record["result"], record["exit_status"], record["rule"]) == ("ok", EXIT_OK, None)
    assert record["counts"] == {"desired": 2, "ok": 2, "failed": 0, "promoted": 2, "retired": 0}
    assert record["last_success"] == record["finished"]
    # imgdist metrics prints what the sync wrote (nothing changed since), and status shows the record.
    code, out, _err = imgdist("-c", config, "metrics")
    assert code == EXIT_OK and parse(out) == families
    code, out, _err = imgdist("-c", config, "status")
    assert f"last sync: {record['finished']}: ok; last success: {record['finished']}\n" in out
    assert json.loads(imgdist("-c", config, "status", "--json")[1])["last_sync"] == record


def test_metrics_json_prints_the_same_metrics_as_json(world):
    """``imgdist metrics --json``: JSON, as every read command with --json, holding what the text holds."""
    from tests.unit.plugins.module_utils.test_metrics import parse

    config = write_imgdist_config(world)
    assert imgdist("-c", config, "sync")[0] == EXIT_OK
    code, text, _err = imgdist("-c", config, "metrics")
    assert code == EXIT_OK
    code, out, _err = imgdist("-c", config, "metrics", "--json")
    assert code == EXIT_OK
    document = json.loads(out)
    assert [family["name"] for family in document["metrics"]] == list(parse(text))
    assert {family["name"]: {"type": family["type"], "help": family["help"],
                             "samples": {frozenset(sample["labels"].items()): sample["value"]
                                         for sample in family["samples"]}}
            for family in document["metrics"]} == parse(text)


def test_a_failed_sync_keeps_the_last_success_and_names_the_rule(world):
    from tests.unit.plugins.module_utils.test_metrics import parse, value

    textfiles = world.root / "textfile"
    textfiles.mkdir()
    config = write_imgdist_config(world, metrics_textfile_dir=str(textfiles))
    assert imgdist("-c", config, "sync")[0] == EXIT_OK
    success = json.loads(Path(world.host_path("index"), "last-sync.json").read_text())["last_success"]
    world.write_index(2)  # lower than the accepted version 3: refused (rollback)
    code, _out, err = imgdist("-c", config, "sync")
    assert code == EXIT_INDEX_REFUSED and err.startswith("imgdist: rollback: ")
    record = json.loads(Path(world.host_path("index"), "last-sync.json").read_text())
    assert (record["result"], record["exit_status"], record["rule"]) == ("failed", EXIT_INDEX_REFUSED, "rollback")
    assert record["last_success"] == success and record["counts"] is None
    families = parse((textfiles / "vmcloud_imgdist.prom").read_text())
    assert value(families, "last_sync_success") == 0
    assert value(families, "last_sync_failure", rule="rollback") == 1
    assert value(families, "last_sync_exit_status") == EXIT_INDEX_REFUSED
    assert value(families, "last_success_timestamp_seconds") == datetime.datetime.fromisoformat(
        success.replace("Z", "+00:00")).timestamp()
    assert value(families, "images_present") == 2  # the store is as the last good sync left it
    code, out, _err = imgdist("-c", config, "status")
    assert f": failed (rollback); last success: {success}\n" in out


def test_without_a_textfile_dir_nothing_is_written_there_and_check_records_nothing(world, tmp_path):
    config = write_imgdist_config(world)
    assert imgdist("-c", config, "sync", "--check")[0] == EXIT_OK
    assert not os.path.exists(os.path.join(world.host_path("index"), "last-sync.json"))
    before = set(tmp_path.rglob("*"))
    assert imgdist("-c", config, "sync")[0] == EXIT_OK
    written = set(tmp_path.rglob("*")) - before
    assert not [path for path in written if path.name.endswith(".prom")]
    assert os.path.exists(os.path.join(world.host_path("index"), "last-sync.json"))


def test_an_unwritable_textfile_dir_warns_and_the_sync_still_succeeds(world):
    config = write_imgdist_config(world, metrics_textfile_dir=str(world.root / "missing"))
    code, _out, err = imgdist("-c", config, "sync")
    assert code == EXIT_OK
    assert err.startswith(f"imgdist: warning: metrics-unwritable: {world.root / 'missing'}: ")


def test_the_hooks_refusals_are_counted(world):
    from tests.unit.plugins.module_utils.test_metrics import parse, value

    config = write_imgdist_config(world, approved_images=[{"name": "alma"}])
    assert imgdist("-c", config, "sync")[0] == EXIT_OK
    loaded = _imgdist_config.load_config(config, required=True)
    code, result = _imgdist_status.check_image(loaded, "centos-7")
    _imgdist_status.record_run_guard_denial(loaded, result["rule"])  # what the hook does on a refusal
    _imgdist_status.record_run_guard_denial(loaded, result["rule"])
    assert value(parse(imgdist("-c", config, "metrics")[1]), "run_guard_denials_total") == 2


def test_the_config_keys_follow_the_module_options():
    """A key that feeds a module option has that option's type, default and choices (_argspec)."""
    from ansible_collections.vmcloud.fleet.plugins.module_utils import _argspec

    options = {**_argspec.INDEX_TRUST_ARGSPEC, **_argspec.SELECTION_ARGSPEC, **_argspec.FETCH_ARGSPEC,
               **_argspec.SYNC_ARGSPEC}
    defaults = check_config({"host": "hv1"}, "imgdist.yml")
    fed = {key: spec for key, spec in _imgdist_config.CONFIG_KEYS.items() if spec.option in options}
    assert len(fed) == 40  # all but index_url (image_index's own src) and imgdist's own keys
    for key, spec in fed.items():
        option = options[spec.option]
        assert defaults[key] == (option.get("default") if key != "host" else "hv1"), key
        assert spec.choices == tuple(option.get("choices", ())), key
    assert (_imgdist_config.CONFIG_KEYS["rpc_timeout"].kind, _imgdist_config.CONFIG_KEYS["crl"].kind,
            _imgdist_config.CONFIG_KEYS["approval_rules"].kind, _imgdist_config.CONFIG_KEYS["endorser_pins"].kind) == \
        ("number", "paths", "strs", "list")
    assert sorted(set(options) - {spec.option for spec in fed.values()}) == ["reference_time"]
