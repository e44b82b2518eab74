# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: crl_info
short_description: What a CRL file on the controller says, and whether it may be installed
version_added: 0.1.0
description:
  - Reads a CRL (PEM or DER) from a path on the controller and returns its issuer, C(thisUpdate),
    C(nextUpdate), the number of revoked certificates, whether it is past its C(nextUpdate), and the
    refusal C(problem) (C(crl-stale), C(crl-malformed), C(crl-signature-invalid) against O(anchors))
    of the same library that the agent's C(imgdist crl-refresh) installs CRLs with.
  - The C(vmcloud.fleet.trust_store) role refuses to copy a CRL whose C(problem) is set.
requirements:
  - cryptography (Debian package python3-cryptography) on the controller
author:
  - vmcloud team (@vmcloud)
options:
  _input:
    description: Path of the CRL file on the controller.
    type: path
    required: true
  anchors:
    description: Trust anchor files (PEM) on the controller; a CRL issued by one of them must be signed by it.
    type: list
    elements: path
    default: []
"""

EXAMPLES = r"""
- name: Refuse a stale CRL before copying it
  ansible.builtin.assert:
    that: (item | vmcloud.fleet.crl_info).problem is none
    fail_msg: "{{ (item | vmcloud.fleet.crl_info).problem }}"
  loop: "{{ vmcloud_trust_crls }}"
"""

RETURN = r"""
_value:
  description: C(issuer) (RFC 4514), C(this_update), C(next_update) (RFC 3339 UTC, or none), C(revoked)
    (count), C(stale) (bool) and C(problem) (the refusal as one line starting with its rule, or none when
    the CRL may be installed).
  type: dict
"""

import datetime

from ansible.errors import AnsibleFilterError

# The collection's library (and cryptography) is imported where the filter runs, not when the plugin loads:
# Ansible loads every filter file of a collection in each task's worker, whenever a task names any
# vmcloud.fleet filter (filter fleet_report says more).


def _read(path: str, what: str, limit: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(limit + 1)
    except OSError as exc:
        raise AnsibleFilterError(f"crl_info: cannot read {what} {path}: {exc.strerror or exc}") from exc


def crl_info(path, anchors=None):
    from ansible_collections.vmcloud.fleet.plugins.module_utils import _crl
    from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError
    from ansible_collections.vmcloud.fleet.plugins.module_utils._requirements import require
    from ansible_collections.vmcloud.fleet.plugins.module_utils._trust import load_pem_certificates

    if not isinstance(path, str) or not path:
        raise AnsibleFilterError("crl_info: the input must be the path of a CRL file on the controller")
    try:
        require("cryptography")
    except VmcloudError as exc:
        raise AnsibleFilterError(f"crl_info: {exc}") from exc
    now = datetime.datetime.now(datetime.UTC)
    data = _read(path, "the CRL", _crl.MAX_CRL_BYTES)
    try:
        certificates = [cert for anchor in anchors or []
                        for cert in load_pem_certificates(_read(anchor, "anchor", _crl.MAX_CRL_BYTES), anchor)]
    except VmcloudError as exc:
        raise AnsibleFilterError(f"crl_info: {exc}") from exc
    try:
        crl = _crl.check_installable(data, path, None, certificates, now)
    except VmcloudError as exc:
        try:
            described = _crl.describe(_crl.parse_crl(data, path), now).to_dict()
        except VmcloudError:
            described = {"issuer": None, "this_update": None, "next_update": None, "revoked": None, "stale": None}
        return {**described, "problem": str(exc)}
    return {**_crl.describe(crl, now).to_dict(), "problem": None}


class FilterModule:
    def filters(self):
        return {"crl_info": crl_info}
