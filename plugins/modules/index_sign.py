#!/usr/bin/python
# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: index_sign
short_description: Sign a v2 image index file with one or more endorser keys
version_added: 0.1.0
description:
  - Adds each signer's signature over the signed content of a v2 image index file (as written by
    M(vmcloud.fleet.index_image)), so that hypervisors accept it with M(vmcloud.fleet.image_index).
  - Signs with RSA (PKCS#1 v1.5, SHA-256, 2048 bits or more), ECDSA P-256 (SHA-256) or Ed25519 keys,
    the algorithm following the key. Each signature is verified with the reader's own code before it is kept.
  - Idempotent. A certificate whose signature still verifies over the current content is left as it is
    (ECDSA signatures differ on every run, so signatures are compared by verifying them, not by bytes);
    signatures that no longer verify are dropped; other endorsers' valid signatures are kept, so
    several endorsers can co-sign one version to meet a site's threshold.
  - Refuses an expired index, a key that does not belong to its certificate, and certificates that
    readers would refuse (expired, not yet valid, without C(digitalSignature) key usage).
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
      - The index file to sign. It is replaced atomically, keeping its file mode.
    type: path
    required: true
  signers:
    description:
      - The endorser keys to sign with; each certificate signs once.
    type: list
    elements: dict
    required: true
    suboptions:
      certificate:
        description:
          - PEM file of the endorser certificate, optionally followed by the intermediate CA
            certificates readers need to build the chain. The whole bundle goes into the index.
        type: path
        required: true
      private_key:
        description:
          - PEM file of the certificate's private key (PKCS#8 or traditional format).
          - Exactly one of O(signers[].private_key) and O(signers[].private_key_content) is required.
        type: path
      private_key_content:
        description:
          - The certificate's private key as PEM text, for keys kept in a vault.
          - Exactly one of O(signers[].private_key) and O(signers[].private_key_content) is required.
        type: str
      passphrase:
        description:
          - Passphrase of an encrypted private key.
        type: str
notes:
  - Key material is never written to the index, the diff or the results; the diff lists signer
    subjects only.
  - Times are UTC, taken from the controller's clock.
seealso:
  - module: vmcloud.fleet.index_image
  - module: vmcloud.fleet.image_index
"""

EXAMPLES = r"""
- name: Sign the index
  vmcloud.fleet.index_sign:
    path: /srv/catalogue/index.yaml
    signers:
      - certificate: /etc/vmcloud/endorser/cern-it.pem
        private_key: /etc/vmcloud/endorser/cern-it.key

- name: Co-sign with a key from a vault
  vmcloud.fleet.index_sign:
    path: /srv/catalogue/index.yaml
    signers:
      - certificate: /etc/vmcloud/endorser/security-team.pem
        private_key_content: "{{ vault_security_team_key }}"
        passphrase: "{{ vault_security_team_passphrase }}"
"""

RETURN = r"""
version:
  description: Version of the signed index.
  returned: success
  type: int
  sample: 8
signers:
  description: Distinct certificates whose signatures verify over the index after the run.
  returned: success
  type: list
  elements: dict
  contains:
    subject:
      description: Subject of the endorser certificate, RFC 4514.
      type: str
    fingerprint:
      description: SHA-256 fingerprint of the certificate (DER), lowercase hex.
      type: str
  sample:
    - subject: CN=cern-it,O=CERN
      fingerprint: 5d1c0b2e4f6a8c9e0d1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f
added:
  description: Subjects of the signers whose signature this run added.
  returned: success
  type: list
  elements: str
  sample: ["CN=cern-it,O=CERN"]
dropped:
  description: Subjects of the signatures this run dropped because they no longer verified.
  returned: success
  type: list
  elements: str
  sample: []
"""

from typing import Any, Dict

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmcloud.fleet.plugins.module_utils._endorse_document import (
    EndorseError,
    read_document,
    write_document,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._endorse_sign import (
    describe_signatures,
    load_signer_files,
    sign_index,
    valid_signers,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._requirements import module_require

ARGUMENT_SPEC: Dict[str, Any] = {
    "path": {"type": "path", "required": True},
    "signers": {
        "type": "list",
        "elements": "dict",
        "required": True,
        "options": {
            "certificate": {"type": "path", "required": True},
            "private_key": {"type": "path"},
            "private_key_content": {"type": "str", "no_log": True},
            "passphrase": {"type": "str", "no_log": True},
        },
        "mutually_exclusive": [("private_key", "private_key_content")],
        "required_one_of": [("private_key", "private_key_content")],
    },
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    module_require(module, "cryptography", "yaml")
    params = module.params
    try:
        document = read_document(params["path"])
        if document is None:
            raise EndorseError(
                "index-missing", f"there is no index at {params['path']}; create it with vmcloud.fleet.index_image"
            )
        signers = [
            load_signer_files(
                spec["certificate"], spec["private_key"], spec["private_key_content"], spec["passphrase"]
            )
            for spec in params["signers"]
        ]
        result = sign_index(document, signers)
        if result.changed and not module.check_mode:
            write_document(params["path"], result.after)
    except VmcloudError as exc:
        module.fail_json(msg=str(exc), rule=exc.rule)
    except OSError as exc:
        module.fail_json(msg=f"io-error: cannot write {params['path']}: {exc.strerror}", rule="io-error")
    module.exit_json(
        changed=result.changed,
        version=result.after["signed"]["version"],
        signers=valid_signers(result.after),
        added=result.added,
        dropped=result.dropped,
        diff={
            "before_header": params["path"],
            "after_header": params["path"],
            "before": {"signers": describe_signatures(result.before)},
            "after": {"signers": describe_signatures(result.after)},
        },
    )


if __name__ == "__main__":
    main()
