"""Parser limits and parser agreement (issue 7, defect 6 and the sweep's crashes).

Every crafted document ends in one line naming a rule, the same for JSON and YAML, and
state_dir is byte for byte unchanged. Limits are in _limits.
"""

from __future__ import annotations

import json

import pytest
import yaml

from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._index import verify_index
from ansible_collections.vmcloud.fleet.plugins.module_utils._index_state import accept_index, read_high_water_mark
from ansible_collections.vmcloud.fleet.plugins.module_utils._limits import (
    MAX_DEPTH,
    MAX_NODES,
    MAX_SIGNATURES,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._yaml import load_untrusted_yaml
from tests.unit import index_factory as factory
from tests.unit import pki
from tests.unit.plugins.module_utils.test_index import assert_refused, policy_for


@pytest.fixture(scope="module")
def ca():
    return pki.make_ca("vmcloud parser CA")


@pytest.fixture(scope="module")
def endorser(ca):
    return pki.make_endorser(ca, "lab-endorser", key_type="ec")


@pytest.fixture
def state_dir(tmp_path, ca, endorser):
    state = tmp_path / "state"
    signed = factory.signed_index([factory.image(1)], version=5)
    accept_index(factory.document(signed, [endorser]), policy_for(ca), str(state), persist=True)
    assert read_high_water_mark(str(state), factory.INDEX_URL)["version"] == 5
    return state


def refused(data: bytes, ca, state, rule: str, *fragments: str):
    refusal = assert_refused(data, policy_for(ca), state, rule, *fragments)
    assert "\n" not in str(refusal), str(refusal)
    return refusal


def nested(depth: int) -> object:
    value: object = "leaf"
    for _unused in range(depth):
        value = [value]
    return value


def signed_with_note(note) -> dict:
    return factory.signed_index([factory.image(1, note=note)], version=6)


# ------------------------------------------------------------------ nesting depth


def test_json_nested_5000_deep_is_too_deep(ca, state_dir):
    data = b'{"signed": ' + b"[" * 5000 + b"]" * 5000 + b', "signatures": []}'
    refused(data, ca, state_dir, "index-too-deep", f"more than {MAX_DEPTH} levels")


def test_yaml_flow_nested_50000_deep_is_too_deep(ca, state_dir):
    # libyaml's composer recursed in C here: the process died with SIGSEGV.
    refused(b"signed: " + b"[" * 50000 + b"\n", ca, state_dir, "index-too-deep")


def test_yaml_block_nested_3000_deep_is_too_deep(ca, state_dir):
    refused(b"signed:\n" + b"- " * 3000 + b"x\n", ca, state_dir, "index-too-deep", "line 2")


def test_yaml_indented_block_nesting_is_too_deep(ca, state_dir):
    lines = [b"  " * level + b"k:" for level in range(200)]
    refused(b"\n".join(lines) + b" v\n", ca, state_dir, "index-too-deep")


@pytest.mark.parametrize("syntax", ["json", "yaml"])
def test_nesting_up_to_the_limit_is_accepted(ca, endorser, syntax):
    # document, signed, images, the entry and its 'note' take 4 levels above the note's lists
    signed = signed_with_note(nested(MAX_DEPTH - 4))
    index = verify_index(factory.document(signed, [endorser], syntax=syntax), policy_for(ca))
    assert index.images[0]["extra"]["note"] == nested(MAX_DEPTH - 4)


@pytest.mark.parametrize("syntax", ["json", "yaml"])
def test_nesting_one_over_the_limit_is_refused(ca, endorser, state_dir, syntax):
    signed = signed_with_note(nested(MAX_DEPTH - 3))
    refused(factory.document(signed, [endorser], syntax=syntax), ca, state_dir, "index-too-deep")


# ------------------------------------------------------------------ node count and numbers


def test_json_of_too_many_tiny_nodes_is_refused(ca, state_dir):
    data = b'{"signed": [' + b"0," * MAX_NODES + b'0], "signatures": []}'
    refused(data, ca, state_dir, "index-too-complex", f"more than {MAX_NODES} values")


def test_yaml_of_too_many_tiny_nodes_is_refused(ca, state_dir):
    data = b"signed: [" + b"0," * MAX_NODES + b"0]\nsignatures: []\n"
    refused(data, ca, state_dir, "index-too-complex", f"more than {MAX_NODES} values")


def test_yaml_block_list_of_too_many_nodes_is_refused(ca, state_dir):
    data = b"signed:\n" + b"- 0\n" * (MAX_NODES + 1)
    refused(data, ca, state_dir, "index-too-complex")


@pytest.mark.parametrize("syntax", ["json", "yaml"])
def test_5000_digit_integer_is_too_complex(ca, state_dir, syntax):
    digits = b"7" * 5000
    if syntax == "json":
        data = b'{"signed": {"version": ' + digits + b'}, "signatures": []}'
    else:
        data = b"signed:\n  version: " + digits + b"\nsignatures: []\n"
    refused(data, ca, state_dir, "index-too-complex", "number longer than")


def test_long_float_is_too_complex(ca, state_dir):
    refused(b"signed: 1." + b"5" * 5000 + b"\n", ca, state_dir, "index-too-complex")


def test_quoted_long_digit_string_is_text(ca, endorser):
    signed = signed_with_note("7" * 5000)
    for syntax in ("json", "yaml"):
        index = verify_index(factory.document(signed, [endorser], syntax=syntax), policy_for(ca))
        assert index.images[0]["extra"]["note"] == "7" * 5000


# ------------------------------------------------------------------ text


@pytest.mark.parametrize(
    ("data", "rule", "fragment"),
    [
        (b'{"signed": {"endorser": "\\ud800"}, "signatures": []}', "text-invalid", "lone surrogate"),
        (b'{"signed": {"\\udfff": 1}, "signatures": []}', "text-invalid", "lone surrogate"),
        # libyaml refuses the escape itself; the pure-Python parser does not (see below)
        (b'signed: {endorser: "\\ud800"}\nsignatures: []\n', "yaml-invalid", "invalid Unicode character"),
        (b'signed: {"\\udc00x": 1}\nsignatures: []\n', "yaml-invalid", "invalid Unicode character"),
    ],
    ids=["json-value", "json-key", "yaml-value", "yaml-key"],
)
def test_lone_surrogate_is_refused(ca, state_dir, data, rule, fragment):
    refused(data, ca, state_dir, rule, fragment)


@pytest.mark.parametrize("syntax", ["json", "yaml"])
def test_surrogate_pair_is_text(ca, endorser, syntax):
    signed = signed_with_note("smile \U0001F600")
    data = factory.document(signed, [endorser], syntax=syntax)
    if syntax == "json":
        assert b"\\ud83d\\ude00" in data
    assert verify_index(data, policy_for(ca)).images[0]["extra"]["note"] == "smile \U0001F600"


@pytest.mark.parametrize("data", [b"signed: \xff\xfe\n", b'{"signed": "\xed\xa0\x80"}', b"\xff\xfes\x00"],
                         ids=["latin", "cesu", "utf16"])
def test_bytes_that_are_not_utf8_are_text_invalid(ca, state_dir, data):
    refused(data, ca, state_dir, "text-invalid", "not UTF-8")


# ------------------------------------------------------------------ one document, two parsers


def decoy_document(endorser, syntax: str) -> bytes:
    """A signed document with a second, unsigned 'signed' after it: the decoy."""
    data = factory.document(factory.signed_index([factory.image(1)], version=6), [endorser], syntax=syntax)
    decoy = json.dumps(factory.signed_index([factory.image(2)], version=7)).encode()
    if syntax == "json":
        assert data.rstrip().endswith(b"}")
        return data.rstrip()[:-1] + b', "signed": ' + decoy + b"}\n"
    return data + b"signed: " + decoy + b"\n"


@pytest.mark.parametrize(
    ("prefix", "syntax", "rule"),
    [
        (b"", "json", "json-invalid"),
        (b"\xef\xbb\xbf", "json", "json-invalid"),
        (b"# published by the catalogue\n", "json", "yaml-invalid"),
        (b"", "yaml", "yaml-invalid"),
        (b"\xef\xbb\xbf", "yaml", "yaml-invalid"),
    ],
    ids=["json", "json-bom", "json-comment", "yaml", "yaml-bom"],
)
def test_duplicate_signed_key_is_refused_on_every_path(ca, endorser, state_dir, prefix, syntax, rule):
    refused(prefix + decoy_document(endorser, syntax), ca, state_dir, rule, "'signed' appears twice")


def test_duplicate_key_in_a_yaml_entry_is_refused(ca, endorser, state_dir):
    data = factory.document(factory.signed_index([factory.image(1)], version=6), [endorser])
    duplicated = data.replace(b"  version: 6\n", b"  version: 6\n  version: 7\n", 1)
    assert duplicated != data
    refused(duplicated, ca, state_dir, "yaml-invalid", "'version' appears twice")


@pytest.mark.parametrize("prefix", [b"\xef\xbb\xbf", b"# comment\n", b"\n  \n"])
def test_json_with_a_bom_or_comment_reads_the_same(ca, endorser, prefix):
    data = factory.document(factory.signed_index([factory.image(1)], version=6), [endorser], syntax="json")
    plain = verify_index(data, policy_for(ca))
    other = verify_index(prefix + data, policy_for(ca))
    assert other.digest == plain.digest and other.images == plain.images


def test_yaml_merge_key_is_refused(ca, state_dir):
    data = b"signed:\n  <<: {version: 9}\n  version: 6\nsignatures: []\n"
    refused(data, ca, state_dir, "yaml-invalid", "merge keys")


def test_quoted_merge_key_is_a_plain_key():
    assert load_untrusted_yaml(b"'<<': 1\n", "x") == {"<<": 1}


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"signed: !!set {a: null}\n", "tag"),
        (b"signed: !!omap [{a: 1}]\n", "tag"),
        (b"signed: !custom x\n", "tag"),
        (b"signed: !!python/name:os.system x\n", "tag"),
        (b"signed: 2026-13-45\n", "not a valid timestamp"),
        (b"signed: 1\n---\nsigned: 2\n", "single document"),
        (b"? [a, b]\n: 1\n", "key must be a scalar"),
    ],
    ids=["set", "omap", "custom", "python", "timestamp", "documents", "key"],
)
def test_yaml_constructs_outside_the_safe_subset_are_refused(ca, state_dir, data, fragment):
    refused(data, ca, state_dir, "yaml-invalid", fragment)


