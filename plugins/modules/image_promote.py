#!/usr/bin/python
# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: image_promote
short_description: Verify a downloaded image and promote it into the image store, or retire one
version_added: 0.1.0
description:
  - With O(state=present), validates O(image) as the index reader validates entries (a plain file name,
    64 hex digits of SHA-256, a size of 0 or more, a uuid), opens the downloaded file without following
    any symlink (below O(staging_dir)), refuses anything but a regular file owned by the engine's user
    (O(owner)) or root, reads exactly its declared size and checks its SHA-256 (for a legacy entry,
    which has none, the piece hashes of its O(torrent)) while copying it into a temporary file in the
    store directory, then fsyncs and renames it into place. A compressed (C(.gz)) image is verified
    before it is unpacked, and unpacking stops at its declared unpacked size. A mismatch, a broken gzip
    stream or a full disk (rule C(store-full)) leaves the store exactly as it was.
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
      - Default the rtorrent role's user, C(rtorrent); when no such user exists, only root's files (and
        those of the user running the module) are accepted. A named user that does not exist is an error
        (rule C(option-invalid)).
    type: str
  torrent:
    description:
      - The image's verified .torrent file. Required for a legacy entry (no C(sha256)); its info-hash must
        be the entry's, and the content is checked against its piece hashes. A legacy entry without it
        is refused (rule C(content-unverifiable)), never promoted unverified.
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

from typing import Any, Dict

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import IndexRefused, VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._index import (
    _as_hex,
    _as_int,
    _as_str,
    _require,
    check_plain_file_name,
    normalise_v2_image,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._store import ImageStore
from ansible_collections.vmcloud.fleet.plugins.module_utils._torrent import read_torrent_file

ARGUMENT_SPEC: Dict[str, Dict[str, Any]] = dict(
    store=dict(type="path", required=True),
    image=dict(type="dict"),
    staged=dict(type="path"),
    staging_dir=dict(type="path"),
    owner=dict(type="str"),
    torrent=dict(type="path"),
    uuid=dict(type="str"),
    keep=dict(type="list", elements="str"),
    state=dict(type="str", choices=["present", "absent"], default="present"),
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
        required_if=[("state", "present", ["image", "staged"]), ("state", "absent", ["uuid", "keep"], True)],
        mutually_exclusive=[("uuid", "keep")],
        supports_check_mode=True,
    )
    store = ImageStore(module.params["store"])
    try:
        if module.params["state"] == "present":
            try:
                image = checked_image(module.params["image"])
            except IndexRefused as exc:
                module.fail_json(msg=f"{exc.rule}: image: {exc.message}", rule=exc.rule)
            torrent = read_torrent_file(module.params["torrent"]) if module.params["torrent"] else None
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
