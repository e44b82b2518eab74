# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Attacks on promotion into the store: what the rtorrent user can do to a staged file.

The rtorrent user owns the staging directory. Each case starts from a host that converged for real
(image A held and seeding) and whose rtorrent has also completed image B (its .torrent verified and
kept, as a run that stopped before promotion leaves it). The staged file of B is then tampered with,
the site approves B, and ``imgdist sync`` must fail B at the promote step naming the rule, with the
whole host (state_dir, store, staging, .torrent directory) byte for byte as it was.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.attack.conftest import WAIT, content_entry
from tests.unit import index_factory as factory


def _downloaded_not_promoted(fleet, b) -> Path:
    """B complete in the host's rtorrent, its verified .torrent kept; return the staged file."""
    staging = os.path.join(fleet.host.staging_dir, b.info_hash)
    engine = fleet.swarm.leecher.engine()
    engine.add(b.torrent, staging)
    assert engine.wait_complete(b.info_hash, timeout=WAIT, poll_interval=0.1).complete
    Path(fleet.host.torrent_dir, b.info_hash + ".torrent").write_bytes(b.torrent)
    return Path(staging, b.entry["file"])


@pytest.fixture
def staged(fleet):
    fleet.a = fleet.publish("alma", 9)
    fleet.b_old = fleet.publish("slc", 5, seed=False)
    fleet.b = fleet.publish("slc", 6)
    fleet.index(1, fleet.a, fleet.b_old, fleet.b)
    assert fleet.converge([{"uuid": fleet.a.uuid}])["held"] == [fleet.a.uuid]
    fleet.staged = _downloaded_not_promoted(fleet, fleet.b)
    return fleet


def promote_refused(fleet, rules) -> dict:
    rules = {rules} if isinstance(rules, str) else set(rules)
    before, engine_before = fleet.host.snapshot(), fleet.engine_view()
    run = fleet.sync([{"uuid": fleet.a.uuid}, {"uuid": fleet.b.uuid}])
    report = run.result
    assert run.code != 0 and report.get("promoted", []) == [], run
    failures = {(f["uuid"], f["step"], f["rule"]) for f in report.get("failures", [])}
    assert failures and all(uuid == fleet.b.uuid and step == "promote" and rule in rules
                            for uuid, step, rule in failures), report
    assert fleet.host.snapshot() == before and fleet.engine_view() == engine_before
    return report


def _replace(path: Path, data: bytes) -> None:
    """As the rtorrent user would: a new file renamed over the staged one."""
    new = path.with_name(path.name + ".new")
    new.write_bytes(data)
    os.replace(new, path)


def test_staged_bytes_of_another_version_are_not_promoted(staged):
    # Mix and match: the older version's (endorsed) bytes, same size, where the newer one was downloaded.
    older = staged.b_old.path.read_bytes()
    assert len(older) == staged.staged.stat().st_size and older != staged.staged.read_bytes()
    _replace(staged.staged, older)
    promote_refused(staged, "sha256-mismatch")


def test_staged_file_swapped_after_download_is_not_promoted(staged):
    _replace(staged.staged, os.urandom(staged.staged.stat().st_size))
    promote_refused(staged, "sha256-mismatch")


def test_image_bytes_beyond_the_declared_size_are_not_promoted(staged):
    _replace(staged.staged, staged.staged.read_bytes() + b"\0" * 4096)
    promote_refused(staged, "size-mismatch")


def test_staged_symlink_is_not_followed(staged, tmp_path):
    """Defect 8: the rtorrent user plants a symlink to a file only root can read."""
    secret = tmp_path / "secret"
    secret.write_bytes(os.urandom(staged.staged.stat().st_size))
    secret.chmod(0o600)
    staged.staged.unlink()
    staged.staged.symlink_to(secret)
    promote_refused(staged, "staged-unsafe")


# --------------------------------------------------------------------------- legacy lists (no SHA-256)


def _legacy_entry(number: int, published, url: str) -> bytes:
    entry = published.entry
    return (
        f"torrent-id {number}:\n"
        f"  torrent-name: {published.torrent_name}\n"
        f"  torrent-file-sha1: {hashlib.sha1(published.torrent, usedforsecurity=False).hexdigest()}\n"
        f"  download-url: {url}\n"
        f"  torrent-content-hash: {published.info_hash}\n"
        f"  torrent-content-name: {entry['file']}\n"
        f"  torrent-content-size: {entry['size'] / 1024:.2f} KBs\n"
        "  torrent-content-compressed: N\n"
        f"  volume-name: {entry['name']}\n"
        "  volume-size: 1\n"
        f"  image-version: {entry['version']}\n"
        f"  uuid: {entry['uuid']}\n"
    ).encode("ascii")


@pytest.fixture
def legacy_staged(fleet, keys, tmp_path):
    """The same, from a 2010 torrent list: entries carry no SHA-256 and no exact size."""
    fleet.a = fleet.publish("alma", 9)
    fleet.b = fleet.publish("slc", 6)
    certificate = tmp_path / "endorser.pem"
    certificate.write_text(factory.pem_of(keys.endorser.cert))
    body = b"".join(_legacy_entry(n, p, p.entry["torrent"]["url"]) for n, p in enumerate((fleet.a, fleet.b), 1))
    fleet.site.serve("index.yaml", factory.legacy_document(body, keys.endorser.key))
    fleet.host.trust.update(legacy=True, endorser_certificates=[str(certificate)])
    assert fleet.converge([{"uuid": fleet.a.uuid}])["held"] == [fleet.a.uuid]
    fleet.staged = _downloaded_not_promoted(fleet, fleet.b)
    return fleet


def test_legacy_staged_symlink_does_not_copy_a_root_file_into_the_store(legacy_staged, tmp_path):
    """Defect 8: without a SHA-256 in the entry, a planted symlink made root copy any file into the store."""
    secret = tmp_path / "shadow"
    secret.write_bytes(b"root:$6$secret-hash:19000:0:99999:7:::\n")
    secret.chmod(0o600)
    legacy_staged.staged.unlink()
    legacy_staged.staged.symlink_to(secret)
    promote_refused(legacy_staged, "staged-unsafe")


def test_legacy_staged_file_swapped_after_download_is_not_promoted(legacy_staged):
    """Defect 8: legacy entries are verified by the torrent's piece hashes before promotion."""
    _replace(legacy_staged.staged, os.urandom(legacy_staged.staged.stat().st_size))
    promote_refused(legacy_staged, {"content-hash-mismatch", "sha256-mismatch"})


# --------------------------------------------------------------------------- image_promote


def test_image_promote_with_a_traversal_file_name_writes_nothing_outside_the_store(host, tmp_path):
    """Defect 8: image_promote takes a raw image dict; its file must be checked like the index's."""
    content = b"payload"
    staged_file = tmp_path / "staged.img"
    staged_file.write_bytes(content)
    outside = host.dir / "outside"  # next to the store: where ../outside/ leads from it
    outside.mkdir()
    image = content_entry("evil", 1, content, file="../outside/evil.img")
    before = host.snapshot()
    result = host.module("image_promote", store=host.store_dir, image=image, staged=str(staged_file))
    assert result.get("failed") is True and result["rule"] in {"entry-malformed", "outside-store"}, result
    assert not (outside / "evil.img").exists()
    assert host.snapshot() == before
