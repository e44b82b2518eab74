# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""vmcloud.fleet.image_promote: its ``image`` is validated as the index reader validates entries,
so a crafted ``file`` never writes or deletes outside the store (issue 7, defect 8 and the sweep)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Dict

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils._torrent import create_torrent
from ansible_collections.vmcloud.fleet.plugins.modules import image_promote

from .conftest import module_result

INFO_HASH = "ab" * 20


def snapshot(directory: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


STATE_DIR = tempfile.mkdtemp(prefix="image-promote-state-")  # the host lock's, outside each test's snapshot


def run(capsys, **args: Any) -> Dict[str, Any]:
    args.setdefault("state_dir", STATE_DIR)
    return module_result(capsys, image_promote, **args)


def v2_entry(data: bytes, file_name: str, **overrides: Any) -> Dict[str, Any]:
    """An entry as image_index returns it in ``images``."""
    image = {"uuid": "alma-9-img-1", "name": "alma-9", "version": 1, "file": file_name, "size": len(data),
             "sha256": hashlib.sha256(data).hexdigest(), "compressed": False, "volume_size": None,
             "piece_size": None, "web_seeds": [], "targets": {"hosts": [], "subclusters": [], "clusters": []},
             "created": None, "extra": {},
             "torrent": {"url": "http://catalogue/alma-9.torrent", "sha256": "cd" * 32, "sha1": None,
                         "info_hash": INFO_HASH}}
    image.update(overrides)
    return image


@pytest.fixture
def site(tmp_path: Path) -> Dict[str, Path]:
    staging = tmp_path / "staging" / INFO_HASH
    staging.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x").write_bytes(b"a file outside the store, which must stay")
    return {"store": tmp_path / "store", "staging": staging, "outside": outside, "tmp": tmp_path}


def test_a_valid_entry_is_promoted(capsys, site):
    staged = site["staging"] / "alma-9.img"
    staged.write_bytes(b"alma" * 1000)
    result = run(capsys, store=str(site["store"]), image=v2_entry(staged.read_bytes(), "alma-9.img"),
                 staged=str(staged), staging_dir=str(site["tmp"] / "staging"))
    assert result["changed"] and result["action"] == "promoted"
    assert (site["store"] / "alma-9.img").read_bytes() == staged.read_bytes()


def test_a_promotion_takes_the_host_lock_and_a_check_takes_none(capsys, site):
    """As every writer of the store: so a sync holding the lock may take any .promote-* file it finds for
    a killed promotion's leftover."""
    staged = site["staging"] / "alma-9.img"
    staged.write_bytes(b"alma" * 1000)
    state_dir = site["tmp"] / "index"
    args = dict(store=str(site["store"]), image=v2_entry(staged.read_bytes(), "alma-9.img"), staged=str(staged),
                staging_dir=str(site["tmp"] / "staging"), state_dir=str(state_dir))
    assert run(capsys, _ansible_check_mode=True, **args)["changed"] and not state_dir.exists()
    assert run(capsys, **args)["action"] == "promoted" and (state_dir / "sync.lock").is_file()


def test_a_file_naming_a_path_outside_the_store_is_refused(capsys, site):
    staged = site["staging"] / "x"
    staged.write_bytes(b"replacement")
    before = snapshot(site["tmp"])
    result = run(capsys, store=str(site["store"]), image=v2_entry(staged.read_bytes(), "../outside/x"),
                 staged=str(staged))
    assert result["failed"] and result["rule"] == "entry-malformed" and "'../outside/x'" in result["msg"]
    assert snapshot(site["tmp"]) == before and not site["store"].exists()


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"file": "/etc/passwd"}, "plain file name"),
        ({"file": ".hidden.img"}, "plain file name"),
        ({"file": "a\0b.img"}, "plain file name"),
        ({"file": ".."}, "plain file name"),
        ({"file": ""}, "non-empty string"),
        ({"sha256": "zz" * 32}, "64 hex digits"),
        ({"sha256": "ab"}, "64 hex digits"),
        ({"size": -1}, ">= 0"),
        ({"size": "12"}, "integer"),
        ({"uuid": ""}, "non-empty string"),
        ({"uuid": None}, "required"),
        ({"compressed": "yes"}, "true or false"),
    ],
)
def test_malformed_entries_are_refused_like_the_index_reader_refuses_them(capsys, site, overrides, needle):
    staged = site["staging"] / "disk.img"
    staged.write_bytes(b"disk")
    before = snapshot(site["tmp"])
    result = run(capsys, store=str(site["store"]), image=v2_entry(b"disk", "disk.img", **overrides),
                 staged=str(staged))
    assert result["failed"] and result["rule"] == "entry-malformed" and needle in result["msg"], result["msg"]
    assert result["msg"].startswith("entry-malformed: image: ")
    assert snapshot(site["tmp"]) == before and not site["store"].exists()


