# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The text tables of playbooks/report.yml and playbooks/plan.yml line up whatever their cells hold.

A real ansible-playbook on localhost (connection local) renders playbooks/templates/report_table.j2
and plan_table.j2 as the playbooks do (``lookup('ansible.builtin.template', ...)``), from host
variables shaped as the playbooks register them (image_store_info's ``images``, the plan's
``vmcloud_plan_index`` and ``vmcloud_plan_selection``), with an image uuid far longer than a
36-character uuid and a long host name.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.integration.conftest import REPO, run_local_play

LONG_UUID = "cern-it-alma9-x86_64-2026-12-03-build-4711-hardened-b1946ac9-2fb8-4c06-9b9d-0c7e6a1f2e3d"
SHORT_UUID = "slc5"
LONG_HOST = "hypervisor-with-a-long-name-17"


def image(uuid: str, size: int, state: str) -> dict:
    return {"uuid": uuid, "path": f"/var/lib/vmcloud/images/{uuid}.qcow2", "size": size, "state": state,
            "sha256": "ab" * 32}


def render(tmp_path: Path, template: str, hosts: dict) -> list:
    """The lines ``template`` renders for ``hosts`` ({name: host variables})."""
    out = tmp_path / "table.txt"
    play = [{"name": "Render a table", "hosts": "all", "gather_facts": False, "tasks": [{
        "name": "Render", "run_once": True, "ansible.builtin.copy": {
            "content": "{{ lookup('ansible.builtin.template', '" + str(REPO / "playbooks" / "templates" / template)
                       + "') }}", "dest": str(out), "mode": "0644"}}]}]
    common = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    run_local_play(tmp_path, play, {"all": {"vars": common, "hosts": hosts}})
    return [line for line in out.read_text().splitlines() if line]


def column_starts(line: str, cells: list) -> list:
    """Where each of ``cells`` begins in ``line``, searched left to right."""
    starts, position = [], 0
    for cell in cells:
        position = line.index(cell, position)
        starts.append(position)
        position += len(cell)
    return starts


def test_report_table_lines_up_a_long_uuid(tmp_path):
    hosts = {
        "hv1": {"vmcloud_report_store": {"images": [image(LONG_UUID, 21474836480, "verified"),
                                                    image(SHORT_UUID, 7, "changed")]}},
        LONG_HOST: {"vmcloud_report_store": {"images": [image(SHORT_UUID, 1048576, "verified")]}},
        "hv3": {"vmcloud_report_store": {"images": []}},
    }
    header, *rows = render(tmp_path, "report_table.j2", hosts)
    assert header.split() == ["host", "image", "file", "bytes", "state", "sha256"]
    expected = [
        ("hv1", LONG_UUID, f"{LONG_UUID}.qcow2", "21474836480", "verified"),
        ("hv1", SHORT_UUID, f"{SHORT_UUID}.qcow2", "7", "changed"),
        (LONG_HOST, SHORT_UUID, f"{SHORT_UUID}.qcow2", "1048576", "verified"),
    ]
    assert len(rows) == 4 and rows[3].split(None, 1) == ["hv3", "(no images)"]
    starts = column_starts(header, ["host", "image", "file", "bytes", "state", "sha256"])
    bytes_end = starts[3] + len("bytes")
    for row, cells in zip(rows[:3], expected, strict=True):
        found = column_starts(row, [*cells, "abababababababab"])
        # Text columns start where their heading does; the byte counts end where "bytes" ends.
        assert [found[0], found[1], found[2], found[4], found[5]] == [starts[0], starts[1], starts[2], starts[4],
                                                                      starts[5]], row
        assert found[3] + len(cells[3]) == bytes_end, row
        assert row.endswith("abababababababab")
    assert rows[3].index("(no images)") == starts[1]


def test_plan_table_lines_up_long_uuids_and_host_names(tmp_path):
    def selection(desired: list, not_approved: list) -> dict:
        return {"desired_uuids": desired, "not_approved": not_approved, "not_targeted": [], "blocked": [],
                "not_endorsed": []}

    index = {"url": "https://catalogue.example/index.yaml", "version": 7, "expires": "2027-01-01T00:00:00Z",
             "signers": [{"subject": "CN=cern-it"}]}
    hosts = {
        "hv1": {"vmcloud_plan_index": index, "vmcloud_plan_selection": selection([LONG_UUID, SHORT_UUID], [])},
        LONG_HOST: {"vmcloud_plan_index": index, "vmcloud_plan_selection": selection([], [LONG_UUID])},
    }
    title, header, *rows = render(tmp_path, "plan_table.j2", hosts)
    assert title.startswith("index https://catalogue.example/index.yaml version 7")
    starts = column_starts(header, ["host", "desired images", "left out (why)"])
    assert column_starts(rows[0], ["hv1", f"{LONG_UUID}, {SHORT_UUID}", "-"]) == starts, rows[0]
    assert column_starts(rows[1], [LONG_HOST, "-", f"{LONG_UUID} (not approved)"]) == starts, rows[1]
