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
    found["/t/anchors/a.pem"] = entry("/t/anchors/a.pem", checksum="aa")
    kept = [{"paths": ["/t/anchors", "/t/crl"], "type": "directory", "mode": "0755"},
            {"path": "/t/anchors/a.pem", "mode": "0644", "checksum": "aa"}]
    assert kept_differences(found, kept) == []


def test_missing_other_mode_owner_group_or_type_differ_in_the_order_given():
    found = {
        "/k/mode": entry("/k/mode", "0600"),
        "/k/owner": entry("/k/owner", owner="nobody"),
        "/k/group": entry("/k/group", group="staff"),
        "/k/dir": entry("/k/dir", kind="directory"),
        "/k/link": entry("/k/link", kind="link"),
        "/k/same": entry("/k/same"),
        "/k/seeder": entry("/k/seeder", "0750", owner="seeder", group="seeder", kind="directory"),
    }
    paths = ["/k/missing", "/k/mode", "/k/owner", "/k/group", "/k/dir", "/k/link", "/k/same"]
    kept = [{"paths": paths, "mode": "0644"},
            {"path": "/k/seeder", "type": "directory", "mode": "0750", "owner": "seeder", "group": "seeder"}]
    assert kept_differences(found, kept) == paths[:-1]


def test_content_is_compared_with_the_controllers_source(tmp_path):
    source = tmp_path / "root.pem"
    source.write_bytes(b"anchor\n")
    digest = hashlib.sha256(b"anchor\n").hexdigest()
    path = "/t/anchors/root.pem"
    same, other, unhashed = ({path: entry(path, checksum=digest)},
                             {path: entry(path, checksum=hashlib.sha256(b"old").hexdigest())}, {path: entry(path)})
    for found, expected in ((same, []), (other, [path]), (unhashed, [path])):
        assert kept_differences(found, [{"path": path, "mode": "0644", "source": str(source)}]) == expected
        assert kept_differences(found, [{"paths": [path], "mode": "0644", "sources": [str(source)]}]) == expected


def test_content_is_compared_with_given_checksums():
    found = {"/etc/a": entry("/etc/a", checksum="aa"), "/etc/b": entry("/etc/b", checksum="bb")}
    kept = [{"paths": ["/etc/a", "/etc/b"], "mode": "0644", "checksums": ["aa", "cc"]}]
    assert kept_differences(found, kept) == ["/etc/b"]


def test_a_source_the_controller_cannot_read_is_an_error_naming_it(tmp_path):
    with pytest.raises(AnsibleFilterError, match="absent.pem"):
        kept_differences({}, [{"path": "/t/x", "mode": "0644", "source": str(tmp_path / "absent.pem")}])


@pytest.mark.parametrize("bad", [
    {"mode": "0644"},  # neither path nor paths
    {"path": "/a", "paths": ["/a"], "mode": "0644"},
    {"path": "/a"},  # no mode
    {"path": "/a", "mode": "0644", "type": "fifo"},
    {"path": "/a", "mode": "0644", "checksum": "aa", "source": "/b"},
    {"paths": ["/a", "/b"], "mode": "0644", "checksums": ["aa"]},
    {"path": "/a", "mode": "0644", "checksums": ["aa"]},
    {"path": "/a", "mode": "0755", "type": "directory", "checksum": "aa"},
    {"path": "/a", "mode": "0644", "colour": "blue"},
])
def test_a_malformed_entry_is_refused(bad):
    with pytest.raises(AnsibleFilterError, match="kept_differences"):
        kept_differences({}, [bad])


def test_the_input_must_be_the_looks_files():
    with pytest.raises(AnsibleFilterError, match="host_state_info"):
        kept_differences(["/t/x"], [{"path": "/t/x", "mode": "0644"}])
