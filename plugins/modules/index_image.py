#!/usr/bin/python
# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: index_image
short_description: Add, replace or remove an image in a signed v2 image index file
version_added: 0.1.0
description:
  - Endorser-side editing of a v2 image index file (the document that hypervisors verify with
    M(vmcloud.fleet.image_index)).
  - With O(state=present), adds the O(image) entry, or replaces the entry with the same C(uuid).
    With O(state=absent), removes the entry with O(uuid).
  - The entry is checked with the very rules the reader applies, so an index written by this module
    is never refused for its content.
  - When, and only when, the signed content changes, the index C(version) goes up by exactly one,
    C(created) becomes the current time and C(expires) the current time plus O(validity) days. An
    unchanged index is not rewritten, and its signatures stay valid.
  - Signatures that no longer verify over the new content are dropped (see RV(dropped_signers));
    sign the result with M(vmcloud.fleet.index_sign).
  - Creates the index file (version 1) when it does not exist; O(url) and O(endorser) are needed then.
author:
  - vmcloud team (@vmcloud)
extends_documentation_fragment:
  - vmcloud.fleet._attributes
  - vmcloud.fleet._attributes.STATE_CHANGING
  - vmcloud.fleet._requirements.CRYPTOGRAPHY
  - vmcloud.fleet._requirements.YAML
options:
  path:
    description:
      - The index file to edit. It is replaced atomically, keeping its file mode (new files get C(0644)).
      - Its directory must exist.
    type: path
    required: true
  state:
    description:
      - V(present) adds or replaces O(image); V(absent) removes the entry with O(uuid).
    type: str
    choices: [present, absent]
    default: present
  image:
    description:
      - The image entry, required with O(state=present). An entry with the same C(uuid) is replaced.
    type: dict
    suboptions:
      uuid:
        description:
          - Unique identifier of this image version in the index, by convention C(<name>-<version>).
        type: str
        required: true
      name:
        description:
          - Volume name, that is the image family that versions replace each other in.
        type: str
        required: true
      version:
        description:
          - Image version, a non-negative integer; higher is newer within a family.
        type: int
        required: true
      file:
        description:
          - File name of the content (no C(/), no C(..), no leading dot); also its name in the torrent.
        type: str
        required: true
      size:
        description:
          - Size of the content file in bytes.
        type: int
        required: true
      sha256:
        description:
          - SHA-256 of the content file, 64 hex digits.
        type: str
        required: true
      compressed:
        description:
          - Whether the content file is gzip-compressed.
        type: bool
        default: false
      volume_size:
        description:
          - Size of the volume to create from the image, in GB.
        type: int
      piece_size:
        description:
          - BitTorrent piece length of the image's torrent, in bytes.
        type: int
      torrent:
        description:
          - Where the .torrent is published, and its digests.
        type: dict
        required: true
        suboptions:
          url:
            description:
              - HTTP(S) URL of the .torrent file.
            type: str
            required: true
          sha256:
            description:
              - SHA-256 of the .torrent file's bytes, 64 hex digits.
            type: str
            required: true
          info_hash:
            description:
              - BitTorrent v1 info-hash, 40 hex digits.
            type: str
            required: true
      web_seeds:
        description:
          - HTTP(S) URLs of copies of the content file.
        type: list
        elements: str
        default: []
      targets:
        description:
          - Where the image is meant to run. All lists empty means everywhere.
        type: dict
        suboptions:
          hosts:
            description:
              - Host names.
            type: list
            elements: str
            default: []
          subclusters:
            description:
              - Subcluster names.
            type: list
            elements: str
            default: []
          clusters:
            description:
              - Cluster names.
            type: list
            elements: str
            default: []
  uuid:
    description:
      - The uuid of the entry to remove, required with O(state=absent). Removing an absent entry changes nothing.
    type: str
  url:
    description:
      - Address the index is published at; hypervisors refuse an index fetched from anywhere else.
      - Required to create the index. When given for an existing index, a different value is a change.
    type: str
  endorser:
    description:
      - Name of the endorser publishing the index.
      - Required to create the index. When given for an existing index, a different value is a change.
    type: str
  validity:
    description:
      - Days from the time of a change until the new version expires.
    type: int
    default: 30
  renew_before:
    description:
      - Also publish a new version (new C(version), C(created) and C(expires)) when the index would
        expire in fewer than this many days, even if the content is unchanged.
      - V(0) never renews unchanged content. Otherwise it must be less than O(validity), or every
        run would publish a new version.
    type: int
    default: 0
  syntax:
    description:
      - Write the index as V(yaml) or as V(json) (which is YAML too, and reads about fifty times
        faster, so use it for catalogues of thousands of images; see C(docs/performance.md)).
      - By default an existing index keeps its syntax and a new one is YAML. The signatures cover
        the content, not the syntax, so changing it keeps them valid.
    type: str
    choices: [yaml, json]
notes:
  - Every change makes a new version that carries no signature yet (unless a still-valid one is kept);
    run M(vmcloud.fleet.index_sign) after editing.
  - Times are UTC, taken from the controller's clock.
seealso:
  - module: vmcloud.fleet.index_sign
  - module: vmcloud.fleet.torrent_create
  - module: vmcloud.fleet.image_index
