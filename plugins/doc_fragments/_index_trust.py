# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options shared by everything that verifies the signed image index. Private to the collection."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
attributes:
  action_group:
    description:
      - Use C(group/vmcloud.fleet.trust) in C(module_defaults) to set the trust options once for every
        module that verifies the index.
    support: full
    membership:
      - vmcloud.fleet.trust
options:
  trust_anchors:
    description:
      - CA certificates (PEM files, or directories of C(*.pem)/C(*.crt) files) that endorser
        certificates must chain to.
    type: list
    elements: path
    required: true
  endorsers:
    description:
      - Pinned endorser subjects, as RFC 4514 strings (for example C(CN=cern-it,O=CERN)).
      - When set, a signature counts only if its certificate's subject is listed (or it matches
        O(endorser_pins)).
      - A subject alone does not say who issued it, so with several trust anchors (an IGTF
        bundle) any of those CAs can issue a certificate with the pinned subject. Prefer
        O(endorser_pins), which names the issuing CA as well; see C(docs/trust.md).
    type: list
    elements: str
    default: []
  endorser_pins:
    description:
      - Pinned endorsers, each by the subject of its certificate and the CA that issued it
        (the way vmcatcher pins an endorser). Recommended over O(endorsers).
      - When set, a signature counts only if its certificate matches a pin (or its subject is in
        O(endorsers)). When the issuer is one of O(trust_anchors), the certificate must be
        signed by that anchor's key, not by another CA's intermediate of the same name.
    type: list
    elements: dict
    default: []
    suboptions:
      subject:
        description: Subject of the endorser certificate, RFC 4514 (for example C(CN=cern-it,O=CERN)).
        type: str
        required: true
      issuer:
        description:
          - Subject of the CA that issued the endorser certificate, RFC 4514 (for example
            C(CN=CERN Grid Certification Authority,DC=cern,DC=ch)).
        type: str
        required: true
  crl:
    description:
      - Certificate revocation lists (PEM or DER files, or directories of C(*.crl)/C(*.pem)).
      - A CRL whose C(nextUpdate) is past makes verification fail (fail closed).
    type: list
    elements: path
    default: []
  threshold:
    description:
      - Minimum number of distinct valid endorser certificates that must sign the index (1 to 32; an index
        carrying more than 32 signatures is refused with rule C(signature-count)).
    type: int
    default: 1
  legacy:
    description:
      - Accept the 2010 legacy torrent list format. Legacy lists have no version and no
        expiry, so an attacker who can serve files may replay an old list or freeze a site
        at one; see C(docs/trust.md) before turning this on.
    type: bool
    default: false
  endorser_certificates:
    description:
      - Endorser certificates (PEM) that legacy lists are verified against; each must
        chain to O(trust_anchors), be inside its validity and not be revoked.
    type: list
    elements: path
    default: []
  max_size:
    description:
      - Refuse an index larger than this many bytes, before parsing it (1 byte to 1 GiB). Nesting depth,
        node count and number length are bounded too (see docs/trust.md, Limits).
    type: int
    default: 16777216
  clock_skew:
    description:
      - Seconds that C(created) may lie in the future before the index is refused (0 to 86400).
    type: int
    default: 300
  state_dir:
    description:
      - Directory that keeps the last accepted version (and a digest of its content) per
        index URL, for rollback protection. Written atomically, never in check mode.
    type: path
    default: /var/lib/vmcloud/index
  reference_time:
    description:
      - The single reference time of the run, RFC 3339 UTC (for example C(2026-11-24T10:00:00Z)).
      - Defaults to the current time. Certificates, CRLs, C(created) and C(expires) are all
        judged at this one instant.
    type: str
"""

    SELECTION = r"""
options:
  approved:
    description:
      - The site's approved images (usually C(vmcloud_approved_images)). Each entry is a mapping
        with C(name) and C(version) (an image version or C(latest)), or with C(uuid); C(comment) is
        free text. When given, the result includes RV(selection).
    type: list
    elements: raw
  blocked:
    description:
      - Images the site refuses even when approved (usually C(vmcloud_blocked_images)), each by C(name)
        with an optional C(version) (all versions when left out), or by C(uuid).
    type: list
    elements: raw
    default: []
  rules:
    description:
      - JMESPath expressions (usually C(vmcloud_approval_rules)) evaluated over the verified image
        list; every image (or uuid) they return is approved.
    type: list
    elements: str
    default: []
  host:
    description:
      - Host name matched against image targets. Defaults to the inventory hostname the play passes.
    type: str
  subcluster:
    description: Subcluster of the host (C(vmcloud_subcluster)), matched against image targets.
    type: str
  cluster:
    description: Cluster of the host (C(vmcloud_cluster)), matched against image targets.
    type: str
"""

    FETCH = r"""
options:
  timeout:
    description:
      - Seconds for each HTTP(S) fetch as a whole (connect, TLS, redirects, headers and body), from 1 to
        3600. A server that is slower fails with rule C(fetch-deadline).
      - Redirects are followed only to the same scheme, host and port (rule C(fetch-redirect)), and the
        index's C(url) must equal the address that finally answered.
    type: int
    default: 30
  validate_certs:
    description: Verify the TLS certificate of an HTTPS source.
    type: bool
    default: true
  ca_path:
    description: CA bundle (file or directory) for HTTPS sources; the system store when unset.
    type: path
"""
