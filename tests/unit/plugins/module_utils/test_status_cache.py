# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The status cache: `imgdist status` (the local fact) re-verifies the kept index only when an input changed."""

from __future__ import annotations

import datetime
import json
import os

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils import _imgdist_status, _status_cache
from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import IndexRefused
from ansible_collections.vmcloud.fleet.plugins.module_utils._imgdist_config import EXIT_OK
from tests.unit.plugins.module_utils.test_imgdist import DAY, accepted_in_the_past, expired_index
from tests.unit.sync_world import imgdist, now, utc, write_imgdist_config

# --------------------------------------------------------------------------- through imgdist status


@pytest.fixture
def verifications(monkeypatch) -> list:
    """Each verification of the kept index `imgdist status` runs (at which time)."""
    seen: list = []
    real = _imgdist_status.kept_index

    def counting(config, moment=None):
        seen.append(moment)
        return real(config, moment)

    monkeypatch.setattr(_imgdist_status, "kept_index", counting)
    return seen


def status(config: str) -> dict:
    code, out, err = imgdist("-c", config, "status", "--json")
    assert (code, err) == (EXIT_OK, "")
    return json.loads(out)


def state_dir(world) -> str:
    return world.host_path("index")


def test_a_second_status_reads_the_cache_and_reports_the_same(world, verifications):
    config = write_imgdist_config(world)
    assert imgdist("-c", config, "sync")[0] == EXIT_OK
    first = status(config)
    assert len(verifications) == 2  # now, and a day ahead before caching
    assert os.path.exists(_status_cache.cache_path(state_dir(world)))
    second = status(config)
    assert len(verifications) == 2  # nothing verified again
    assert second == first
    assert first["run_guard"] == {"state": "current", "rule": None} and first["index"]["version"] == 3
    assert {row["uuid"] for row in first["images"]} == {"alma-9", "slc-5"}


def test_a_new_kept_index_misses_the_cache(world, verifications):
    config = write_imgdist_config(world)
    assert imgdist("-c", config, "sync")[0] == EXIT_OK
    assert status(config)["index"]["version"] == 3
    world.write_index(4)
    assert imgdist("-c", config, "sync")[0] == EXIT_OK
    assert status(config)["index"]["version"] == 4
    assert len(verifications) == 4


