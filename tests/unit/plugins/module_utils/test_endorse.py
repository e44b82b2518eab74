"""The endorser library: what it writes, the reader accepts; and only what it should.

Runs under cryptography 38 (the hypervisors' version) as well: no ansible imports here.
"""

from __future__ import annotations

import base64
import copy
import datetime

import pytest
import yaml

from ansible_collections.vmcloud.fleet.plugins.module_utils._endorse_document import (
    EndorseError,
    dump_document,
    load_document,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._endorse_edit import content_of, edit_index, stored_image
from ansible_collections.vmcloud.fleet.plugins.module_utils._endorse_sign import (
    check_signable,
    check_signer_usable,
    load_signer,
    prune_signatures,
    sign_document,
    valid_signers,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import IndexRefused, VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._index import IndexPolicy, verify_index
from ansible_collections.vmcloud.fleet.plugins.module_utils._trust import TrustStore, fingerprint, subject_of
from ansible_collections.vmcloud.fleet.plugins.module_utils._yaml import load_untrusted_yaml
from tests.unit import index_factory as factory
from tests.unit import pki

URL = "http://catalogue/index.yaml"
NOW = pki.BASE_TIME  # 2026-11-24T10:00:00Z
LATER = NOW + datetime.timedelta(hours=1)


@pytest.fixture(scope="module")
def ca():
    return pki.make_ca("vmcloud endorse test CA")


@pytest.fixture(scope="module")
def signers(ca):
    """One loaded Signer per algorithm the reader accepts."""
    return {
        key_type: load_signer(pki.pem(identity.cert), pki.key_pem(identity.key))
        for key_type, identity in (
            (key_type, pki.make_endorser(ca, f"endorser-{key_type}", key_type=key_type))
            for key_type in ("rsa", "ec", "ed25519")
        )
    }


def policy(ca, threshold: int = 1, now: datetime.datetime = LATER) -> IndexPolicy:
    return IndexPolicy(trust=TrustStore(anchors=[ca.cert], now=now), threshold=threshold, fetched_url=URL)


def created_index(*images, now=NOW):
    result = edit_index(None, url=URL, endorser="cern-it", now=now)
    document = result.after
    for image in images:
        document = edit_index(document, upsert=image, now=now).after
    return document


# ---------------------------------------------------------------- round trip


@pytest.mark.parametrize("key_type", ["rsa", "ec", "ed25519"])
def test_create_upsert_sign_is_accepted_by_the_reader(ca, signers, key_type):
    document = created_index(factory.image(1), factory.image(2))
    assert sign_document(document, signers[key_type]) is True
    data = dump_document(document)

    verified = verify_index(data, policy(ca))

    assert verified.format == "v2"
    assert verified.url == URL
    assert verified.endorser == "cern-it"
    assert verified.version == 3  # created (1), then two upserts
    assert [image["uuid"] for image in verified.images] == [factory.image(1)["uuid"], factory.image(2)["uuid"]]
    assert verified.signers[0]["subject"] == signers[key_type].subject
    assert verified.problems == []


def test_new_index_is_version_one_and_stamped():
    result = edit_index(None, url=URL, endorser="cern-it", now=NOW, validity_days=10)
    signed = result.after["signed"]
    assert result.changed is True and result.before is None
    assert list(signed) == ["_type", "spec_version", "version", "created", "expires", "endorser", "url", "images"]
    assert signed["version"] == 1
    assert signed["created"] == "2026-11-24T10:00:00Z"
    assert signed["expires"] == "2026-12-04T10:00:00Z"
    assert result.after["signatures"] == []


def test_new_index_needs_url_and_endorser():
    with pytest.raises(EndorseError) as refused:
        edit_index(None, upsert=factory.image(1), endorser="cern-it", now=NOW)
    assert refused.value.rule == "index-missing"


def test_stored_entry_is_the_readers_shape_and_stable():
    raw = factory.image(3, sha256="AB" * 32, targets={"hosts": ["hv01"], "subclusters": [], "clusters": []})
    raw["volume_size"] = None
    stored = stored_image(raw)
    assert stored["sha256"] == "ab" * 32
    assert "volume_size" not in stored
    assert stored["targets"] == {"hosts": ["hv01"], "subclusters": [], "clusters": []}
    assert list(stored)[:7] == ["uuid", "name", "version", "file", "size", "sha256", "compressed"]
    assert stored_image(stored) == stored
    no_targets = {"hosts": [], "subclusters": [], "clusters": []}
    bare = stored_image(factory.image(4, web_seeds=[], targets=no_targets))
    assert "web_seeds" not in bare and "targets" not in bare


def test_timestamps_stay_strings_and_the_document_round_trips(signers):
    document = created_index(factory.image(1))
    sign_document(document, signers["ec"])
    data = dump_document(document)
    reloaded = load_untrusted_yaml(data, "test")
    assert reloaded == document
    assert isinstance(reloaded["signed"]["created"], str)
    assert isinstance(reloaded["signed"]["expires"], str)
    # The PEM bundle is written as a literal block, readable in the file.
    assert "certificate: |" in data.decode()
    # The bytes the signature covers are the same before and after the trip.
    assert content_of(reloaded["signed"]) == content_of(document["signed"])


def test_aliases_never_emitted_even_for_shared_objects():
    shared_list = ["hv01", "hv02"]
    image = factory.image(1, targets={"hosts": shared_list, "subclusters": shared_list, "clusters": []})
    document = created_index(image)
    # Make the same Python objects appear twice, as a careless caller could.
    document["signed"]["images"].append(document["signed"]["images"][0])
    data = dump_document({"signed": document["signed"], "signatures": [shared_list, shared_list]})
    assert b"&" not in data and b"*id" not in data
    load_untrusted_yaml(data, "test")  # the reader refuses aliases: this must load


def test_yaml_looking_strings_are_quoted():
    image = factory.image(1, name="yes", file="1.0", uuid="2026-11-24")
    document = created_index(image)
    reloaded = load_untrusted_yaml(dump_document(document), "test")
    entry = reloaded["signed"]["images"][0]
    assert (entry["name"], entry["file"], entry["uuid"]) == ("yes", "1.0", "2026-11-24")


# ---------------------------------------------------------------- versions and edits


def test_version_bumps_only_on_change():
    document = created_index(factory.image(1))
    assert document["signed"]["version"] == 2

    same = edit_index(document, upsert=factory.image(1), url=URL, endorser="cern-it", now=LATER)
    assert same.changed is False
    assert same.after == document
    assert same.after["signed"]["created"] == "2026-11-24T10:00:00Z"  # not restamped

    absent = edit_index(document, remove="no-such-uuid", now=LATER)
    assert absent.changed is False and absent.version == 2

    replaced = edit_index(document, upsert=factory.image(1, size=5), now=LATER)
    assert replaced.changed is True
    assert replaced.version == 3
    assert replaced.after["signed"]["created"] == "2026-11-24T11:00:00Z"
    assert replaced.after["signed"]["expires"] == "2026-12-24T11:00:00Z"
    assert replaced.uuids == [factory.image(1)["uuid"]]
    assert document["signed"]["version"] == 2  # the original is not touched

    removed = edit_index(replaced.after, remove=factory.image(1)["uuid"], now=LATER)
    assert removed.changed is True and removed.version == 4 and removed.uuids == []


def test_upsert_replaces_in_place_and_appends_new():
    document = created_index(factory.image(1), factory.image(2))
    edited = edit_index(document, upsert=factory.image(1, size=7), now=LATER).after
    assert [e["uuid"] for e in edited["signed"]["images"]] == [factory.image(1)["uuid"], factory.image(2)["uuid"]]
    assert edited["signed"]["images"][0]["size"] == 7


def test_header_change_is_a_content_change():
    document = created_index()
    moved = edit_index(document, url="http://mirror/index.yaml", now=LATER)
    assert moved.changed and moved.after["signed"]["url"] == "http://mirror/index.yaml"
    assert moved.version == 2


def test_renewal_restamps_unchanged_content_when_due():
    document = created_index(factory.image(1))
    early = edit_index(document, now=LATER, renew_before_days=7)
    assert early.changed is False
    due = edit_index(document, now=NOW + datetime.timedelta(days=25), renew_before_days=7)
    assert due.changed is True and due.version == 3
    assert due.after["signed"]["expires"] == "2027-01-18T10:00:00Z"


@pytest.mark.parametrize(
    "override, rule",
    [
        ({"sha256": "not-hex"}, "entry-malformed"),
        ({"file": "../etc/passwd"}, "entry-malformed"),
        ({"version": "7"}, "entry-malformed"),
        ({"torrent": {"url": "ftp://x/y.torrent", "sha256": "a" * 64, "info_hash": "b" * 40}}, "entry-malformed"),
        ({"targets": {"racks": ["r1"]}}, "entry-malformed"),
    ],
)
def test_invalid_entries_are_refused_with_the_readers_rules(override, rule):
    document = created_index()
    with pytest.raises(VmcloudError) as refused:
        edit_index(document, upsert=factory.image(1, **override), now=LATER)
    assert refused.value.rule == rule


def test_duplicate_uuids_in_an_existing_file_are_refused():
    document = created_index(factory.image(1))
    document["signed"]["images"].append(copy.deepcopy(document["signed"]["images"][0]))
    with pytest.raises(IndexRefused) as refused:
        load_document(yaml.safe_dump(document).encode())
    assert refused.value.rule == "uuid-duplicate"


def test_load_refuses_other_documents():
    with pytest.raises(VmcloudError) as refused:
        load_document(b"torrent-id 1:\n  uuid: x\n")
    assert refused.value.rule == "index-malformed"
    with pytest.raises(VmcloudError) as refused:
        load_document(b"signed: {}\nsignatures: []\nextra: 1\n")
    assert refused.value.rule == "index-malformed"


# ---------------------------------------------------------------- signatures


def test_co_signing_meets_threshold_two(ca, signers):
    document = created_index(factory.image(1))
    assert sign_document(document, signers["rsa"]) is True
    data_one = dump_document(document)
    with pytest.raises(IndexRefused) as refused:
        verify_index(data_one, policy(ca, threshold=2))
    assert refused.value.rule == "threshold-not-met"

    # The second endorser signs the file the first one wrote.
    second = load_document(data_one)
    assert sign_document(second, signers["ed25519"]) is True
    verified = verify_index(dump_document(second), policy(ca, threshold=2))
    assert {s["subject"] for s in verified.signers} == {signers["rsa"].subject, signers["ed25519"].subject}


def test_one_certificate_signs_once(signers):
    document = created_index(factory.image(1))
    assert sign_document(document, signers["ec"]) is True
    snapshot = copy.deepcopy(document)
    assert sign_document(document, signers["ec"]) is False  # ECDSA differs each time: compared by verifying
    assert document == snapshot
    # A duplicate already in the file is dropped on the next signing.
    document["signatures"].append(copy.deepcopy(document["signatures"][0]))
    assert prune_signatures(document) == [signers["ec"].subject]
    assert len(document["signatures"]) == 1


def test_editing_drops_stale_signatures_and_keeps_valid_ones(ca, signers):
    document = created_index(factory.image(1))
    sign_document(document, signers["rsa"])
    sign_document(document, signers["ec"])

    edited = edit_index(document, upsert=factory.image(2), now=LATER)
    assert edited.after["signatures"] == []
    assert sorted(edited.dropped_signers) == sorted([signers["rsa"].subject, signers["ec"].subject])

    # A signature made over other content is stale and dropped; a valid one by another endorser stays.
    fresh = edited.after
    sign_document(fresh, signers["ed25519"])
    fresh["signatures"].insert(0, copy.deepcopy(document["signatures"][0]))
    assert sign_document(fresh, signers["rsa"]) is True
    assert [s["subject"] for s in valid_signers(fresh)] == [signers["ed25519"].subject,
                                                            signers["rsa"].subject]
    assert len(fresh["signatures"]) == 2
    verified = verify_index(dump_document(fresh), policy(ca, threshold=2))
    assert verified.version == 3


def test_malformed_signature_entries_are_dropped(signers):
    document = created_index()
    document["signatures"] = [
        "junk",
        {"certificate": "no pem here", "signature": "AAAA"},
        {"certificate": signers["rsa"].certificate_pem, "signature": "%%% not base64"},
    ]
    dropped = prune_signatures(document)
    assert dropped == ["<malformed>", "<unreadable certificate>", signers["rsa"].subject]
    assert document["signatures"] == []


def test_signature_bytes_are_the_readers_canonical_bytes(signers):
    document = created_index(factory.image(1))
    sign_document(document, signers["ed25519"])
    signature = base64.b64decode(document["signatures"][0]["signature"])
    signers["ed25519"].cert.public_key().verify(signature, factory.canonical(document["signed"]))


def test_chain_is_kept_with_the_signature(ca):
    intermediate = pki.make_intermediate(ca, "vmcloud endorse intermediate")
    leaf = pki.make_endorser(intermediate, "chained-endorser", key_type="ec")
    signer = load_signer(pki.pem(leaf.cert) + pki.pem(intermediate.cert), pki.key_pem(leaf.key))
    document = created_index(factory.image(1))
    sign_document(document, signer)
    verified = verify_index(dump_document(document), policy(ca))
    assert verified.signers[0]["subject"] == subject_of(leaf.cert)
    assert signer.fingerprint == fingerprint(leaf.cert)


# ---------------------------------------------------------------- loading keys


def test_encrypted_key_needs_its_passphrase(ca):
    identity = pki.make_endorser(ca, "locked", key_type="ec")
    locked = pki.key_pem(identity.key, passphrase=b"s3cret-phrase")
    cert = pki.pem(identity.cert)
    assert load_signer(cert, locked, "s3cret-phrase").subject == subject_of(identity.cert)
    for passphrase in (None, "wrong"):
        with pytest.raises(EndorseError) as refused:
            load_signer(cert, locked, passphrase, key_origin="/keys/locked.pem")
        assert refused.value.rule == "private-key-unreadable"
        assert "s3cret" not in str(refused.value) and "PRIVATE" not in str(refused.value)
    with pytest.raises(EndorseError) as refused:
        load_signer(cert, pki.key_pem(identity.key), "unneeded")
    assert "not encrypted" in refused.value.message


def test_key_must_match_certificate(ca, signers):
    other = pki.make_endorser(ca, "other", key_type="ec")
    with pytest.raises(EndorseError) as refused:
        load_signer(pki.pem(signers["ec"].cert), pki.key_pem(other.key))
    assert refused.value.rule == "private-key-mismatch"


@pytest.mark.parametrize("key_type", ["rsa1024", "ec384"])
def test_algorithms_readers_refuse_cannot_sign(ca, key_type):
    identity = pki.make_endorser(ca, f"weak-{key_type}", key_type=key_type)
    signer = load_signer(pki.pem(identity.cert), pki.key_pem(identity.key))
    document = created_index()
    with pytest.raises(EndorseError) as refused:
        sign_document(document, signer)
    assert refused.value.rule == "signature-algorithm"
    assert document["signatures"] == []


def test_unusable_certificates_are_refused(ca):
    expired = pki.make_endorser(ca, "expired", key_type="ec", not_after=NOW - datetime.timedelta(days=1))
    no_usage = pki.make_endorser(ca, "no-usage", key_type="ec", key_usage_digital_signature=False)
    for identity, rule in ((expired, "certificate-expired"), (no_usage, "certificate-usage")):
        signer = load_signer(pki.pem(identity.cert), pki.key_pem(identity.key))
        with pytest.raises(EndorseError) as refused:
            check_signer_usable(signer, NOW)
        assert refused.value.rule == rule


def test_certificates_readers_refuse_as_endorsers_do_not_sign(ca):
    """index_sign refuses what every reader refuses (trust.end_entity_problem) before it signs."""
    from cryptography.x509.oid import ExtendedKeyUsageOID

    ca_flagged = pki.make_endorser(ca, "ca-flagged", key_type="ec", ca_flag=True)
    tls_only = pki.make_endorser(ca, "tls-only", key_type="ec",
                                 extended_key_usage=(ExtendedKeyUsageOID.SERVER_AUTH,))
    no_constraints = pki.make_endorser(ca, "no-constraints", key_type="ec", basic_constraints=False)
    for identity in (ca_flagged, tls_only, no_constraints):
        signer = load_signer(pki.pem(identity.cert), pki.key_pem(identity.key))
        with pytest.raises(EndorseError) as refused:
            check_signer_usable(signer, NOW)
        assert refused.value.rule == "certificate-usage"


def test_expired_index_is_not_signed():
    document = created_index()
    with pytest.raises(EndorseError) as refused:
        check_signable(document, NOW + datetime.timedelta(days=31))
    assert refused.value.rule == "index-expired"
    check_signable(document, LATER)


@pytest.mark.parametrize("renew_before", [-1, 30, 31])
def test_renewal_window_must_be_shorter_than_validity(renew_before):
    with pytest.raises(EndorseError) as refused:
        edit_index(created_index(), now=LATER, validity_days=30, renew_before_days=renew_before)
    assert refused.value.rule == "validity-invalid"
