"""X.509 trust of endorsers: distinct keys, end-entity usage, path length, CRL signatures,
pins with the issuing CA, malformed certificates.

Each refusal asserts the rule, the message, and that state_dir stays as it was.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Sequence

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import IndexRefused, VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._imgdist_config import check_config, options_from
from ansible_collections.vmcloud.fleet.plugins.module_utils._index import IndexPolicy, verify_index
from ansible_collections.vmcloud.fleet.plugins.module_utils._index_service import build_policy
from ansible_collections.vmcloud.fleet.plugins.module_utils._index_state import accept_index
from ansible_collections.vmcloud.fleet.plugins.module_utils._trust import (
    EndorserPin,
    TrustStore,
    load_trust_anchors,
    parse_pins,
    public_key_digest,
    subject_of,
)
from tests.unit import index_factory as factory
from tests.unit import pki

NOW = datetime.datetime(2026, 11, 24, 10, 0, 0, tzinfo=datetime.UTC)
FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "legacy"


@pytest.fixture(scope="module")
def ca():
    return pki.make_ca("vmcloud test CA")


@pytest.fixture(scope="module")
def endorser(ca):
    return pki.make_endorser(ca, "lab-endorser", key_type="ec")


def policy_for(anchors: Sequence, **overrides) -> IndexPolicy:
    trust = TrustStore(
        anchors=[a.cert for a in anchors],
        crls=overrides.pop("crls", ()),
        pinned_subjects=overrides.pop("pinned", ()),
        pins=overrides.pop("pins", ()),
        now=NOW,
    )
    return IndexPolicy(trust=trust, **overrides)


def index_signed_by(*signers, chains=()) -> bytes:
    return factory.document(factory.signed_index([factory.image(1)]), list(signers), chains=chains)


def assert_refused(tmp_path: Path, data: bytes, policy: IndexPolicy, rule: str, *fragments: str) -> IndexRefused:
    state = tmp_path / "state"
    state.mkdir()
    with pytest.raises(IndexRefused) as caught:
        accept_index(data, policy, str(state), persist=True)
    assert caught.value.rule == rule, str(caught.value)
    for fragment in fragments:
        assert fragment in str(caught.value), str(caught.value)
    assert "\n" not in str(caught.value)
    assert list(state.iterdir()) == []
    return caught.value


# ------------------------------------------------------------------ distinct keys


def test_one_key_in_two_certificates_counts_once_toward_the_threshold(tmp_path, ca, endorser):
    reissued = pki.make_endorser(ca, "lab-endorser", key=endorser.key)
    assert reissued.cert.serial_number != endorser.cert.serial_number
    assert public_key_digest(reissued.cert) == public_key_digest(endorser.cert)
    assert_refused(
        tmp_path, index_signed_by(endorser, reissued), policy_for([ca], threshold=2),
        "threshold-not-met", "1 valid endorser key(s), 2 required", "signatures[1]", "same public key",
    )


def test_one_key_under_two_subjects_counts_once(tmp_path, ca, endorser):
    alias = pki.make_endorser(ca, "another-name-same-key", key=endorser.key)
    assert_refused(tmp_path, index_signed_by(endorser, alias), policy_for([ca], threshold=2),
                   "threshold-not-met", "1 valid endorser key(s), 2 required")


def test_two_keys_meet_a_threshold_of_two(ca, endorser):
    other = pki.make_endorser(ca, "second-endorser", key_type="ed25519")
    index = verify_index(index_signed_by(endorser, other), policy_for([ca], threshold=2))
    assert sorted(s["subject"] for s in index.signers) == sorted([subject_of(endorser.cert), subject_of(other.cert)])


def test_legacy_certificates_sharing_a_key_count_once(tmp_path, ca):
    signer = pki.make_endorser(ca, "cern-vmic", key_type="rsa")
    reissued = pki.make_endorser(ca, "cern-vmic", key=signer.key)
    body = (FIXTURES / "seed-torrent-list.yaml").read_bytes()
    policy = policy_for([ca], legacy=True, legacy_certificates=[signer.cert, reissued.cert], threshold=2)
    assert_refused(tmp_path, factory.legacy_document(body, signer.key), policy,
                   "threshold-not-met", "1 valid endorser key(s), 2 required", "same public key")


# ------------------------------------------------------------------ end-entity signing certificates


def test_the_trust_anchor_itself_is_not_an_endorser(tmp_path, ca):
    assert_refused(tmp_path, index_signed_by(ca), policy_for([ca]),
                   "threshold-not-met", "certificate-usage", "CN=vmcloud test CA", "CA:TRUE")


def test_an_intermediate_ca_is_not_an_endorser(tmp_path, ca):
    intermediate = pki.make_intermediate(ca, "intermediate CA")
    assert_refused(tmp_path, index_signed_by(intermediate), policy_for([ca]),
                   "threshold-not-met", "certificate-usage", "CN=intermediate CA")


def test_a_ca_certificate_issued_to_an_endorser_is_refused(tmp_path, ca):
    signer = pki.make_endorser(ca, "endorser-with-ca-flag", ca_flag=True)
    assert_refused(tmp_path, index_signed_by(signer), policy_for([ca]),
                   "threshold-not-met", "certificate-usage", "CA:TRUE")


def test_a_self_signed_end_entity_among_the_anchors_is_not_an_endorser(tmp_path):
    key = pki.new_key("ec")
    lonely = pki.Identity(pki._build(pki._name("self-signed endorser"), None, key, NOW - datetime.timedelta(days=1),
                                     NOW + datetime.timedelta(days=10), ca=False,
                                     extended_key_usage=pki.CODE_SIGNING), key)
    assert_refused(tmp_path, index_signed_by(lonely), policy_for([lonely]),
                   "threshold-not-met", "certificate-usage", "trust anchor")


def test_a_tls_server_only_certificate_is_refused(tmp_path, ca):
    signer = pki.make_endorser(ca, "www.example.org", extended_key_usage=[ExtendedKeyUsageOID.SERVER_AUTH])
    assert_refused(tmp_path, index_signed_by(signer), policy_for([ca]),
                   "threshold-not-met", "certificate-usage", "codeSigning")


def test_a_certificate_without_basic_constraints_is_refused(tmp_path, ca):
    signer = pki.make_endorser(ca, "no-basic-constraints", basic_constraints=False)
    assert_refused(tmp_path, index_signed_by(signer), policy_for([ca]),
                   "threshold-not-met", "certificate-usage", "basicConstraints")


def test_a_certificate_without_key_usage_is_refused(tmp_path, ca):
    signer = pki.make_endorser(ca, "no-key-usage", key_usage=False)
    assert_refused(tmp_path, index_signed_by(signer), policy_for([ca]),
                   "threshold-not-met", "certificate-usage", "digitalSignature")


@pytest.mark.parametrize("usages", [
    None,
    [ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE],
    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CODE_SIGNING],
], ids=["no-eku", "any-eku", "server-and-code-signing"])
def test_end_entity_certificates_fit_for_code_signing_are_accepted(ca, usages):
    signer = pki.make_endorser(ca, "fit-endorser", extended_key_usage=usages)
    assert verify_index(index_signed_by(signer), policy_for([ca])).signers


# ------------------------------------------------------------------ pathLenConstraint


def test_a_root_with_path_length_zero_cannot_have_an_intermediate(tmp_path):
    root = pki.make_ca("root CA", path_length=0)
    intermediate = pki.make_intermediate(root, "intermediate CA")
    signer = pki.make_endorser(intermediate, "chained-endorser")
    assert_refused(tmp_path, index_signed_by(signer, chains=[[intermediate.cert]]), policy_for([root]),
                   "threshold-not-met", "certificate-path-length", "CN=root CA", "pathLenConstraint 0")


def test_an_intermediate_with_path_length_zero_cannot_have_another(tmp_path):
    root = pki.make_ca("root CA")
    first = pki.make_intermediate(root, "first intermediate", path_length=0)
    second = pki.make_intermediate(first, "second intermediate")
    signer = pki.make_endorser(second, "deep-endorser")
    assert_refused(tmp_path, index_signed_by(signer, chains=[[second.cert, first.cert]]), policy_for([root]),
                   "threshold-not-met", "certificate-path-length", "CN=first intermediate")


def test_a_root_with_path_length_one_refuses_two_intermediates(tmp_path):
    root = pki.make_ca("root CA", path_length=1)
    first = pki.make_intermediate(root, "first intermediate")
    second = pki.make_intermediate(first, "second intermediate")
    signer = pki.make_endorser(second, "deep-endorser")
    assert_refused(tmp_path, index_signed_by(signer, chains=[[second.cert, first.cert]]), policy_for([root]),
                   "threshold-not-met", "certificate-path-length", "CN=root CA")


@pytest.mark.parametrize("root_length, intermediates", [(0, 0), (1, 1), (None, 2)])
def test_chains_within_their_path_length_are_accepted(root_length, intermediates):
    root = pki.make_ca("root CA", path_length=root_length)
    issuers = [root]
    for depth in range(intermediates):
        issuers.append(pki.make_intermediate(issuers[-1], f"intermediate {depth}"))
    signer = pki.make_endorser(issuers[-1], "endorser")
    chain = [issuer.cert for issuer in reversed(issuers[1:])]
    assert verify_index(index_signed_by(signer, chains=[chain]), policy_for([root])).signers


# ------------------------------------------------------------------ CRL signatures


def test_a_forged_crl_is_refused_not_ignored(tmp_path, ca):
    revoked = pki.make_endorser(ca, "revoked-endorser")
    forged = pki.make_crl(ca, [revoked.cert.serial_number], signing_key=pki.new_key("ec"))
    assert_refused(tmp_path, index_signed_by(revoked), policy_for([ca], crls=[forged]),
                   "crl-signature-invalid", "CN=vmcloud test CA", "does not verify")


def test_a_forged_crl_is_refused_even_when_another_signature_counts(tmp_path, ca, endorser):
    other_ca = pki.make_ca("other CA")
    other_signer = pki.make_endorser(other_ca, "other-endorser")
    forged = pki.make_crl(other_ca, [], signing_key=pki.new_key("ec"))
    assert_refused(tmp_path, index_signed_by(endorser, other_signer), policy_for([ca, other_ca], crls=[forged]),
                   "crl-signature-invalid", "CN=other CA")


def test_a_forged_crl_of_an_intermediate_is_refused(tmp_path, ca):
    intermediate = pki.make_intermediate(ca, "intermediate CA")
    signer = pki.make_endorser(intermediate, "chained-endorser")
    forged = pki.make_crl(intermediate, [signer.cert.serial_number], signing_key=pki.new_key("ec"))
    assert_refused(tmp_path, index_signed_by(signer, chains=[[intermediate.cert]]),
                   policy_for([ca], crls=[forged]), "crl-signature-invalid", "CN=intermediate CA")


@pytest.mark.parametrize("key_type", ["ec", "rsa", "ed25519"])
def test_a_crl_signed_by_its_ca_revokes_with_each_key_type(tmp_path, key_type):
    # cryptography 38's CRL.is_signature_valid raises TypeError for Ed25519 keys.
    issuer = pki.make_ca(f"{key_type} CA", key_type=key_type)
    revoked = pki.make_endorser(issuer, "revoked-endorser")
    kept = pki.make_endorser(issuer, "kept-endorser")
    policy = policy_for([issuer], crls=[pki.make_crl(issuer, [revoked.cert.serial_number])])
    assert verify_index(index_signed_by(kept), policy).signers
    assert_refused(tmp_path, index_signed_by(revoked), policy, "threshold-not-met", "certificate-revoked")


def test_a_crl_of_a_ca_outside_the_chain_revokes_nothing(ca, endorser):
    unrelated = pki.make_ca("unrelated CA")
    crl = pki.make_crl(unrelated, [endorser.cert.serial_number])
    assert verify_index(index_signed_by(endorser), policy_for([ca], crls=[crl])).signers


def test_a_crl_of_a_rekeyed_ca_of_the_same_name_applies_to_its_own_certificates(tmp_path, ca):
    old_ca = pki.make_ca("rekeyed CA")
    new_ca = pki.make_ca("rekeyed CA")
    old_signer = pki.make_endorser(old_ca, "old-endorser")
    new_signer = pki.make_endorser(new_ca, "new-endorser")
    old_crl = pki.make_crl(old_ca, [old_signer.cert.serial_number, new_signer.cert.serial_number])
    policy = policy_for([old_ca, new_ca], crls=[old_crl])
    assert verify_index(index_signed_by(new_signer), policy).signers
    assert_refused(tmp_path, index_signed_by(old_signer), policy, "threshold-not-met", "certificate-revoked")


# ------------------------------------------------------------------ pins: subject and issuing CA


@pytest.fixture(scope="module")
def bundle():
    """An IGTF-style bundle: the endorser's CA and a CA that could mint the same subject."""
    real_ca = pki.make_ca("CERN Grid CA")
    rogue_ca = pki.make_ca("Some Other Grid CA")
    real = pki.make_endorser(real_ca, "cern-it")
    rogue = pki.make_endorser(rogue_ca, "cern-it")
    assert real.cert.subject == rogue.cert.subject
    return real_ca, rogue_ca, real, rogue


