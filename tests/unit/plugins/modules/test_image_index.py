"""vmcloud.fleet.image_index: check → apply → check → apply, refusals, selection, dest."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.vmcloud.fleet.plugins.modules import image_index
from tests.unit import index_factory as factory
from tests.unit import pki


@pytest.fixture(scope="module")
def trust(tmp_path_factory):
    directory = tmp_path_factory.mktemp("trust")
    ca = pki.make_ca("module test CA")
    endorser = pki.make_endorser(ca, "lab-endorser", key_type="ec")
    (directory / "ca.pem").write_bytes(pki.pem(ca.cert))
    return {"dir": directory, "ca": ca, "endorser": endorser}


def write_index(path, trust, version, images):
    path.write_bytes(factory.document(factory.signed_index(images, version=version), [trust["endorser"]]))
    return str(path)


def run(capsys, **args):
    with patch_module_args(args), pytest.raises(SystemExit):
        image_index.main()
    return json.loads(capsys.readouterr().out)


def base_args(trust, src, state_dir, **extra):
    args = {
        "src": src,
        "trust_anchors": [str(trust["dir"] / "ca.pem")],
        "state_dir": str(state_dir),
        "reference_time": factory.NOW,
    }
    args.update(extra)
    return args


def test_check_apply_check_apply(capsys, trust, tmp_path):
    src = write_index(tmp_path / "index.yaml", trust, 3, [factory.image(1)])
    state = tmp_path / "state"
    dest = tmp_path / "verified.yaml"
    args = base_args(trust, src, state, dest=str(dest))
    results = [
        run(capsys, _ansible_check_mode=True, _ansible_diff=True, **args),
        run(capsys, _ansible_diff=True, **args),
        run(capsys, _ansible_check_mode=True, **args),
        run(capsys, **args),
    ]
    assert [r["changed"] for r in results] == [True, True, False, False]
    assert results[0]["diff"] == {"before": {"version": None}, "after": {"version": 3}}
    assert results[3]["previous_version"] == 3
    assert dest.read_bytes() == (tmp_path / "index.yaml").read_bytes()


def test_check_mode_writes_nothing(capsys, trust, tmp_path):
    src = write_index(tmp_path / "index.yaml", trust, 3, [factory.image(1)])
    state = tmp_path / "state"
    run(capsys, _ansible_check_mode=True, **base_args(trust, src, state, dest=str(tmp_path / "copy.yaml")))
    assert not state.exists() and not (tmp_path / "copy.yaml").exists()


def test_refusal_names_the_rule_and_changes_nothing(capsys, trust, tmp_path):
    state = tmp_path / "state"
    src = write_index(tmp_path / "index.yaml", trust, 5, [factory.image(1)])
    run(capsys, **base_args(trust, src, state))
    before = {p.name: p.read_bytes() for p in state.iterdir()}
    write_index(tmp_path / "index.yaml", trust, 4, [factory.image(1)])
    result = run(capsys, **base_args(trust, src, state, dest=str(tmp_path / "copy.yaml")))
    assert result["failed"] is True and result["rule"] == "rollback"
    assert "index version 4 is lower than the last accepted version 5" in result["msg"]
    assert {p.name: p.read_bytes() for p in state.iterdir()} == before
    assert not (tmp_path / "copy.yaml").exists()


def test_selection_is_returned_when_approvals_are_given(capsys, trust, tmp_path):
    images = [factory.image(1, family="cernvm", version=1), factory.image(2, family="cernvm", version=2),
              factory.image(3, family="slc5", version=7)]
    src = write_index(tmp_path / "index.yaml", trust, 1, images)
    result = run(capsys, **base_args(trust, src, tmp_path / "state", host="hv01",
                                     approved=[{"name": "cernvm", "version": "latest"}, {"uuid": "ghost"}]))
    selection = result["selection"]
    assert selection["desired_uuids"] == ["cernvm-2"]
    assert selection["not_endorsed"][0]["approved_by"] == "vmcloud_approved_images[1]"
    assert selection["not_approved"] == ["cernvm-1", "slc5-7"]


def test_approval_typo_fails_naming_variable_and_key(capsys, trust, tmp_path):
    src = write_index(tmp_path / "index.yaml", trust, 1, [factory.image(1)])
    result = run(capsys, **base_args(trust, src, tmp_path / "state", host="hv01", approved=[{"nmae": "x"}]))
    assert result["failed"] is True and result["rule"] == "approval-invalid"
    assert "vmcloud_approved_images[0]: unknown key 'nmae'" in result["msg"]


def test_missing_source_is_a_clear_error(capsys, trust, tmp_path):
    result = run(capsys, **base_args(trust, str(tmp_path / "absent.yaml"), tmp_path / "state"))
    assert result["failed"] is True and result["rule"] == "fetch-failed"
    assert "absent.yaml" in result["msg"]


def test_persisting_the_mark_waits_for_the_host_lock(capsys, trust, tmp_path, monkeypatch):
    import fcntl

    from ansible_collections.vmcloud.fleet.plugins.module_utils import _lock

    state = tmp_path / "state"
    src = write_index(tmp_path / "index.yaml", trust, 5, [factory.image(1)])
    run(capsys, **base_args(trust, src, state))
    before = {p.name: p.read_bytes() for p in state.iterdir()}
    write_index(tmp_path / "index.yaml", trust, 6, [factory.image(1)])
    monkeypatch.setattr(_lock, "DEFAULT_LOCK_TIMEOUT", 0)
    with open(state / _lock.LOCK_NAME, "a") as sync_run:  # a sync holds the host
        fcntl.flock(sync_run.fileno(), fcntl.LOCK_EX)
        result = run(capsys, **base_args(trust, src, state))
    assert result["failed"] is True and result["rule"] == "lock-timeout"
    assert {p.name: p.read_bytes() for p in state.iterdir()} == before
    assert run(capsys, **base_args(trust, src, state))["version"] == 6