def test_json_constants_outside_json_are_refused(ca, state_dir):
    refused(b'{"signed": NaN, "signatures": []}', ca, state_dir, "json-invalid")


def test_yaml_error_messages_are_one_line(ca, state_dir):
    refused(b"signed: [unclosed\nsignatures: {\n", ca, state_dir, "yaml-invalid")


def test_the_loader_reads_what_safe_load_reads():
    text = (b"a: 1\nb: [1.5, true, null, 'x', \"y\"]\nc: {d: 2026-11-24T10:00:00Z, e: !!binary aGk=}\n"
            b"f: 0x1f\ng: ~\nh: yes\n")
    assert load_untrusted_yaml(text, "x") == yaml.safe_load(text)
    assert load_untrusted_yaml(b"", "x") is None
    assert load_untrusted_yaml(b"# only a comment\n", "x") is None


def test_loader_errors_are_vmcloud_errors():
    with pytest.raises(VmcloudError) as caught:
        load_untrusted_yaml(b"[" * 100, "config.yml")
    assert caught.value.rule == "index-too-deep" and "config.yml" in str(caught.value)


# ------------------------------------------------------------------ signatures


def test_too_many_signatures_are_refused_before_verification(ca, endorser, state_dir):
    data = factory.document(factory.signed_index([factory.image(1)], version=6), [endorser])
    document = yaml.safe_load(data)
    junk = dict(document["signatures"][0], signature="AAAA")
    document["signatures"].extend(dict(junk) for _unused in range(MAX_SIGNATURES))
    refused(yaml.safe_dump(document).encode(), ca, state_dir, "signature-count",
            f"{MAX_SIGNATURES + 1} signatures", f"at most {MAX_SIGNATURES}")