def test_a_subject_pin_alone_accepts_that_name_from_any_anchor(bundle):
    real_ca, rogue_ca, real, rogue = bundle
    policy = policy_for([real_ca, rogue_ca], pinned=[subject_of(real.cert)])
    assert verify_index(index_signed_by(real), policy).signers
    # The documented weakness of subject-only pins (docs/trust.md): any anchor can mint the name.
    assert verify_index(index_signed_by(rogue), policy).signers


def test_a_pin_with_the_issuer_refuses_that_name_from_another_ca(tmp_path, bundle):
    real_ca, rogue_ca, real, rogue = bundle
    pins = parse_pins([{"subject": subject_of(real.cert), "issuer": subject_of(real_ca.cert)}])
    policy = policy_for([real_ca, rogue_ca], pins=pins)
    assert verify_index(index_signed_by(real), policy).signers
    assert_refused(tmp_path, index_signed_by(rogue), policy, "threshold-not-met", "endorser-not-pinned",
                   "issued by O=vmcloud tests,CN=Some Other Grid CA", "CN=CERN Grid CA")


def test_a_pin_with_the_issuer_refuses_an_intermediate_borrowing_the_anchor_name(tmp_path, bundle):
    real_ca, rogue_ca, real, _rogue = bundle
    impostor_ca = pki.make_intermediate(rogue_ca, "CERN Grid CA")
    impostor = pki.make_endorser(impostor_ca, "cern-it")
    assert impostor.cert.issuer == real.cert.issuer
    pins = parse_pins([{"subject": subject_of(real.cert), "issuer": subject_of(real_ca.cert)}])
    assert_refused(tmp_path, index_signed_by(impostor, chains=[[impostor_ca.cert]]),
                   policy_for([real_ca, rogue_ca], pins=pins), "threshold-not-met", "endorser-not-pinned",
                   "not the configured trust anchor")


