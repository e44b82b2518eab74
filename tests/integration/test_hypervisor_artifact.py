# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The hypervisor artifact as the vmic_agent role installs it: a real ansible-playbook run.

The lookup vmcloud.fleet.hypervisor_artifact builds the file on the controller, the role's copy
task installs it with the role's validate: (``--self-check`` by Debian's python3), and a second
run changes nothing. ``make artifact`` (tools/build-artifact) makes the same bytes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TASKS = yaml.safe_load((REPO / "roles" / "vmic_agent" / "tasks" / "install.yml").read_text())
# The role's one look at what it keeps (the copy runs only where the installed file differs).
CHECK = yaml.safe_load((REPO / "roles" / "vmic_agent" / "tasks" / "check.yml").read_text())
ROLE_VARS = yaml.safe_load((REPO / "roles" / "vmic_agent" / "vars" / "main.yml").read_text())


def playbook(path: Path, tasks: list) -> Path:
    path.write_text(yaml.safe_dump([{"name": "Artifact", "hosts": "localhost", "gather_facts": False,
                                     "vars_files": [str(REPO / "roles" / "vmic_agent" / "defaults" / "main.yml"),
                                                    str(REPO / "roles" / "vmic_agent" / "vars" / "main.yml")],
                                     "tasks": tasks}]))
    return path


def run_playbook(path: Path, tmp_path: Path, **variables) -> subprocess.CompletedProcess:
    (tmp_path / "vars.json").write_text(json.dumps({"ansible_python_interpreter": sys.executable, **variables}))
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(path),
         "-e", f"@{tmp_path / 'vars.json'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
        env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                 ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
                 VMCLOUD_ARTIFACT_CACHE_DIR=str(tmp_path / "cache")))


def results(done: subprocess.CompletedProcess) -> list:
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return [task["hosts"]["localhost"] for task in json.loads(done.stdout)["plays"][0]["tasks"]]


def test_the_role_installs_the_artifact_once_and_a_second_run_changes_nothing(tmp_path):
    copy = next(task for task in TASKS if task.get("name") == "Install the hypervisor artifact")
    copy_args = {k: v for k, v in copy["ansible.builtin.copy"].items() if k not in ("owner", "group")}
    copy = {**copy, "ansible.builtin.copy": copy_args}
    copy.pop("notify")
    dest = tmp_path / "lib" / "vmcloud-hypervisor.pyz"
    dest.parent.mkdir()
    book = playbook(tmp_path / "install.yml", [*CHECK, copy])
    variables = {"_vmic_agent_artifact_path": str(dest), "_vmic_agent_python": ROLE_VARS["_vmic_agent_python"]}

    first = results(run_playbook(book, tmp_path, **variables))[1:]
    assert first[0]["changed"] is True
    built = sorted((tmp_path / "cache").glob("*/vmcloud-hypervisor-*.pyz"))
    assert len(built) == 1 and dest.read_bytes() == built[0].read_bytes()
    assert oct(dest.stat().st_mode & 0o777) == "0o644"

    second = results(run_playbook(book, tmp_path, **variables))[1:]
    assert second[0]["changed"] is False
    assert sorted((tmp_path / "cache").glob("*/*")) == built

    done = subprocess.run([sys.executable, str(REPO / "tools" / "build-artifact"), "--output", str(tmp_path / "dist")],
                          capture_output=True, text=True, timeout=120, check=True)
    made = tmp_path / "dist" / built[0].name
    assert done.stdout.startswith(f"{made} sha256 {built[0].parent.name}")
    assert made.read_bytes() == dest.read_bytes()


def test_a_file_that_fails_the_self_check_is_not_installed(tmp_path):
    copy = next(task for task in TASKS if task.get("name") == "Install the hypervisor artifact")
    settings = {k: v for k, v in copy["ansible.builtin.copy"].items() if k not in ("owner", "group")}
    dest = tmp_path / "vmcloud-hypervisor.pyz"
    dest.write_bytes(b"the installed one")
    bad = tmp_path / "bad.pyz"
    bad.write_bytes(b"#!/usr/bin/python3\nnot a zip\n")
    book = playbook(tmp_path / "install.yml", [{"name": "Install", "ansible.builtin.copy": settings,
                                                "ignore_errors": True}])
    result = results(run_playbook(book, tmp_path, vmic_agent_artifact=str(bad), _vmic_agent_artifact_path=str(dest),
                                  _vmic_agent_python=ROLE_VARS["_vmic_agent_python"]))[0]
    assert result["failed"] is True and "failed to validate" in result["msg"]
    assert dest.read_bytes() == b"the installed one"


def test_the_lookup_takes_no_terms(tmp_path):
    book = playbook(tmp_path / "lookup.yml", [{"name": "Lookup", "ansible.builtin.debug": {
        "msg": "{{ lookup('vmcloud.fleet.hypervisor_artifact', 'x') }}"}, "ignore_errors": True}])
    result = results(run_playbook(book, tmp_path))[0]
    assert result["failed"] is True
    assert "option-invalid: vmcloud.fleet.hypervisor_artifact takes no terms" in result["msg"]
