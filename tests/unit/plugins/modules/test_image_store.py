# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""vmcloud.fleet.image_store: check → apply → check → apply, diff, policies, quota warning, failures."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Dict, List

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils import _reconcile_execute, _reconcile_plan
from ansible_collections.vmcloud.fleet.plugins.module_utils._store import ImageStore
from ansible_collections.vmcloud.fleet.plugins.modules import image_store

from .conftest import module_result

NOW = 1_718_000_000.0


def promote(store: ImageStore, staging: Path, uuid: str, size: int = 4096) -> Dict[str, Any]:
    staged = staging / uuid / f"{uuid}.img"
    staged.parent.mkdir(parents=True, exist_ok=True)
    data = (uuid.encode() * size)[:size]
    staged.write_bytes(data)
    image = {"uuid": uuid, "name": uuid, "version": 1, "file": staged.name, "compressed": False, "size": size,
             "sha256": hashlib.sha256(data).hexdigest(), "torrent": {"info_hash": "ab" * 20}}
    store.promote(image, str(staged))
    return image


@pytest.fixture
def store(tmp_path: Path, monkeypatch) -> Dict[str, Any]:
    """A store holding a desired image, a damaged desired image, one no longer desired, and strays."""
    root = tmp_path / "images"
    image_store_ = ImageStore(str(root))
    staging = tmp_path / "staging"
    good = promote(image_store_, staging, "alma-9")
    damaged = promote(image_store_, staging, "slc-5")
    with open(image_store_.path_of(damaged), "ab") as handle:
        handle.write(b"damage")
    promote(image_store_, staging, "alma-8")
    (root / "stray.img").write_bytes(b"stray")
    (root / ".hidden").write_bytes(b"h")
    (root / "link").symlink_to(tmp_path)
    monkeypatch.setattr(_reconcile_plan, "_clock", lambda: NOW)  # one quarantine timestamp for check and apply
    return {"root": root, "desired": [good, damaged]}


def run(capsys, **args: Any) -> Dict[str, Any]:
    args.setdefault("state_dir", str(Path(args["path"]).parent / "index"))  # where the host lock lives
    return module_result(capsys, image_store, **args)


COMPARED = ("present", "missing", "corrupt", "unknown", "quarantined", "removed", "retired", "forgotten",
            "evicted", "held_open", "actions", "diff")


@pytest.mark.parametrize("policy", ["quarantine", "remove"])
def test_check_apply_check_apply(capsys, store, policy):
    args = {"path": str(store["root"]), "desired": store["desired"], "unknown": policy}
    results = [
        run(capsys, _ansible_check_mode=True, _ansible_diff=True, **args),
        run(capsys, _ansible_diff=True, **args),
        run(capsys, _ansible_check_mode=True, **args),
        run(capsys, **args),
    ]
    assert [r["changed"] for r in results] == [True, True, False, False]
    for key in COMPARED:
        assert results[0][key] == results[1][key], key
    first = results[1]
    assert first["present"] == ["alma-9"] and first["corrupt"] == ["slc-5"] and first["missing"] == []
    assert first["retired"] == ["alma-8"] and first["forgotten"] == ["slc-5"]
    unknown = [str(store["root"] / name) for name in (".hidden", "link", "stray.img")]
    assert first["unknown"] == unknown
    if policy == "quarantine":
        assert first["quarantined"] == unknown
        assert [action["to"] for action in first["actions"] if action["action"] == "quarantine"] == [
            str(store["root"] / ".vmcloud" / "quarantine" / f"20240610T061320Z-{name}")
            for name in (".hidden", "link", "stray.img")]
    else:
        assert first["removed"] == unknown
    assert first["diff"] == {
        "before": {"files": [".hidden", "alma-8.img", "alma-9.img", "link", "slc-5.img", "stray.img"],
                   "managed": ["alma-8", "alma-9", "slc-5"]},
        "after": {"files": ["alma-9.img", "slc-5.img"], "managed": ["alma-9"]},
    }
    assert results[3]["diff"]["before"] == results[3]["diff"]["after"] == first["diff"]["after"]
    assert results[3]["missing"] == ["slc-5"] and results[3]["unknown"] == []
    assert sorted(os.listdir(store["root"])) == [".vmcloud", "alma-9.img", "slc-5.img"]


def test_a_check_run_and_a_later_real_run_report_the_same(capsys, store, monkeypatch):
    """Only the quarantine destinations (actions[].to) carry the run's time."""
    args = {"path": str(store["root"]), "desired": store["desired"], "unknown": "quarantine"}
    checked = run(capsys, _ansible_check_mode=True, **args)
    monkeypatch.setattr(_reconcile_plan, "_clock", lambda: NOW + 61)
    applied = run(capsys, **args)
    for key in COMPARED:
        if key != "actions":
            assert checked[key] == applied[key], key
    assert [a["to"] for a in checked["actions"]] != [a["to"] for a in applied["actions"]]


def test_report_lists_unknown_entries_and_changes_nothing_about_them(capsys, store):
    args = {"path": str(store["root"]), "desired": store["desired"]}
    first = run(capsys, **args)
    second = run(capsys, **args)
    assert first["changed"] is True and second["changed"] is False  # the retirement and the corrupt copy
    assert second["unknown"] == first["unknown"] and len(second["unknown"]) == 3
    assert second["unknown_entries"][1]["type"] == "symlink"
    assert (store["root"] / "stray.img").read_bytes() == b"stray"