def test_a_pin_may_name_an_intermediate_issuer(ca):
    intermediate = pki.make_intermediate(ca, "intermediate CA")
    signer = pki.make_endorser(intermediate, "chained-endorser")
    pins = parse_pins([{"subject": subject_of(signer.cert), "issuer": subject_of(intermediate.cert)}])
    index = verify_index(index_signed_by(signer, chains=[[intermediate.cert]]), policy_for([ca], pins=pins))
    assert index.signers[0]["issuer"] == subject_of(intermediate.cert)


def test_pins_compare_names_not_spelling(ca, endorser):
    assert subject_of(endorser.cert) == "O=vmcloud tests,CN=lab-endorser"
    spelled = r"2.5.4.10=vmcloud tests,CN=lab\2dendorser"  # the organisation OID, an escaped '-'
    pins = parse_pins([{"subject": spelled, "issuer": subject_of(ca.cert)}])
    assert verify_index(index_signed_by(endorser), policy_for([ca], pins=pins)).signers


def test_subject_pins_and_pins_with_issuer_are_either_or(ca, endorser):
    pins = parse_pins([{"subject": "CN=somebody-else", "issuer": subject_of(ca.cert)}])
    policy = policy_for([ca], pins=pins, pinned=[subject_of(endorser.cert)])
    assert verify_index(index_signed_by(endorser), policy).signers


