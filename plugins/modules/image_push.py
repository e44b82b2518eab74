#!/usr/bin/python
# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: image_push
short_description: Push an image, or one chunk of it, to another hypervisor's restricted receiver
version_added: 0.1.0
description:
  - Runs on the sending host (a hypervisor that holds the verified image, or the catalogue). Sends the
    image (O(chunk) unset, C(scp_wave)) or one chunk of it (C(scp_tsunami)) over SSH with the fleet-internal
    key to O(destination), whose C(authorized_keys) entry is C(restrict,command="vmcloud-push-receive <push_dir>"),
    so the receiver can only write C(<push_dir>/<info_hash>/<file>) (see C(docs/distribution.md)).
  - Only host keys in O(known_hosts) are accepted (C(StrictHostKeyChecking=yes)), no agent, no forwarding.
  - The receiver checks each chunk's SHA-256 on arrival; the image itself is verified when the receiver
    promotes it (M(vmcloud.fleet.image_sync) with O(vmcloud.fleet.image_sync#module:distribution_method=scp_wave)
    or V(scp_tsunami)), against the signed index.
  - C(playbooks/push.yml) plans the rounds (filter C(vmcloud.fleet.push_round)) and calls this module.
author:
  - vmcloud team (@vmcloud)
extends_documentation_fragment:
  - vmcloud.fleet._attributes
  - vmcloud.fleet._attributes.STATE_CHANGING
options:
  sources:
    description:
      - Where the sender holds the image, in order of preference; the first that exists is sent. A partial
        C(.<file>.part) of a tsunami receiver is sent from only for chunks it holds.
    type: list
    elements: path
    required: true
  destination:
    description: The receiving host (name or address).
    type: str
    required: true
  port:
    description: The receiver's SSH port.
    type: int
    default: 22
  user:
    description: The receiver's push user (whose C(authorized_keys) holds the restricted entry).
    type: str
    default: vmcloud-push
  key:
    description: The fleet-internal private key on the sender.
    type: path
    default: /etc/vmcloud/push/id_ed25519
  known_hosts:
    description: The receivers' host keys.
    type: path
    default: /etc/vmcloud/push/known_hosts
  info_hash:
    description: The image's info-hash (its directory in the receiver's push area).
    type: str
    required: true
  file:
    description: The image's file name (from the verified index).
    type: str
    required: true
  size:
    description: The image's size in bytes (from the verified index).
    type: int
    required: true
  chunk:
    description: The chunk to send (C(scp_tsunami)); unset sends the whole image.
    type: int
  chunk_size:
    description: The chunk size in bytes (C(scp_tsunami); 1 MiB to 1 GiB).
    type: int
    default: 33554432
"""

EXAMPLES = r"""
- name: Push the image to the next host of the wave
  vmcloud.fleet.image_push:
    sources: ["/var/lib/vmcloud/push/{{ image.torrent.info_hash }}/{{ image.file }}"]
    destination: hv02
    info_hash: "{{ image.torrent.info_hash }}"
    file: "{{ image.file }}"
    size: "{{ image.size }}"
"""

RETURN = r"""
source:
  description: The file that was sent from.
  returned: changed
  type: str
bytes:
  description: Bytes sent.
  returned: changed
  type: int
answer:
  description: What the receiver said.
  returned: changed
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._push import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_KEY,
    DEFAULT_KNOWN_HOSTS,
    push_image,
    ssh_command,
)

ARGUMENT_SPEC = {
    "sources": {"type": "list", "elements": "path", "required": True},
    "destination": {"type": "str", "required": True},
    "port": {"type": "int", "default": 22},
    "user": {"type": "str", "default": "vmcloud-push"},
    "key": {"type": "path", "default": DEFAULT_KEY},
    "known_hosts": {"type": "path", "default": DEFAULT_KNOWN_HOSTS},
    "info_hash": {"type": "str", "required": True},
    "file": {"type": "str", "required": True},
    "size": {"type": "int", "required": True},
    "chunk": {"type": "int"},
    "chunk_size": {"type": "int", "default": DEFAULT_CHUNK_SIZE},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    target = f"{params['destination']}:{params['info_hash']}/{params['file']}"
    if params["chunk"] is not None:
        target += f"#{params['chunk']}"
    diff = {"before": "", "after": f"pushed {target}\n"}
    try:
        ssh = ssh_command(params["destination"], params["port"], params["user"], params["key"],
                          params["known_hosts"])
        if module.check_mode:
            module.exit_json(changed=True, diff=diff)
        result = push_image(params["sources"], params["info_hash"], params["file"], params["size"], ssh,
                            chunk=params["chunk"], chunk_size=params["chunk_size"])
    except VmcloudError as exc:
        module.fail_json(msg=str(exc), rule=exc.rule)
    module.exit_json(changed=True, diff=diff, **result)


if __name__ == "__main__":
    main()
