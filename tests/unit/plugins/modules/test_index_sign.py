"""vmcloud.fleet.index_sign: check → apply → check → apply, co-signing, no key material anywhere."""

from __future__ import annotations

import datetime
import json
import os

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.vmcloud.fleet.plugins.module_utils._endorse_document import load_document, write_document
from ansible_collections.vmcloud.fleet.plugins.module_utils._index import IndexPolicy, verify_index
from ansible_collections.vmcloud.fleet.plugins.module_utils._trust import TrustStore, fingerprint, subject_of
from ansible_collections.vmcloud.fleet.plugins.modules import index_image, index_sign
from tests.unit import index_factory as factory
from tests.unit import pki

URL = "http://catalogue/index.yaml"
PASSPHRASE = "correct-horse-battery-staple-7d1f"  # noqa: S105 - a test key's passphrase


def run(capsys, module=index_sign, **args):
    with patch_module_args(args), pytest.raises(SystemExit):
        module.main()
    out = capsys.readouterr().out
    return json.loads(out), out


def key_lines(key_pem: bytes):
    """The base64 body lines of a PEM key: none of them may appear in any output."""
    return [line for line in key_pem.decode().splitlines() if line and not line.startswith("-----")]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    now = datetime.datetime.now(pki.UTC)
    window = {"not_before": now - datetime.timedelta(days=1), "not_after": now + datetime.timedelta(days=365)}
    directory = tmp_path_factory.mktemp("keys")
    ca = pki.make_ca("index_sign test CA", **window)
    result = {"ca": ca, "dir": directory}
    for key_type in ("rsa", "ec", "ed25519"):
        identity = pki.make_endorser(ca, f"signer-{key_type}", key_type=key_type, **window)
        cert_path = directory / f"{key_type}.pem"
        key_path = directory / f"{key_type}.key"
        cert_path.write_bytes(pki.pem(identity.cert))
        plain = pki.key_pem(identity.key)
        locked = pki.key_pem(identity.key, passphrase=PASSPHRASE.encode())
        key_path.write_bytes(plain)
        result[key_type] = {
            "identity": identity,
            "cert": str(cert_path),
            "key": str(key_path),
            "plain": plain,
            "locked": locked,
            "subject": subject_of(identity.cert),
            "fingerprint": fingerprint(identity.cert),
        }
    expired = pki.make_endorser(ca, "signer-expired", key_type="ec", not_before=now - datetime.timedelta(days=9),
                                not_after=now - datetime.timedelta(days=1))
    (directory / "expired.pem").write_bytes(pki.pem(expired.cert))
    (directory / "expired.key").write_bytes(pki.key_pem(expired.key))
    return result


@pytest.fixture
def index(capsys, tmp_path):
    path = tmp_path / "index.yaml"
    result, _unused = run(
        capsys, module=index_image, path=str(path), url=URL, endorser="cern-it", image=factory.image(1))
    assert result["version"] == 1
    return path


def policy(keys, threshold=1):
    return IndexPolicy(trust=TrustStore(anchors=[keys["ca"].cert]), threshold=threshold, fetched_url=URL)


def test_check_apply_check_apply_two_endorsers(capsys, keys, index):
    signers = [
        {"certificate": keys["rsa"]["cert"], "private_key": keys["rsa"]["key"]},
        {"certificate": keys["ec"]["cert"], "private_key_content": keys["ec"]["locked"].decode(),
         "passphrase": PASSPHRASE},
    ]
    unsigned = index.read_bytes()
    outputs = []
    for extra in ({"_ansible_check_mode": True, "_ansible_diff": True}, {"_ansible_diff": True},
                  {"_ansible_check_mode": True, "_ansible_diff": True}, {}):
        outputs.append(run(capsys, path=str(index), signers=signers, **extra))
        if len(outputs) == 1:
            assert index.read_bytes() == unsigned  # check mode wrote nothing
    results = [result for result, _unused in outputs]
    assert [r["changed"] for r in results] == [True, True, False, False]

    subjects = [keys["rsa"]["subject"], keys["ec"]["subject"]]
    assert results[0]["diff"]["before"] == {"signers": []}
    assert results[0]["diff"]["after"] == {"signers": subjects}
    assert results[0]["added"] == subjects and results[3]["added"] == []
    assert results[2]["diff"]["before"] == results[2]["diff"]["after"] == {"signers": subjects}
    for result in results:
        assert result["version"] == 1
        assert result["signers"] == [
            {"subject": keys[k]["subject"], "fingerprint": keys[k]["fingerprint"]} for k in ("rsa", "ec")
        ]

    verified = verify_index(index.read_bytes(), policy(keys, threshold=2))
    assert {s["subject"] for s in verified.signers} == set(subjects)

    # No key material, passphrase included, in any result or diff.
    for _unused, out in outputs:
        assert PASSPHRASE not in out
        assert "PRIVATE KEY" not in out
        for material in (keys["ec"]["locked"], keys["ec"]["plain"], keys["rsa"]["plain"]):
            assert not any(line in out for line in key_lines(material))
    assert b"PRIVATE KEY" not in index.read_bytes()