@pytest.mark.parametrize("pin, fragment", [
    ({"issuer": "CN=CA"}, "'subject' is required"),
    ({"subject": "", "issuer": "CN=CA"}, "'subject' is required"),
    ({"subject": "not a name", "issuer": "CN=CA"}, "not an RFC 4514 name"),
    ({"subject": "CN=x", "issuer": "CN=CA", "serial": 1}, "unknown key 'serial'"),
    ("CN=x", "expected a mapping"),
])
def test_malformed_pins_are_refused(pin, fragment):
    with pytest.raises(VmcloudError) as caught:
        parse_pins([pin])
    assert caught.value.rule == "option-invalid"
    assert "endorser_pins[0]" in str(caught.value) and fragment in str(caught.value)


def write_pem(path: Path, *objects) -> str:
    path.write_bytes(b"".join(pki.pem(o) for o in objects))
    return str(path)


def test_build_policy_passes_pins_to_the_trust_store(tmp_path, ca, endorser):
    options = {
        "trust_anchors": [write_pem(tmp_path / "ca.pem", ca.cert)],
        "endorser_pins": [{"subject": subject_of(endorser.cert), "issuer": subject_of(ca.cert)}],
        "max_size": 1 << 20,
        "reference_time": "2026-11-24T10:00:00Z",
    }
    policy = build_policy(options, None)
    assert policy.trust.pins == (EndorserPin(endorser.cert.subject, ca.cert.subject),)
    assert verify_index(index_signed_by(endorser), policy).signers


