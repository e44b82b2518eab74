# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One place for host settings: a site-wide vmcloud_* variable set once in the inventory moves the
setting for every role alike (issue 9).

A real ansible-playbook on localhost (connection local) lists the roles in its play, so that Ansible
loads their defaults and their dependency on vmcloud.fleet.vmcloud as in site.yml (their tasks are
skipped), then renders what each role hands to the host: the arguments of the hypervisor role's
image_sync task (read from roles/hypervisor/tasks/image_sync.yml), the VMIC agent's imgdist.yml (read back
with imgdist's own loader, as the timer reads it), its libvirt hook and sync unit, and the unit and
rtorrent.rc of the rtorrent role and the unit of the libtorrent_seeder role.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from ansible_collections.vmcloud.fleet.plugins.module_utils._imgdist_config import load_config, options_from
from tests.integration.conftest import REPO, run_local_play

ROLES = ("hypervisor", "vmic_agent", "rtorrent", "libtorrent_seeder")
# (role, template, output file)
TEMPLATES = (
    ("vmic_agent", "imgdist.yml.j2", "imgdist.yml"),
    ("vmic_agent", "libvirt-qemu-hook.j2", "qemu-hook"),
    ("vmic_agent", "vmcloud-imgdist-sync.service.j2", "imgdist-sync.service"),
    ("rtorrent", "rtorrent.rc.j2", "rtorrent.rc"),
    ("rtorrent", "rtorrent.service.j2", "rtorrent.service"),
    ("libtorrent_seeder", "vmcloud-seeder.service.j2", "vmcloud-seeder.service"),
)
# What imgdist (the timer, the hook) and the hypervisor role's image_sync task both take, by the
# library's option name: each must be the same value from the same vmcloud_* settings.
SHARED_OPTIONS = ("store_dir", "staging_dir", "torrent_dir", "state_dir", "engine", "socket", "download_timeout",
                  "max_bytes", "high_watermark_percent", "push_dir", "push_user", "endorser_pins", "threshold")


def sync_task_arguments() -> dict:
    """The vmcloud.fleet.image_sync arguments of the hypervisor role, as written in its task file."""
    tasks = yaml.safe_load((REPO / "roles" / "hypervisor" / "tasks" / "image_sync.yml").read_text())
    calls = [task["vmcloud.fleet.image_sync"] for task in tasks if "vmcloud.fleet.image_sync" in task]
    assert len(calls) == 1, "roles/hypervisor/tasks/image_sync.yml should call vmcloud.fleet.image_sync once"
    return calls[0]


def render(tmp_path: Path, hosts: dict) -> dict:
    """Run the play once for ``hosts`` ({name: the inventory's variables}); return, per host, what the
    roles would write."""
    arguments = {key: value.replace("default(omit", "default(none") for key, value in sync_task_arguments().items()
                 if key in SHARED_OPTIONS}  # default(omit): the module's default, none for the quota
    out = str(tmp_path) + "/{{ inventory_hostname }}"
    tasks = [{"name": "Output directory", "ansible.builtin.file": {"path": out, "state": "directory", "mode": "0755"}},
             {"name": "The hypervisor role's image_sync arguments", "ansible.builtin.copy": {
                 "content": "{{ _image_sync_arguments | to_json }}", "dest": out + "/image_sync.json", "mode": "0644"},
              "vars": {"_image_sync_arguments": arguments}}]
    tasks += [{"name": f"{role}: {src}", "ansible.builtin.template": {
        "src": str(REPO / "roles" / role / "templates" / src), "dest": f"{out}/{dest}", "mode": "0644"}}
        for role, src, dest in TEMPLATES]
    play = [{"name": "The roles as site.yml applies them, their tasks skipped", "hosts": "all",
             "gather_facts": False, "vars": {"ansible_managed": "test"},
             "roles": [{"role": f"vmcloud.fleet.{role}", "when": False} for role in ROLES],
             "tasks": tasks}]
    common = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
              "vmcloud_index_url": "https://catalogue.example/index.yaml", "vmcloud_trust_anchors": [],
              "vmcloud_approved_images": []}
    run_local_play(tmp_path, play, {"all": {"vars": common, "hosts": hosts}})
    found = {}
    for host in hosts:
        files = {dest: (tmp_path / host / dest).read_text() for _role, _template, dest in TEMPLATES}
        found[host] = {"image_sync": json.loads((tmp_path / host / "image_sync.json").read_text()),
                       "imgdist": load_config(str(tmp_path / host / "imgdist.yml"), required=True), **files}
    return found


