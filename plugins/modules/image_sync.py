#!/usr/bin/python
# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: image_sync
short_description: Bring a hypervisor to its desired set of VM images, over BitTorrent
version_added: 0.1.0
description:
  - The whole pull path of a hypervisor in one task, the same library call as C(imgdist sync).
  - Fetches and verifies the endorsers' signed index (as M(vmcloud.fleet.image_index) does, rollback
    mark included) and keeps a copy of it at C(<state_dir>/verified-index.yaml) for offline checks.
  - Selects the host's images (endorsed, approved, targeted at the host, not blocked).
  - For each of them, fetches its .torrent (at most O(torrent_max_size) bytes), verifies it against the
    index entry (SHA-256 of the file and info-hash; SHA-1 for legacy lists) and writes it atomically to
    C(<torrent_dir>/<info_hash>.torrent); hands it to the BitTorrent engine with its data in
    C(<staging_dir>/<info_hash>) (loaded when absent, restarted when stopped); waits for the downloads;
    and promotes each image into O(store_dir), verifying its SHA-256 while copying (and unpacking) it.
  - Then retires what is no longer desired with the same plan as M(vmcloud.fleet.image_store) (plain names,
    confinement to the store, identity recheck, files a process holds open stay and are reported in
    RV(held_open), O(not_desired) and the quota), and drops it from the engine, staging and .torrent files.
  - Supersede, never strand. An image that is no longer desired stays while a desired image of the same
    C(name) is not verified in the store (a failed upgrade), and is listed in RV(superseded_pending); it goes
    at once when it is blocked or no longer in the verified index.
  - Before anything changes (the rollback mark included) the run stops when O(approved) is not given (rule
    C(approvals-undefined)), when two desired images are stored under one file name (C(desired-conflict)),
    or when it would retire more than O(retire_max_percent) of the images the store holds
    (C(retire-guard)) and O(retire_confirm) is not set.
  - The whole run, from fetching the index on, holds the host lock (C(<state_dir>/sync.lock)) shared with
    C(imgdist) and M(vmcloud.fleet.image_store); it waits up to O(download_timeout) for it (rule
    C(lock-timeout)).
  - A failure on one image (a .torrent that does not verify, a download timeout, a SHA-256 mismatch)
    is reported in RV(failures) and the other images go on; the task then fails with rule
    C(images-failed) after doing everything it could. A refused index changes nothing.
author:
  - vmcloud team (@vmcloud)
extends_documentation_fragment:
  - vmcloud.fleet._engine
  - vmcloud.fleet._attributes
  - vmcloud.fleet._attributes.STATE_CHANGING
  - vmcloud.fleet._index_trust
  - vmcloud.fleet._index_trust.SELECTION
  - vmcloud.fleet._index_trust.FETCH
  - vmcloud.fleet._requirements.CRYPTOGRAPHY
  - vmcloud.fleet._requirements.YAML
  - vmcloud.fleet._requirements.FASTBENCODE
  - vmcloud.fleet._retire