def test_imgdist_config_carries_pins_to_the_library(tmp_path, endorser, ca):
    pins = [{"subject": subject_of(endorser.cert), "issuer": subject_of(ca.cert)}]
    config = check_config({"endorser_pins": pins, "host": "hv01"}, "imgdist.yml")
    assert options_from(config)["endorser_pins"] == pins
    assert check_config({"host": "hv01"}, "imgdist.yml")["endorser_pins"] == []


# ------------------------------------------------------------------ malformed certificates


def test_an_anchor_with_a_duplicated_extension_is_one_line_certificate_malformed(tmp_path):
    root = pki.make_ca("root CA")
    broken = pki.with_duplicated_extension(root.cert, root)
    with pytest.raises(IndexRefused) as caught:
        load_trust_anchors([write_pem(tmp_path / "anchors.pem", broken)])
    assert caught.value.rule == "certificate-malformed"
    assert "anchors.pem" in str(caught.value) and "duplicate" in str(caught.value).lower()
    assert "\n" not in str(caught.value)


def test_a_signature_certificate_with_a_duplicated_extension_does_not_count(tmp_path, ca, endorser):
    broken = pki.Identity(pki.with_duplicated_extension(endorser.cert, ca), endorser.key)
    assert_refused(tmp_path, index_signed_by(broken), policy_for([ca]),
                   "threshold-not-met", "certificate-malformed", "signatures[0]")


def test_a_duplicated_extension_does_not_hide_a_good_signature(ca, endorser):
    broken = pki.Identity(pki.with_duplicated_extension(endorser.cert, ca), endorser.key)
    index = verify_index(index_signed_by(broken, endorser), policy_for([ca]))
    assert len(index.signers) == 1 and "certificate-malformed" in index.problems[0]