def python_constant(script: str, name: str) -> object:
    found = re.search(rf"^{name} = (.+?)(?:  #.*)?$", script, re.MULTILINE)
    assert found, f"{name} is not set in the hook"
    return json.loads(found.group(1))


def read_write_paths(unit: str) -> list:
    return [line.split("=", 1)[1].lstrip("-") for line in unit.splitlines() if line.startswith("ReadWritePaths=")]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> dict:
    """hv01: only the site-wide settings set (a site's store, staging directory and quota); hv02: none;
    hv03: the site-wide store and the agent's own variable beside it."""
    return render(tmp_path_factory.mktemp("fleet"), {
        "hv01": {"vmcloud_store_dir": "/srv/vm/images", "vmcloud_staging_dir": "/srv/vm/staging",
                 "vmcloud_store_max_bytes": 500_000_000_000, "vmcloud_store_high_watermark_percent": 85},
        "hv02": {},
        "hv03": {"vmcloud_store_dir": "/srv/vm/images", "vmic_agent_store_dir": "/srv/agent/images"},
    })


@pytest.fixture(scope="module")
def moved(fleet) -> dict:
    return fleet["hv01"]


def test_vmcloud_store_dir_alone_moves_the_store_for_the_role_the_timer_and_the_hook(moved):
    assert moved["image_sync"]["store_dir"] == "/srv/vm/images"
    assert moved["imgdist"]["store_dir"] == "/srv/vm/images"
    # The hook guards the store of the imgdist.yml it reads, and falls back to the same one.
    assert python_constant(moved["qemu-hook"], "CONFIG") == "/etc/vmcloud/imgdist.yml"
    assert python_constant(moved["qemu-hook"], "FALLBACK_STORE_DIR") == "/srv/vm/images"
    assert "/srv/vm/images" in read_write_paths(moved["imgdist-sync.service"])
    assert "/var/lib/vmcloud/images" not in read_write_paths(moved["imgdist-sync.service"])


def test_vmcloud_staging_dir_moves_the_engines_data_dir(moved):
    assert "directory.default.set = /srv/vm/staging" in moved["rtorrent.rc"].splitlines()
    assert read_write_paths(moved["rtorrent.service"]) == ["/srv/vm/staging"]
    assert read_write_paths(moved["vmcloud-seeder.service"]) == ["/srv/vm/staging"]
    assert moved["image_sync"]["staging_dir"] == "/srv/vm/staging"
    assert moved["imgdist"]["staging_dir"] == "/srv/vm/staging"


def test_the_timer_gets_the_quota_the_ansible_run_applies(moved):
    timer = options_from(moved["imgdist"])
    assert (timer["max_bytes"], timer["high_watermark_percent"]) == (500_000_000_000, 85)
    assert int(moved["image_sync"]["max_bytes"]) == 500_000_000_000
    assert int(moved["image_sync"]["high_watermark_percent"]) == 85


def test_the_timer_and_the_ansible_run_sync_with_the_same_settings(moved):
    timer = options_from(moved["imgdist"])
    run = moved["image_sync"]
    for option in SHARED_OPTIONS:
        assert option in run, f"the hypervisor role's image_sync task does not pass {option}"
        value = run[option]
        expected = timer[option]
        if isinstance(expected, int) and isinstance(value, str):
            value = int(value)
        assert value == expected, f"{option}: the Ansible run passes {value!r}, the timer reads {expected!r}"


def test_defaults_without_site_settings(fleet):
    """No quota unless the site sets one; the documented default directories."""
    found = fleet["hv02"]
    assert found["imgdist"]["store_dir"] == found["image_sync"]["store_dir"] == "/var/lib/vmcloud/images"
    assert (found["imgdist"]["max_bytes"], found["imgdist"]["high_watermark_percent"]) == (None, None)
    assert (found["image_sync"]["max_bytes"], found["image_sync"]["high_watermark_percent"]) == (None, None)
    assert read_write_paths(found["rtorrent.service"]) == ["/var/lib/vmcloud/staging"]


def test_a_role_variable_still_wins_for_its_role(fleet):
    found = fleet["hv03"]
    assert found["image_sync"]["store_dir"] == "/srv/vm/images"
    assert found["imgdist"]["store_dir"] == "/srv/agent/images"
