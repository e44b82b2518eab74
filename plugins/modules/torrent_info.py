#!/usr/bin/python
# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: torrent_info
short_description: Read the torrents and totals of the host's BitTorrent engine
version_added: 0.1.0
description:
  - Asks the host's BitTorrent engine for every torrent it has and returns each one's status
    (state, completion, uploaded bytes, ratio, peers) together with totals over the engine.
  - Read-only; fails with rule C(engine-unreachable) when the engine does not answer, so it also
    serves as a health check of the engine's control socket.
  - Talks to the engine through the collection's engine interface; the default, libtorrent, over the
    vmcloud seeder's unix socket; rtorrent over XML-RPC on its SCGI unix socket.
author:
  - vmcloud team (@vmcloud)
extends_documentation_fragment:
  - vmcloud.fleet._engine
  - vmcloud.fleet._attributes
  - vmcloud.fleet._attributes.INFO_MODULE
options:
  info_hashes:
    description:
      - Only return these torrents (v1 info-hashes, 40 hex characters, any case). All torrents when empty.
      - Requested torrents the engine does not have are listed in RV(missing).
    type: list
    elements: str
    default: []
seealso:
  - module: vmcloud.fleet.torrent_download
"""

EXAMPLES = r"""
- name: Check that rtorrent answers on its socket
  vmcloud.fleet.torrent_info:
    engine: rtorrent
    socket: /run/rtorrent/rpc.socket
  register: rtorrent_info
  retries: 10
  delay: 1
  until: rtorrent_info is succeeded

- name: Read the upload counter of one image (from the default engine, libtorrent)
  vmcloud.fleet.torrent_info:
    info_hashes: [83f4e6f8cb70e0b6d8cbf31afbab911ef2ca3095]
  register: image_torrent

- name: Show how much this host has given to its peers
  ansible.builtin.debug:
    msg: "{{ image_torrent.torrents[0].uploaded_bytes | default(0) }} bytes uploaded"
"""

RETURN = r"""
engine:
  description: Totals over every torrent the engine has (not only the selected ones).
  returned: success
  type: dict
  sample:
    name: rtorrent
    torrents: 2
    complete: 2
    states: {downloading: 0, seeding: 2, stopped: 0, checking: 0, error: 0}
    size_bytes: 16777216
    completed_bytes: 16777216
    uploaded_bytes: 50331648
    up_rate: 0
    down_rate: 0
    peers: 3
  contains:
    name:
      description: The engine, as in O(engine).
      type: str
    torrents:
      description: Number of torrents loaded.
      type: int
    complete:
      description: Number of torrents whose every piece is present and verified.
      type: int
    states:
      description: Number of torrents in each state (V(downloading), V(seeding), V(stopped), V(checking), V(error)).
      type: dict
    size_bytes:
      description: Total size of the content of every torrent.
      type: int
    completed_bytes:
      description: Total bytes downloaded and verified.
      type: int
    uploaded_bytes:
      description: Total bytes uploaded to peers since the engine loaded the torrents.
      type: int
    up_rate:
      description: Current upload rate, bytes per second.
      type: int
    down_rate:
      description: Current download rate, bytes per second.
      type: int
    peers:
      description: Connected peers, summed over torrents.
      type: int
torrents:
  description:
    - The selected torrents (all when O(info_hashes) is empty), sorted by info-hash, as the engine
      reports them; the same form as RV(vmcloud.fleet.torrent_download#module:status).
  returned: success
  type: list
  elements: dict
  sample:
    - info_hash: 83f4e6f8cb70e0b6d8cbf31afbab911ef2ca3095
      name: alma9-2024.06.qcow2
      state: seeding
      complete: true
      size_bytes: 8388608
      completed_bytes: 8388608
      progress: 1.0
      uploaded_bytes: 25165824
      ratio: 3.0
      peers: 3
      down_rate: 0
      up_rate: 0
      message: ""
      directory: /var/lib/vmcloud/staging
      base_path: /var/lib/vmcloud/staging/alma9-2024.06.qcow2
  contains:
    info_hash:
      description: v1 info-hash, 40 lowercase hex characters.
      type: str
    state:
      description: One of V(downloading), V(seeding), V(stopped), V(checking), V(error).
      type: str
    complete:
      description: Whether every piece is present and verified.
      type: bool
    completed_bytes:
      description: Bytes downloaded and verified.
      type: int
    uploaded_bytes:
      description: Bytes uploaded to other peers since the engine loaded the torrent.
      type: int
    ratio:
      description: Uploaded over completed bytes.
      type: float
    peers:
      description: Connected peers.
      type: int
    directory:
      description: The torrent's download directory.
      type: str
missing:
  description: Requested info-hashes (O(info_hashes)) that the engine does not have, lowercase.
  returned: success
  type: list
  elements: str
  sample: []
rule:
  description: The rule that failed, on failure (for example C(engine-unreachable)).
  returned: failure
  type: str
  sample: engine-unreachable
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmcloud.fleet.plugins.module_utils._argspec import ENGINE_ARGSPEC
from ansible_collections.vmcloud.fleet.plugins.module_utils._engine import default_socket, engine_for
from ansible_collections.vmcloud.fleet.plugins.module_utils._engine_info import engine_report
from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            **ENGINE_ARGSPEC,
            info_hashes=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        engine = engine_for(params["engine"], timeout=params["rpc_timeout"],
                            socket=params["socket"] or default_socket(params["engine"]))
        report = engine_report(engine, params["info_hashes"])
    except VmcloudError as exc:
        module.fail_json(msg=str(exc), rule=exc.rule)
    module.exit_json(changed=False, **report)


if __name__ == "__main__":
    main()
