# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run-summary callback under ansible-runner, as AWX runs a job: a private data directory with
env/envvars enabling vmcloud.fleet.reconcile_summary, the real image_store module on a store in a
temporary directory (localhost), and the JSON artifact read back from artifacts/<ident>/.

The same callback on the lab's hosts with playbooks/reconcile.yml is checked in
molecule/reconcile/verify.yml."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]

PLAYBOOK = """\
- name: Reconcile a store on the controller
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Report what nobody declared
      vmcloud.fleet.image_store:
        path: "{{ store }}"
        desired: []
        unknown: "{{ unknown_policy }}"
"""


def run(private: Path, ident: str, unknown_policy: str) -> tuple[subprocess.CompletedProcess, Path]:
    (private / "env" / "extravars").write_text(yaml.safe_dump({"unknown_policy": unknown_policy}))
    completed = subprocess.run(
        [sys.executable, "-m", "ansible_runner", "run", str(private), "--ident", ident, "-p", "summary.yml"],
        capture_output=True, text=True, timeout=300, check=False,
        env={key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")},
    )
    return completed, private / "artifacts" / ident


def test_the_callback_writes_the_summary_into_the_runner_artifacts(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (store / "stray.img").write_text("stray\n")
    private = tmp_path / "runner"
    (private / "project").mkdir(parents=True)
    (private / "env").mkdir()
    (private / "project" / "summary.yml").write_text(PLAYBOOK)
    (private / "inventory").mkdir()
    (private / "inventory" / "hosts").write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable} store={store}\n")
    (private / "env" / "envvars").write_text(yaml.safe_dump({
        "ANSIBLE_CALLBACKS_ENABLED": "vmcloud.fleet.reconcile_summary",
        "ANSIBLE_COLLECTIONS_PATH": str(REPO / "collections"),
    }))

    reported, artifacts = run(private, "report", "report")
    assert reported.returncode == 0, reported.stdout + reported.stderr
    assert (artifacts / "status").read_text() == "successful"
    summary = json.loads((artifacts / "vmcloud_reconcile_summary.json").read_text())
    assert summary["format"] == "vmcloud.fleet.reconcile_summary/1"
    assert summary["playbook"] == "summary.yml"
    assert summary["ok"] is True
    assert summary["hosts"]["localhost"]["unknown"] == [str(store / "stray.img")]
    assert summary["hosts"]["localhost"]["changed"] is False

    removed, artifacts = run(private, "remove", "remove")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    host = json.loads((artifacts / "vmcloud_reconcile_summary.json").read_text())["hosts"]["localhost"]
    assert (host["status"], host["removed"]) == ("skipped", [str(store / "stray.img")])
    assert not (store / "stray.img").exists()
