"""kept_differences: which kept paths differ between what host_state_info found and what a role keeps."""

from __future__ import annotations

import hashlib

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.vmcloud.fleet.plugins.filter.kept_differences import kept_differences


def entry(path, mode="0644", owner="root", group="root", kind="file", checksum=None):
    found = {"path": path, "mode": mode, "pw_name": owner, "gr_name": group,
             "isdir": kind == "directory", "isreg": kind == "file", "islnk": kind == "link"}
    if checksum is not None:
        found["checksum"] = checksum
    return found


def test_nothing_differs_on_a_host_as_kept():
    found = {path: entry(path, "0755", kind="directory") for path in ("/t/anchors", "/t/crl")}
    assert kept_differences(found, ["/t/anchors", "/t/crl"], type="directory", mode="0755") == []


def test_missing_other_mode_owner_group_or_type_differ_in_the_order_given():
    found = {
        "/k/mode": entry("/k/mode", "0600"),
        "/k/owner": entry("/k/owner", owner="nobody"),
        "/k/group": entry("/k/group", group="staff"),
        "/k/dir": entry("/k/dir", kind="directory"),
        "/k/link": entry("/k/link", kind="link"),
        "/k/same": entry("/k/same"),
    }
    paths = ["/k/missing", "/k/mode", "/k/owner", "/k/group", "/k/dir", "/k/link", "/k/same"]
    assert kept_differences(found, paths, mode="0644") == paths[:-1]


def test_content_is_compared_with_the_controllers_source(tmp_path):
    source = tmp_path / "root.pem"
    source.write_bytes(b"anchor\n")
    digest = hashlib.sha256(b"anchor\n").hexdigest()
    same = {"/t/anchors/root.pem": entry("/t/anchors/root.pem", checksum=digest)}
    other = {"/t/anchors/root.pem": entry("/t/anchors/root.pem", checksum=hashlib.sha256(b"old").hexdigest())}
    unhashed = {"/t/anchors/root.pem": entry("/t/anchors/root.pem")}
    for found, expected in ((same, []), (other, ["/t/anchors/root.pem"]), (unhashed, ["/t/anchors/root.pem"])):
        assert kept_differences(found, ["/t/anchors/root.pem"], mode="0644", sources=[str(source)]) == expected


def test_content_is_compared_with_given_checksums():
    found = {"/etc/a": entry("/etc/a", checksum="aa"), "/etc/b": entry("/etc/b", checksum="bb")}
    assert kept_differences(found, ["/etc/a", "/etc/b"], mode="0644", checksums=["aa", "cc"]) == ["/etc/b"]


def test_a_source_the_controller_cannot_read_is_an_error_naming_it(tmp_path):
    with pytest.raises(AnsibleFilterError, match="absent.pem"):
        kept_differences({}, ["/t/x"], mode="0644", sources=[str(tmp_path / "absent.pem")])


@pytest.mark.parametrize("arguments", [
    {"sources": ["/a"], "checksums": ["aa"]},
    {"checksums": ["aa", "bb"]},
    {"checksums": ["aa"], "type": "directory"},
])
def test_contradictory_arguments_are_refused(arguments):
    with pytest.raises(AnsibleFilterError):
        kept_differences({}, ["/t/x"], mode="0644", **arguments)


def test_the_input_must_be_the_looks_files():
    with pytest.raises(AnsibleFilterError, match="host_state_info"):
        kept_differences(["/t/x"], ["/t/x"], mode="0644")
