#!/usr/bin/python
# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: image_store
short_description: Reconcile a hypervisor's image store with its desired set of images
version_added: 0.1.0
description:
  - Compares the image store with the host's desired images and reports each one V(present) (verified and
    unchanged), V(missing) or V(corrupt). An image whose size, mtime and inode are those it had when verified
    is not read again; a changed one is hashed again. A corrupt copy is dropped from the store's manifest so
    the next distribution run (M(vmcloud.fleet.image_sync)) fetches it again, unless a process holds it open.
  - Retires the images vmcloud put in the store that are no longer desired, unless a process holds them open
    (a running VM); with O(not_desired=keep) keeps them until a quota needs the space.
  - Finds unknown entries, anything in the store directory nobody declared (files, hidden files,
    directories, symlinks, pipes), and reports, quarantines or removes them (O(unknown)).
  - Symlinks are never followed and nothing outside the store is ever touched; an entry on another
    filesystem is reported and left alone; a file a process holds open is never moved, removed or dropped
    from the manifest, it is reported in RV(held_open) with the PIDs.
  - The run is planned first and then carried out; check mode carries out nothing and returns exactly the
    plan a real run executes, with the same diff (the store's file list and managed images, before and
    after).
  - See C(docs/reconcile.md) for what counts as unknown and what the hash cache cannot detect.
author:
  - vmcloud team (@vmcloud)
extends_documentation_fragment:
  - vmcloud.fleet._attributes
  - vmcloud.fleet._attributes.STATE_CHANGING
  - vmcloud.fleet._requirements.CRYPTOGRAPHY
  - vmcloud.fleet._requirements.YAML
  - vmcloud.fleet._requirements.FASTBENCODE
  - vmcloud.fleet._retire
options:
  path:
    description: The image store directory. A store that does not exist yet holds nothing.
    type: path
    default: /var/lib/vmcloud/images
  desired:
    description:
      - The host's desired images, C(selection.desired) as returned by M(vmcloud.fleet.image_index)
        (each needs C(uuid) and C(file); C(compressed) and C(sha256) are used when present).
      - Every image vmcloud holds that is not in this list is no longer desired; an empty list retires all
        (within O(retire_max_percent)).
      - Supersede, never strand. An image no longer desired stays while a desired image of the same C(name) is
        not verified in the store (a failed upgrade); it is listed in RV(superseded_pending) and retired by the
        first run that finds its successors present.
      - Two desired images stored under one file name are refused (rule C(desired-conflict)).
    type: list
    elements: dict
    required: true
  unknown:
    description:
      - What to do with unknown entries. V(report) lists them. V(quarantine) moves each one, as it is (a
        symlink as a link), to C(.vmcloud/quarantine/<UTC timestamp>-<name>) in the store, an atomic rename
        on the same filesystem. V(remove) deletes it (a directory with everything under it, never following a
        symlink).
    type: str
    choices: [report, quarantine, remove]
    default: report
  grace_seconds:
    description:
      - Age (since last modification) under which vmcloud's own temporary files (C(.promote-*), a promotion
        under way) are left alone. Older ones are leftovers of an interrupted promotion; they are removed
        (listed in RV(cleaned)) whatever O(unknown) says, and never reported as unknown entries.
    type: int
    default: 3600
  state_dir:
    description:
      - The host's index state directory, where the per-host lock C(sync.lock) lives (the same as
        M(vmcloud.fleet.image_sync)'s O(vmcloud.fleet.image_sync#module:state_dir) and C(imgdist)'s). A real
        run holds the lock from planning to the last action, so it never interleaves with a sync; it waits
        up to an hour for a running one, then fails with rule C(lock-timeout). Check mode takes no lock.
    type: path
    default: /var/lib/vmcloud/index
notes:
  - An action whose entry changed, or became held open, between planning and acting is not carried out;
    it is listed in RV(deferred) and the next run plans it again.
  - A desired image is never evicted; when the store stays over O(max_bytes) or O(high_watermark_percent),
    RV(quota.over_after) says so and the module warns.
  - An explicit empty O(desired) counts toward the O(retire_max_percent) guard like any other.
