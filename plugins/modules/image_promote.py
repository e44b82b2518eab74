#!/usr/bin/python
# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: image_promote
short_description: Verify a downloaded image and promote it into the image store
version_added: 0.1.0
description:
  - Reads the downloaded file once, checks its size and SHA-256 against the
    verified index entry while copying it (unpacking C(.gz) images as a stream) into a temporary file
    in the store directory, then fsyncs and renames it into place. A mismatch, a broken gzip stream or
    a full disk leaves the store exactly as it was.
  - The store's manifest (C(.vmcloud/manifest.json)) records each promoted image with the size, mtime
    and inode it had when verified, so an unchanged image is not read again on later runs.
  - Retiring images is M(vmcloud.fleet.image_store)'s (and M(vmcloud.fleet.image_sync)'s, which follows the same
    plan), one implementation with its name, confinement, identity, in-use, supersession and mass-deletion
    checks. This module no longer retires (O(state=absent), C(uuid) and C(keep) are gone).
author:
  - vmcloud developers
extends_documentation_fragment:
  - vmcloud.fleet._attributes
  - vmcloud.fleet._attributes.STATE_CHANGING
options:
  store:
    description: The image store directory. Staging and store must be on one filesystem for the
      final rename to be atomic; the temporary file is always created inside the store itself.
    type: path
    required: true
  image:
    description:
      - The verified image entry, as returned in C(images) by M(vmcloud.fleet.image_index)
        (needs C(uuid), C(file), C(compressed), and C(sha256) and C(size) when the index has them).
    type: dict
    required: true
  staged:
    description: The downloaded file (the torrent's content).
    type: path
    required: true
"""

EXAMPLES = r"""
- name: Promote a downloaded image
  vmcloud.fleet.image_promote:
    store: /var/lib/vmcloud/images
    image: "{{ item }}"
    staged: "/var/lib/vmcloud/staging/{{ item.uuid }}/{{ item.file }}"
  loop: "{{ vmcloud_index.selection.desired }}"
"""

RETURN = r"""
path:
  description: Path of the image in the store.
  returned: success
  type: str
  sample: /var/lib/vmcloud/images/cernvm_1276695059.img
sha256:
  description: SHA-256 of the stored (unpacked) file.
  returned: not in check mode
  type: str
  sample: 3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a
action:
  description: What happened, V(present) (already verified), V(promoted) or V(repaired) (the stored
    copy had changed).
  returned: success
  type: str
  sample: promoted
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._store import ImageStore


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            store=dict(type="path", required=True),
            image=dict(type="dict", required=True),
            staged=dict(type="path", required=True),
        ),
        supports_check_mode=True,
    )
    store = ImageStore(module.params["store"])
    try:
        image = module.params["image"]
        outcome = store.promote(image, module.params["staged"], check_mode=module.check_mode)
        result = {"changed": outcome.changed, "path": outcome.path, "action": outcome.action}
        if outcome.sha256:
            result["sha256"] = outcome.sha256
        result["diff"] = {
            "before": {image["uuid"]: "present" if not outcome.changed else "missing or changed"},
            "after": {image["uuid"]: "present"},
        }
    except VmcloudError as exc:
        module.fail_json(msg=str(exc), rule=exc.rule)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
