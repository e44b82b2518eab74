# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_metrics: the Prometheus text format (parsed back by a strict reader of its grammar), last-sync.json
and the run-guard denial counter."""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import threading

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils import _metrics
from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._metrics import Family

# The text exposition format 0.0.4 (prometheus.io/docs/instrumenting/exposition_formats), strictly.
METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
LABEL_VALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
VALUE = r"(?:[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|NaN|[+-]Inf)"
HELP_LINE = re.compile(rf"# HELP ({METRIC_NAME}) ((?:[^\\\n]|\\[\\n])*)")
TYPE_LINE = re.compile(rf"# TYPE ({METRIC_NAME}) (counter|gauge|histogram|summary|untyped)")
SAMPLE_LINE = re.compile(
    rf"({METRIC_NAME})(?:\{{((?:{LABEL_NAME}={LABEL_VALUE})(?:,{LABEL_NAME}={LABEL_VALUE})*,?)?\}})? ({VALUE})"
    r"(?: -?[0-9]+)?"
)
LABEL = re.compile(rf"({LABEL_NAME})=({LABEL_VALUE})")


def unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), text)


def parse(text: str) -> dict:
    """{name: {"type", "help", "samples": {frozenset(labels): value}}}; AssertionError on anything the
    format does not allow: a line of no known form, a TYPE after its samples, a family split in two,
    a duplicate series, a missing final newline."""
    assert text == "" or text.endswith("\n"), "the text must end with a newline"
    families: dict = {}
    current = None
    for line in text.splitlines():
        if match := HELP_LINE.fullmatch(line):
            name = match.group(1)
            assert name not in families or name == current, f"family {name} split"
            families.setdefault(name, {"type": "untyped", "help": None, "samples": {}})["help"] = unescape(
                match.group(2))
            current = name
        elif match := TYPE_LINE.fullmatch(line):
            name = match.group(1)
            family = families.setdefault(name, {"type": "untyped", "help": None, "samples": {}})
            assert not family["samples"], f"TYPE of {name} after its samples"
            assert name not in families or name == current or not family["samples"]
            family["type"] = match.group(2)
            current = name
        elif match := SAMPLE_LINE.fullmatch(line):
            name = match.group(1)
            assert name == current, f"sample {name} outside its family {current}"
            labels = frozenset((key, unescape(value[1:-1])) for key, value in LABEL.findall(match.group(2) or ""))
            assert len(labels) == len(LABEL.findall(match.group(2) or "")), "a label given twice"
            series = families[name]["samples"]
            assert labels not in series, f"duplicate series {name}{dict(labels)}"
            series[labels] = float(match.group(3).replace("Inf", "inf"))
        else:
            raise AssertionError(f"not a line of the text format: {line!r}")
    return families


def value(families: dict, metric: str, **labels: str) -> float:
    return families[f"vmcloud_imgdist_{metric}"]["samples"][frozenset(labels.items())]


# --------------------------------------------------------------------------- the format


def test_the_json_document_holds_what_the_text_holds_and_is_strict_json():
    families = [
        Family("image_present", "gauge", "present").add(1, version="9", name="alma").add(True, name="slc", version="5"),
        Family("images_missing", "gauge", "never sampled"),
        Family("index_expiry_timestamp_seconds", "gauge", "expiry").add(math.nan).add(math.inf, which="up"),
    ]
    document = _metrics.document(families)
    assert json.loads(json.dumps(document, allow_nan=False)) == {"metrics": [
        {"name": "vmcloud_imgdist_image_present", "type": "gauge", "help": "present",
         "samples": [{"labels": {"name": "alma", "version": "9"}, "value": 1},
                     {"labels": {"name": "slc", "version": "5"}, "value": 1}]},
        {"name": "vmcloud_imgdist_index_expiry_timestamp_seconds", "type": "gauge", "help": "expiry",
         "samples": [{"labels": {}, "value": "NaN"}, {"labels": {"which": "up"}, "value": "+Inf"}]},
    ]}
    with pytest.raises(ValueError):
        _metrics.document([Family("x", "histogram", "no")])


def test_labels_and_help_are_escaped_and_read_back():
    tricky = 'a "quoted" \\ back\nslash'
    text = _metrics.render([
        Family("image_present", "gauge", "help with \\ and\nnewline").add(1, name=tricky, version="9"),
        Family("run_guard_denials_total", "counter", "count").add(3),
    ])
    families = parse(text)
    assert families["vmcloud_imgdist_image_present"]["help"] == "help with \\ and\nnewline"
    assert families["vmcloud_imgdist_image_present"]["type"] == "gauge"
    assert value(families, "image_present", name=tricky, version="9") == 1
    assert families["vmcloud_imgdist_run_guard_denials_total"]["type"] == "counter"
    assert value(families, "run_guard_denials_total") == 3


@pytest.mark.parametrize("number", [0, 7, -2, 0.25, 1.5e300, 1765000000.123, math.inf, -math.inf])
def test_values_read_back(number):
    assert value(parse(_metrics.render([Family("x", "gauge", "x").add(number)])), "x") == number


def test_nan_and_booleans():
    families = parse(_metrics.render([Family("a", "gauge", "a").add(math.nan), Family("b", "gauge", "b").add(True)]))
    assert math.isnan(value(families, "a")) and value(families, "b") == 1


def test_an_empty_family_is_left_out_and_a_bad_type_refused():
    assert _metrics.render([Family("nothing", "gauge", "no samples")]) == ""
    with pytest.raises(ValueError, match="metric type must be one of counter, gauge"):
        _metrics.render([Family("x", "histogramm", "x").add(1)])


def test_the_reader_is_strict():
    """The reader this file relies on refuses what the format does not allow (else it proves nothing)."""
    for bad in ("vmcloud x 1\n", 'x{a="1",a="2"} 1\n# TYPE x gauge\n', "# TYPE x gauge\nx 1\nx 2\n",
                '# TYPE x gauge\nx{a="\n"} 1\n', "# TYPE x gauge\nx 1", "# TYPE x gauge\nx one\n",
                "# TYPE x gauge\ny 1\n"):
        with pytest.raises(AssertionError):
            parse(bad)


# --------------------------------------------------------------------------- the families


def row(uuid, name, version, state, desired=True, engine=None):
    return {"uuid": uuid, "name": name, "version": version, "state": state, "desired": desired, "engine": engine}


def engine(completed, uploaded):
    return {"completed_bytes": completed, "uploaded_bytes": uploaded}


STATUS = {
    "enabled": True,
    "index": {"url": "https://x/index.yaml", "version": 4, "expires": "2026-12-31T00:00:00Z"},
    "images": [
        row("alma-9", "alma", 9, "ready", engine=engine(100, 300)),
        row("slc-5", "slc", 5, "downloading", engine=engine(40, 0)),
        row("centos-7", "centos", 7, "pending"),
        row("alma-8", "alma", 8, "retiring", desired=False, engine=engine(10, 5)),
    ],
}


def test_families_from_a_status():
    last = {"finished": "2026-12-01T10:00:05Z", "last_success": "2026-12-01T09:00:00Z", "duration_seconds": 5.5,
            "result": "failed", "exit_status": 2, "rule": "index-expired"}
    families = parse(_metrics.render(_metrics.families(STATUS, last, 2)))
    assert value(families, "images_present") == 1
    assert value(families, "images_missing") == 2
    assert value(families, "images_retiring") == 1
    assert value(families, "image_present", name="alma", version="9") == 1
    assert value(families, "image_present", name="slc", version="5") == 0
    assert value(families, "image_present", name="centos", version="7") == 0
    assert len(families["vmcloud_imgdist_image_present"]["samples"]) == 3  # held ones are not labelled
    assert value(families, "engine_downloaded_bytes") == 150
    assert value(families, "engine_uploaded_bytes") == 305
    assert value(families, "run_guard_denials_total") == 2
    assert value(families, "index_expiry_timestamp_seconds") == datetime.datetime(
        2026, 12, 31, tzinfo=datetime.UTC).timestamp()
    assert value(families, "index_version") == 4
    assert value(families, "last_success_timestamp_seconds") == datetime.datetime(
        2026, 12, 1, 9, tzinfo=datetime.UTC).timestamp()
    assert value(families, "last_sync_timestamp_seconds") == datetime.datetime(
        2026, 12, 1, 10, 0, 5, tzinfo=datetime.UTC).timestamp()
    assert value(families, "last_sync_duration_seconds") == 5.5
    assert value(families, "last_sync_success") == 0
    assert value(families, "last_sync_exit_status") == 2
    assert value(families, "last_sync_failure", rule="index-expired") == 1
    assert value(families, "enabled") == 1


def test_two_images_of_one_name_and_version_make_one_series():
    status = {"enabled": False, "index": None, "images": [row("a-1", "a", 1, "ready"), row("b-1", "a", 1, "pending")]}
    families = parse(_metrics.render(_metrics.families(status, None, 0)))
    assert families["vmcloud_imgdist_image_present"]["samples"] == {frozenset({("name", "a"), ("version", "1")}): 0}
    assert value(families, "enabled") == 0
    assert not any(name.startswith("vmcloud_imgdist_last_") or name.startswith("vmcloud_imgdist_index_")
                   for name in families)  # before any sync and without an index: no made-up times


# --------------------------------------------------------------------------- last-sync.json


class Report:
    def __init__(self, failures=()):
        self.desired = ["alma-9", "slc-5"]
        self.images = [type("Outcome", (), {"ok": not failures})(), type("Outcome", (), {"ok": True})()]
        self.failures = list(failures)
        self.promoted = ["alma-9"]
        self.retired = []
        self.index = {"version": 4}


def clock(*moments):
    times = iter(datetime.datetime(2026, 12, 1, 10, 0, second, tzinfo=datetime.UTC) for second in moments)
    return lambda: next(times)


def test_a_sync_is_recorded_and_a_failure_keeps_the_last_success(tmp_path):
    state = str(tmp_path / "state")
    assert _metrics.record_sync(state, lambda: (0, Report()), clock(1, 4)) == 0
    record = _metrics.read_last_sync(state)
    assert record == {"started": "2026-12-01T10:00:01Z", "finished": "2026-12-01T10:00:04Z", "duration_seconds": 3.0,
                      "result": "ok", "exit_status": 0, "rule": None, "message": None, "index_version": 4,
                      "counts": {"desired": 2, "ok": 2, "failed": 0, "promoted": 1, "retired": 0},
                      "last_success": "2026-12-01T10:00:04Z"}
    failure = {"uuid": "alma-9", "info_hash": None, "step": "verify", "rule": "checksum-mismatch", "message": "bad"}
    assert _metrics.record_sync(state, lambda: (1, Report([failure])), clock(10, 12)) == 1
    record = _metrics.read_last_sync(state)
    assert (record["result"], record["rule"], record["message"]) == ("failed", "checksum-mismatch", "alma-9: bad")
    assert record["counts"]["failed"] == 1 and record["last_success"] == "2026-12-01T10:00:04Z"

    def refused():
        error = VmcloudError("index-expired", "the index expired")
        error.exit_code = 2
        raise error

    with pytest.raises(VmcloudError):
        _metrics.record_sync(state, refused, clock(20, 21))
    record = _metrics.read_last_sync(state)
    assert (record["result"], record["exit_status"], record["rule"], record["counts"]) == (
        "failed", 2, "index-expired", None)
    assert record["last_success"] == "2026-12-01T10:00:04Z"
    assert sorted(os.listdir(state)) == ["last-sync.json"]  # atomic: no temp file left


def test_a_damaged_record_is_read_as_none(tmp_path):
    (tmp_path / "last-sync.json").write_text("{not json")
    assert _metrics.read_last_sync(str(tmp_path)) is None
    _metrics.record_sync(str(tmp_path), lambda: (1, Report()), clock(1, 2))
    assert _metrics.read_last_sync(str(tmp_path))["last_success"] is None


# --------------------------------------------------------------------------- run-guard denials


def test_denials_are_counted_by_concurrent_hooks(tmp_path):
    state = str(tmp_path / "state")
    assert _metrics.denial_count(state) == 0
    threads = [threading.Thread(target=_metrics.record_denial, args=(state, "not-approved")) for _unused in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _metrics.denial_count(state) == 16
    record = json.loads((tmp_path / "state" / "run-guard-denials.json").read_text())
    assert record["last_rule"] == "not-approved"


def test_a_denial_that_cannot_be_written_does_not_raise(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    _metrics.record_denial(str(blocker / "state"), "not-approved")  # a file where the directory should be
    assert _metrics.denial_count(str(blocker / "state")) == 0
