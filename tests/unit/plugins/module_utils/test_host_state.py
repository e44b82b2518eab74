"""_host_state: the one look a role takes at a host (paths, users, groups, units, packages)."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils import _host_state
from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError


def test_a_file_is_described_as_find_describes_it(tmp_path):
    path = tmp_path / "seeder.json"
    path.write_bytes(b"{}\n")
    path.chmod(0o640)
    entry = _host_state.describe_path(str(path))
    assert entry["path"] == str(path)
    assert entry["mode"] == "0640"
    assert entry["isreg"] and not entry["isdir"] and not entry["islnk"]
    assert entry["checksum"] == hashlib.sha256(b"{}\n").hexdigest()
    assert entry["size"] == 3
    assert entry["pw_name"] == _host_state._user_name(os.getuid())
    assert entry["gr_name"] == _host_state._group_name(os.getgid())


def test_a_directory_has_no_checksum_and_a_missing_path_is_none(tmp_path):
    entry = _host_state.describe_path(str(tmp_path))
    assert entry["isdir"] and "checksum" not in entry
    assert _host_state.describe_path(str(tmp_path / "absent")) is None
    assert _host_state.describe_path(str(tmp_path / "absent" / "below")) is None


def test_a_symlink_is_described_not_followed(tmp_path):
    target = tmp_path / "target"
    target.write_bytes(b"secret")
    link = tmp_path / "link"
    link.symlink_to(target)
    entry = _host_state.describe_path(str(link))
    assert entry["islnk"] and not entry["isreg"]
    assert "checksum" not in entry


def test_a_fifo_is_described_without_being_opened(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    entry = _host_state.describe_path(str(fifo))  # would hang if it were opened for reading
    assert not entry["isreg"] and "checksum" not in entry
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_checksum_false_reads_no_content(tmp_path):
    path = tmp_path / "big"
    path.write_bytes(b"x")
    assert "checksum" not in _host_state.describe_path(str(path), checksum=False)


def test_a_tree_is_described_down_to_its_depth(tmp_path):
    (tmp_path / "anchors").mkdir()
    (tmp_path / "anchors" / "root.pem").write_bytes(b"pem")
    (tmp_path / "anchors" / "deeper").mkdir()
    (tmp_path / "anchors" / "deeper" / "too-deep").write_bytes(b"no")
    found = _host_state.describe_tree(str(tmp_path), depth=2)
    assert set(found) == {str(tmp_path), str(tmp_path / "anchors"), str(tmp_path / "anchors" / "root.pem"),
                          str(tmp_path / "anchors" / "deeper")}
    assert found[str(tmp_path / "anchors" / "root.pem")]["checksum"] == hashlib.sha256(b"pem").hexdigest()
    assert _host_state.describe_tree(str(tmp_path / "absent"), depth=2) == {}


def test_a_symlinked_directory_in_a_tree_is_not_entered(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "file").write_bytes(b"x")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "link").symlink_to(outside)
    found = _host_state.describe_tree(str(tree), depth=3)
    assert set(found) == {str(tree), str(tree / "link")}


def test_look_merges_paths_and_trees(tmp_path):
    (tmp_path / "a").write_bytes(b"a")
    found = _host_state.look(paths=[str(tmp_path / "a"), str(tmp_path / "missing")], trees=[], checksum=True)
    assert set(found["files"]) == {str(tmp_path / "a")}
    assert found["users"] == {} and found["groups"] == {} and found["units"] == {} and found["packages"] == {}


def test_users_and_groups_as_getent_prints_them():
    assert _host_state.users(["root", "no-such-user-vmcloud"]) == {
        "root": ["root", "x", "0", "0", "root", "/root", _root_shell()], "no-such-user-vmcloud": []}
    found = _host_state.groups(["root", "no-such-group-vmcloud"])
    assert found["root"][:3] == ["root", "x", "0"]
    assert found["no-such-group-vmcloud"] == []


def _root_shell():
    import pwd

    return pwd.getpwnam("root").pw_shell


def test_packages_read_dpkgs_record():
    found = _host_state.packages(["dpkg", "no-such-package-vmcloud"])
    assert found == {"dpkg": "installed", "no-such-package-vmcloud": ""}


def test_no_dpkg_means_no_package_is_known():
    assert _host_state.packages(["dpkg"], dpkg_query="/nonexistent/dpkg-query") == {"dpkg": ""}


def _stand_in(tmp_path, script):
    """A stand-in systemctl: this machine's systemd is not the hypervisor's (the roles' integration tests ask
    real systemd in the lab containers); here only the parsing of `systemctl show` is under test."""
    path = tmp_path / "systemctl"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return str(path)


def test_units_parse_one_systemctl_show_for_all(tmp_path):
    systemctl = _stand_in(tmp_path, """[ "$1 $2" = "show --property=LoadState,UnitFileState,ActiveState" ] || exit 9
printf 'LoadState=loaded\\nActiveState=active\\nUnitFileState=enabled\\n\\n'
printf 'LoadState=not-found\\nActiveState=inactive\\nUnitFileState=\\n\\n'
printf 'LoadState=masked\\nActiveState=inactive\\nUnitFileState=masked\\n'
""")
    found = _host_state.units(["a.service", "missing.service", "masked.timer"], systemctl=systemctl,
                              booted=str(tmp_path))
    assert found == {"a.service": {"enabled": "enabled", "active": "active"},
                     "missing.service": {"enabled": "", "active": ""},
                     "masked.timer": {"enabled": "masked", "active": "inactive"}}


def test_a_host_without_systemd_knows_no_unit(tmp_path):
    """Told by /run/systemd/system (what sd_booted asks), not by the words systemctl fails with, which any
    systemd version or wrapper may put otherwise."""
    systemctl = _stand_in(tmp_path, "echo 'Systemd ist hier nicht gestartet.' >&2; exit 1\n")
    unknown = {"a.service": {"enabled": "", "active": ""}}
    assert _host_state.units(["a.service"], systemctl=systemctl, booted=str(tmp_path / "no-systemd")) == unknown
    assert _host_state.units(["a.service"], systemctl="/nonexistent/systemctl", booted=str(tmp_path)) == unknown


def test_a_failing_systemctl_is_an_error_naming_its_rule(tmp_path):
    systemctl = _stand_in(tmp_path, "echo 'Access denied' >&2; exit 1\n")
    with pytest.raises(VmcloudError) as raised:
        _host_state.units(["a.service"], systemctl=systemctl, booted=str(tmp_path))
    assert raised.value.rule == "host-look-failed"
    assert "Access denied" in str(raised.value)
