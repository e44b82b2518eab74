# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""execution-environment.yml: its pins are requirements.txt's, and ansible-builder (pinned there too)
accepts it and writes a build context (no image is built: these machines cannot pull a base image)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
EE_FILE = REPO / "execution-environment.yml"


def pins(lines) -> dict[str, str]:
    found = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            found[name.split("[", 1)[0].strip().lower()] = version.strip()
    return found


def ee_pins() -> dict[str, str]:
    dependencies = yaml.safe_load(EE_FILE.read_text())["dependencies"]
    return pins([*dependencies["python"], dependencies["ansible_core"]["package_pip"],
                 dependencies["ansible_runner"]["package_pip"]])


def test_every_python_pin_of_the_execution_environment_is_the_projects():
    project = pins((REPO / "requirements.txt").read_text().splitlines())
    ee = ee_pins()
    assert {"ansible-core", "ansible-runner", "cryptography", "pyyaml", "jmespath", "fastbencode"} <= set(ee)
    assert {name: project.get(name) for name in ee} == ee


def test_ansible_builder_writes_a_build_context_that_enables_the_run_summary(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "ansible_builder", "create", "-f", str(EE_FILE), "-c", str(tmp_path / "context")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    containerfile = (tmp_path / "context" / "Containerfile").read_text()
    assert 'ARG ANSIBLE_INSTALL_REFS="ansible-core==2.19.14 ansible-runner==2.4.3"' in containerfile
    assert "ENV ANSIBLE_CALLBACKS_ENABLED=vmcloud.fleet.reconcile_summary" in containerfile
    python = pins((tmp_path / "context" / "_build" / "requirements.txt").read_text().splitlines())
    assert python == {name: version for name, version in ee_pins().items()
                      if name not in ("ansible-core", "ansible-runner")}
    system = (tmp_path / "context" / "_build" / "bindep.txt").read_text()
    assert "openssh-clients [platform:rpm]" in system
