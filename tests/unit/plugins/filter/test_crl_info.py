"""vmcloud.fleet.crl_info: what the trust_store role checks before copying a CRL (the _crl rules)."""

from __future__ import annotations

import datetime

import pytest
from ansible.errors import AnsibleFilterError
from cryptography.hazmat.primitives import serialization

from ansible_collections.vmcloud.fleet.plugins.filter.crl_info import FilterModule
from tests.unit import pki

crl_info = FilterModule().filters()["crl_info"]
NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
DAY = datetime.timedelta(days=1)


@pytest.fixture
def ca(tmp_path):
    identity = pki.make_ca("filter test CA", not_before=NOW - 30 * DAY, not_after=NOW + 30 * DAY)
    (tmp_path / "ca.pem").write_bytes(pki.pem(identity.cert))
    return identity


def test_a_current_crl_may_be_installed(tmp_path, ca):
    crl = pki.make_crl(ca, [7, 9], last_update=NOW - DAY, next_update=NOW + DAY)
    (tmp_path / "ca.crl").write_bytes(crl.public_bytes(serialization.Encoding.DER))
    info = crl_info(str(tmp_path / "ca.crl"), anchors=[str(tmp_path / "ca.pem")])
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    assert info == {"issuer": "O=vmcloud tests,CN=filter test CA", "this_update": (NOW - DAY).strftime(stamp),
                    "next_update": (NOW + DAY).strftime(stamp), "revoked": 2, "stale": False, "problem": None}


def test_a_stale_crl_names_the_rule(tmp_path, ca):
    (tmp_path / "ca.crl").write_bytes(pki.pem(pki.make_crl(ca, [], last_update=NOW - 9 * DAY, next_update=NOW - DAY)))
    info = crl_info(str(tmp_path / "ca.crl"))
    assert info["stale"] is True and info["problem"].startswith(f"crl-stale: {tmp_path / 'ca.crl'}: the CRL of ")


def test_a_crl_not_signed_by_its_anchor_is_refused(tmp_path, ca):
    impostor = pki.make_ca("filter test CA")
    (tmp_path / "ca.crl").write_bytes(pki.pem(pki.make_crl(impostor, [], last_update=NOW, next_update=NOW + DAY)))
    assert crl_info(str(tmp_path / "ca.crl"))["problem"] is None  # no anchor given: nothing to check it with
    problem = crl_info(str(tmp_path / "ca.crl"), anchors=[str(tmp_path / "ca.pem")])["problem"]
    assert problem.startswith("crl-signature-invalid: ")


def test_garbage_and_missing_files(tmp_path):
    (tmp_path / "x.crl").write_bytes(b"<html>")
    info = crl_info(str(tmp_path / "x.crl"))
    assert info["problem"].startswith("crl-malformed: ") and info["issuer"] is None
    with pytest.raises(AnsibleFilterError, match="crl_info: cannot read the CRL "):
        crl_info(str(tmp_path / "missing.crl"))