def test_each_algorithm_signs_for_the_reader(capsys, keys, index):
    for key_type in ("rsa", "ec", "ed25519"):
        result, _unused = run(capsys, path=str(index),
                              signers=[{"certificate": keys[key_type]["cert"], "private_key": keys[key_type]["key"]}])
        assert result["changed"] is True and result["added"] == [keys[key_type]["subject"]]
    assert len(verify_index(index.read_bytes(), policy(keys, threshold=3)).signers) == 3


def test_co_signing_in_separate_runs_keeps_the_first_signature(capsys, keys, index):
    first, _unused = run(capsys, path=str(index), signers=[{"certificate": keys["rsa"]["cert"],
                                                            "private_key": keys["rsa"]["key"]}])
    second, _unused = run(capsys, path=str(index), signers=[{"certificate": keys["ed25519"]["cert"],
                                                             "private_key": keys["ed25519"]["key"]}])
    assert first["changed"] and second["changed"]
    assert [s["subject"] for s in second["signers"]] == [keys["rsa"]["subject"], keys["ed25519"]["subject"]]
    assert verify_index(index.read_bytes(), policy(keys, threshold=2)).version == 1


def test_after_an_edit_signatures_are_replaced(capsys, keys, index):
    signer = [{"certificate": keys["ec"]["cert"], "private_key": keys["ec"]["key"]}]
    run(capsys, path=str(index), signers=signer)
    edited, _unused = run(capsys, module=index_image, path=str(index), image=factory.image(2))
    assert edited["dropped_signers"] == [keys["ec"]["subject"]]
    resigned, _unused = run(capsys, _ansible_diff=True, path=str(index), signers=signer)
    assert resigned["changed"] is True and resigned["version"] == 2
    assert resigned["diff"]["before"] == {"signers": []}
    assert verify_index(index.read_bytes(), policy(keys)).version == 2


def test_stale_signature_is_dropped_when_signing(capsys, keys, index):
    signer = [{"certificate": keys["ec"]["cert"], "private_key": keys["ec"]["key"]}]
    run(capsys, path=str(index), signers=signer)
    document = load_document(index.read_bytes())
    stale = dict(document["signatures"][0])
    document["signed"]["endorser"] = "someone-else"  # content changed behind the signature's back
    write_document(str(index), document)
    result, _unused = run(capsys, _ansible_diff=True, path=str(index),
                          signers=[{"certificate": keys["rsa"]["cert"], "private_key": keys["rsa"]["key"]}])
    assert result["changed"] is True
    assert result["dropped"] == [keys["ec"]["subject"]]
    assert result["diff"]["before"] == {"signers": [f"{keys['ec']['subject']} (does not verify)"]}
    assert result["diff"]["after"] == {"signers": [keys["rsa"]["subject"]]}
    assert stale not in load_document(index.read_bytes())["signatures"]


def test_wrong_key_is_refused_without_quoting_it(capsys, keys, index):
    before = index.read_bytes()
    result, out = run(capsys, path=str(index), signers=[{
        "certificate": keys["ec"]["cert"], "private_key_content": keys["rsa"]["plain"].decode()}])
    assert result["failed"] is True and result["rule"] == "private-key-mismatch"
    assert keys["ec"]["subject"] in result["msg"]
    assert not any(line in out for line in key_lines(keys["rsa"]["plain"]))
    assert index.read_bytes() == before


def test_wrong_passphrase_is_refused_without_quoting_it(capsys, keys, index):
    result, out = run(capsys, path=str(index), signers=[{
        "certificate": keys["ec"]["cert"], "private_key_content": keys["ec"]["locked"].decode(),
        "passphrase": "not-" + PASSPHRASE}])
    assert result["failed"] is True and result["rule"] == "private-key-unreadable"
    assert PASSPHRASE not in out
    assert not any(line in out for line in key_lines(keys["ec"]["locked"]))


def test_expired_certificate_is_refused(capsys, keys, index):
    result, _unused = run(capsys, path=str(index), signers=[{
        "certificate": str(keys["dir"] / "expired.pem"), "private_key": str(keys["dir"] / "expired.key")}])
    assert result["failed"] is True and result["rule"] == "certificate-expired"


def test_missing_index_is_refused(capsys, keys, tmp_path):
    result, _unused = run(capsys, path=str(tmp_path / "absent.yaml"),
                          signers=[{"certificate": keys["ec"]["cert"], "private_key": keys["ec"]["key"]}])
    assert result["failed"] is True and result["rule"] == "index-missing"
    assert "vmcloud.fleet.index_image" in result["msg"]
    assert os.listdir(tmp_path) == []


def test_signer_option_rules(capsys, keys, index):
    both, _unused = run(capsys, path=str(index), signers=[{"certificate": keys["ec"]["cert"], "private_key": "/x",
                                                           "private_key_content": "not-a-pem-key-at-all"}])
    assert both["failed"] is True and "mutually exclusive" in both["msg"]
    neither, _unused = run(capsys, path=str(index), signers=[{"certificate": keys["ec"]["cert"]}])
    assert neither["failed"] is True and "one of the following is required" in neither["msg"]
    empty, _unused = run(capsys, path=str(index), signers=[])
    assert empty["failed"] is True and empty["rule"] == "signers-missing"
