# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: trust_store_changes
short_description: What the trust_store role would write and remove on a host
version_added: 0.1.0
description:
  - The role vmcloud.fleet.trust_store's comparison, in one place for the role and for a caller that decides
    whether to include it at all (the hypervisor role, from its own look at the host).
  - The role keeps O(trust_dir)C(/anchors) and O(trust_dir)C(/crl) as directories (root, C(0755)), each anchor
    and each CRL as a copy of the controller's file (root, C(0644)), and the files of the CRLs the host fetches
    (O(crl_urls)) without writing them. A regular file directly in C(anchors/) or C(crl/) that none of these
    names is withdrawn.
  - Refuses an entry of O(crl_urls) whose C(url) is not C(http://) or C(https://), or whose C(name) is not a
    plain file name ending in C(.crl) or C(.pem).
author:
  - vmcloud team (@vmcloud)
options:
  _input:
    description:
      - What M(vmcloud.fleet.host_state_info) found under O(trust_dir) (its
        RV(vmcloud.fleet.host_state_info#module:files)).
    type: dict
    required: true
  trust_dir:
    description: The trust store's directory on the host.
    type: str
    required: true
  anchors:
    description: The controller's CA certificate files.
    type: list
    elements: path
    required: true
  crls:
    description: The controller's CRL files.
    type: list
    elements: path
    required: true
  crl_urls:
    description: The CRLs the host fetches itself, C({url, name}) each.
    type: list
    elements: dict
    default: []
"""

EXAMPLES = r"""
- name: Install the trust store only where it differs
  ansible.builtin.include_role:
    name: vmcloud.fleet.trust_store
  when: changes.differing or changes.withdrawn
  vars:
    changes: >-
      {{ look.files | vmcloud.fleet.trust_store_changes(trust_dir='/etc/vmcloud/trust', anchors=anchors, crls=crls) }}
"""

RETURN = r"""
_value:
  description: What differs.
  type: dict
  contains:
    differing:
      description: The kept paths that are missing or differ on the host (directories first), to write.
      type: list
      elements: str
    withdrawn:
      description: Regular files directly in C(anchors/) and C(crl/) that nothing keeps any more, to remove.
      type: list
      elements: str
"""

import os
import re

from ansible.errors import AnsibleFilterError

from ansible_collections.vmcloud.fleet.plugins.filter.kept_differences import kept_differences, with_checksums

_URL = re.compile(r"^https?://[^/\s]+")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.(crl|pem)$")


def _fetched_names(crl_urls):
    for entry in crl_urls:
        if not (isinstance(entry, dict) and _URL.match(str(entry.get("url", "")))
                and _NAME.match(str(entry.get("name", "")))):
            raise AnsibleFilterError(
                "trust_store_crl_urls entries need url (http:// or https://) and name (a plain file name ending "
                f"in .crl or .pem), got {entry!r}")
    return [entry["name"] for entry in crl_urls]


def trust_store_layout(trust_dir, anchors, crls, crl_urls=()):
    """What the trust_store role keeps: C(kept), entries in the shape of kept_differences with the controller's
    files hashed, and C(only), the two directories whose regular files are the role's (any other is withdrawn)."""
    fetched = _fetched_names(crl_urls or [])
    anchors_dir, crl_dir = f"{trust_dir}/anchors", f"{trust_dir}/crl"
    kept = with_checksums([
        {"paths": [anchors_dir, crl_dir], "type": "directory", "mode": "0755"},
        {"paths": [f"{anchors_dir}/{os.path.basename(a)}" for a in anchors], "mode": "0644", "sources": list(anchors)},
        {"paths": [f"{crl_dir}/{os.path.basename(c)}" for c in crls], "mode": "0644", "sources": list(crls)},
    ])
    # A name any option keeps is withdrawn from neither directory.
    names = sorted({os.path.basename(path) for path in list(anchors) + list(crls)} | set(fetched))
    return {"kept": kept, "only": [{"dir": anchors_dir, "names": names}, {"dir": crl_dir, "names": names}]}


def trust_store_changes(found, trust_dir, anchors, crls, crl_urls=()):
    from ansible_collections.vmcloud.fleet.plugins.module_utils._host_state import not_kept

    layout = trust_store_layout(trust_dir, anchors, crls, crl_urls)
    return {"differing": kept_differences(found, layout["kept"]), "withdrawn": not_kept(found, layout["only"])}


class FilterModule:
    def filters(self):
        return {"trust_store_changes": trust_store_changes, "trust_store_layout": trust_store_layout}
