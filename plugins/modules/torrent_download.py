#!/usr/bin/python
# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: torrent_download
short_description: Have the hypervisor's BitTorrent engine download (and seed) an image
version_added: 0.1.0
description:
  - Loads a verified .torrent into the host's BitTorrent engine with its data in a staging
    directory, starts it, and optionally waits until the download is complete. Data already in
    the directory is hash-checked, so a complete copy seeds at once.
  - Refuses a .torrent whose info-hash differs from O(info_hash) (rule C(torrent-info-hash-mismatch)).
  - With O(state=absent), drops the torrent from the engine; the data stays on disk unless
    O(delete_data=true). The image store's lifecycle belongs to the caller.
  - Talks to the engine through the collection's engine interface; the default, libtorrent, over the
    vmcloud seeder's unix socket; rtorrent over XML-RPC on its SCGI unix socket.
author:
  - vmcloud team (@vmcloud)
extends_documentation_fragment:
  - vmcloud.fleet._engine
  - vmcloud.fleet._attributes
  - vmcloud.fleet._attributes.STATE_CHANGING
  - vmcloud.fleet._requirements.FASTBENCODE
options:
  torrent:
    description:
      - Path on the host of the .torrent file, already verified against the image index.
      - Required with O(state=present).
    type: path
  info_hash:
    description:
      - Expected v1 info-hash (40 hex characters). The .torrent must have it.
    type: str
    required: true
  directory:
    description:
      - Download directory (a staging directory); the image file appears in it under the torrent's name.
      - Required with O(state=present). A torrent already loaded with another directory is refused
        (rule C(torrent-directory-conflict)).
    type: path
  state:
    description:
      - V(present) loads and starts the torrent (or restarts it when stopped); V(absent) removes it
        from the engine.
    type: str
    choices: [present, absent]
    default: present
  delete_data:
    description:
      - With O(state=absent), also delete the downloaded file.
    type: bool
    default: false
  wait:
    description:
      - With O(state=present), wait until the download is complete.
    type: bool
    default: false
  timeout:
    description:
      - Seconds to wait for completion when O(wait=true). On timeout the module fails with rule
        C(download-timeout) and the progress so far, and the torrent stays in the engine, so the
        download goes on. From 0 (look once) to 604800 (a week); other values fail with rule
        C(option-invalid).
    type: int
    default: 3600
  poll_interval:
    description:
      - Seconds between progress checks when O(wait=true), more than 0 and at most 3600.
    type: float
    default: 2
notes:
  - Check mode reads the .torrent and the engine's state and reports what would change; it makes
    no call that changes the engine, and does not wait.
seealso:
  - module: vmcloud.fleet.torrent_create
"""

EXAMPLES = r"""
- name: Download an image into the staging directory and wait for it
  vmcloud.fleet.torrent_download:
    torrent: /var/lib/vmcloud/torrents/alma9-2024.06.qcow2.torrent
    info_hash: 83f4e6f8cb70e0b6d8cbf31afbab911ef2ca3095
    directory: /var/lib/vmcloud/staging
    wait: true
    timeout: 1800
  register: alma9_download

- name: Stop sharing an image, keeping its file
  vmcloud.fleet.torrent_download:
    info_hash: 83f4e6f8cb70e0b6d8cbf31afbab911ef2ca3095
    state: absent
"""

RETURN = r"""
info_hash:
  description: The torrent's info-hash, 40 lowercase hex characters.
  returned: always
  type: str
  sample: 83f4e6f8cb70e0b6d8cbf31afbab911ef2ca3095
action:
  description: What was done (or would be in check mode).
  returned: success
  type: str
  sample: add
  choices: [none, add, start, remove]
status:
  description:
    - The torrent as the engine reports it after the run; null when it is not loaded (or, in
      check mode, not loaded yet). Also returned on rule C(download-timeout), with the progress so far.
  returned: always
  type: dict
  sample:
    info_hash: 83f4e6f8cb70e0b6d8cbf31afbab911ef2ca3095
    name: alma9-2024.06.qcow2
    state: seeding
    complete: true
    size_bytes: 8388608
    completed_bytes: 8388608
    progress: 1.0
    uploaded_bytes: 0
    ratio: 0.0
    peers: 1
    down_rate: 0
    up_rate: 0
    message: ""
    directory: /var/lib/vmcloud/staging
    base_path: /var/lib/vmcloud/staging/alma9-2024.06.qcow2
  contains:
    state:
      description: One of V(downloading), V(seeding), V(stopped), V(checking), V(error).
      type: str
    complete:
      description: Whether every piece is present and verified.
      type: bool
    size_bytes:
      description: Size of the content.
      type: int
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
rule:
  description: The rule that failed, on failure.
  returned: failure
  type: str
  sample: download-timeout
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmcloud.fleet.plugins.module_utils._argspec import ENGINE_ARGSPEC
from ansible_collections.vmcloud.fleet.plugins.module_utils._engine import (
    DownloadTimeout,
    default_socket,
    engine_for,
    reconcile,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._options import TORRENT_DOWNLOAD_CHECKS, check_options
from ansible_collections.vmcloud.fleet.plugins.module_utils._requirements import module_require
from ansible_collections.vmcloud.fleet.plugins.module_utils._torrent import (
    check_info_hash,
    normalize_info_hash,
    parse_torrent,
    read_torrent_file,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            **ENGINE_ARGSPEC,
            torrent=dict(type="path"),
            info_hash=dict(type="str", required=True),
            directory=dict(type="path"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            delete_data=dict(type="bool", default=False),
            wait=dict(type="bool", default=False),
            timeout=dict(type="int", default=3600),
            poll_interval=dict(type="float", default=2.0),
        ),
        required_if=[("state", "present", ("torrent", "directory"))],
        supports_check_mode=True,
    )
    module_require(module, "fastbencode")
    params = module.params
    info_hash = params["info_hash"]
    try:
        check_options(params, TORRENT_DOWNLOAD_CHECKS)
        info_hash = normalize_info_hash(info_hash)
        torrent_bytes = None
        if params["state"] == "present":
            torrent_bytes = read_torrent_file(params["torrent"])
            check_info_hash(parse_torrent(torrent_bytes), info_hash)
        engine = engine_for(params["engine"], timeout=params["rpc_timeout"],
                            socket=params["socket"] or default_socket(params["engine"]))
        outcome = reconcile(
            engine,
            info_hash=info_hash,
            state=params["state"],
            directory=params["directory"],
            torrent_bytes=torrent_bytes,
            delete_data=params["delete_data"],
            check_mode=module.check_mode,
        )
        status = outcome.status
        if params["wait"] and params["state"] == "present" and not module.check_mode:
            status = engine.wait_complete(info_hash, timeout=params["timeout"], poll_interval=params["poll_interval"])
    except DownloadTimeout as exc:
        module.fail_json(
            msg=str(exc),
            rule=exc.rule,
            changed=outcome.changed,
            info_hash=info_hash,
            status=exc.status.to_dict() if exc.status else None,
        )
    except VmcloudError as exc:
        module.fail_json(msg=str(exc), rule=exc.rule, info_hash=info_hash, status=None)
    except OSError as exc:
        module.fail_json(msg=f"io-error: {exc}", rule="io-error", info_hash=info_hash, status=None)
    module.exit_json(
        changed=outcome.changed,
        action=outcome.action,
        info_hash=info_hash,
        status=status.to_dict() if status else None,
        diff={"before": outcome.before, "after": outcome.after},
    )


if __name__ == "__main__":
    main()
