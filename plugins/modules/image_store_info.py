#!/usr/bin/python
# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: image_store_info
short_description: List the images vmcloud holds in a hypervisor's image store
version_added: 0.1.0
description:
  - Reads the store's manifest and reports each managed image with its state. An image whose file is
    unchanged since it was verified (same size, mtime and inode) is not read again; a changed one is
    hashed again and reported V(present) or V(corrupt).
author:
  - vmcloud team (@vmcloud)
extends_documentation_fragment:
  - vmcloud.fleet._attributes
  - vmcloud.fleet._attributes.INFO_MODULE
  - vmcloud.fleet._requirements.FASTBENCODE
options:
  store:
    description: The image store directory.
    type: path
    default: /var/lib/vmcloud/images
"""

EXAMPLES = r"""
- name: What this hypervisor holds
  vmcloud.fleet.image_store_info:
  register: held
"""

RETURN = r"""
images:
  description: Managed images, sorted by uuid.
  returned: success
  type: list
  elements: dict
  contains:
    uuid:
      description: Image uuid.
      type: str
    name:
      description: Image family.
      type: str
    version:
      description: Image version.
      type: int
    path:
      description: File in the store.
      type: str
    size:
      description: Bytes of the stored (unpacked) file.
      type: int
    sha256:
      description: SHA-256 of the stored file when it was verified.
      type: str
    state:
      description: V(present), V(corrupt) (content changed, or not a regular file) or V(missing).
      type: str
    reason:
      description: Why, for example C(not a regular file (a FIFO)); the stored file is never opened unless
        it is a regular file directly in the store.
      type: str
  sample: [{uuid: cernvm_demo-img-1, name: cernvm_demo-img, version: 1, state: present,
            path: /var/lib/vmcloud/images/cernvm_demo.img, size: 268435456, sha256: 5f1d...}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._requirements import module_require
from ansible_collections.vmcloud.fleet.plugins.module_utils._store import DEFAULT_STORE_DIR, ImageStore


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(store=dict(type="path", default=DEFAULT_STORE_DIR)),
        supports_check_mode=True,
    )
    module_require(module, "fastbencode")
    try:
        images = ImageStore(module.params["store"]).holdings()
    except VmcloudError as exc:
        module.fail_json(msg=str(exc), rule=exc.rule)
    module.exit_json(changed=False, images=images)


if __name__ == "__main__":
    main()
