# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Attacks on the signed index, against the real image_index module and the real ``imgdist sync``.

Each case starts from a host that accepted version 5 and holds one image (``trusted``), serves a
hostile index at the index URL, and asserts that both the module and imgdist refuse it naming the
rule, and that the host's state_dir and store are byte for byte unchanged.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os

import yaml

from tests.attack.conftest import EXIT_ERROR, assert_module_refused, content_entry, now, utc


def _tamper(document: bytes, change) -> bytes:
    parsed = yaml.safe_load(document)
    change(parsed["signed"])
    return yaml.safe_dump(parsed, sort_keys=False).encode("utf-8")


def test_tampered_body_is_refused(trusted):
    good = trusted.publisher.document(6, trusted.images)
    evil = hashlib.sha256(b"backdoored image").hexdigest()
    trusted.serve(_tamper(good, lambda signed: signed["images"][0].update(sha256=evil)))
    result, run = trusted.refused_everywhere("threshold-not-met", cli=True)
    assert "signature-invalid" in result["msg"] and "signature-invalid" in run.err


def test_index_signed_by_an_untrusted_ca_is_refused(trusted, keys):
    # The rogue CA even carries the trusted CA's name, and is sent along as the chain.
    trusted.serve(trusted.publisher.document(6, trusted.images, signers=[keys.rogue], chains=[[keys.rogue_ca.cert]]))
    result, _unused = trusted.refused_everywhere("threshold-not-met")
    assert "certificate-untrusted" in result["msg"]


def test_unpinned_dn_is_refused(trusted, keys):
    trusted.host.trust["endorser_pins"] = keys.pin()
    trusted.serve(trusted.publisher.document(6, trusted.images, signers=[keys.intruder]))
    result, _unused = trusted.refused_everywhere("threshold-not-met")
    assert "endorser-not-pinned" in result["msg"]


def test_pinned_dn_minted_by_another_ca_of_the_bundle_is_refused(trusted, keys):
    trusted.host.trust.update(trust_anchors=[str(keys.bundle_pem)], endorser_pins=keys.pin())
    assert keys.dn(keys.other_minted) == keys.dn(keys.endorser)
    trusted.serve(trusted.publisher.document(6, trusted.images, signers=[keys.other_minted]))
    result, _unused = trusted.refused_everywhere("threshold-not-met")
    assert "endorser-not-pinned" in result["msg"]


def test_pinned_issuer_name_on_an_intermediate_of_another_ca_is_refused(trusted, keys):
    trusted.host.trust.update(trust_anchors=[str(keys.bundle_pem)], endorser_pins=keys.pin())
    assert keys.dn(keys.fake_issuer) == keys.dn(keys.ca)
    trusted.serve(trusted.publisher.document(6, trusted.images, signers=[keys.fake_issued],
                                             chains=[[keys.fake_issuer.cert]]))
    result, _unused = trusted.refused_everywhere("threshold-not-met")
    assert "endorser-not-pinned" in result["msg"]


def test_expired_index_is_refused(trusted):
    trusted.serve(trusted.publisher.document(6, trusted.images, created=utc(now() - datetime.timedelta(days=40)),
                                             expires=utc(now() - datetime.timedelta(days=1))))
    trusted.refused_everywhere("index-expired")


def test_index_created_in_the_future_is_refused(trusted):
    trusted.serve(trusted.publisher.document(6, trusted.images, created=utc(now() + datetime.timedelta(days=1))))
    trusted.refused_everywhere("index-from-future")


def test_expired_certificate_is_refused(trusted, keys):
    trusted.serve(trusted.publisher.document(6, trusted.images, signers=[keys.expired]))
    result, _unused = trusted.refused_everywhere("threshold-not-met")
    assert "certificate-expired" in result["msg"]


def test_revoked_certificate_is_refused(trusted, keys):
    trusted.host.trust["crl"] = [str(keys.crl_pem)]
    trusted.serve(trusted.publisher.document(6, trusted.images, signers=[keys.revoked]))
    result, _unused = trusted.refused_everywhere("threshold-not-met")
    assert "certificate-revoked" in result["msg"]


def test_rollback_to_an_older_version_is_refused(trusted):
    trusted.serve(trusted.publisher.document(4, trusted.images))
    result, _unused = trusted.refused_everywhere("rollback", cli=True)
    assert "index version 4 is lower than the last accepted version 5" in result["msg"]


