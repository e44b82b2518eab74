# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: reconcile_summary
type: aggregate
short_description: Writes a JSON summary of a run per host (images added, retired, unknown, corrupt, failures)
version_added: 0.1.0
description:
  - Collects what C(vmcloud.fleet.image_sync) and C(vmcloud.fleet.image_store) returned on each host, every
    failed task and every unreachable host, and at the end of the playbook writes one JSON file, the run's
    summary, into O(output_dir).
  - Meant for C(playbooks/reconcile.yml) run by AWX or C(ansible-runner) (see C(docs/awx.md)); there the file
    lands in the job's artifact directory, next to C(rc), C(status) and C(job_events/).
  - 'The file: C(format) (V(vmcloud.fleet.reconcile_summary/1)), C(playbook), C(check_mode), C(ok) (no host
    failed or unreachable) and C(hosts), a mapping of host name to C(status) (V(ok), V(changed), V(disabled),
    V(failed), V(unreachable), or V(skipped) when the play ended for the host before the sync), C(changed),
    C(disabled), C(index_version), C(added) (uuids put into the store for the first time), C(corrupt) (uuids
    found not matching what was verified: fetched again in this run, or still corrupt), C(retired), C(unknown)
    (paths nobody declared, whatever the policy did with them), C(quarantined), C(removed), C(held_open) and
    C(failures) (each with C(task), C(uuid), C(step), C(rule), C(message)).'
  - A check-mode run writes the same file with what the run would do (C(check_mode) is V(true)).
  - A host is V(disabled) when the C(vmcloud.fleet.hypervisor) role found the flag of C(imgdist --disable)
    (its fact C(hypervisor_summary.disabled)).
author:
  - vmcloud team (@vmcloud)
requirements:
  - Enabled in C(callbacks_enabled) (for example C(ANSIBLE_CALLBACKS_ENABLED=vmcloud.fleet.reconcile_summary)).
options:
  output_dir:
    description:
      - Directory the summary is written to (it is created if missing).
      - When not set, the job's artifact directory that C(ansible-runner) (and so AWX) exports as
        E(AWX_ISOLATED_DATA_DIR); when neither is set, nothing is written.
    type: path
    env:
      - name: VMCLOUD_RECONCILE_SUMMARY_DIR
    ini:
      - section: callback_reconcile_summary
        key: output_dir
  file_name:
    description: Name of the JSON file in O(output_dir).
    type: str
    default: vmcloud_reconcile_summary.json
    env:
      - name: VMCLOUD_RECONCILE_SUMMARY_FILE
    ini:
      - section: callback_reconcile_summary
        key: file_name
"""

EXAMPLES = r"""
# ansible-runner's private data directory, env/envvars:
#   ANSIBLE_CALLBACKS_ENABLED: vmcloud.fleet.reconcile_summary
# then artifacts/<ident>/vmcloud_reconcile_summary.json holds, for example:
#   {"format": "vmcloud.fleet.reconcile_summary/1", "playbook": "reconcile.yml", "check_mode": false, "ok": true,
#    "hosts": {"hv01": {"status": "changed", "changed": true, "disabled": false, "index_version": 7,
#                       "added": ["cernvm_demo-img-2"], "corrupt": [], "retired": ["cernvm_demo-img-1"],
#                       "unknown": [], "quarantined": [], "removed": [], "held_open": [], "failures": []}}}
"""

import json
import os

from ansible import context
from ansible.plugins.callback import CallbackBase

from ansible_collections.vmcloud.fleet.plugins.module_utils._io import write_atomic
from ansible_collections.vmcloud.fleet.plugins.plugin_utils._run_summary import RunSummary

# ansible-runner exports the job's artifact directory under this name (AWX runs jobs through it).
RUNNER_ARTIFACT_DIR_ENV = "AWX_ISOLATED_DATA_DIR"


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "vmcloud.fleet.reconcile_summary"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._summary = RunSummary()

    def v2_playbook_on_start(self, playbook) -> None:
        self._summary = RunSummary(playbook=os.path.basename(playbook._file_name),
                                   check_mode=bool(context.CLIARGS.get("check", False)))

    def _record(self, result, failed: bool = False, ignore_errors: bool = False) -> None:
        self._summary.record(result.host.get_name(), result.task.resolved_action or "", result.task_name,
                             result.result, failed=failed, ignore_errors=ignore_errors)

    def v2_runner_on_ok(self, result) -> None:
        self._record(result)

    def v2_runner_on_failed(self, result, ignore_errors: bool = False) -> None:
        self._record(result, failed=True, ignore_errors=ignore_errors)

    def v2_runner_on_unreachable(self, result) -> None:
        self._summary.record_unreachable(result.host.get_name(), result.task_name, result.result)

    def v2_playbook_on_stats(self, stats) -> None:
        output_dir = self.get_option("output_dir") or os.environ.get(RUNNER_ARTIFACT_DIR_ENV)
        if not output_dir:
            self._display.vvv("vmcloud.fleet.reconcile_summary: no output_dir and no ansible-runner artifact "
                              "directory; the run summary is not written")
            return
        path = os.path.join(output_dir, self.get_option("file_name"))
        try:
            os.makedirs(output_dir, exist_ok=True)
            write_atomic(path, json.dumps(self._summary.as_dict(), indent=2, sort_keys=True).encode() + b"\n")
        except OSError as exc:
            self._display.warning(f"vmcloud.fleet.reconcile_summary: cannot write {path}: {exc}")
            return
        self._display.vv(f"vmcloud.fleet.reconcile_summary: wrote {path}")
