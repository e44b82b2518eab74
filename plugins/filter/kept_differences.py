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
  kept:
    description:
      - What the role keeps, one entry per path or per group of paths kept alike. Each entry has C(path) (one)
        or C(paths) (a list); C(mode) (four octal digits, required); C(type) (V(file), the default, or
        V(directory)); C(owner) and C(group) (default V(root)); and, for files, the content's SHA-256 as
        C(checksum) (C(checksums) for C(paths), in the same order), or the controller's file it is a copy of as
        C(source) (C(sources)), hashed here.
      - One call for all of a role's paths, so that the look is read once.
    type: list
    elements: dict
    required: true
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
      {{ look.files | vmcloud.fleet.kept_differences([
           {'path': '/etc/vmcloud/trust/anchors', 'type': 'directory', 'mode': '0755'},
           {'paths': anchors | map('basename') | map('regex_replace', '^', '/etc/vmcloud/trust/anchors/') | list,
            'mode': '0644', 'sources': anchors}]) }}
"""

RETURN = r"""
_value:
  description: The kept paths that differ on the host, in the order given.
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


def with_checksums(kept):
    """kept with each C(source)/C(sources) replaced by the SHA-256 of the controller's file(s)."""
    if not isinstance(kept, list):
        raise AnsibleFilterError(f"kept_differences: kept is a list of entries, got {kept!r}")
    hashed = []
    for entry in kept:
        contents = [key for key in ("checksum", "checksums", "source", "sources") if key in entry] \
            if isinstance(entry, dict) else []
        if len(contents) > 1:
            raise AnsibleFilterError(f"kept_differences: {entry!r}: a file's content is one checksum or one source")
        if contents == ["source"]:
            entry = {**entry, "checksum": _sha256(entry["source"])}
            del entry["source"]
        elif contents == ["sources"]:
            entry = {**entry, "checksums": [_sha256(path) for path in entry["sources"]]}
            del entry["sources"]
        hashed.append(entry)
    return hashed


def kept_differences(found, kept):
    if not isinstance(found, dict):
        raise AnsibleFilterError("kept_differences: the input is host_state_info's files (a dict keyed by path)")
    # Imported here, not at load: Ansible loads every filter file in each task's worker.
    from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError
    from ansible_collections.vmcloud.fleet.plugins.module_utils._host_state import kept_differences as compare

    try:
        return compare(found, with_checksums(kept))
    except VmcloudError as exc:
        raise AnsibleFilterError(f"kept_differences: {exc}") from exc


class FilterModule:
    def filters(self):
        return {"kept_differences": kept_differences}