def test_same_version_with_other_content_is_refused(trusted):
    other = content_entry("slc5", 1, b"other content")
    trusted.serve(trusted.publisher.document(5, [*trusted.images, other]))
    result, _unused = trusted.refused_everywhere("rollback")
    assert "differs from the accepted version 5 with the same number" in result["msg"]


def test_threshold_not_met_is_refused(trusted):
    trusted.host.trust["threshold"] = 2
    trusted.serve(trusted.publisher.document(6, trusted.images))
    result, _unused = trusted.refused_everywhere("threshold-not-met")
    assert "1 valid endorser key(s), 2 required" in result["msg"]


def test_threshold_faked_with_one_key_in_two_certificates_is_refused(trusted, keys):
    trusted.host.trust["threshold"] = 2
    assert keys.reissued.cert.serial_number != keys.endorser.cert.serial_number
    trusted.serve(trusted.publisher.document(6, trusted.images, signers=[keys.endorser, keys.reissued]))
    result, _unused = trusted.refused_everywhere("threshold-not-met")
    assert "same public key" in result["msg"]


def test_threshold_of_two_distinct_keys_is_accepted(trusted, keys):
    """The control case of the two above: two endorsers holding two keys do meet threshold 2."""
    trusted.host.trust["threshold"] = 2
    trusted.serve(trusted.publisher.document(6, trusted.images, signers=[keys.endorser, keys.second]))
    result = trusted.host.image_index()
    assert result.get("failed") is not True and result["version"] == 6, result


def test_duplicate_uuids_are_refused(trusted):
    twin = content_entry("cernvm", 6, b"a second image under the same uuid", uuid=trusted.images[0]["uuid"])
    trusted.serve(trusted.publisher.document(6, [*trusted.images, twin]))
    result, _unused = trusted.refused_everywhere("uuid-duplicate")
    assert trusted.images[0]["uuid"] in result["msg"]


def _named(trusted, file_name: str) -> None:
    entry = content_entry("evil", 1, b"payload", file=file_name)
    trusted.serve(trusted.publisher.document(6, [*trusted.images, entry]))
    trusted.host.approved = [*trusted.host.approved, {"uuid": entry["uuid"]}]


def test_path_traversal_file_name_is_refused(trusted):
    _named(trusted, "../../etc/cron.d/evil")
    result, _unused = trusted.refused_everywhere("entry-malformed")
    assert "not a plain file name" in result["msg"]


def test_absolute_file_name_is_refused(trusted):
    _named(trusted, "/etc/cron.d/evil")
    trusted.refused_everywhere("entry-malformed")


def test_hidden_file_name_is_refused(trusted):
    _named(trusted, ".vmcloud")  # the store's own metadata directory
    trusted.refused_everywhere("entry-malformed")


def test_over_long_file_name_is_refused(trusted):
    _named(trusted, "a" * 300 + ".img")  # NAME_MAX is 255 bytes
    trusted.refused_everywhere("entry-malformed")


def test_oversized_index_is_refused(trusted):
    default_cap = 16 * 1024 * 1024
    good = trusted.publisher.document(6, trusted.images)
    trusted.serve(good + b"#" + b"x" * (default_cap - len(good)) + b"\n")
    # A fetch that stops at the cap is a fetch failure for imgdist (exit 5), as an unreachable index.
    result, _unused = trusted.refused_everywhere("size-cap", code=EXIT_ERROR)
    assert "larger than the cap" in result["msg"] or "above the cap" in result["msg"]


def test_yaml_alias_bomb_is_refused(trusted):
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 10):
        lines.append(f"a{level}: &a{level} [" + ",".join([f"*a{level - 1}"] * 9) + "]")
    trusted.serve(("\n".join(lines) + "\n").encode("ascii"))
    trusted.refused_everywhere("yaml-alias")


def test_html_page_instead_of_an_index_is_refused(trusted):
    from tests.attack.conftest import Static

    page = (b"<!DOCTYPE html>\n<html><head><title>Welcome to the guest network</title></head>\n"
            b"<body><h1>Please log in</h1><p>Accept the terms to continue.</p></body></html>\n")
    trusted.serve(Static(page, "text/html"))
    trusted.refused_everywhere("index-malformed")


