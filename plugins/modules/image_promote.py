#!/usr/bin/python
# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: image_promote
short_description: Verify a downloaded image and promote it into the image store, or retire one
version_added: 0.1.0
description:
  - With O(state=present), reads the downloaded file once, checks its size and SHA-256 against the
    verified index entry while copying it (unpacking C(.gz) images as a stream) into a temporary file
    in the store directory, then fsyncs and renames it into place. A mismatch, a broken gzip stream or
    a full disk leaves the store exactly as it was.
  - The store's manifest (C(.vmcloud/manifest.json)) records each promoted image with the size, mtime
    and inode it had when verified, so an unchanged image is not read again on later runs.
  - With O(state=absent), removes a managed image from the store unless a process holds it open
    (a running VM); that case is reported, not forced.
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
      - Required with O(state=present).
    type: dict
  staged:
    description: The downloaded file (the torrent's content). Required with O(state=present).
    type: path
  uuid:
    description: Uuid of the image to retire. With O(state=absent), give this or O(keep).
    type: str
  keep:
    description:
      - With O(state=absent), retire every image vmcloud put in the store whose uuid is not in this
        list (the host's desired set). Files nobody declared are left alone.
    type: list
    elements: str
  state:
    description: V(present) verifies and promotes; V(absent) retires a managed image.
    type: str
    choices: [present, absent]
    default: present
"""

EXAMPLES = r"""
- name: Promote a downloaded image
  vmcloud.fleet.image_promote:
    store: /var/lib/vmcloud/images
    image: "{{ item }}"
    staged: "/var/lib/vmcloud/staging/{{ item.uuid }}/{{ item.file }}"
  loop: "{{ vmcloud_index.selection.desired }}"

- name: Retire every managed image that is no longer desired
  vmcloud.fleet.image_promote:
    store: /var/lib/vmcloud/images
    keep: "{{ vmcloud_index.selection.desired_uuids }}"
    state: absent

- name: Retire a superseded image
  vmcloud.fleet.image_promote:
    store: /var/lib/vmcloud/images
    uuid: cernvm_1276695059-img-1277992808
    state: absent
"""

RETURN = r"""
path:
  description: Path of the image in the store.
  returned: success
  type: str
  sample: /var/lib/vmcloud/images/cernvm_1276695059.img
sha256:
  description: SHA-256 of the stored (unpacked) file.
  returned: state=present and not in check mode
  type: str
  sample: 3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a
action:
  description: What happened, V(present) (already verified), V(promoted), V(repaired) (the stored
    copy had changed), V(removed), V(absent) (nothing to retire) or V(held-open) (not removed).
  returned: success
  type: str
  sample: promoted
retired:
  description: Uuids removed from the store, with O(keep).
  returned: with keep
  type: list
  elements: str
  sample: [cernvm_1276695059-img-1277992808]
held_open:
  description: Images not removed because a process holds them open, with O(keep).
  returned: with keep
  type: list
  elements: dict
  sample: [{uuid: slc5-img-1, path: /var/lib/vmcloud/images/slc5.img, pids: [4242], action: held-open}]
pids:
  description: Processes holding the image open, when O(state=absent) could not remove it.
  returned: when action is held-open
  type: list
  elements: int
  sample: [4242]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._store import ImageStore


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            store=dict(type="path", required=True),
            image=dict(type="dict"),
            staged=dict(type="path"),
            uuid=dict(type="str"),
            keep=dict(type="list", elements="str"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        required_if=[("state", "present", ["image", "staged"]), ("state", "absent", ["uuid", "keep"], True)],
        mutually_exclusive=[("uuid", "keep")],
        supports_check_mode=True,
    )
    store = ImageStore(module.params["store"])
    try:
        if module.params["state"] == "present":
            image = module.params["image"]
            outcome = store.promote(image, module.params["staged"], check_mode=module.check_mode)
            result = {"changed": outcome.changed, "path": outcome.path, "action": outcome.action}
            if outcome.sha256:
                result["sha256"] = outcome.sha256
            result["diff"] = {
                "before": {image["uuid"]: "present" if not outcome.changed else "missing or changed"},
                "after": {image["uuid"]: "present"},
            }
        elif module.params["keep"] is not None:
            result = store.retire_all_but(module.params["keep"], check_mode=module.check_mode)
            result["diff"] = {
                "before": {"managed": sorted(store.manifest())},
                "after": {"managed": sorted(set(store.manifest()) - set(result["retired"]))},
            }
        else:
            result = store.retire(module.params["uuid"], check_mode=module.check_mode)
            result["diff"] = {
                "before": {result["uuid"]: "absent" if result["action"] == "absent" else "present"},
                "after": {result["uuid"]: "absent" if result["action"] in ("absent", "removed") else "present"},
            }
    except VmcloudError as exc:
        module.fail_json(msg=str(exc), rule=exc.rule)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