"""

EXAMPLES = r"""
- name: Publish an image version in the index
  vmcloud.fleet.index_image:
    path: /srv/catalogue/index.yaml
    url: http://catalogue/index.yaml
    endorser: cern-it
    image:
      uuid: cernvm_1276695059-img-1277992808
      name: cernvm_1276695059-img
      version: 1277992808
      file: cernvm_1276695059.img.gz
      size: 247872389
      sha256: 9f2b5c0e3c6a0c7f1d8e2a4b6c8d0e1f3a5b7c9d1e3f5a7b9c1d3e5f7a9b1c3d
      compressed: true
      volume_size: 30
      torrent:
        url: http://catalogue/torrents/cernvm_1276695059.img.gz.torrent
        sha256: 1f0cbd6bb3a9c3f0b8d4bbd8b2d8a1d6a6b0c1d04e9e4bfa0b1c2d3e4f5a6b7c
        info_hash: 83f4e6f8cb70e0b6d8cbf31afbab911ef2ca3095
      web_seeds:
        - http://catalogue/images/cernvm_1276695059.img.gz
      targets:
        clusters: [lxcloud]

- name: Withdraw an image version
  vmcloud.fleet.index_image:
    path: /srv/catalogue/index.yaml
    state: absent
    uuid: cernvm_1276695059-img-1277992808
"""

RETURN = r"""
version:
  description: Version of the index after the run (the new version when it changed).
  returned: success
  type: int
  sample: 8
expires:
  description: When that version expires.
  returned: success
  type: str
  sample: "2026-12-24T10:00:00Z"
images:
  description: Uuids of the images in the index after the run, in index order.
  returned: success
  type: list
  elements: str
  sample: [cernvm_1276695059-img-1277992808]
dropped_signers:
  description: Subjects of the signatures the change made stale and dropped; they need to sign again.
  returned: success
  type: list
  elements: str
  sample: ["CN=cern-it,O=CERN"]
"""

from typing import Any, Dict, Optional

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmcloud.fleet.plugins.module_utils._endorse_document import (
    dump_signed,
    existing_syntax,
    read_document,
    write_document,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._endorse_edit import edit_index
from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._requirements import module_require

_NAME_LIST = {"type": "list", "elements": "str", "default": []}

ARGUMENT_SPEC: Dict[str, Any] = {
    "path": {"type": "path", "required": True},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "image": {
        "type": "dict",
        "options": {
            "uuid": {"type": "str", "required": True},
            "name": {"type": "str", "required": True},
            "version": {"type": "int", "required": True},
            "file": {"type": "str", "required": True},
            "size": {"type": "int", "required": True},
            "sha256": {"type": "str", "required": True},
            "compressed": {"type": "bool", "default": False},
            "volume_size": {"type": "int"},
            "piece_size": {"type": "int"},
            "torrent": {
                "type": "dict",
                "required": True,
                "options": {
                    "url": {"type": "str", "required": True},
                    "sha256": {"type": "str", "required": True},
                    "info_hash": {"type": "str", "required": True},
                },
            },
            "web_seeds": {"type": "list", "elements": "str", "default": []},
            "targets": {
                "type": "dict",
                "options": {"hosts": _NAME_LIST, "subclusters": _NAME_LIST, "clusters": _NAME_LIST},
            },
        },
    },
    "uuid": {"type": "str"},
    "url": {"type": "str"},
    "endorser": {"type": "str"},
    "validity": {"type": "int", "default": 30},
    "renew_before": {"type": "int", "default": 0},
    "syntax": {"type": "str", "choices": ["yaml", "json"]},
}


def _entry_of(image: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The entry as the library takes it: unset optional fields left out."""
    if image is None:
        return None
    return {key: value for key, value in image.items() if value is not None}


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=[("state", "present", ("image",)), ("state", "absent", ("uuid",))],
        mutually_exclusive=[("image", "uuid")],
        supports_check_mode=True,
    )
    module_require(module, "cryptography", "yaml")
    params = module.params
    present = params["state"] == "present"
    try:
        result = edit_index(
            read_document(params["path"]),
            upsert=_entry_of(params["image"]) if present else None,
            remove=None if present else params["uuid"],
            url=params["url"],
            endorser=params["endorser"],
            validity_days=params["validity"],
            renew_before_days=params["renew_before"],
        )
        syntax_changes = params["syntax"] is not None and existing_syntax(params["path"]) not in (
            None, params["syntax"])
        result.changed = result.changed or syntax_changes
        if result.changed and not module.check_mode:
            write_document(params["path"], result.after, params["syntax"])
        diff = {}
        if module._diff:
            diff = {
                "before_header": params["path"],
                "after_header": params["path"],
                "before": dump_signed(result.before["signed"] if result.before else None),
                "after": dump_signed(result.after["signed"]),
            }
    except VmcloudError as exc:
        module.fail_json(msg=str(exc), rule=exc.rule)
    except OSError as exc:
        module.fail_json(msg=f"io-error: cannot write {params['path']}: {exc.strerror}", rule="io-error")
    module.exit_json(
        changed=result.changed,
        version=result.version,
        expires=result.after["signed"]["expires"],
        images=result.uuids,
        dropped_signers=result.dropped_signers,
        diff=diff,
    )


if __name__ == "__main__":
    main()
