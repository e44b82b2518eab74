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
    description: The receiving host (name or address). One of O(destination) and O(transfers) is required.
    type: str
  transfers:
    description:
      - C(scp_tsunami), pipelined. This sender's whole queue of one pass (C(playbooks/tasks/push_pass.yml), from the
        filter C(vmcloud.fleet.push_queues)). Each item is sent as soon as this host holds its chunk (the receiver
        here acknowledged it), without waiting for any other host; one SSH session per destination carries all
        its chunks (the receiver's C(stream) request).
      - A destination whose transfer fails gets nothing more from this sender in this pass; what it lacks is
        planned again in the next pass from what every host then holds.
    type: list
    elements: dict
    suboptions:
      address:
        description: The receiver's host name or address.
        type: str
        required: true
      chunk:
        description: The chunk to send.
        type: int
        required: true
      destination:
        description: The receiver's inventory name (only reported back).
        type: str
  stall_timeout:
    description:
      - With O(transfers), how long (seconds) to wait for a chunk this host has not received yet since the last
        progress (a chunk arrived here, or one was sent). What is still waiting then is left for the next pass.
    type: float
    default: 120
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
sent:
  description: With O(transfers), the [address, chunk] pairs that arrived (the receiver checked their SHA-256).
  returned: always with O(transfers)
  type: list
  elements: list
  sample: [["10.0.0.12", 0], ["10.0.0.13", 0]]
failures:
  description: With O(transfers), the transfers that failed, with their rule (C(push-failed), C(push-refused), ...).
  returned: always with O(transfers)
  type: list
  elements: dict
  sample: [{"destination": "10.0.0.14", "chunk": 3, "rule": "push-failed", "msg": "push-failed: stream ..."}]
left:
  description: With O(transfers), the [address, chunk] pairs not sent because the chunk never arrived here.
  returned: always with O(transfers)
  type: list
  elements: list
  sample: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._push import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_KEY,
    DEFAULT_KNOWN_HOSTS,
    push_image,
    serve_queue,
    ssh_command,
)

ARGUMENT_SPEC = {
    "sources": {"type": "list", "elements": "path", "required": True},
    "destination": {"type": "str"},
    "transfers": {"type": "list", "elements": "dict", "options": {
        "address": {"type": "str", "required": True},
        "chunk": {"type": "int", "required": True},
        "destination": {"type": "str"},
    }},
    "stall_timeout": {"type": "float", "default": 120},
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
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True,
                           required_one_of=[("destination", "transfers")],
                           mutually_exclusive=[("destination", "transfers")])
    params = module.params
    if params["transfers"] is not None:
        serve_transfers(module, params)
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


def serve_transfers(module: AnsibleModule, params: dict) -> None:
    queue = [(item["address"], item["chunk"]) for item in params["transfers"]]
    target = f"{params['info_hash']}/{params['file']}"
    diff = {"before": "", "after": "".join(f"pushed {address}:{target}#{chunk}\n" for address, chunk in queue)}
    try:
        for address in {address for address, _chunk in queue}:
            ssh_command(address, params["port"], params["user"], params["key"], params["known_hosts"])
        if module.check_mode:
            module.exit_json(changed=bool(queue), diff=diff, sent=[], failures=[], left=[])
        result = serve_queue(params["sources"], queue,
                             lambda address: ssh_command(address, params["port"], params["user"], params["key"],
                                                         params["known_hosts"]),
                             params["info_hash"], params["file"], params["size"], params["chunk_size"],
                             stall_seconds=params["stall_timeout"])
    except VmcloudError as exc:
        module.fail_json(msg=str(exc), rule=exc.rule)
    result["failures"] = result.pop("failed") + result.pop("closing")  # "failed" is Ansible's own key
    module.exit_json(changed=bool(result["sent"]), diff=diff, **result)


if __name__ == "__main__":
    main()