def test_signatures_up_to_the_cap_are_verified(ca, endorser):
    data = factory.document(factory.signed_index([factory.image(1)], version=6), [endorser])
    document = yaml.safe_load(data)
    junk = dict(document["signatures"][0], signature="AAAA")
    document["signatures"].extend(dict(junk) for _unused in range(MAX_SIGNATURES - 1))
    index = verify_index(yaml.safe_dump(document).encode(), policy_for(ca))
    assert len(index.signers) == 1 and len(index.problems) == MAX_SIGNATURES - 1


# ------------------------------------------------------------------ without libyaml


@pytest.mark.parametrize(
    ("data", "rule"),
    [
        (b'signed: {endorser: "\\ud800"}\n', "text-invalid"),
        (b"signed: " + b"[" * 5000 + b"\n", "index-too-deep"),
        (b"signed:\n" + b"- " * 3000 + b"x\n", "index-too-deep"),
        (b"signed: 1\nsigned: 2\n", "yaml-invalid"),
        (b"signed: " + b"9" * 5000 + b"\n", "index-too-complex"),
        (b"a: &x 1\nb: *x\n", "yaml-alias"),
    ],
    ids=["surrogate", "flow-depth", "block-depth", "duplicate", "long-integer", "alias"],
)
def test_the_pure_python_parser_keeps_the_same_rules(monkeypatch, data, rule):
    from ansible_collections.vmcloud.fleet.plugins.module_utils import _yaml

    monkeypatch.setattr(_yaml, "_Loader", yaml.SafeLoader)
    with pytest.raises(VmcloudError) as caught:
        load_untrusted_yaml(data, "x")
    assert caught.value.rule == rule, str(caught.value)
    assert "\n" not in str(caught.value)


