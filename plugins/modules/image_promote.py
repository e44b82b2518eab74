#!/usr/bin/python
# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: image_promote
short_description: Verify a downloaded image and promote it into the image store
version_added: 0.1.0
description:
  - Validates O(image) as the index reader validates entries (a plain file name,
    64 hex digits of SHA-256, a size of 0 or more, a uuid), opens the downloaded file without following
    any symlink (below O(staging_dir)), refuses anything but a regular file owned by the engine's user
    (O(owner)) or root, reads exactly its declared size and checks its SHA-256 (for a legacy entry,
    which has none, the piece hashes of its O(torrent)) while copying it into a temporary file in the
    store directory, then fsyncs and renames it into place. A compressed (C(.gz)) image is verified
    before it is unpacked, and unpacking stops at its declared unpacked size. A mismatch, a broken gzip
    stream or a full disk (rule C(store-full)) leaves the store exactly as it was.
  - The store's manifest (C(.vmcloud/manifest.json)) records each promoted image with the size, mtime
    and inode it had when verified, so an unchanged image is not read again on later runs.
  - Retiring images is M(vmcloud.fleet.image_store)'s (and M(vmcloud.fleet.image_sync)'s, which follows the same
    plan), one implementation with its name, confinement, identity, in-use, supersession and mass-deletion
    checks. This module no longer retires (C(state=absent), C(uuid) and C(keep) are gone).
author:
  - vmcloud team (@vmcloud)
extends_documentation_fragment:
  - vmcloud.fleet._attributes
  - vmcloud.fleet._attributes.STATE_CHANGING
  - vmcloud.fleet._requirements.CRYPTOGRAPHY
  - vmcloud.fleet._requirements.YAML
  - vmcloud.fleet._requirements.FASTBENCODE
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
  staging_dir:
    description:
      - The directory the engine downloads into (the engine's user can write there). No directory
        between it and O(staged) may be a symlink, nor O(staged) itself (rule C(staged-unsafe)).
      - Without it, no component of O(staged) may be a symlink.
    type: path
  owner:
    description:
      - The user the engine runs as (name or uid). The staged file must be owned by it, by root or by
        the user running the module (rule C(staged-unsafe)).
      - Default the default engine's user, C(vmcloud-seeder) (libtorrent, as the vmcloud.fleet.libtorrent_seeder
        role creates it); give C(rtorrent) for a file rtorrent downloaded. When no such user exists, only
        root's files (and those of the user running the module) are accepted. A named user that does not
        exist is an error (rule C(option-invalid)).
    type: str
  state_dir:
    description:
      - The host's vmcloud state directory, where the host lock lives. The promotion holds that lock, as
        every writer of the store does, so a sync that finds a C(.promote-*) file knows it is a killed
        promotion's leftover and removes it.
    type: path
    default: /var/lib/vmcloud/index
  torrent:
    description:
      - The image's verified .torrent file. Required for a legacy entry (no C(sha256)); its info-hash must
        be the entry's, and the content is checked against its piece hashes. A legacy entry without it
        is refused (rule C(content-unverifiable)), never promoted unverified.
    type: path
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

import contextlib
from typing import Any, Dict

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmcloud.fleet.plugins.module_utils._argspec import DEFAULT_STATE_DIR
from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import IndexRefused, VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._index import (
    _as_hex,
    _as_int,
    _as_str,
    _require,
    check_plain_file_name,
    normalise_v2_image,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._lock import host_lock, lock_path
from ansible_collections.vmcloud.fleet.plugins.module_utils._requirements import module_require
from ansible_collections.vmcloud.fleet.plugins.module_utils._store import ImageStore
from ansible_collections.vmcloud.fleet.plugins.module_utils._torrent import read_torrent_file

ARGUMENT_SPEC: Dict[str, Dict[str, Any]] = dict(
    store=dict(type="path", required=True),
    image=dict(type="dict", required=True),
    staged=dict(type="path", required=True),
    staging_dir=dict(type="path"),
    owner=dict(type="str"),
    torrent=dict(type="path"),
    state_dir=dict(type="path", default=DEFAULT_STATE_DIR),
)


def checked_image(image: Dict[str, Any]) -> Dict[str, Any]:
    """``image`` validated by the index reader's own checks (``_index``): a v2 entry (it has a
    sha256) by ``normalise_v2_image``; a legacy entry, normalised already and without sha256 or
    exact size, field by field with the same checks."""
    if image.get("sha256") is not None:
        checked = normalise_v2_image(image, 0)
        if isinstance(image.get("extra"), dict):
            checked["extra"] = image["extra"]
        return checked
    where = "images[0]"
    torrent = _require(image, "torrent", where)
    if not isinstance(torrent, dict):
        raise IndexRefused("entry-malformed", f"{where}.torrent: expected a mapping")
    if not isinstance(image.get("compressed", False), bool):
        raise IndexRefused("entry-malformed", f"{where}.compressed: expected true or false")
    checked = dict(image)
    checked.update(
        uuid=_as_str(_require(image, "uuid", where), f"{where}.uuid"),
        file=check_plain_file_name(_require(image, "file", where), f"{where}.file"),
        compressed=image.get("compressed", False),
        size=None if image.get("size") is None else _as_int(image["size"], f"{where}.size"),
        volume_size=None if image.get("volume_size") is None else _as_int(image["volume_size"], f"{where}.volume_size"),
        torrent=dict(torrent, info_hash=_as_hex(_require(torrent, "info_hash", f"{where}.torrent"), 40,
                                                f"{where}.torrent.info_hash")),
    )
    return checked


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
    )
    module_require(module, "cryptography", "yaml", "fastbencode")
    store = ImageStore(module.params["store"])
    try:
        try:
            image = checked_image(module.params["image"])
        except IndexRefused as exc:
            module.fail_json(msg=f"{exc.rule}: image: {exc.message}", rule=exc.rule)
        torrent = read_torrent_file(module.params["torrent"]) if module.params["torrent"] else None
        with contextlib.nullcontext() if module.check_mode else host_lock(lock_path(module.params["state_dir"])):
            outcome = store.promote(image, module.params["staged"], check_mode=module.check_mode,
                                    staging_dir=module.params["staging_dir"], owner=module.params["owner"],
                                    torrent=torrent)
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
