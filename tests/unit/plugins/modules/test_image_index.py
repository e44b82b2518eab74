"""vmcloud.fleet.image_index: check → apply → check → apply, refusals, selection, dest."""

from __future__ import annotations

from ansible_collections.vmcloud.fleet.plugins.modules import image_index
from tests.unit import index_factory as factory

from .conftest import index_args, write_index


def test_check_apply_check_apply(run_module, trust, tmp_path):
    src = write_index(tmp_path / "index.yaml", trust, 3, [factory.image(1)])
    state = tmp_path / "state"
    dest = tmp_path / "verified.yaml"
    args = index_args(trust, src, state, dest=str(dest))
    results = [
        run_module(image_index, _ansible_check_mode=True, _ansible_diff=True, **args),
        run_module(image_index, _ansible_diff=True, **args),
        run_module(image_index, _ansible_check_mode=True, **args),
        run_module(image_index, **args),
    ]
    assert [r["changed"] for r in results] == [True, True, False, False]
    assert results[0]["diff"] == {"before": {"version": None}, "after": {"version": 3}}
    assert results[3]["previous_version"] == 3
    assert dest.read_bytes() == (tmp_path / "index.yaml").read_bytes()


def test_check_mode_writes_nothing(run_module, trust, tmp_path):
    src = write_index(tmp_path / "index.yaml", trust, 3, [factory.image(1)])
    state = tmp_path / "state"
    run_module(image_index, _ansible_check_mode=True, **index_args(trust, src, state, dest=str(tmp_path / "copy.yaml")))
    assert not state.exists() and not (tmp_path / "copy.yaml").exists()


def test_refusal_names_the_rule_and_changes_nothing(run_module, trust, tmp_path):
    state = tmp_path / "state"
    src = write_index(tmp_path / "index.yaml", trust, 5, [factory.image(1)])
    run_module(image_index, **index_args(trust, src, state))
    before = {p.name: p.read_bytes() for p in state.iterdir()}
    write_index(tmp_path / "index.yaml", trust, 4, [factory.image(1)])
    result = run_module(image_index, **index_args(trust, src, state, dest=str(tmp_path / "copy.yaml")))
    assert result["failed"] is True and result["rule"] == "rollback"
    assert "index version 4 is lower than the last accepted version 5" in result["msg"]
    assert {p.name: p.read_bytes() for p in state.iterdir()} == before
    assert not (tmp_path / "copy.yaml").exists()


def test_selection_is_returned_when_approvals_are_given(run_module, trust, tmp_path):
    images = [factory.image(1, family="cernvm", version=1), factory.image(2, family="cernvm", version=2),
              factory.image(3, family="slc5", version=7)]
    src = write_index(tmp_path / "index.yaml", trust, 1, images)
    approved = [{"name": "cernvm", "version": "latest"}, {"uuid": "ghost"}]
    result = run_module(image_index, **index_args(trust, src, tmp_path / "state", host="hv01", approved=approved))
    selection = result["selection"]
    assert selection["desired_uuids"] == ["cernvm-2"]
    assert selection["not_endorsed"][0]["approved_by"] == "vmcloud_approved_images[1]"
    assert selection["not_approved"] == ["cernvm-1", "slc5-7"]


def test_approval_typo_fails_naming_variable_and_key(run_module, trust, tmp_path):
    src = write_index(tmp_path / "index.yaml", trust, 1, [factory.image(1)])
    args = index_args(trust, src, tmp_path / "state", host="hv01", approved=[{"nmae": "x"}])
    result = run_module(image_index, **args)
    assert result["failed"] is True and result["rule"] == "approval-invalid"
    assert "vmcloud_approved_images[0]: unknown key 'nmae'" in result["msg"]


def test_missing_source_is_a_clear_error(run_module, trust, tmp_path):
    result = run_module(image_index, **index_args(trust, str(tmp_path / "absent.yaml"), tmp_path / "state"))
    assert result["failed"] is True and result["rule"] == "fetch-failed"
    assert "absent.yaml" in result["msg"]


def test_persisting_the_mark_waits_for_the_host_lock(run_module, trust, tmp_path, monkeypatch):
    import fcntl

    from ansible_collections.vmcloud.fleet.plugins.module_utils import _lock

    state = tmp_path / "state"
    src = write_index(tmp_path / "index.yaml", trust, 5, [factory.image(1)])
    run_module(image_index, **index_args(trust, src, state))
    before = {p.name: p.read_bytes() for p in state.iterdir()}
    write_index(tmp_path / "index.yaml", trust, 6, [factory.image(1)])
    monkeypatch.setattr(_lock, "DEFAULT_LOCK_TIMEOUT", 0)
    with open(state / _lock.LOCK_NAME, "a") as sync_run:  # a sync holds the host
        fcntl.flock(sync_run.fileno(), fcntl.LOCK_EX)
        result = run_module(image_index, **index_args(trust, src, state))
    assert result["failed"] is True and result["rule"] == "lock-timeout"
    assert {p.name: p.read_bytes() for p in state.iterdir()} == before
    assert run_module(image_index, **index_args(trust, src, state))["version"] == 6