"""

EXAMPLES = r"""
- name: Report what the store holds against the desired set
  vmcloud.fleet.image_store:
    desired: "{{ vmcloud_index.selection.desired }}"
  register: vmcloud_store

- name: Reconcile, quarantining what nobody declared
  vmcloud.fleet.image_store:
    path: /var/lib/vmcloud/images
    desired: "{{ vmcloud_index.selection.desired }}"
    unknown: quarantine

- name: Keep superseded images for a rollback while the filesystem is under 85 %
  vmcloud.fleet.image_store:
    desired: "{{ vmcloud_index.selection.desired }}"
    not_desired: keep
    high_watermark_percent: 85
    unknown: remove
"""

RETURN = r"""
store:
  description: The image store directory (O(path)).
  returned: always
  type: str
  sample: /var/lib/vmcloud/images
present:
  description: Uuids of desired images held as verified (unchanged since, or read again and matching).
  returned: always
  type: list
  elements: str
  sample: [cernvm_1276695059-img-1277992808]
missing:
  description: Uuids of desired images the store does not hold as verified (absent, or an unverified file
    or other entry has their name); the next distribution run fetches them.
  returned: always
  type: list
  elements: str
  sample: [slc5-img-2]
corrupt:
  description: Uuids of desired images whose stored copy no longer matches what was verified (size,
    SHA-256, or not a regular file any more).
  returned: always
  type: list
  elements: str
  sample: [alma9-img-1]
images:
  description: Each desired image with its state and why.
  returned: always
  type: list
  elements: dict
  contains:
    uuid:
      description: Image uuid.
      type: str
    path:
      description: Where the store keeps it.
      type: str
    state:
      description: V(present), V(missing) or V(corrupt).
      type: str
    reason:
      description: Why, in words.
      type: str
  sample: [{uuid: alma9-img-1, path: /var/lib/vmcloud/images/alma9.img, state: corrupt,
            reason: "size is 4097 bytes, was 4096 when verified"}]
unknown:
  description: Paths of the unknown entries found (whatever the policy did with them).
  returned: always
  type: list
  elements: str
  sample: [/var/lib/vmcloud/images/old-backup.qcow2, /var/lib/vmcloud/images/.swp]
