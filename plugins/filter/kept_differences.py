# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: kept_differences
short_description: Which of the paths a role keeps differ on a host from what the role keeps them as
version_added: 0.1.0
description:
  - Compares what M(vmcloud.fleet.host_state_info) found on a host (its RV(vmcloud.fleet.host_state_info#module:files))
    with what a role keeps there, and returns the paths that differ - missing, another type, mode, owner or
    group, or, for files, another content - in the order given. A role runs its writing tasks for those paths
    only, and none at all on a host where the list is empty.
  - Content is compared by SHA-256, against O(checksums) or against the controller's files O(sources), which are
    hashed here, on the controller, once per call.
author:
  - vmcloud team (@vmcloud)
options:
  _input:
    description: What the look found, keyed by path (V(host_state_info.files)).
    type: dict
    required: true
  paths:
    description: The paths the role keeps, all with the same O(mode), O(owner) and O(group).
    type: list
    elements: path
    required: true
  type:
    description: What each path is.
    type: str
    choices: [directory, file]
    default: file
  mode:
    description: Permission bits as four octal digits.
    type: str
    required: true
  owner:
    description: Owner's name.
    type: str
    default: root
  group:
    description: Group's name.
    type: str
    default: root
  sources:
    description: For files, the controller's file each path is a copy of (as many as O(paths), in the same
      order); its SHA-256 is what the host's file must have.
    type: list
    elements: path
  checksums:
    description: For files, the SHA-256 each path must have (as many as O(paths), in the same order).
    type: list
    elements: str
"""

EXAMPLES = r"""
- name: Copy only the anchors whose copy on the host differs
  ansible.builtin.copy:
    src: "{{ item }}"
    dest: /etc/vmcloud/trust/anchors/{{ item | basename }}
    mode: "0644"
  loop: "{{ anchors }}"
  when: ('/etc/vmcloud/trust/anchors/' ~ item | basename) in differing
  vars:
    differing: >-
      {{ look.files | vmcloud.fleet.kept_differences(anchors | map('basename') | map('regex_replace', '^',
         '/etc/vmcloud/trust/anchors/') | list, mode='0644', sources=anchors) }}
"""

RETURN = r"""
_value:
  description: The paths of O(paths) that differ on the host, in the order given.
  type: list
  elements: str
"""

import hashlib

from ansible.errors import AnsibleFilterError


def _sha256(path):
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise AnsibleFilterError(f"kept_differences: cannot read the controller's {path}: {exc}") from exc
    return digest.hexdigest()


def kept_differences(found, paths, mode, type="file", owner="root", group="root", sources=None, checksums=None):
    if not isinstance(found, dict):
        raise AnsibleFilterError("kept_differences: the input is host_state_info's files (a dict keyed by path)")
    if sources is not None and checksums is not None:
        raise AnsibleFilterError("kept_differences: give sources or checksums, not both")
    wanted_sums = checksums
    if sources is not None:
        wanted_sums = [_sha256(source) for source in sources]
    if wanted_sums is not None and (type != "file" or len(wanted_sums) != len(paths)):
        raise AnsibleFilterError("kept_differences: sources or checksums are for files, one for each path")
    differing = []
    for index, path in enumerate(paths):
        entry = found.get(path)
        if (entry is None or not entry.get("isdir" if type == "directory" else "isreg")
                or entry.get("mode") != mode or entry.get("pw_name") != owner or entry.get("gr_name") != group
                or (wanted_sums is not None and entry.get("checksum") != wanted_sums[index])):
            differing.append(path)
    return differing


class FilterModule:
    def filters(self):
        return {"kept_differences": kept_differences}
