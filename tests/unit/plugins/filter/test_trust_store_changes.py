"""trust_store_changes: the trust_store role's comparison of a host's trust store with what it keeps."""

from __future__ import annotations

import hashlib

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.vmcloud.fleet.plugins.filter.trust_store_changes import trust_store_changes


def found_file(path, content=None, mode="0644", kind="file"):
    have = {"path": path, "mode": mode, "pw_name": "root", "gr_name": "root",
            "isdir": kind == "directory", "isreg": kind == "file", "islnk": False}
    if content is not None:
        have["checksum"] = hashlib.sha256(content).hexdigest()
    return have


@pytest.fixture
def controller(tmp_path):
    (tmp_path / "ca.pem").write_bytes(b"anchor")
    (tmp_path / "ca.crl").write_bytes(b"crl")
    return {"anchors": [str(tmp_path / "ca.pem")], "crls": [str(tmp_path / "ca.crl")]}


def as_kept(controller):
    return {
        "/t/anchors": found_file("/t/anchors", mode="0755", kind="directory"),
        "/t/crl": found_file("/t/crl", mode="0755", kind="directory"),
        "/t/anchors/ca.pem": found_file("/t/anchors/ca.pem", b"anchor"),
        "/t/crl/ca.crl": found_file("/t/crl/ca.crl", b"crl"),
    }


def test_a_store_as_kept_has_no_changes_and_the_fetched_crls_stay(controller):
    found = {**as_kept(controller), "/t/crl/fetched.crl": found_file("/t/crl/fetched.crl", b"fetched")}
    changes = trust_store_changes(found, "/t", crl_urls=[{"url": "http://ca.example/x.crl", "name": "fetched.crl"}],
                                  **controller)
    assert changes == {"differing": [], "withdrawn": []}


def test_what_differs_is_to_write_and_what_nothing_names_is_withdrawn(controller):
    found = as_kept(controller)
    found["/t/anchors/ca.pem"] = found_file("/t/anchors/ca.pem", b"changed on the host")
    del found["/t/crl"], found["/t/crl/ca.crl"]
    found["/t/anchors/old.pem"] = found_file("/t/anchors/old.pem", b"old")
    found["/t/crl/fetched.crl"] = found_file("/t/crl/fetched.crl", b"no longer fetched")
    found["/t/anchors/sub"] = found_file("/t/anchors/sub", mode="0755", kind="directory")
    found["/t/anchors/sub/deep.pem"] = found_file("/t/anchors/sub/deep.pem", b"not directly in anchors/")
    changes = trust_store_changes(found, "/t", **controller)
    assert changes == {"differing": ["/t/crl", "/t/anchors/ca.pem", "/t/crl/ca.crl"],
                       "withdrawn": ["/t/anchors/old.pem", "/t/crl/fetched.crl"]}


@pytest.mark.parametrize("entry", [
    {"url": "ftp://ca.example/x.crl", "name": "x.crl"},
    {"url": "http://ca.example/x.crl", "name": "../x.crl"},
    {"url": "http://ca.example/x.crl", "name": "x.txt"},
    {"name": "x.crl"},
    "http://ca.example/x.crl",
])
def test_a_malformed_crl_url_entry_is_refused_naming_it(controller, entry):
    with pytest.raises(AnsibleFilterError, match="trust_store_crl_urls entries need url"):
        trust_store_changes(as_kept(controller), "/t", crl_urls=[entry], **controller)
