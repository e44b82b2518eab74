# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: desired_images
short_description: The images a host should hold (endorsed, approved, targeted, not blocked)
version_added: 0.1.0
description:
  - Takes the verified images returned by M(vmcloud.fleet.image_index) and the site's approval
    variables, and returns the host's desired image set.
  - Uses the same selection library as the module and the C(imgdist) CLI.
  - With O(report=true), returns the whole selection (desired set and what was left out, and why).
author:
  - vmcloud team (@vmcloud)
options:
  _input:
    description: Verified images (the C(images) result of M(vmcloud.fleet.image_index)).
    type: list
    elements: dict
    required: true
  approved:
    description: The site's approved images (C(vmcloud_approved_images)).
    type: list
    elements: raw
    required: true
  blocked:
    description: Blocked images (C(vmcloud_blocked_images)).
    type: list
    elements: raw
    default: []
  rules:
    description: JMESPath approval rules (C(vmcloud_approval_rules)).
    type: list
    elements: str
    default: []
  host:
    description: Host name matched against image targets.
    type: str
    required: true
  subcluster:
    description: Subcluster of the host (C(vmcloud_subcluster)).
    type: str
  cluster:
    description: Cluster of the host (C(vmcloud_cluster)).
    type: str
  report:
    description: Return the whole selection report instead of the list of desired images.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Images that hv01 should hold
  ansible.builtin.debug:
    msg: >-
      {{ vmcloud_index.images | vmcloud.fleet.desired_images(
           approved=vmcloud_approved_images, host='hv01', subcluster='sc-a') | map(attribute='uuid') }}
"""

RETURN = r"""
_value:
  description: The desired images (normalised entries), sorted by name and version; or, with
    O(report=true), a mapping with C(desired), C(desired_uuids), C(not_endorsed), C(not_approved),
    C(not_targeted) and C(blocked).
  type: raw
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError

# The selection library (with the index's: cryptography, YAML) is imported where the filter runs, not when
# the plugin loads: Ansible loads every filter file of a collection in each task's worker, whenever a task
# names any vmcloud.fleet filter (filter fleet_report says more).


def desired_images(images, approved, blocked=None, rules=None, host=None, subcluster=None, cluster=None,
                   report=False):
    if not isinstance(images, list):
        raise AnsibleFilterError("desired_images: the input must be the list of verified images")
    if not host:
        raise AnsibleFilterError("desired_images: 'host' is required (usually inventory_hostname)")
    from ansible_collections.vmcloud.fleet.plugins.module_utils._index_service import selection_for

    options = {"approved": approved, "blocked": blocked, "rules": rules, "host": host,
               "subcluster": subcluster, "cluster": cluster}
    try:
        selection = selection_for(images, options)
    except VmcloudError as exc:
        raise AnsibleFilterError(str(exc)) from exc
    return selection if report else selection["desired"]


class FilterModule:
    def filters(self):
        return {"desired_images": desired_images}