options:
  src:
    description:
      - Where the index is published (C(http://) or C(https://) URL), or a local file path.
      - For a URL, the index's own C(url) field must equal it (rule C(url-mismatch)).
    type: str
    required: true
  store_dir:
    description:
      - The image store; verified images are kept here, compressed ones unpacked.
      - Must be on the same filesystem as O(staging_dir).
    type: path
    default: /var/lib/vmcloud/images
  staging_dir:
    description:
      - Where the engine downloads and keeps seeding, one directory per info-hash.
      - Directories here named by an info-hash of no desired image are removed.
    type: path
    default: /var/lib/vmcloud/staging
  engine_user:
    description:
      - The user the BitTorrent engine runs as (name or uid). A staged file is promoted only when it is a
        regular file owned by this user or root, reached without following a symlink below O(staging_dir)
        (rule C(staged-unsafe)).
      - Default the engine's user as its role creates it, C(rtorrent) for O(engine=rtorrent) and
        C(vmcloud-seeder) for O(engine=libtorrent) (when no such user exists, only root's files).
    type: str
  distribution_method:
    description:
      - How the image bytes arrive before the same verify-and-promote (C(vmcloud_distribution_method)).
      - V(bittorrent) hands the .torrent to the engine. V(http) downloads from the catalogue (O(http_url),
        else the entry's first web seed) into O(staging_dir) with Range requests, resuming an interrupted
        download; O(download_timeout) bounds it (rule C(fetch-deadline)). V(sharedfs) promotes straight from
        O(sharedfs_dir) (a shared mount), with no network transfer. V(scp_wave) and V(scp_tsunami) promote what
        the controller pushed into O(push_dir) (C(playbooks/push.yml)); rule C(staged-missing) until then.
      - The methods other than V(bittorrent) use no engine. See C(docs/distribution.md).
    type: str
    choices: [bittorrent, http, sharedfs, scp_wave, scp_tsunami]
    default: bittorrent
  http_url:
    description:
      - The catalogue's images directory (for example C(http://catalogue/images/)) for O(distribution_method=http);
        the image's file name is appended.
    type: str
  sharedfs_dir:
    description:
      - The shared mount holding the images by file name, for O(distribution_method=sharedfs).
    type: path
  sharedfs_owner:
    description:
      - Who may own the files on O(sharedfs_dir) besides root (name or uid).
    type: str
  push_dir:
    description:
      - Where the push receiver writes, C(<push_dir>/<info_hash>/<file>) (the push methods).
    type: path
    default: /var/lib/vmcloud/push
  push_user:
    description:
      - The user the push receiver runs as; pushed files must be owned by it or root.
    type: str
    default: vmcloud-push
  torrent_dir:
    description:
      - Where the verified .torrent files are kept, as C(<info_hash>.torrent).
    type: path
    default: /var/lib/vmcloud/torrents
  torrent_max_size:
    description:
      - Refuse a .torrent larger than this many bytes, before parsing it.
    type: int
    default: 33554432
  download_timeout:
    description:
      - Seconds to wait for all the downloads together (the engine runs them in parallel).
      - An image not complete by then is reported in RV(failures) with rule C(download-timeout) and its
        progress; it stays in the engine and keeps downloading, and a later run promotes it.
      - A download the staging filesystem cannot hold (free space less than what it still needs) fails at
        once, or on timeout, with rule C(staging-full) naming the space; a later run, once space is freed,
        completes it.
      - While it waits, a download with no peers is announced to its trackers again every 30 s (a restarted
        tracker knows no peers), and one with no peers and no progress for 60 s is dropped from the engine and
        added again once, its data kept.
    type: int
    default: 3600
  poll_interval:
    description:
      - Seconds between progress checks while waiting.
    type: float
    default: 2
  unknown:
    description:
      - What to do with entries in O(store_dir) that nobody declared, in the same plan, under the same host lock,
        as the retirement (M(vmcloud.fleet.image_store)'s option of that name, so one task converges and
        reconciles the store). V(report) lists them (RV(store), its C(unknown)); V(quarantine) moves each to
        C(.vmcloud/quarantine/) in the store; V(remove) deletes it.
    type: str
    choices: [report, quarantine, remove]
    default: report
  layout:
    description:
      - What the host must hold before this run syncs, looked at in this same round trip (the hypervisor role
        passes its store directories, its trust store as filter C(vmcloud.fleet.trust_store_layout) describes
        it, and the disabled flag). The paths and trees are described as M(vmcloud.fleet.host_state_info)
        describes them and returned in RV(layout).
      - When a kept path differs (RV(layout.differing)), a file nobody keeps is in one of the O(layout.only)
        directories (RV(layout.withdrawn)), or a path of O(layout.absent) exists (RV(layout.present)), the
        module changes nothing, does not sync (RV(synced) is V(false)) and returns the look, so that the
        caller writes what differs and runs the module again without O(layout). A sync therefore never
        verifies the index with trust material other than the controller's.
      - Unset, the module syncs as it finds the host (RV(synced) V(true)).
    type: dict
    suboptions:
      paths:
        description: Paths to describe (each path itself).
        type: list
        elements: path
        default: []
      trees:
        description: Directories to describe with everything under them, two levels down.
        type: list
        elements: path
        default: []
      kept:
        description:
          - What must be there, in the entries of filter C(vmcloud.fleet.kept_differences) with the content
            as C(checksum)/C(checksums) (SHA-256), that is C(path) or C(paths), C(mode), C(type) (V(file) or
            V(directory)), C(owner) and C(group).
        type: list
        elements: dict
        default: []
      only:
        description: Directories (C(dir)) whose regular files may only be the given C(names).
        type: list
        elements: dict
        default: []
      absent:
        description: Paths that must not exist (the disabled flag of C(imgdist --disable)).
        type: list
        elements: path
        default: []
      look_only:
        description: Only look, even on a host as kept (a run whose tags leave the sync out).
        type: bool
        default: false
notes:
  - Check mode verifies the index, reads (and verifies) the .torrent files it would fetch, and asks the
    engine and the store what they hold; it returns the same lists a real run would, and writes
    nothing (neither the rollback mark, nor files, nor engine calls that change state). It does not wait.
  - Staging directories are created by the engine itself (it runs as its own user).
seealso:
  - module: vmcloud.fleet.image_index
  - module: vmcloud.fleet.torrent_download
  - module: vmcloud.fleet.image_promote
  - name: Trust model
    description: What is verified, and what legacy mode gives up.
    link: https://example.invalid/vmcloud/fleet/docs/trust.md
"""

EXAMPLES = r"""
- name: Bring this hypervisor to its desired images
  vmcloud.fleet.image_sync:
    src: http://catalogue/index.yaml
    trust_anchors: [/etc/vmcloud/trust/anchors]
    crl: [/etc/vmcloud/trust/crl]
    endorsers: ["CN=cern-it,O=CERN"]
    approved: "{{ vmcloud_approved_images }}"
    blocked: "{{ vmcloud_blocked_images | default([]) }}"
    rules: "{{ vmcloud_approval_rules | default([]) }}"
    host: "{{ inventory_hostname }}"
    subcluster: "{{ vmcloud_subcluster | default(omit, true) }}"
    cluster: "{{ vmcloud_cluster | default(omit, true) }}"
    download_timeout: 1800

- name: Preview what a sync would fetch, promote and retire
  vmcloud.fleet.image_sync:
    src: http://catalogue/index.yaml
    trust_anchors: [/etc/vmcloud/trust/anchors]
    approved: "{{ vmcloud_approved_images }}"
    host: "{{ inventory_hostname }}"
  check_mode: true
  register: vmcloud_sync_plan
"""

RETURN = r"""
synced:
  description:
    - Whether the module synced; V(false) when O(layout) found the host other than kept, or with
      O(layout.look_only) (only the look ran).
  returned: always
  type: bool
  sample: true
layout:
  description: What O(layout) found on the host, and how it differs from what is kept.
  returned: when O(layout) is given
  type: dict
  contains:
    files:
      description:
        - The described paths, keyed by path (as M(vmcloud.fleet.host_state_info)'s
          RV(vmcloud.fleet.host_state_info#module:files)).
      type: dict
    differing:
      description: The kept paths missing or other than kept, in the order given.
      type: list
      elements: str
    withdrawn:
      description: Regular files in the O(layout.only) directories that nobody keeps.
      type: list
      elements: str
    present:
      description: The paths of O(layout.absent) that exist.
      type: list
      elements: str
check_mode:
  description: Whether this was a check-mode run (every list then says what would be done).
  returned: success
  type: bool
  sample: false
index:
  description: The verified index.
  returned: success
  type: dict
  sample:
    format: v2
    url: http://catalogue/index.yaml
    version: 7
    previous_version: 6
    advanced: true
    expires: "2026-12-24T10:00:00Z"
    digest: 0f3c1e5b3f0e4b8b9a1f2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071
index_saved:
  description: Whether C(<state_dir>/verified-index.yaml) was (or would be) rewritten.
  returned: success
  type: bool
  sample: true
desired:
  description: Uuids of the images the host should hold (endorsed, approved, targeted, not blocked).
  returned: success
  type: list
  elements: str
  sample: [cernvm_1276695059-img-1277992808]
fetched:
  description: Uuids whose .torrent was (or would be) fetched and written.
  returned: success
  type: list
  elements: str
  sample: [cernvm_1276695059-img-1277992808]
added:
  description: Uuids handed to the engine in this run.
  returned: success
  type: list
  elements: str
  sample: [cernvm_1276695059-img-1277992808]
started:
  description: Uuids whose torrent was stopped in the engine and was restarted.
  returned: success
  type: list
  elements: str
  sample: []
promoted:
  description: Uuids verified and put (or put back, when changed on disk) into the store.
  returned: success
  type: list
  elements: str
  sample: [cernvm_1276695059-img-1277992808]
retired:
  description: Uuids removed from the store (or dropped from its manifest) because they are no longer desired.
  returned: success
  type: list
  elements: str
  sample: [cernvm_1276695059-img-1276000000]
removed:
  description: Info-hashes of no desired image dropped from the engine, with their staging directory and .torrent.
  returned: success
  type: list
  elements: str
  sample: [83f4e6f8cb70e0b6d8cbf31afbab911ef2ca3095]
held_open:
  description: Images that should be retired but stay, because a process (a running VM) holds them open.
  returned: success
  type: list
  elements: dict
  sample: [{uuid: cernvm_1276695059-img-1276000000, path: /var/lib/vmcloud/images/cernvm.img, pids: [4242],
            reason: "no longer desired, held open: not retired"}]
superseded_pending:
  description: Images no longer desired kept because a desired image of the same name is not in the store yet
    (C(waiting_for)); the first run that finds those present retires them.
  returned: success
  type: list
  elements: dict
  sample: [{uuid: slc5_demo-1, name: slc5_demo-img, version: 1, path: /var/lib/vmcloud/images/slc5_demo.img,
            waiting_for: [slc5_demo-2]}]
kept:
  description: Uuids of images no longer desired kept in the store (O(not_desired=keep)).
  returned: success
  type: list
  elements: str
  sample: []
failures:
  description:
    - Per-image problems; the other images went on. C(step) is one of V(torrent), V(engine), V(download),
      V(promote), V(retire); C(rule) names what failed (for example C(download-timeout), C(sha256-mismatch),
      C(torrent-sha256-mismatch)).
  returned: success, and when some image failed
  type: list
  elements: dict
  sample:
    - uuid: slc5_demo-2
      info_hash: 83f4e6f8cb70e0b6d8cbf31afbab911ef2ca3095
      step: download
      rule: download-timeout
      message: "83f4... is not complete after 3600 s: 0 of 8388608 bytes, 0 peers, state downloading; ..."
store:
  description:
    - The reconciliation of the store that the retirement ran (M(vmcloud.fleet.image_store)'s result, with
      C(unknown), C(quarantined), C(removed), C(evicted), C(kept), C(quota), C(actions), C(deferred) and
      C(failures)); null when the retirement could not be planned (see RV(failures)).
  returned: success
  type: dict
  sample: {changed: false, store: /var/lib/vmcloud/images, unknown: [], quarantined: [], removed: [], evicted: []}
held:
  description: Uuids the store holds after the run (predicted in check mode).
  returned: success
  type: list
  elements: str
  sample: [cernvm_1276695059-img-1277992808]
held_before:
  description: Uuids the store held before the run.
  returned: success
  type: list
  elements: str
  sample: []
selection:
  description: Approvals that could not be met on this host, and why.
  returned: success
  type: dict
  contains:
    host:
      description: The host name images were matched against.
      type: str
    not_endorsed:
      description: Approvals that match no verified image.
      type: list
      elements: dict
    not_approved:
      description: Uuids of endorsed images targeted at the host that the site did not approve.
      type: list
      elements: str
    not_targeted:
      description: Approved images whose targets exclude the host.
      type: list
      elements: dict
    blocked:
      description: Approved images that a block entry removed.
      type: list
      elements: dict
  sample: {host: hv01, not_endorsed: [], not_approved: [], not_targeted: [], blocked: []}
desired_images:
  description:
    - The verified index entries of the desired images, as
      O(vmcloud.fleet.image_store#module:desired) takes them.
  returned: success
  type: list
  elements: dict
  sample: [{uuid: cernvm_1276695059-img-1277992808, file: cernvm_1276695059.img.gz, compressed: true}]
images:
  description: Per desired image, what happened at each step, and the engine's view after the run.
  returned: success
  type: list
  elements: dict
  sample:
    - uuid: cernvm_1276695059-img-1277992808
      name: cernvm_1276695059-img
      version: 1277992808
      info_hash: 83f4e6f8cb70e0b6d8cbf31afbab911ef2ca3095
      path: /var/lib/vmcloud/images/cernvm_1276695059.img
      torrent: fetched
      engine: add
      store: promoted
      status: {state: seeding, complete: true, ratio: 0.0}
      failure: null
  contains:
    torrent:
      description: V(present) (already verified on disk) or V(fetched); V(unused) when a method other than
        V(bittorrent) needs no .torrent (the entry has a SHA-256).
      type: str
    engine:
      description: V(none), V(add) or V(start); always V(none) for a method other than V(bittorrent).
      type: str
    store:
      description: V(present), V(promoted) or V(repaired); V(pending) when a step failed.
      type: str
    failure:
      description: The step, rule and message of this image's failure; null when it went through.
      type: dict
rule:
  description: The rule that failed, on failure.
  returned: failure
  type: str
  sample: images-failed
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmcloud.fleet.plugins.module_utils._argspec import (
    FETCH_ARGSPEC,
    INDEX_TRUST_ARGSPEC,
    SELECTION_ARGSPEC,
    SYNC_ARGSPEC,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._engine import (
    default_engine_user,
    default_socket,
    engine_for,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._host_state import look_at_layout
from ansible_collections.vmcloud.fleet.plugins.module_utils._options import INDEX_CHECKS, SYNC_CHECKS, check_options
from ansible_collections.vmcloud.fleet.plugins.module_utils._reconcile_plan import POLICIES
from ansible_collections.vmcloud.fleet.plugins.module_utils._requirements import module_require
from ansible_collections.vmcloud.fleet.plugins.module_utils._sync import sync


def main() -> None:
    argument_spec = dict(
        src=dict(type="str", required=True),
        unknown=dict(type="str", choices=list(POLICIES), default="report"),
        layout=dict(type="dict", options=dict(
            paths=dict(type="list", elements="path", default=[]),
            trees=dict(type="list", elements="path", default=[]),
            kept=dict(type="list", elements="dict", default=[]),
            only=dict(type="list", elements="dict", default=[]),
            absent=dict(type="list", elements="path", default=[]),
            look_only=dict(type="bool", default=False),
        )),
        **INDEX_TRUST_ARGSPEC,
        **SELECTION_ARGSPEC,
        **FETCH_ARGSPEC,
        **SYNC_ARGSPEC,
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    module_require(module, "cryptography", "yaml", "fastbencode")
    params = module.params
    layout = None
    try:
        if params["layout"] is not None:
            guard = dict(params["layout"])
            look_only = guard.pop("look_only")
            layout = look_at_layout(**guard)
            if look_only or layout["differing"] or layout["withdrawn"] or layout["present"]:
                module.exit_json(changed=False, synced=False, check_mode=module.check_mode, layout=layout)
        check_options(params, {**INDEX_CHECKS, **SYNC_CHECKS})
        engine = engine_for(params["engine"], timeout=params["rpc_timeout"],
                            socket=params["socket"] or default_socket(params["engine"]))
        params["engine_user"] = default_engine_user(params["engine"], params["engine_user"])
        report = sync(params, engine, check_mode=module.check_mode)
    except VmcloudError as exc:
        module.fail_json(msg=str(exc), rule=exc.rule)
    except OSError as exc:
        module.fail_json(msg=f"io-error: {exc}", rule="io-error")
    result = report.to_dict()
    result["synced"] = True
    if layout is not None:
        result["layout"] = layout
    quota = (result["store"] or {}).get("quota") or {}
    if quota.get("over_after"):
        module.warn(f"{params['store_dir']} stays over its quota after this run: only desired images, unknown "
                    "entries the policy keeps, the quarantine or held-open files are left; free space by hand")
    result["diff"] = {"before": {"held": report.held_before}, "after": {"held": report.held}}
    # Entries nobody declared, when there are any: what quarantine or remove takes away (option unknown).
    store = result["store"] or {}
    if store.get("unknown"):
        gone = set(store["quarantined"]) | set(store["removed"])
        result["diff"]["before"]["unknown"] = store["unknown"]
        result["diff"]["after"]["unknown"] = [path for path in store["unknown"] if path not in gone]
    if report.failures:
        first = report.failures[0]
        module.fail_json(
            msg=f"images-failed: {len(report.failures)} problem(s), the other images went on; first: "
            f"{first['uuid'] or first['info_hash']}: {first['rule']}: {first['message']}",
            rule="images-failed",
            **result,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