def test_a_symlink_in_the_staging_directory_is_refused(capsys, site):
    staged = site["staging"] / "disk.img"
    staged.symlink_to(site["outside"] / "x")
    data = (site["outside"] / "x").read_bytes()
    result = run(capsys, store=str(site["store"]), image=v2_entry(data, "disk.img"), staged=str(staged),
                 staging_dir=str(site["tmp"] / "staging"))
    assert result["failed"] and result["rule"] == "staged-unsafe"
    assert not site["store"].exists()


def test_a_legacy_entry_needs_its_torrent_and_is_checked_against_it(capsys, site):
    staged = site["staging"] / "disk.img"
    staged.write_bytes(os.urandom(50_000))
    created = create_torrent(str(staged), announce=["http://tracker.invalid/announce"], piece_length=16384)
    torrent = site["tmp"] / "disk.torrent"
    torrent.write_bytes(created.data)
    image = v2_entry(b"", "disk.img", sha256=None, size=None,
                     torrent={"url": "http://catalogue/disk.torrent", "name": "disk.torrent", "sha256": None,
                              "sha1": hashlib.sha1(created.data).hexdigest(),  # noqa: S324 - legacy lists
                              "info_hash": created.info.info_hash})
    refused = run(capsys, store=str(site["store"]), image=image, staged=str(staged))
    assert refused["failed"] and refused["rule"] == "content-unverifiable" and not site["store"].exists()
    done = run(capsys, store=str(site["store"]), image=image, staged=str(staged), torrent=str(torrent))
    assert done["action"] == "promoted" and (site["store"] / "disk.img").read_bytes() == staged.read_bytes()


def test_a_legacy_entry_with_a_crafted_file_is_refused(capsys, site):
    staged = site["staging"] / "x"
    staged.write_bytes(b"legacy")
    image = v2_entry(b"", "../outside/x", sha256=None, size=None,
                     torrent={"url": "http://catalogue/x.torrent", "sha256": None, "sha1": "00" * 20,
                              "info_hash": INFO_HASH})
    before = snapshot(site["tmp"])
    result = run(capsys, store=str(site["store"]), image=image, staged=str(staged))
    assert result["failed"] and result["rule"] == "entry-malformed"
    assert snapshot(site["tmp"]) == before


def test_the_documentation_matches_the_argument_spec():
    import yaml

    options: Dict[str, Any] = yaml.safe_load(image_promote.DOCUMENTATION)["options"]
    assert set(options) == set(image_promote.ARGUMENT_SPEC)
    for name, spec in image_promote.ARGUMENT_SPEC.items():
        documented = options[name]
        assert documented["type"] == spec["type"], name
        assert documented.get("default") == spec.get("default"), name
        assert documented.get("choices") == spec.get("choices"), name
    yaml.safe_load(image_promote.RETURN)
    yaml.safe_load(image_promote.EXAMPLES)
