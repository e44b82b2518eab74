#!/usr/bin/python
# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: torrent_create
short_description: Make the single-file .torrent of a VM image
version_added: 0.1.0
description:
  - Hashes an image file once (SHA-1 per piece for BitTorrent v1, SHA-256 of the whole file for
    the image index) and writes a single-file .torrent for it to O(dest), atomically.
  - The result depends only on the options and the file's bytes, so running the module again on the
    same image reports no change. The creation date defaults to the file's modification time for
    that reason.
  - By default the torrent is not private, so hypervisors may also find each other through DHT and PEX.
    With O(private=true) it is a private torrent (BEP 27) for sites whose images must not leave the fleet.
  - Used on the endorser side; the returned digests are what the image index records.
author:
  - vmcloud team (@vmcloud)
extends_documentation_fragment:
  - vmcloud.fleet._attributes
  - vmcloud.fleet._attributes.STATE_CHANGING
  - vmcloud.fleet._requirements.FASTBENCODE
options:
  path:
    description:
      - The image file to distribute. It must not change while it is hashed.
    type: path
    required: true
  dest:
    description:
      - Where to write the .torrent file. Its directory must exist.
    type: path
    required: true
  announce:
    description:
      - Tracker announce URLs (C(http://), C(https://) or C(udp://)). The first is the primary
        tracker; with more than one, each also becomes a tier of the announce list, as with
        repeated C(mktorrent -a).
    type: list
    elements: str
    required: true
  web_seeds:
    description:
      - HTTP(S) URLs of copies of the image, written as the BEP 19 C(url-list).
      - rtorrent ignores web seeds; the libtorrent engine (the vmcloud seeder) uses them, as do other clients.
    type: list
    elements: str
    default: []
  piece_size:
    description:
      - Piece length in bytes, a power of two from 16384 to 268435456.
      - By default it is chosen from the file size as upstream mktorrent does (32 KiB up to
        50 MiB, doubling with each doubling of size, 16 MiB above 12800 MiB).
    type: int
  creation_date:
    description:
      - Creation date to record, in seconds since the epoch.
      - Defaults to the image file's modification time, so the same image gives the same bytes.
    type: int
  comment:
    description:
      - Free-text comment to record in the .torrent (outside the info dictionary).
    type: str
  name:
    description:
      - File name recorded in the torrent, which is the name the data gets on every peer.
      - Defaults to the base name of O(path).
    type: str
  private:
    description:
      - Set the BEP 27 private flag (C(info.private = 1)). Clients that honour it, rtorrent among them, then
        find peers for this torrent only through its trackers - DHT and peer exchange (PEX) are off for it -
        so the swarm is the hosts the tracker lists.
      - For sites whose images must not leave the fleet; pair it with a tracker reachable only from the
        cluster network (opentracker's whitelist) and rtorrent bound to that network
        (C(rtorrent_bind_address)). It is not encryption - anyone who can reach a peer and knows the
        info-hash can still ask for the data.
      - The flag is inside the info dictionary, so it changes the info-hash; the index must name the new one.
    type: bool
    default: false
notes:
  - Every run reads the whole image (also in check mode), since the digests are computed from it.
  - The .torrent is written with mode C(0644).
seealso:
  - module: vmcloud.fleet.torrent_download
"""

EXAMPLES = r"""
- name: Make the torrent of an image for the index
  vmcloud.fleet.torrent_create:
    path: /srv/images/alma9-2024.06.qcow2
    dest: /srv/torrents/alma9-2024.06.qcow2.torrent
    announce:
      - http://tracker.example.org:6969/announce
    web_seeds:
      - http://images.example.org/alma9-2024.06.qcow2
  register: alma9_torrent

- name: Show what the index needs
  ansible.builtin.debug:
    msg: "{{ alma9_torrent.info_hash }} {{ alma9_torrent.sha256 }} {{ alma9_torrent.torrent_sha256 }}"
"""

RETURN = r"""
info_hash:
  description: BitTorrent v1 info-hash of the torrent, 40 lowercase hex characters.
  returned: success
  type: str
  sample: 83f4e6f8cb70e0b6d8cbf31afbab911ef2ca3095
torrent_sha256:
  description: SHA-256 of the .torrent file's bytes.
  returned: success
  type: str
  sample: 1f0cbd6bb3a9c3f0b8d4bbd8b2d8a1d6a6b0c1d04e9e4bfa0b1c2d3e4f5a6b7c
sha256:
  description: SHA-256 of the image file's content.
  returned: success
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
size:
  description: Size of the image in bytes.
  returned: success
  type: int
  sample: 8388608
piece_size:
  description: Piece length used, in bytes.
  returned: success
  type: int
  sample: 32768
pieces:
  description: Number of pieces.
  returned: success
  type: int
  sample: 256
private:
  description: Whether the torrent carries the BEP 27 private flag.
  returned: success
  type: bool
  sample: false
name:
  description: File name recorded in the torrent.
  returned: success
  type: str
  sample: alma9-2024.06.qcow2
torrent:
  description: Path of the .torrent file (not named C(dest), so Ansible adds no file attributes that
    would overwrite RV(size)).
  returned: success
  type: str
  sample: /srv/torrents/alma9-2024.06.qcow2.torrent
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._requirements import module_require
from ansible_collections.vmcloud.fleet.plugins.module_utils._torrent import (
    create_torrent,
    ensure_torrent_file,
    file_mtime,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            dest=dict(type="path", required=True),
            announce=dict(type="list", elements="str", required=True),
            web_seeds=dict(type="list", elements="str", default=[]),
            piece_size=dict(type="int"),
            creation_date=dict(type="int"),
            comment=dict(type="str"),
            name=dict(type="str"),
            private=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    module_require(module, "fastbencode")
    params = module.params
    try:
        creation_date = params["creation_date"]
        if creation_date is None:
            creation_date = file_mtime(params["path"])
        created = create_torrent(
            params["path"],
            announce=params["announce"],
            web_seeds=params["web_seeds"],
            piece_length=params["piece_size"],
            creation_date=creation_date,
            comment=params["comment"],
            name=params["name"],
            private=params["private"],
        )
        changed, before = ensure_torrent_file(params["dest"], created, check_mode=module.check_mode)
    except VmcloudError as exc:
        module.fail_json(msg=str(exc), rule=exc.rule)
    except OSError as exc:
        module.fail_json(msg=f"io-error: {exc}", rule="io-error")
    info = created.info
    module.exit_json(
        changed=changed,
        info_hash=info.info_hash,
        torrent_sha256=created.torrent_sha256,
        sha256=created.content_sha256,
        size=info.length,
        piece_size=info.piece_length,
        pieces=info.pieces_count,
        name=info.name,
        private=info.private,
        torrent=params["dest"],
        diff={
            "before_header": params["dest"],
            "after_header": params["dest"],
            "before": before,
            "after": {"info_hash": info.info_hash, "torrent_sha256": created.torrent_sha256},
        },
    )


if __name__ == "__main__":
    main()