def test_url_mismatch_is_refused(trusted):
    # Validly signed, but for another channel of the catalogue.
    elsewhere = trusted.site.url("testing/index.yaml")
    trusted.serve(trusted.publisher.document(6, trusted.images, url=elsewhere))
    result, _unused = trusted.refused_everywhere("url-mismatch", cli=True)
    assert elsewhere in result["msg"]


def test_fast_forward_then_recovery_by_revocation_and_removing_the_mark(trusted, keys):
    """A validly signed index with a huge version (a stolen key) freezes the host: every honest index
    after it is a rollback. What the code offers for recovery (docs/trust.md describes none): revoke
    the stolen key (CRL), and remove the high-water mark of that URL by hand; the honest index is
    then accepted and the fast-forward one is refused."""
    host = trusted.host
    huge = 2 ** 62
    forward = trusted.publisher.document(huge, trusted.images, signers=[keys.revoked])
    trusted.serve(forward)
    accepted = host.image_index()
    assert accepted.get("failed") is not True and accepted["version"] == huge, accepted

    honest = trusted.publisher.document(6, trusted.images)
    trusted.serve(honest)
    result, _unused = trusted.refused_everywhere("rollback")
    assert f"last accepted version {huge}" in result["msg"]

    # Recovery, step 1: the stolen key is revoked. The mark still holds the host.
    host.trust["crl"] = [str(keys.crl_pem)]
    trusted.refused_everywhere("rollback")
    # Step 2: the operator removes the mark of this URL (the only file naming it in state_dir).
    marks = [name for name in os.listdir(host.state_dir) if name.startswith("index-") and name.endswith(".json")]
    assert len(marks) == 1
    os.unlink(os.path.join(host.state_dir, marks[0]))
    # The fast-forward index is now refused on the revocation, and changes nothing ...
    trusted.serve(forward)
    result, _unused = trusted.refused_everywhere("threshold-not-met")
    assert "certificate-revoked" in result["msg"]
    # ... and the honest index is accepted again, rollback protection restarting from it.
    trusted.serve(honest)
    recovered = host.image_index()
    assert recovered.get("failed") is not True and recovered["version"] == 6, recovered
    trusted.serve(trusted.publisher.document(5, trusted.images))
    assert_module_refused(host.image_index(), "rollback")


# --------------------------------------------------------------------------- parser limits (defect 6)

def test_deeply_nested_json_index_is_refused(trusted):
    trusted.serve(b'{"signed": ' + b"[" * 5000 + b"]" * 5000 + b', "signatures": []}')
    trusted.refused_everywhere("index-too-deep")


def test_deeply_nested_yaml_index_is_refused(trusted):
    # About 50,000 levels once crashed libyaml (SIGSEGV): run through ansible, never in this process.
    trusted.serve(b"signed: " + b"[" * 50000 + b"]" * 50000 + b"\n")
    trusted.refused_everywhere("index-too-deep", cli=True)


def test_deeply_nested_block_yaml_index_is_refused(trusted):
    trusted.serve(b"".join(b" " * level + b"a:\n" for level in range(3000)) + b" " * 3000 + b"x\n")
    trusted.refused_everywhere("index-too-deep", cli=True)


def test_over_long_integer_is_refused(trusted):
    good = trusted.publisher.document(6, trusted.images)
    trusted.serve(good.replace(b"version: 6\n", b"version: " + b"9" * 5000 + b"\n", 1))
    trusted.refused_everywhere("index-too-complex")


def test_lone_surrogate_in_the_index_is_refused(trusted):
    document = json.loads(json.dumps(yaml.safe_load(trusted.publisher.document(6, trusted.images))))
    text = json.dumps(document).replace('"endorser": "lab-endorser"', '"endorser": "lab-\\ud800"', 1)
    assert "\\ud800" in text
    trusted.serve(text.encode("ascii"))
    trusted.refused_everywhere("text-invalid")


def test_index_with_a_flood_of_signatures_is_refused(trusted):
    good = yaml.safe_load(trusted.publisher.document(6, trusted.images))
    junk = dict(good["signatures"][0], signature=base64.b64encode(b"\0" * 64).decode("ascii"))
    good["signatures"].extend([junk] * 1000)
    trusted.serve(json.dumps(good).encode("utf-8"))
    trusted.refused_everywhere("signature-count")