def test_a_touched_trust_anchor_misses_the_cache(world, verifications):
    config = write_imgdist_config(world)
    assert imgdist("-c", config, "sync")[0] == EXIT_OK
    status(config)
    anchor = world.root / "trust" / "ca.pem"
    stat = anchor.stat()
    os.utime(anchor, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    status(config)
    assert len(verifications) == 4


def test_changed_approvals_miss_the_cache(world):
    config = write_imgdist_config(world)
    assert imgdist("-c", config, "sync")[0] == EXIT_OK
    assert {row["uuid"] for row in status(config)["images"] if row["desired"]} == {"alma-9", "slc-5"}
    narrower = write_imgdist_config(world, approved_images=[{"name": "alma", "version": "latest"}])
    assert {row["uuid"] for row in status(narrower)["images"] if row["desired"]} == {"alma-9"}


def test_a_grace_verdict_is_never_cached(world, verifications):
    config = write_imgdist_config(world)
    assert imgdist("-c", config, "sync")[0] == EXIT_OK
    accepted_in_the_past(world, config, expired_index(world, 4, DAY), now() - 10 * DAY)
    for _unused in range(2):
        report = status(config)
        assert report["run_guard"]["state"] == "grace" and report["index"]["version"] == 4
    assert len(verifications) == 2  # once per status, no look ahead, no cache
    assert not os.path.exists(_status_cache.cache_path(state_dir(world)))


def test_an_index_that_ends_within_the_day_is_cached_for_an_hour(world, verifications):
    config = write_imgdist_config(world)
    expires = now() + datetime.timedelta(hours=5)
    world.index_path.write_bytes(world.index_document(
        4, [p.entry for p in world.published.values()], created=utc(now() - DAY), expires=utc(expires)))
    assert imgdist("-c", config, "sync")[0] == EXIT_OK
    status(config)
    with open(_status_cache.cache_path(state_dir(world))) as handle:
        record = json.load(handle)
    start, end = (datetime.datetime.fromisoformat(record[key]) for key in ("verified_at", "valid_until"))
    assert end - start == datetime.timedelta(hours=1)
    assert len(verifications) == 3  # now, a day ahead (refused), an hour ahead


def test_an_unwritable_state_dir_still_gives_the_status(world, monkeypatch, verifications):
    config = write_imgdist_config(world)
    assert imgdist("-c", config, "sync")[0] == EXIT_OK

    def refuse(*_args, **_kwargs):
        raise PermissionError("read-only")

    monkeypatch.setattr(_status_cache, "write_atomic", refuse)
    assert status(config)["index"]["version"] == 3
    assert status(config)["index"]["version"] == 3
    assert len(verifications) == 4


# --------------------------------------------------------------------------- the window and the key


CURRENT = {"run_guard": {"state": "current", "rule": None}, "warning": None, "index": {"version": 1},
           "desired": [], "endorsed": []}
T0 = datetime.datetime(2026, 12, 3, 10, 0, tzinfo=datetime.UTC)


def fixed(view: dict, calls: list):
    def compute(moment):
        calls.append(moment)
        return view
    return compute


def test_outside_the_window_the_cache_misses(tmp_path):
    kept = tmp_path / "verified-index.yaml"
    kept.write_text("x")
    calls: list = []
    compute = fixed(CURRENT, calls)
    assert _status_cache.cached_view(str(tmp_path), str(kept), {}, compute, now=T0) == CURRENT
    assert calls == [T0, T0 + datetime.timedelta(days=1)]
    for moment in (T0 + datetime.timedelta(hours=23), T0 + datetime.timedelta(days=1)):
        assert _status_cache.cached_view(str(tmp_path), str(kept), {}, compute, now=moment) == CURRENT
    assert len(calls) == 2
    later = T0 + datetime.timedelta(days=1, seconds=1)
    _status_cache.cached_view(str(tmp_path), str(kept), {}, compute, now=later)  # past the window
    earlier = T0 - datetime.timedelta(seconds=1)  # a clock set back
    _status_cache.cached_view(str(tmp_path), str(kept), {}, compute, now=earlier)
    assert calls[2::2] == [later, earlier]


def test_a_refusal_ahead_is_not_cached_and_a_refusal_now_propagates(tmp_path):
    kept = tmp_path / "verified-index.yaml"
    kept.write_text("x")
    calls: list = []

    def refused_later(moment):
        calls.append(moment)
        if moment > T0:
            raise IndexRefused("index-expired", "expired")
        return CURRENT

    assert _status_cache.cached_view(str(tmp_path), str(kept), {}, refused_later, now=T0) == CURRENT
    assert not os.path.exists(_status_cache.cache_path(str(tmp_path)))
    assert len(calls) == 3

    def refused(moment):
        raise IndexRefused("index-missing", "none")

    with pytest.raises(IndexRefused):
        _status_cache.cached_view(str(tmp_path), str(kept), {}, refused, now=T0)


def test_the_key_covers_options_files_in_directories_and_the_marks(tmp_path):
    kept = tmp_path / "verified-index.yaml"
    kept.write_text("x")
    anchors = tmp_path / "anchors"
    anchors.mkdir()
    (anchors / "a.pem").write_text("a")
    options = {"trust_anchors": [str(anchors)], "approved": [{"name": "alma"}]}
    key = _status_cache.fingerprint(str(tmp_path), str(kept), options)
    assert _status_cache.fingerprint(str(tmp_path), str(kept), dict(options)) == key
    assert _status_cache.fingerprint(str(tmp_path), str(kept), {**options, "approved": []}) != key
    (anchors / "a.pem").write_text("b")  # in place: the directory's own mtime stays
    assert _status_cache.fingerprint(str(tmp_path), str(kept), options) != key
    key = _status_cache.fingerprint(str(tmp_path), str(kept), options)
    (tmp_path / "index-0123.json").write_text("{}")  # a rollback mark
    assert _status_cache.fingerprint(str(tmp_path), str(kept), options) != key


def test_a_damaged_cache_is_a_miss(tmp_path):
    kept = tmp_path / "verified-index.yaml"
    kept.write_text("x")
    calls: list = []
    _status_cache.cached_view(str(tmp_path), str(kept), {}, fixed(CURRENT, calls), now=T0)
    with open(_status_cache.cache_path(str(tmp_path)), "w") as handle:
        handle.write("{not json")
    assert _status_cache.cached_view(str(tmp_path), str(kept), {}, fixed(CURRENT, calls), now=T0) == CURRENT
    assert len(calls) == 4
