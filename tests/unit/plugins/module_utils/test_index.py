"""Every verification rule of the signed image index, on both formats.

Each refusal asserts the rule, the message, and that state_dir is byte for byte unchanged.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import pytest
import yaml

from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import IndexRefused
from ansible_collections.vmcloud.fleet.plugins.module_utils._index import IndexPolicy, parse_size, verify_index
from ansible_collections.vmcloud.fleet.plugins.module_utils._index_state import accept_index, read_high_water_mark
from ansible_collections.vmcloud.fleet.plugins.module_utils._trust import TrustStore, subject_of
from tests.unit import index_factory as factory
from tests.unit import pki

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "legacy"
NOW = datetime.datetime(2026, 11, 24, 10, 0, 0, tzinfo=datetime.UTC)


@pytest.fixture(scope="module")
def ca():
    return pki.make_ca("vmcloud test CA")


@pytest.fixture(scope="module")
def endorser(ca):
    return pki.make_endorser(ca, "lab-endorser", key_type="ec")


@pytest.fixture(scope="module")
def second_endorser(ca):
    return pki.make_endorser(ca, "second-endorser", key_type="ed25519")


def policy_for(ca, **overrides) -> IndexPolicy:
    trust = TrustStore(
        anchors=[ca.cert],
        crls=overrides.pop("crls", ()),
        pinned_subjects=overrides.pop("pinned", ()),
        now=overrides.pop("now", NOW),
    )
    return IndexPolicy(trust=trust, **overrides)


def snapshot(directory: Path) -> dict:
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def state_dir(tmp_path, ca, endorser) -> Path:
    """A state dir that already accepted version 5 of the index."""
    state = tmp_path / "state"
    signed = factory.signed_index([factory.image(1)], version=5)
    accept_index(factory.document(signed, [endorser]), policy_for(ca), str(state), persist=True)
    assert read_high_water_mark(str(state), factory.INDEX_URL)["version"] == 5
    return state


def assert_refused(data: bytes, policy: IndexPolicy, state: Path, rule: str, *fragments: str) -> IndexRefused:
    before = snapshot(state)
    with pytest.raises(IndexRefused) as caught:
        accept_index(data, policy, str(state), persist=True)
    assert caught.value.rule == rule, str(caught.value)
    for fragment in fragments:
        assert fragment in str(caught.value)
    assert snapshot(state) == before
    return caught.value


# ------------------------------------------------------------------ acceptance


@pytest.mark.parametrize("key_type", ["rsa", "ec", "ed25519"])
def test_accepts_each_signature_algorithm(ca, key_type, tmp_path):
    signer = pki.make_endorser(ca, f"endorser-{key_type}", key_type=key_type)
    images = [factory.image(1), factory.image(2, compressed=False)]
    accepted = accept_index(
        factory.document(factory.signed_index(images, version=3), [signer]),
        policy_for(ca), str(tmp_path), persist=True,
    )
    index = accepted.index
    assert index.format == "v2" and index.version == 3 and accepted.advanced
    assert [s["subject"] for s in index.signers] == [subject_of(signer.cert)]
    assert [i["uuid"] for i in index.images] == [images[0]["uuid"], images[1]["uuid"]]
    assert index.images[1]["compressed"] is False
    assert index.images[0]["torrent"]["info_hash"] == images[0]["torrent"]["info_hash"]
    assert read_high_water_mark(str(tmp_path), factory.INDEX_URL)["version"] == 3


def test_accepts_intermediate_chain_sent_with_the_signature(tmp_path):
    root = pki.make_ca("root CA")
    intermediate = pki.make_intermediate(root, "intermediate CA")
    signer = pki.make_endorser(intermediate, "chained-endorser", key_type="rsa")
    data = factory.document(factory.signed_index([factory.image(1)]), [signer], chains=[[intermediate.cert]])
    index = verify_index(data, policy_for(root))
    assert index.signers[0]["issuer"] == subject_of(intermediate.cert)


def test_check_mode_persists_nothing(ca, endorser, state_dir):
    before = snapshot(state_dir)
    data = factory.document(factory.signed_index([factory.image(1)], version=9), [endorser])
    accepted = accept_index(data, policy_for(ca), str(state_dir), persist=False)
    assert accepted.advanced and accepted.previous_version == 5
    assert snapshot(state_dir) == before


def test_same_version_same_content_is_accepted_without_change(ca, endorser, state_dir):
    signed = factory.signed_index([factory.image(1)], version=5)
    before = snapshot(state_dir)
    accepted = accept_index(factory.document(signed, [endorser]), policy_for(ca), str(state_dir), persist=True)
    assert accepted.advanced is False and accepted.previous_version == 5
    assert snapshot(state_dir) == before


def test_unknown_image_keys_are_tolerated_and_signed(ca, endorser):
    entry = factory.image(1, future_field={"a": 1})
    signed = factory.signed_index([entry])
    index = verify_index(factory.document(signed, [endorser]), policy_for(ca))
    assert index.images[0]["extra"] == {"future_field": {"a": 1}}
    tampered = yaml.safe_load(factory.document(signed, [endorser]))
    tampered["signed"]["images"][0]["future_field"]["a"] = 2
    with pytest.raises(IndexRefused) as caught:
        verify_index(yaml.safe_dump(tampered).encode(), policy_for(ca))
    assert caught.value.rule == "threshold-not-met" and "does not verify" in str(caught.value)


# ------------------------------------------------------------------ signatures and certificates


def test_tampered_content_is_refused(ca, endorser, state_dir):
    signed = factory.signed_index([factory.image(1)], version=6)
    document = yaml.safe_load(factory.document(signed, [endorser]))
    document["signed"]["images"][0]["sha256"] = "0" * 64
    assert_refused(
        yaml.safe_dump(document).encode(), policy_for(ca), state_dir,
        "threshold-not-met", "0 valid endorser key(s), 1 required", "signature-invalid", "does not verify",
    )


def test_untrusted_ca_is_refused(ca, state_dir):
    other_ca = pki.make_ca("someone else's CA")
    stranger = pki.make_endorser(other_ca, "stranger")
    data = factory.document(factory.signed_index([factory.image(1)], version=6), [stranger])
    assert_refused(data, policy_for(ca), state_dir, "threshold-not-met", "certificate-untrusted", "CN=stranger")


def test_expired_certificate_is_refused(ca, state_dir):
    old = pki.make_endorser(ca, "old-endorser", not_before=NOW - datetime.timedelta(days=400),
                            not_after=NOW - datetime.timedelta(days=1))
    data = factory.document(factory.signed_index([factory.image(1)], version=6), [old])
    assert_refused(data, policy_for(ca), state_dir, "threshold-not-met", "certificate-expired", "CN=old-endorser")


def test_not_yet_valid_certificate_is_refused(ca, state_dir):
    early = pki.make_endorser(ca, "future-endorser", not_before=NOW + datetime.timedelta(days=1),
                              not_after=NOW + datetime.timedelta(days=400))
    data = factory.document(factory.signed_index([factory.image(1)], version=6), [early])
    assert_refused(data, policy_for(ca), state_dir, "threshold-not-met", "certificate-not-yet-valid")


def test_expired_ca_is_refused(state_dir):
    old_ca = pki.make_ca("old CA", not_before=NOW - datetime.timedelta(days=800),
                         not_after=NOW - datetime.timedelta(days=1))
    signer = pki.make_endorser(old_ca, "endorser-of-old-ca", not_before=NOW - datetime.timedelta(days=10),
                               not_after=NOW + datetime.timedelta(days=10))
    data = factory.document(factory.signed_index([factory.image(1)], version=6), [signer])
    assert_refused(data, policy_for(old_ca), state_dir, "threshold-not-met", "certificate-expired", "CN=old CA")


def test_revoked_certificate_is_refused(ca, state_dir):
    revoked = pki.make_endorser(ca, "revoked-endorser")
    crl = pki.make_crl(ca, [revoked.cert.serial_number], next_update=NOW + datetime.timedelta(days=7))
    data = factory.document(factory.signed_index([factory.image(1)], version=6), [revoked])
    assert_refused(data, policy_for(ca, crls=[crl]), state_dir, "threshold-not-met", "certificate-revoked",
                   "CN=revoked-endorser")


def test_crl_of_other_serials_lets_the_endorser_through(ca, endorser):
    crl = pki.make_crl(ca, [123456789], next_update=NOW + datetime.timedelta(days=7))
    data = factory.document(factory.signed_index([factory.image(1)]), [endorser])
    assert verify_index(data, policy_for(ca, crls=[crl])).signers


def test_stale_crl_is_refused(ca, endorser, state_dir):
    crl = pki.make_crl(ca, [], next_update=NOW - datetime.timedelta(hours=1))
    data = factory.document(factory.signed_index([factory.image(1)], version=6), [endorser])
    assert_refused(data, policy_for(ca, crls=[crl]), state_dir, "threshold-not-met", "crl-stale")


def test_unpinned_endorser_is_refused(ca, endorser, state_dir):
    data = factory.document(factory.signed_index([factory.image(1)], version=6), [endorser])
    assert_refused(data, policy_for(ca, pinned=["CN=somebody-else"]), state_dir,
                   "threshold-not-met", "endorser-not-pinned", subject_of(endorser.cert))


def test_pinned_endorser_is_accepted(ca, endorser):
    data = factory.document(factory.signed_index([factory.image(1)]), [endorser])
    assert verify_index(data, policy_for(ca, pinned=[subject_of(endorser.cert)])).signers


def test_certificate_without_digital_signature_usage_is_refused(ca, state_dir):
    signer = pki.make_endorser(ca, "no-usage", key_usage_digital_signature=False)
    data = factory.document(factory.signed_index([factory.image(1)], version=6), [signer])
    assert_refused(data, policy_for(ca), state_dir, "threshold-not-met", "certificate-usage")


def test_short_rsa_key_is_refused(ca, state_dir):
    weak = pki.make_endorser(ca, "weak", key_type="rsa1024")
    data = factory.document(factory.signed_index([factory.image(1)], version=6), [weak])
    assert_refused(data, policy_for(ca), state_dir, "threshold-not-met", "signature-algorithm", "1024")


def test_threshold_counts_a_certificate_once(ca, endorser, state_dir):
    data = factory.document(factory.signed_index([factory.image(1)], version=6), [endorser, endorser])
    assert_refused(data, policy_for(ca, threshold=2), state_dir, "threshold-not-met",
                   "1 valid endorser key(s), 2 required")


def test_threshold_met_by_two_endorsers(ca, endorser, second_endorser):
    data = factory.document(factory.signed_index([factory.image(1)]), [endorser, second_endorser])
    index = verify_index(data, policy_for(ca, threshold=2))
    assert len(index.signers) == 2


def test_one_bad_signature_among_good_ones_is_reported(ca, endorser, second_endorser):
    stranger = pki.make_endorser(pki.make_ca("other"), "stranger")
    data = factory.document(factory.signed_index([factory.image(1)]), [endorser, stranger])
    index = verify_index(data, policy_for(ca))
    assert len(index.signers) == 1
    assert len(index.problems) == 1 and "certificate-untrusted" in index.problems[0]


def test_missing_signatures_are_refused(ca, state_dir):
    data = yaml.safe_dump({"signed": factory.signed_index([factory.image(1)], version=6), "signatures": []})
    assert_refused(data.encode(), policy_for(ca), state_dir, "signature-missing")


def test_unsigned_top_level_keys_are_refused(ca, endorser, state_dir):
    document = yaml.safe_load(factory.document(factory.signed_index([factory.image(1)], version=6), [endorser]))
    document["mirror"] = "http://evil/"
    assert_refused(yaml.safe_dump(document).encode(), policy_for(ca), state_dir, "index-malformed", "mirror")


# ------------------------------------------------------------------ freshness, rollback, origin


def test_expired_index_is_refused(ca, endorser, state_dir):
    signed = factory.signed_index([factory.image(1)], version=6, expires="2026-11-24T09:59:59Z")
    assert_refused(factory.document(signed, [endorser]), policy_for(ca), state_dir, "index-expired",
                   "expired at 2026-11-24T09:59:59Z")


def test_index_created_in_the_future_is_refused(ca, endorser, state_dir):
    signed = factory.signed_index([factory.image(1)], version=6, created="2026-11-24T10:05:01Z")
    assert_refused(factory.document(signed, [endorser]), policy_for(ca, clock_skew=300), state_dir,
                   "index-from-future", "300 s")


def test_index_created_within_clock_skew_is_accepted(ca, endorser):
    signed = factory.signed_index([factory.image(1)], created="2026-11-24T10:04:59Z")
    assert verify_index(factory.document(signed, [endorser]), policy_for(ca, clock_skew=300)).version == 1


def test_timestamps_must_be_utc(ca, endorser, state_dir):
    signed = factory.signed_index([factory.image(1)], version=6, expires="2026-12-24T10:00:00+02:00")
    assert_refused(factory.document(signed, [endorser]), policy_for(ca), state_dir, "index-malformed", "UTC")


def test_lower_version_is_a_rollback(ca, endorser, state_dir):
    signed = factory.signed_index([factory.image(1)], version=4)
    assert_refused(factory.document(signed, [endorser]), policy_for(ca), state_dir, "rollback",
                   "index version 4 is lower than the last accepted version 5 for http://catalogue/index.yaml")


def test_same_version_with_other_content_is_a_rollback(ca, endorser, state_dir):
    signed = factory.signed_index([factory.image(1), factory.image(2)], version=5)
    assert_refused(factory.document(signed, [endorser]), policy_for(ca), state_dir, "rollback",
                   "same number")


def test_higher_version_advances_the_mark(ca, endorser, state_dir):
    signed = factory.signed_index([factory.image(2)], version=6)
    accepted = accept_index(factory.document(signed, [endorser]), policy_for(ca), str(state_dir), persist=True)
    assert accepted.advanced and accepted.previous_version == 5
    mark = read_high_water_mark(str(state_dir), factory.INDEX_URL)
    assert mark["version"] == 6 and mark["digest"] == accepted.index.digest


def test_damaged_mark_fails_closed(ca, endorser, state_dir):
    (mark,) = state_dir.iterdir()
    mark.write_text("{not json")
    signed = factory.signed_index([factory.image(1)], version=6)
    assert_refused(factory.document(signed, [endorser]), policy_for(ca), state_dir, "state-unreadable")


def test_url_must_match_the_fetched_address(ca, endorser, state_dir):
    signed = factory.signed_index([factory.image(1)], version=6)
    assert_refused(factory.document(signed, [endorser]),
                   policy_for(ca, fetched_url="http://mirror.example/index.yaml"), state_dir, "url-mismatch",
                   "published at http://catalogue/index.yaml but was fetched from http://mirror.example/index.yaml")


def test_size_cap_is_checked_before_parsing(ca, state_dir):
    assert_refused(b"x" * 2048, policy_for(ca, max_size=1024), state_dir, "size-cap", "2048 bytes")


def test_yaml_aliases_are_refused(ca, state_dir):
    data = b"signed: &s {a: 1}\nsignatures: [*s]\n"
    assert_refused(data, policy_for(ca), state_dir, "yaml-alias")


def test_invalid_yaml_is_refused(ca, state_dir):
    assert_refused(b"signed: [unclosed\n", policy_for(ca), state_dir, "yaml-invalid")


def test_unsafe_yaml_tags_are_refused(ca, state_dir):
    data = b"signed: !!python/object/apply:os.system ['true']\nsignatures: []\n"
    assert_refused(data, policy_for(ca), state_dir, "yaml-invalid")


def test_wrong_spec_version_is_refused(ca, endorser, state_dir):
    signed = factory.signed_index([factory.image(1)], version=6, spec_version=3)
    assert_refused(factory.document(signed, [endorser]), policy_for(ca), state_dir, "index-spec-version")


# ------------------------------------------------------------------ image entries


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("file", "../etc/passwd", "not a plain file name"),
        ("file", "sub/dir.img", "not a plain file name"),
        ("file", "nul\0byte.img", "not a plain file name"),
        ("file", ".hidden.img", "not a plain file name"),
        ("file", "a" * 252 + ".img", "longer than 255 bytes"),
        ("file", "\u00e9" * 126 + ".img", "longer than 255 bytes"),  # 256 bytes in UTF-8, 130 characters
        ("sha256", "abc", "expected 64 hex digits"),
        ("sha256", "z" * 64, "expected 64 hex digits"),
        ("size", -1, "must be >= 0"),
        ("size", "12", "expected an integer"),
        ("version", True, "expected an integer"),
        ("compressed", "Y", "expected true or false"),
        ("uuid", "", "non-empty string"),
    ],
)
def test_malformed_entries_are_refused(ca, endorser, state_dir, field, value, fragment):
    entry = factory.image(1, **{field: value})
    signed = factory.signed_index([entry], version=6)
    refusal = assert_refused(factory.document(signed, [endorser]), policy_for(ca), state_dir, "entry-malformed",
                             fragment)
    assert f"images[0].{field}" in str(refusal)


def test_malformed_torrent_info_hash_is_refused(ca, endorser, state_dir):
    entry = factory.image(1)
    entry["torrent"]["info_hash"] = "ab" * 19
    signed = factory.signed_index([entry], version=6)
    assert_refused(factory.document(signed, [endorser]), policy_for(ca), state_dir, "entry-malformed",
                   "images[0].torrent.info_hash", "40 hex digits")


def test_duplicate_uuids_are_refused(ca, endorser, state_dir):
    first = factory.image(1)
    second = factory.image(2, uuid=first["uuid"])
    signed = factory.signed_index([first, second], version=6)
    assert_refused(factory.document(signed, [endorser]), policy_for(ca), state_dir, "uuid-duplicate",
                   "images[1]", first["uuid"])


# ------------------------------------------------------------------ legacy format


def seed_body() -> bytes:
    return (FIXTURES / "seed-torrent-list.yaml").read_bytes()


@pytest.fixture(scope="module")
def legacy_endorser(ca):
    return pki.make_endorser(ca, "cern-vmic", key_type="rsa")


def test_seed_entry_parses_as_signed_legacy_list(ca, legacy_endorser):
    data = factory.legacy_document(seed_body(), legacy_endorser.key)
    index = verify_index(data, policy_for(ca, legacy=True, legacy_certificates=[legacy_endorser.cert]))
    assert index.format == "legacy" and index.version is None and index.expires is None
    (entry,) = index.images
    assert entry["uuid"] == "cernvm_1276695059-img-1277992808"
    assert entry["name"] == "cernvm_1276695059-img"
    assert entry["version"] == 1277992808
    assert entry["file"] == "cernvm_1276695059.img.gz"
    assert entry["compressed"] is True
    assert entry["volume_size"] == 30
    assert entry["size"] is None and entry["size_approx"] == parse_size("236.39 MiB", "x")
    assert entry["torrent"]["info_hash"] == "65b6c891528f59e04f6da7621923bba7c4593630"
    assert entry["torrent"]["sha1"] == "6b0ca19a41ded48899c17f035760e105049c1118"
    assert entry["torrent"]["name"] == "cernvm_1276695059-img-1277992808.torrent"
    assert entry["created"] == "2010-07-01T14:00:10Z"
    assert entry["targets"] == {"hosts": [], "subclusters": [], "clusters": []}


def test_legacy_list_needs_legacy_mode(ca, legacy_endorser, state_dir):
    data = factory.legacy_document(seed_body(), legacy_endorser.key)
    assert_refused(data, policy_for(ca, legacy_certificates=[legacy_endorser.cert]), state_dir,
                   "legacy-disabled", "no version, no expiry")


def test_legacy_list_leaves_no_mark(ca, legacy_endorser, state_dir):
    before = snapshot(state_dir)
    data = factory.legacy_document(seed_body(), legacy_endorser.key)
    policy = policy_for(ca, legacy=True, legacy_certificates=[legacy_endorser.cert])
    assert accept_index(data, policy, str(state_dir), persist=True).advanced is False
    assert snapshot(state_dir) == before


def test_legacy_signature_covers_every_byte_before_it(ca, legacy_endorser, state_dir):
    data = factory.legacy_document(seed_body(), legacy_endorser.key)
    tampered = data.replace(b"volume-size: 30", b"volume-size: 31")
    policy = policy_for(ca, legacy=True, legacy_certificates=[legacy_endorser.cert])
    assert_refused(tampered, policy, state_dir, "threshold-not-met", "signature-invalid")


def test_legacy_signature_with_unwrapped_base64_lines_verifies(ca, legacy_endorser):
    body = seed_body()
    data = factory.legacy_document(body, legacy_endorser.key, wrap=76)
    unindented = body + data[len(body):].replace(b"\n  ", b"\n")
    assert unindented.count(b"\n") > body.count(b"\n") + 2
    policy = policy_for(ca, legacy=True, legacy_certificates=[legacy_endorser.cert])
    assert verify_index(unindented, policy).signers


def test_legacy_signature_by_an_unconfigured_key_is_refused(ca, legacy_endorser, state_dir):
    impostor = pki.make_endorser(ca, "impostor", key_type="rsa")
    data = factory.legacy_document(seed_body(), impostor.key)
    policy = policy_for(ca, legacy=True, legacy_certificates=[legacy_endorser.cert])
    assert_refused(data, policy, state_dir, "threshold-not-met", "CN=cern-vmic", "signature-invalid")


def test_legacy_endorser_certificate_must_chain(ca, state_dir):
    rogue = pki.make_endorser(pki.make_ca("rogue CA"), "rogue", key_type="rsa")
    data = factory.legacy_document(seed_body(), rogue.key)
    policy = policy_for(ca, legacy=True, legacy_certificates=[rogue.cert])
    assert_refused(data, policy, state_dir, "threshold-not-met", "certificate-untrusted")


def test_legacy_garbage_after_signature_is_refused(ca, legacy_endorser, state_dir):
    data = factory.legacy_document(seed_body(), legacy_endorser.key) + b"torrent-id 2: {}\n"
    policy = policy_for(ca, legacy=True, legacy_certificates=[legacy_endorser.cert])
    assert_refused(data, policy, state_dir, "signature-malformed", "not valid base64")


def test_legacy_list_without_signature_is_refused(ca, legacy_endorser, state_dir):
    policy = policy_for(ca, legacy=True, legacy_certificates=[legacy_endorser.cert])
    assert_refused(seed_body(), policy, state_dir, "signature-missing")


def test_legacy_target_lists_accept_comma_separated_names(ca, legacy_endorser):
    body = seed_body().replace(b"distribution-hosts:\n", b"distribution-hosts: hv01, hv02\n")
    data = factory.legacy_document(body, legacy_endorser.key)
    index = verify_index(data, policy_for(ca, legacy=True, legacy_certificates=[legacy_endorser.cert]))
    assert index.images[0]["targets"]["hosts"] == ["hv01", "hv02"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("236.39 MBs", 247_872_881), ("30", 30), ("1 GB", 1 << 30), ("512 KiB", 512 << 10), (42, 42)],
)
def test_size_units(text, expected):
    assert parse_size(text, "size") == expected


def test_size_units_refuse_garbage():
    with pytest.raises(IndexRefused) as caught:
        parse_size("lots", "torrent-content-size")
    assert caught.value.rule == "entry-malformed" and "torrent-content-size" in str(caught.value)


def test_mark_is_written_atomically_with_no_temp_files_left(ca, endorser, tmp_path):
    data = factory.document(factory.signed_index([factory.image(1)], version=2), [endorser])
    accept_index(data, policy_for(ca), str(tmp_path), persist=True)
    assert [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")] == []
    assert len(os.listdir(tmp_path)) == 1


def test_json_syntax_reads_the_same_as_yaml(ca, endorser):
    signed = factory.signed_index([factory.image(1), factory.image(2)], version=4)
    from_yaml = verify_index(factory.document(signed, [endorser]), policy_for(ca))
    from_json = verify_index(factory.document(signed, [endorser], syntax="json"), policy_for(ca))
    assert from_json.images == from_yaml.images and from_json.digest == from_yaml.digest


def test_json_duplicate_keys_are_refused(ca, endorser, state_dir):
    data = factory.document(factory.signed_index([factory.image(1)], version=6), [endorser], syntax="json")
    duplicated = data.replace(b'"spec_version": 2', b'"spec_version": 2, "spec_version": 2', 1)
    assert duplicated != data
    assert_refused(duplicated, policy_for(ca), state_dir, "json-invalid", "'spec_version' appears twice")


def test_invalid_json_is_refused(ca, state_dir):
    assert_refused(b'{"signed": [', policy_for(ca), state_dir, "json-invalid")
