# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run summary's per-host reading of image_sync / image_store results (pure logic; the callback that
feeds it runs for real under ansible-runner in molecule/reconcile/verify.yml)."""

from __future__ import annotations

from ansible_collections.vmcloud.fleet.plugins.plugin_utils._run_summary import SUMMARY_FORMAT, RunSummary

SYNC = "vmcloud.fleet.image_sync"
STORE = "vmcloud.fleet.image_store"


def sync_result(**overrides):
    result = {"changed": True, "index": {"version": 7}, "images": [], "retired": [], "held_open": [],
              "failures": []}
    result.update(overrides)
    return result


def store_result(**overrides):
    result = {"changed": False, "corrupt": [], "retired": [], "unknown": [], "quarantined": [], "removed": [],
              "held_open": [], "failures": []}
    result.update(overrides)
    return result


def test_added_and_repaired_images_come_from_the_sync_per_image_store_state():
    summary = RunSummary("reconcile.yml")
    summary.record("hv01", SYNC, "sync", sync_result(images=[
        {"uuid": "a-1", "store": "promoted"}, {"uuid": "b-1", "store": "repaired"},
        {"uuid": "c-1", "store": "present"}], retired=["a-0"]))
    summary.record("hv01", STORE, "store", store_result(unknown=["/s/stray.img"], retired=["z-1"]))
    host = summary.as_dict()["hosts"]["hv01"]
    assert host["status"] == "changed"
    assert host["index_version"] == 7
    assert host["added"] == ["a-1"]
    assert host["corrupt"] == ["b-1"]
    assert host["retired"] == ["a-0", "z-1"]
    assert host["unknown"] == ["/s/stray.img"]
    assert host["failures"] == []
    assert not host["disabled"]


def test_a_corrupt_copy_still_there_after_the_sync_is_listed_once():
    summary = RunSummary()
    summary.record("hv01", SYNC, "sync", sync_result(changed=False, images=[{"uuid": "b-1", "store": "repaired"}]))
    summary.record("hv01", STORE, "store", store_result(corrupt=["b-1", "d-1"]))
    assert summary.as_dict()["hosts"]["hv01"]["corrupt"] == ["b-1", "d-1"]


def test_the_store_pass_inside_the_sync_is_summarised_as_the_image_store_task_was():
    """image_sync with unknown= (the hypervisor role's one module) carries image_store's result as store."""
    summary = RunSummary("reconcile.yml")
    summary.record("hv01", SYNC, "sync", sync_result(changed=True, store=store_result(
        changed=True, unknown=["/s/stray.img", "/s/other"], quarantined=["/s/stray.img"], corrupt=["d-1"])))
    host = summary.as_dict()["hosts"]["hv01"]
    assert (host["unknown"], host["quarantined"], host["corrupt"]) == (["/s/stray.img", "/s/other"],
                                                                       ["/s/stray.img"], ["d-1"])
    assert host["status"] == "changed" and host["failures"] == []


def test_a_failed_sync_reports_each_image_failure_with_its_rule_not_the_module_message():
    summary = RunSummary()
    failure = {"uuid": "a-1", "info_hash": "83f4", "step": "download", "rule": "download-timeout", "message": "late"}
    summary.record("hv01", SYNC, "Verify, select, download", sync_result(
        failed=True, rule="images-failed", msg="1 image failed", failures=[failure]), failed=True)
    report = summary.as_dict()
    assert report["ok"] is False
    assert report["hosts"]["hv01"]["status"] == "failed"
    assert report["hosts"]["hv01"]["failures"] == [
        {"task": "Verify, select, download", "uuid": "a-1", "step": "download", "rule": "download-timeout",
         "message": "late"}]


def test_another_failed_task_and_an_unreachable_host_are_failures_with_a_rule():
    summary = RunSummary()
    summary.record("hv01", "ansible.builtin.assert", "Check the key", {"msg": "option-invalid: no key"}, failed=True)
    summary.record_unreachable("hv02", "Look for the disabled flag", {"msg": "ssh: connect to host hv02\n refused"})
    hosts = summary.as_dict()["hosts"]
    assert hosts["hv01"]["status"] == "failed"
    assert hosts["hv01"]["failures"][0]["rule"] == "task-failed"
    assert hosts["hv01"]["failures"][0]["message"] == "option-invalid: no key"
    assert hosts["hv02"]["status"] == "unreachable"
    assert hosts["hv02"]["failures"][0]["rule"] == "host-unreachable"
    assert hosts["hv02"]["failures"][0]["message"] == "ssh: connect to host hv02 refused"


def test_an_ignored_failure_does_not_fail_the_host():
    summary = RunSummary()
    summary.record("hv01", "ansible.builtin.command", "probe", {"msg": "non-zero"}, failed=True, ignore_errors=True)
    summary.record("hv01", SYNC, "sync", sync_result(changed=False))
    host = summary.as_dict()["hosts"]["hv01"]
    assert host["status"] == "ok"
    assert host["failures"] == []


def test_store_action_failures_name_the_action():
    summary = RunSummary()
    summary.record("hv01", STORE, "store", store_result(failures=[
        {"action": "quarantine", "path": "/s/x", "uuid": None, "error": "/s/x: Permission denied"}]))
    assert summary.as_dict()["hosts"]["hv01"]["failures"] == [
        {"task": "store", "uuid": None, "step": "quarantine", "rule": "store-action-failed",
         "message": "/s/x: Permission denied"}]


def test_a_disabled_host_is_known_from_the_role_fact_and_other_hosts_stay_skipped():
    summary = RunSummary()
    summary.record("hv01", "ansible.builtin.stat", "Look for the disabled flag", {"stat": {"exists": True}})
    summary.record("hv01", "ansible.builtin.set_fact", "Record",
                   {"ansible_facts": {"hypervisor_summary": {"disabled": True}}})
    summary.record("hv02", "ansible.builtin.stat", "Look for the disabled flag", {"stat": {"exists": False}})
    summary.record("hv03", "ansible.builtin.set_fact", "Record",
                   {"ansible_facts": {"hypervisor_summary": {"disabled": False}}})
    hosts = summary.as_dict()["hosts"]
    assert (hosts["hv01"]["status"], hosts["hv01"]["disabled"]) == ("disabled", True)
    assert (hosts["hv02"]["status"], hosts["hv02"]["disabled"]) == ("skipped", False)
    assert hosts["hv03"]["disabled"] is False


def test_the_artifact_names_its_format_playbook_and_mode_and_sorts_hosts():
    summary = RunSummary("reconcile.yml", check_mode=True)
    summary.record("hv02", SYNC, "sync", sync_result(changed=False))
    summary.record("hv01", SYNC, "sync", sync_result(changed=False))
    report = summary.as_dict()
    assert (report["format"], report["playbook"], report["check_mode"], report["ok"]) == (
        SUMMARY_FORMAT, "reconcile.yml", True, True)
    assert list(report["hosts"]) == ["hv01", "hv02"]
    assert report["hosts"]["hv01"]["status"] == "ok"
