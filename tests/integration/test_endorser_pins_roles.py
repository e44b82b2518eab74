# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``endorser_pins`` (pins naming the subject and the issuing CA) reach every verifier the roles run.

ansible-playbook on localhost renders, with ``vmcloud_endorser_pins`` set and each role's own
defaults loaded: the ``endorser_pins`` argument of every task that verifies the index (hypervisor's
image_sync, opentracker's and image_catalogue's image_index, playbooks/plan.yml), and the
vmic_agent role's imgdist.yml, validated by ``imgdist config-check`` as the role validates it. A
role variable set on its own wins over the fleet-wide one; unset, the pins default to none.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK_BIN = Path(sys.executable).parent / "ansible-playbook"
PINS = [{"subject": "CN=alice,O=CERN", "issuer": "CN=CERN Grid CA,O=CERN"}]
# (task file, module, the role whose defaults it reads, the role's own variable)
TASKS = [
    ("roles/hypervisor/tasks/image_sync.yml", "vmcloud.fleet.image_sync", "hypervisor", "hypervisor_endorser_pins"),
    ("roles/opentracker/tasks/whitelist.yml", "vmcloud.fleet.image_index", "opentracker",
     "opentracker_endorser_pins"),
    ("roles/image_catalogue/tasks/seed.yml", "vmcloud.fleet.image_index", "image_catalogue",
     "image_catalogue_endorser_pins"),
    ("playbooks/plan.yml", "vmcloud.fleet.image_index", None, None),
]


TRUST_GROUP = "group/vmcloud.fleet.trust"  # image_index and image_sync (meta/runtime.yml action_groups)


def module_calls(node, module, defaults=None):
    """Every argument mapping of ``module`` in a parsed task file or playbook (blocks and plays included),
    with what a play's or block's module_defaults for the trust group set beneath its own arguments."""
    defaults = defaults or {}
    if isinstance(node, list):
        for item in node:
            yield from module_calls(item, module, defaults)
    elif isinstance(node, dict):
        defaults = {**defaults, **(node.get("module_defaults") or {}).get(TRUST_GROUP, {})}
        if module in node:
            yield {**defaults, **node[module]}
        for key in ("block", "rescue", "always", "tasks"):
            yield from module_calls(node.get(key), module, defaults)


def playbook(tmp_path: Path, text: str, variables: dict) -> subprocess.CompletedProcess:
    # PYTHONPATH: the validate step runs the collection's imgdist from this checkout.
    (tmp_path / "play.yml").write_text(text)
    (tmp_path / "vars.json").write_text(json.dumps({"ansible_python_interpreter": sys.executable, **variables}))
    return subprocess.run(
        [str(PLAYBOOK_BIN) if PLAYBOOK_BIN.exists() else "ansible-playbook", "-i", "localhost,", "-c", "local",
         str(tmp_path / "play.yml"), "-e", f"@{tmp_path / 'vars.json'}"],
        cwd=REPO, env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                           PYTHONPATH=str(REPO / "collections")),
        capture_output=True, text=True, timeout=300, check=False,
    )


def rendered_pins(tmp_path: Path, variables: dict) -> dict:
    """{task file: endorser_pins as Ansible templates it} with each role's defaults loaded."""
    plays = []
    for path, module, role, _unused in TASKS:
        calls = list(module_calls(yaml.safe_load((REPO / path).read_text()), module))
        assert len(calls) == 1 and "endorser_pins" in calls[0], f"{path}: {module} does not pass endorser_pins"
        # the role's defaults read those of its dependency vmcloud.fleet.vmcloud (the site-wide settings),
        # which playbooks/plan.yml lists in its roles
        names = ("vmcloud", role) if role else ("vmcloud",)
        vars_files = [str(REPO / "roles" / name / "defaults" / "main.yml") for name in names]
        plays.append({"name": path, "hosts": "localhost", "gather_facts": False, "vars_files": vars_files,
                      "tasks": [{"name": "Render", "ansible.builtin.copy": {
                          "content": "{{ " + calls[0]["endorser_pins"].strip().removeprefix("{{").removesuffix(
                              "}}").strip() + " | to_json }}",
                          "dest": str(tmp_path / (path.replace("/", "_") + ".json"))}}]})
    done = playbook(tmp_path, yaml.safe_dump(plays), variables)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return {path: json.loads((tmp_path / (path.replace("/", "_") + ".json")).read_text()) for path, *_unused in TASKS}


def test_every_verifier_task_gets_the_fleet_pins(tmp_path):
    assert rendered_pins(tmp_path, {"vmcloud_endorser_pins": PINS}) == {path: PINS for path, *_unused in TASKS}


def test_without_pins_the_tasks_pin_nobody_and_a_role_variable_wins(tmp_path):
    assert rendered_pins(tmp_path, {}) == {path: [] for path, *_unused in TASKS}
    own = [{"subject": "CN=bob,O=CERN", "issuer": "CN=Other CA,O=CERN"}]
    found = rendered_pins(tmp_path, {"vmcloud_endorser_pins": PINS, **{var: own for *_unused, var in TASKS if var}})
    assert found == {path: (own if var else PINS) for path, _unused, _unused, var in TASKS}


@pytest.mark.parametrize("role", ["hypervisor", "opentracker", "image_catalogue", "vmic_agent"])
def test_the_role_variable_is_in_the_argument_specs(role):
    specs = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())
    option = specs["argument_specs"]["main"]["options"][f"{role}_endorser_pins"]
    assert (option["type"], option["elements"], option["default"]) == ("list", "dict", [])
    assert set(option["options"]) == {"subject", "issuer"}
    description = option["description"]
    assert "the CA that issued it" in " ".join(description if isinstance(description, list) else [description])
    defaults = yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text())
    assert defaults[f"{role}_endorser_pins"] == "{{ vmcloud_endorser_pins }}"
    site = yaml.safe_load((REPO / "roles" / "vmcloud" / "defaults" / "main.yml").read_text())
    assert site["vmcloud_endorser_pins"] == []


RENDER_AGENT = """\
- name: Render the vmic_agent role's imgdist.yml
  hosts: localhost
  gather_facts: false
  vars_files:
    - {role}/../vmcloud/defaults/main.yml
    - {role}/defaults/main.yml
    - {role}/vars/main.yml
  tasks:
    - name: The imgdist configuration, validated as imgdist reads it
      ansible.builtin.template:
        src: "{role}/templates/imgdist.yml.j2"
        dest: "{dest}"
        mode: "0644"
        validate: "{python} -m ansible_collections.vmcloud.fleet.plugins.module_utils._imgdist --config %s config-check"
"""


def test_the_agent_configuration_carries_the_pins(tmp_path):
    dest = tmp_path / "imgdist.yml"
    variables = {"vmcloud_index_url": "https://catalogue.example/index.yaml", "vmcloud_approved_images": [],
                 "vmic_agent_host": "hv1", "vmcloud_endorser_pins": PINS}
    play = RENDER_AGENT.format(role=REPO / "roles" / "vmic_agent", dest=dest, python=sys.executable)
    done = playbook(tmp_path, play, variables)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert yaml.safe_load(dest.read_text())["endorser_pins"] == PINS

    bad = [{"subject": "CN=alice,O=CERN"}]  # no issuer: refused by the role's validate, nothing written
    before = dest.read_bytes()
    done = playbook(tmp_path, play, {**variables, "vmcloud_endorser_pins": bad})
    assert done.returncode != 0 and "endorser_pins[0]" in done.stdout
    assert dest.read_bytes() == before