# ------------------------------------------------------------------ lenient fields


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("targets", [], "images[0].targets"),
        ("targets", False, "images[0].targets"),
        ("targets", "hv01", "images[0].targets"),
        ("web_seeds", {}, "images[0].web_seeds"),
        ("web_seeds", False, "images[0].web_seeds"),
        ("web_seeds", "", "images[0].web_seeds"),
    ],
)
def test_lenient_entry_fields_are_refused(ca, endorser, state_dir, field, value, fragment):
    signed = factory.signed_index([factory.image(1, **{field: value})], version=6)
    refused(factory.document(signed, [endorser]), ca, state_dir, "entry-malformed", fragment)


@pytest.mark.parametrize("field", ["created", "expires"])
@pytest.mark.parametrize(
    "value",
    ["2026-11-24T09:00:00+00:00", "2026-11-24T09:00:00", "2026-11-24", "20261124T090000Z",
     "2026-11-24 09:00:00Z", "2026-11-24T09:00:00z", "2026-11-24T09:00Z"],
)
def test_timestamps_must_be_rfc3339_utc_with_z(ca, endorser, state_dir, field, value):
    signed = factory.signed_index([factory.image(1)], version=6, **{field: value})
    refused(factory.document(signed, [endorser]), ca, state_dir, "index-malformed", f"signed.{field}", "end with Z")


def test_timestamps_with_fractions_are_accepted(ca, endorser):
    signed = factory.signed_index([factory.image(1)], version=6, created="2026-11-24T09:00:00.250Z")
    assert verify_index(factory.document(signed, [endorser]), policy_for(ca)).created == "2026-11-24T09:00:00.250Z"


def test_created_after_expires_is_refused(ca, endorser, state_dir):
    signed = factory.signed_index([factory.image(1)], version=6, created="2026-12-25T10:00:00Z",
                                  expires="2026-12-24T10:00:00Z")
    refused(factory.document(signed, [endorser]), ca, state_dir, "index-malformed", "signed.created",
            "later than signed.expires")


# ------------------------------------------------------------------ the high-water mark


@pytest.mark.parametrize("version", [True, False, 1.0, "5", None, -1, 0])
def test_mark_with_a_version_that_is_not_a_positive_integer_fails_closed(ca, endorser, state_dir, version):
    (mark,) = state_dir.iterdir()
    record = json.loads(mark.read_text())
    record["version"] = version
    mark.write_text(json.dumps(record))
    signed = factory.signed_index([factory.image(1)], version=6)
    refused(factory.document(signed, [endorser]), ca, state_dir, "state-unreadable", str(mark))


@pytest.mark.parametrize("content", [b"[" * 5000, b'{"version": ' + b"9" * 5000 + b"}", b"\xff", b'"\\ud800"'],
                         ids=["deep", "long-integer", "latin", "surrogate"])
def test_damaged_mark_of_any_kind_fails_closed(ca, endorser, state_dir, content):
    (mark,) = state_dir.iterdir()
    mark.write_bytes(content)
    signed = factory.signed_index([factory.image(1)], version=6)
    refused(factory.document(signed, [endorser]), ca, state_dir, "state-unreadable", str(mark))


@pytest.mark.parametrize(("field", "rule"), [("uuid", "entry-malformed"), ("size", "entry-malformed"),
                                             ("sha256", "entry-malformed"), ("file", "entry-malformed")])
def test_refusals_quote_a_huge_value_briefly(ca, endorser, state_dir, field, rule):
    signed = factory.signed_index([factory.image(1, **{field: ["x" * 100] * 1000})], version=6)
    refusal = refused(factory.document(signed, [endorser], syntax="json"), ca, state_dir, rule, f"images[0].{field}")
    assert len(str(refusal)) < 300, len(str(refusal))


def test_a_huge_spec_version_is_quoted_briefly(ca, endorser, state_dir):
    signed = factory.signed_index([factory.image(1)], version=6, spec_version="9" * 10_000)
    refusal = refused(factory.document(signed, [endorser], syntax="json"), ca, state_dir, "index-spec-version")
    assert len(str(refusal)) < 300
