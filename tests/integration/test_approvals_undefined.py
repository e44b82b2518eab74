# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mass-deletion guard's first half, with real ansible-playbook runs on localhost: an undefined
vmcloud_approved_images is an error naming the variable (approvals-undefined) in the hypervisor role,
the vmic_agent role and playbooks/plan.yml, never "approve nothing"; an explicit [] is allowed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.sync_world import World

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK_BIN = Path(sys.executable).parent / "ansible-playbook"
ROLE_PLAY = """\
- name: Converge
  hosts: localhost
  gather_facts: false
  roles:
    - role: vmcloud.fleet.{role}
"""
MESSAGE = "approvals-undefined: vmcloud_approved_images is not defined for this host"


def playbook(tmp_path: Path, play: Path, *extra: str, **variables) -> subprocess.CompletedProcess:
    (tmp_path / "vars.json").write_text(json.dumps({"ansible_python_interpreter": sys.executable, **variables}))
    return subprocess.run(
        [str(PLAYBOOK_BIN) if PLAYBOOK_BIN.exists() else "ansible-playbook", "-i", "localhost,", "-c", "local",
         str(play), "-e", f"@{tmp_path / 'vars.json'}", *extra],
        cwd=REPO, env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1"),
        capture_output=True, text=True, timeout=300, check=False,
    )


def snapshot(directory: Path) -> dict:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def world(tmp_path) -> World:
    world = World(tmp_path / "world")
    world.publish("alma", 9)
    world.write_index(1)
    return world


def role_variables(world: World, tmp_path: Path) -> dict:
    host = tmp_path / "host"
    return {
        "vmcloud_index_url": str(world.index_path),
        "vmcloud_trust_anchors": [str(world.root / "trust" / "ca.pem")],
        "hypervisor_trust_dir": str(host / "trust"), "hypervisor_store_dir": str(host / "images"),
        "hypervisor_staging_dir": str(host / "staging"), "hypervisor_torrent_dir": str(host / "torrents"),
        "hypervisor_index_state_dir": str(host / "index"), "hypervisor_disabled_flag": str(host / "disabled"),
    }


@pytest.mark.parametrize("role", ["hypervisor", "vmic_agent"])
def test_a_role_refuses_undefined_approvals_naming_the_variable(world, tmp_path, role):
    play = tmp_path / "play.yml"
    play.write_text(ROLE_PLAY.format(role=role))
    done = playbook(tmp_path, play, "--check", **role_variables(world, tmp_path))
    assert done.returncode != 0
    assert MESSAGE in done.stdout and "an explicit [] approves nothing" in done.stdout, done.stdout[-3000:]
    assert not (tmp_path / "host").exists()


def test_the_hypervisor_role_accepts_an_explicit_empty_list(world, tmp_path):
    play = tmp_path / "play.yml"
    play.write_text(ROLE_PLAY.format(role="hypervisor"))
    done = playbook(tmp_path, play, "--check", vmcloud_approved_images=[], **role_variables(world, tmp_path))
    assert done.returncode == 0, done.stdout[-3000:]
    assert "approvals-undefined" not in done.stdout


def test_plan_refuses_undefined_approvals(world, tmp_path):
    variables = {"vmcloud_plan_hosts": "localhost", "vmcloud_index_url": str(world.index_path),
                 "vmcloud_trust_anchors": [str(world.root / "trust" / "ca.pem")],
                 "vmcloud_lab_state_dir": str(tmp_path / "state")}
    done = playbook(tmp_path, REPO / "playbooks" / "plan.yml", **variables)
    assert done.returncode != 0 and MESSAGE in done.stdout, done.stdout[-3000:]
    done = playbook(tmp_path, REPO / "playbooks" / "plan.yml", **variables, vmcloud_approved_images=[])
    assert done.returncode == 0, done.stdout[-3000:]
