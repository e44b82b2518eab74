#!/usr/bin/python
# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: image_index
short_description: Fetch and verify the signed image index, and select a host's images
version_added: 0.1.0
description:
  - Fetches the endorsers' signed image index from an http(s) URL or a local path, verifies it
    against the site's trust configuration, and returns the verified images in one normalised
    form for both index formats (v2 and the 2010 legacy torrent list).
  - Verification fails closed and names the rule that failed (for example C(rollback),
    C(index-expired), C(certificate-revoked), C(threshold-not-met)). A refused index changes nothing.
  - On success the index version (and a digest of its content) is recorded in O(state_dir), so that a
    later, lower version or a different index with the same version is refused (rollback protection).
  - When O(approved) is given, also computes the host's desired images (endorsed, approved and
    targeted at the host, minus blocked) and reports every approval that could not be met and why.
author:
  - vmcloud team (@vmcloud)
extends_documentation_fragment:
  - vmcloud.fleet._attributes
  - vmcloud.fleet._attributes.STATE_CHANGING
  - vmcloud.fleet._index_trust
  - vmcloud.fleet._index_trust.SELECTION
  - vmcloud.fleet._index_trust.FETCH
  - vmcloud.fleet._requirements.CRYPTOGRAPHY
  - vmcloud.fleet._requirements.YAML
options:
  src:
    description:
      - Where the index is published (C(http://) or C(https://) URL), or a local file path.
      - For a URL, the index's own C(url) field must equal it (rule C(url-mismatch)).
    type: str
    required: true
  dest:
    description:
      - Keep a copy of the verified index document here (written atomically), for tools that
        work offline such as C(imgdist check). Nothing is written when verification fails.
    type: path
notes:
  - Check mode verifies everything and reports what would change, but writes neither the
    high-water mark nor O(dest).
seealso:
  - name: Trust model
    description: What is verified, and what legacy mode gives up.
    link: https://example.invalid/vmcloud/fleet/docs/trust.md
"""

EXAMPLES = r"""
- name: Verify the index and select this hypervisor's images
  vmcloud.fleet.image_index:
    src: http://catalogue/index.yaml
    trust_anchors: [/etc/vmcloud/trust/ca.pem]
    endorsers: ["CN=cern-it,O=CERN"]
    crl: [/etc/vmcloud/trust/ca.crl]
    approved: "{{ vmcloud_approved_images }}"
    blocked: "{{ vmcloud_blocked_images | default([]) }}"
    host: "{{ inventory_hostname }}"
    subcluster: "{{ vmcloud_subcluster | default(omit) }}"
    cluster: "{{ vmcloud_cluster | default(omit) }}"
  register: vmcloud_index

- name: Verify a legacy torrent list from a local file
  vmcloud.fleet.image_index:
    src: /srv/vmic/torrent-list.yaml
    legacy: true
    trust_anchors: [/etc/vmcloud/trust/ca.pem]
    endorser_certificates: [/etc/vmcloud/trust/endorser.pem]
"""

RETURN = r"""
format:
  description: Index format.
  returned: success
  type: str
  sample: v2
url:
  description: Address the index says it is published at (legacy lists, the fetched URL or null).
  returned: success
  type: str
  sample: http://catalogue/index.yaml
version:
  description: Index version (null for legacy lists).
  returned: success
  type: int
  sample: 7
previous_version:
  description: Last accepted version before this run (null when none was recorded).
  returned: success
  type: int
  sample: 6
created:
  description: When the endorser created this version.
  returned: success
  type: str
  sample: "2026-11-24T10:00:00Z"
expires:
  description: When this version stops being accepted.
  returned: success
  type: str
  sample: "2026-12-24T10:00:00Z"
endorser:
  description: Endorser name from the index.
  returned: success
  type: str
  sample: cern-it
digest:
  description: SHA-256 of the signed content.
  returned: success
  type: str
  sample: 0f3c1e5b3f0e4b8b9a1f2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071
signers:
  description: Distinct endorser certificates whose signatures verified.
  returned: success
  type: list
  elements: dict
  sample: [{subject: "CN=cern-it,O=CERN", issuer: "CN=Lab CA", fingerprint: "ab12...", serial: "1f"}]
problems:
  description: Signatures that did not count, and why (the index was still accepted on the others).
  returned: success
  type: list
  elements: str
  sample: []
images:
  description:
    - The verified image entries, normalised so both formats look alike.
    - Keys C(uuid), C(name), C(version), C(file), C(size), C(sha256), C(compressed), C(volume_size),
      C(piece_size), C(torrent) (C(url), C(sha256), C(sha1), C(info_hash)), C(web_seeds), C(targets)
      (C(hosts), C(subclusters), C(clusters)), C(created), C(extra) (unknown keys, signed).
    - Legacy entries have C(size) and C(sha256) null (the torrent's piece hashes protect the content).
  returned: success
  type: list
  elements: dict
  sample:
    - uuid: cernvm_1276695059-img-1277992808
      name: cernvm_1276695059-img
      version: 1277992808
      file: cernvm_1276695059.img.gz
      size: 247872389
      sha256: 9f2b5c0e3c6a0c7f1d8e2a4b6c8d0e1f3a5b7c9d1e3f5a7b9c1d3e5f7a9b1c3d
      compressed: true
selection:
  description: The host's desired set and what was left out, when O(approved) is given.
  returned: when approved is given
  type: dict
  contains:
    desired:
      description: Images endorsed, approved and targeted at the host, and not blocked.
      type: list
      elements: dict
    desired_uuids:
      description: Their uuids.
      type: list
      elements: str
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
  sample: {desired_uuids: [cernvm_1276695059-img-1277992808], not_endorsed: [], not_approved: []}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmcloud.fleet.plugins.module_utils._argspec import (
    FETCH_ARGSPEC,
    INDEX_TRUST_ARGSPEC,
    SELECTION_ARGSPEC,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._index_service import (
    fetch_and_accept,
    result_of,
    selection_for,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._io import differs, write_atomic
from ansible_collections.vmcloud.fleet.plugins.module_utils._options import INDEX_CHECKS, check_options
from ansible_collections.vmcloud.fleet.plugins.module_utils._requirements import module_require


def main() -> None:
    argument_spec = dict(
        src=dict(type="str", required=True),
        dest=dict(type="path"),
        **INDEX_TRUST_ARGSPEC,
        **SELECTION_ARGSPEC,
        **FETCH_ARGSPEC,
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    module_require(module, "cryptography", "yaml")
    params = module.params
    try:
        check_options(params, INDEX_CHECKS)
        accepted, data = fetch_and_accept(params, persist=not module.check_mode)
        result = result_of(accepted)
        dest_changed = bool(params["dest"]) and differs(params["dest"], data)
        if dest_changed and not module.check_mode:
            write_atomic(params["dest"], data)
        if params["approved"] is not None:
            result["selection"] = selection_for(accepted.index.images, params)
    except VmcloudError as exc:
        module.fail_json(msg=str(exc), rule=exc.rule)
    except OSError as exc:
        module.fail_json(msg=f"io-error: {exc}", rule="io-error")
    result["changed"] = accepted.advanced or dest_changed
    result["diff"] = {
        "before": {"version": accepted.previous_version},
        "after": {"version": accepted.index.version},
    }
    module.exit_json(**result)


if __name__ == "__main__":
    main()