unknown_entries:
  description: Each unknown entry in detail.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The entry.
      type: str
    type:
      description: V(file), V(directory), V(symlink) or V(other) (pipe, socket, device).
      type: str
    size:
      description: Bytes (a directory, every regular file under it; a symlink, 0).
      type: int
    mtime:
      description: Modification time, seconds since the epoch.
      type: float
    reason:
      description: Why it is unknown.
      type: str
    pids:
      description: Processes holding it (or a file under it) open.
      type: list
      elements: int
    domains:
      description: libvirt domains whose disks read it (or a file under it).
      type: list
      elements: str
    link_target:
      description: A symlink's target, as written (never followed); null otherwise.
      type: str
    refusal:
      description: Why it is never touched (another filesystem, unreadable); null otherwise.
      type: str
  sample: [{path: /var/lib/vmcloud/images/link, type: symlink, size: 0, mtime: 1718000000.0, pids: [],
            reason: "symlink nobody declared (not a desired image, not in the manifest), pointing to /etc
            (never followed)", link_target: /etc, refusal: null}]
quarantined:
  description:
    - Paths of unknown entries moved into the quarantine. Each one's destination is the C(to) of its action in
      RV(actions), C(.vmcloud/quarantine/<UTC timestamp>-<name>) in the store.
    - Paths without the timestamp, so that a check run and the real run that follows report the same list.
  returned: always
  type: list
  elements: str
  sample: [/var/lib/vmcloud/images/stray.img]
removed:
  description: Paths of unknown entries removed.
  returned: always
  type: list
  elements: str
  sample: [/var/lib/vmcloud/images/stray.img]
cleaned:
  description: Paths of vmcloud temporary files (C(.promote-*)) older than O(grace_seconds) removed, the
    leftovers of a promotion killed between writing and renaming.
  returned: always
  type: list
  elements: str
  sample: [/var/lib/vmcloud/images/.promote-x8f2ka]
retired:
  description: Uuids of images no longer desired that were removed from the store.
  returned: always
  type: list
  elements: str
  sample: [cernvm_1276695059-img-1277992808]
forgotten:
  description: Uuids dropped from the manifest without touching a file (a corrupt copy; an entry whose file
    now belongs to a desired image or lies outside the store).
  returned: always
  type: list
  elements: str
  sample: [alma9-img-1]
evicted:
  description: Kept images no longer desired, removed because the store was over its quota, oldest first.
  returned: always
  type: list
  elements: dict
  sample: [{path: /var/lib/vmcloud/images/alma8.img, uuid: alma8-img-3, size: 2147483648, mtime: 1718000000.0}]
kept:
  description: Uuids of images no longer desired kept in the store (O(not_desired=keep)).
  returned: always
  type: list
  elements: str
  sample: [alma8-img-3]
superseded_pending:
  description: Images no longer desired that stay because a desired image of the same name is not verified in
    the store yet; C(waiting_for) lists those uuids.
  returned: always
  type: list
  elements: dict
  sample: [{uuid: slc5-img-1, name: slc5-img, version: 1, path: /var/lib/vmcloud/images/slc5_1.img,
            waiting_for: [slc5-img-2]}]
held_open:
  description:
    - What was not moved, removed, retired or dropped from the manifest because it is in use
      (rule C(image-in-use)) - a process holds it open, or a libvirt domain (running, shut off or
      managed-saved) reads it as a disk, directly or through a qcow2 backing chain.
    - When libvirt's domains cannot be read, every entry counts as in use (see RV(libvirt)).
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The file or directory.
      type: str
    pids:
      description: Processes holding it open.
      type: list
      elements: int
    domains:
      description: libvirt domains whose disks read it.
      type: list
      elements: str
    rule:
      description: Always C(image-in-use).
      type: str
    reason:
      description: What was not done.
      type: str
    uuid:
      description: The managed image, or null for an unknown entry.
      type: str
  sample: [{path: /var/lib/vmcloud/images/slc5.img, pids: [4242], domains: [web1], uuid: slc5-img-1,
            rule: image-in-use, reason: "no longer desired, held open and in use by libvirt domain web1: not retired"}]
libvirt:
  description: Where the libvirt domains were read from, for C(held_open).
  returned: always
  type: dict
  contains:
    source:
      description: "C(virsh -c qemu:///system), libvirt's persistent definitions when libvirtd is down, or
        C(none: libvirt is not installed ...)."
      type: str
    unknown:
      description: Why the domains could not be read (then nothing is retired), or null.
      type: str
    problems:
      description: Disk backing chains that could not be followed to their end.
      type: list
      elements: str
  sample: {source: "virsh -c qemu:///system", unknown: null, problems: []}
in_progress:
  description: vmcloud temporary files younger than O(grace_seconds), left alone.
  returned: always
  type: list
  elements: str
  sample: [/var/lib/vmcloud/images/.promote-k2j3h4]
quota:
  description: Store and filesystem usage against the limits, before and after this run (as planned).
  returned: always (null without O(max_bytes) and O(high_watermark_percent))
  type: dict
  contains:
    max_bytes:
      description: O(max_bytes).
      type: int
    high_watermark_percent:
      description: O(high_watermark_percent).
      type: int
    store_bytes:
      description: Bytes under the store before the run.
      type: int
    store_bytes_after:
      description: Bytes under the store after the run.
      type: int
    filesystem_bytes:
      description: Size of the filesystem, with O(high_watermark_percent).
      type: int
    filesystem_used_bytes:
      description: Used bytes of the filesystem before the run, with O(high_watermark_percent).
      type: int
    filesystem_used_bytes_after:
      description: Used bytes after the run (estimated from the sizes removed).
      type: int
    over:
      description: Whether a limit was exceeded before the run.
      type: bool
    over_after:
      description: Whether a limit is still exceeded after the run (nothing left that may be evicted).
      type: bool
  sample: {max_bytes: 107374182400, high_watermark_percent: null, store_bytes: 112000000000,
           store_bytes_after: 98000000000, filesystem_bytes: null, filesystem_used_bytes: null,
           filesystem_used_bytes_after: null, over: true, over_after: false}
actions:
  description: The plan, in order; in check mode and in a real run alike.
  returned: always
  type: list
  elements: dict
  contains:
    action:
      description: V(forget), V(retire), V(quarantine), V(remove) or V(evict).
      type: str
    path:
      description: The entry acted on.
      type: str
    reason:
      description: Why.
      type: str
    uuid:
      description: The managed image, or null.
      type: str
    to:
      description: Quarantine destination, or null.
      type: str
    size:
      description: Bytes the action frees.
      type: int
  sample: [{action: retire, path: /var/lib/vmcloud/images/alma8.img, reason: no longer desired,
            uuid: alma8-img-3, to: null, size: 2147483648}]
deferred:
  description: Planned actions not carried out because their entry changed or became held open since
    planning (each as in RV(actions), with C(why)).
  returned: always
  type: list
  elements: dict
  sample: [{action: remove, path: /var/lib/vmcloud/images/stray, reason: "file nobody declared ...: removed",
            uuid: null, to: null, size: 10, why: "replaced since planned; run again"}]
failures:
  description: Planned actions that failed (each as in RV(actions), with C(error)); the others went on and
    the task fails.
  returned: always
  type: list
  elements: dict
  sample: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmcloud.fleet.plugins.module_utils._argspec import DEFAULT_STATE_DIR, RETIRE_ARGSPEC
from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._lock import host_lock, lock_path
from ansible_collections.vmcloud.fleet.plugins.module_utils._reconcile_execute import apply_plan, report
from ansible_collections.vmcloud.fleet.plugins.module_utils._reconcile_plan import (
    DEFAULT_GRACE_SECONDS,
    POLICIES,
    Options,
    plan_reconcile,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._requirements import module_require
from ansible_collections.vmcloud.fleet.plugins.module_utils._store import DEFAULT_STORE_DIR

ARGUMENT_SPEC = {
    "path": {"type": "path", "default": DEFAULT_STORE_DIR},
    "desired": {"type": "list", "elements": "dict", "required": True},
    "unknown": {"type": "str", "choices": list(POLICIES), "default": "report"},
    **RETIRE_ARGSPEC,
    "grace_seconds": {"type": "int", "default": DEFAULT_GRACE_SECONDS},
    "state_dir": {"type": "path", "default": DEFAULT_STATE_DIR},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    module_require(module, "cryptography", "yaml", "fastbencode")
    params = module.params
    options = Options(
        unknown=params["unknown"],
        not_desired=params["not_desired"],
        max_bytes=params["max_bytes"],
        high_watermark_percent=params["high_watermark_percent"],
        grace_seconds=params["grace_seconds"],
        retire_max_percent=params["retire_max_percent"],
        retire_confirm=params["retire_confirm"],
    )
    try:
        if module.check_mode:
            outcome = apply_plan(plan_reconcile(params["path"], params["desired"], options), check_mode=True)
        else:
            with host_lock(lock_path(params["state_dir"])):
                outcome = apply_plan(plan_reconcile(params["path"], params["desired"], options))
    except VmcloudError as exc:
        module.fail_json(msg=str(exc), rule=exc.rule)
    result = report(outcome)
    if result["quota"] and result["quota"]["over_after"]:
        module.warn(f"{params['path']} stays over its quota after this run: only desired images, unknown entries "
                    "the policy keeps, the quarantine or held-open files are left; free space by hand")
    if outcome.failures:
        first = result["failures"][0]
        module.fail_json(msg=f"reconcile-failed: {len(outcome.failures)} action(s) failed, the others went on; "
                         f"first: {first['action']} {first['error']}", rule="reconcile-failed", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