def test_over_the_quota_with_nothing_left_to_evict_warns(capsys, store, monkeypatch):
    # Recorded at the call: where ansible-core 2.19 delivers a warning depends on process-global state
    # (the result's "warnings", or the controller's display once controller code was imported).
    warnings: List[str] = []
    monkeypatch.setattr(image_store.AnsibleModule, "warn", lambda _self, message: warnings.append(message))
    result = run(capsys, path=str(store["root"]), desired=store["desired"], max_bytes=1)
    assert result["quota"]["over"] is True and result["quota"]["over_after"] is True
    assert len(warnings) == 1 and "stays over its quota" in warnings[0]


def test_kept_images_are_evicted_by_the_watermark(capsys, store, monkeypatch):
    kept = run(capsys, path=str(store["root"]), desired=store["desired"], not_desired="keep",
               _ansible_check_mode=True)
    assert kept["kept"] == ["alma-8"] and kept["retired"] == [] and kept["quota"] is None
    monkeypatch.setattr(image_store, "plan_reconcile",
                        lambda *a, **k: _reconcile_plan.plan_reconcile(*a, fs_usage=lambda _: (100_000, 99_000), **k))
    result = run(capsys, path=str(store["root"]), desired=store["desired"], not_desired="keep",
                 high_watermark_percent=90)
    assert [e["uuid"] for e in result["evicted"]] == ["alma-8"] and result["kept"] == []


@pytest.mark.parametrize(
    ("args", "rule"),
    [
        ({"desired": [{"uuid": "x"}]}, "desired-invalid"),
        ({"desired": [], "high_watermark_percent": 0}, "option-invalid"),
    ],
)
def test_a_refusal_names_the_rule(capsys, store, args, rule):
    result = run(capsys, path=str(store["root"]), **args)
    assert result["failed"] is True and result["rule"] == rule and result["msg"].startswith(f"{rule}: ")


def test_a_failed_action_fails_the_task_after_the_others(capsys, store, monkeypatch):
    def broken(_self, action):
        raise OSError(13, "Permission denied", action.path)

    monkeypatch.setattr(_reconcile_execute._Executor, "_remove", broken)
    result = run(capsys, path=str(store["root"]), desired=store["desired"], unknown="remove")
    assert result["failed"] is True and result["rule"] == "reconcile-failed"
    assert result["msg"].startswith("reconcile-failed: 3 action(s) failed, the others went on; first: remove ")
    assert result["retired"] == ["alma-8"] and result["changed"] is True
    assert [f["path"] for f in result["failures"]] == result["unknown"]


def test_the_documentation_matches_the_argument_spec(module_docs):
    import yaml

    options: Dict[str, Any] = module_docs(image_store)["options"]
    assert set(options) == set(image_store.ARGUMENT_SPEC)
    for name, spec in image_store.ARGUMENT_SPEC.items():
        documented = options[name]
        assert documented["type"] == spec["type"], name
        assert documented.get("default") == spec.get("default"), name
        assert documented.get("choices") == spec.get("choices"), name
        assert documented.get("elements") == spec.get("elements"), name
    returned: Dict[str, Any] = yaml.safe_load(image_store.RETURN)
    keys: List[str] = list(returned)
    for key in keys:
        assert {"description", "returned", "type", "sample"} <= set(returned[key]), key


def test_every_returned_key_is_documented(capsys, store):
    import yaml

    result = run(capsys, path=str(store["root"]), desired=store["desired"], _ansible_check_mode=True)
    documented = set(yaml.safe_load(image_store.RETURN))
    assert set(result) - {"changed", "diff", "invocation", "warnings"} == documented


def test_a_real_run_waits_for_the_host_lock_and_changes_nothing(capsys, store, monkeypatch):
    import fcntl

    from ansible_collections.vmcloud.fleet.plugins.module_utils import _lock

    def files() -> Dict[str, bytes]:
        return {str(p): p.read_bytes() for p in sorted(store["root"].rglob("*")) if p.is_file() and not p.is_symlink()}

    before = files()
    monkeypatch.setattr(_lock, "DEFAULT_LOCK_TIMEOUT", 0)
    index = store["root"].parent / "index"
    index.mkdir()
    with open(index / "sync.lock", "a") as running_sync:
        fcntl.flock(running_sync.fileno(), fcntl.LOCK_EX)
        result = run(capsys, path=str(store["root"]), desired=store["desired"], unknown="remove")
    assert result["failed"] is True and result["rule"] == "lock-timeout"
    assert files() == before
    assert run(capsys, path=str(store["root"]), desired=store["desired"])["retired"] == ["alma-8"]


def test_an_empty_desired_set_is_stopped_by_the_guard_unless_confirmed(capsys, store):
    def files() -> Dict[str, bytes]:
        return {str(p): p.read_bytes() for p in sorted(store["root"].rglob("*")) if p.is_file() and not p.is_symlink()}

    before = files()
    result = run(capsys, path=str(store["root"]), desired=[])
    assert result["failed"] is True and result["rule"] == "retire-guard"
    assert "would retire 3 of the 3 images" in result["msg"] and "retire_confirm" in result["msg"]
    assert files() == before
    result = run(capsys, path=str(store["root"]), desired=[], retire_confirm=True)
    assert result["retired"] == ["alma-8", "alma-9", "slc-5"]
