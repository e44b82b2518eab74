# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""imgdist's metrics: ``<state_dir>/last-sync.json`` and a Prometheus textfile. Private to the collection.

Plain Python, in the hypervisor artifact. A sync (not ``--check``) records its outcome in
``last-sync.json`` (when, how long, the result, the rule of a failure, counts, and the time of the
last successful sync, kept across failures); ``imgdist status`` shows it. When imgdist.yml sets
``metrics_textfile_dir``, the sync then writes ``vmcloud_imgdist.prom`` there for node_exporter's
textfile collector; ``imgdist metrics`` prints the same text. Both files are written atomically
(``_io.write_atomic``: a temp file in the same directory, whose name does not end in ``.prom``, so
node_exporter never reads half a file). The libvirt hook counts the guests it refuses in
``run-guard-denials.json`` (``record_denial``).

The exposition format (text format 0.0.4) is written here by hand: ``prometheus_client`` is not in
the hypervisor artifact (Debian's python3-prometheus-client is not among the packages the
vmic_agent role installs), and the part of the format a textfile needs is a few lines.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ._errors import VmcloudError
from ._index import parse_utc_timestamp
from ._io import write_atomic
from ._time import utc_text

TEXTFILE_NAME = "vmcloud_imgdist.prom"
LAST_SYNC_NAME = "last-sync.json"
DENIALS_NAME = "run-guard-denials.json"
PREFIX = "vmcloud_imgdist_"
TYPES = ("counter", "gauge")

# --------------------------------------------------------------------------- the exposition format


@dataclass(frozen=True)
class Family:
    """One metric family: a name (without PREFIX), its type, its help text and its samples."""

    name: str
    kind: str  # one of TYPES
    help: str
    samples: List[Tuple[Dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, **labels: Any) -> Family:
        self.samples.append(({key: str(item) for key, item in labels.items()}, value))
        return self


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _exposed(families: Sequence[Family]) -> List[Family]:
    """The families to expose, in order: a family without samples is left out (node_exporter then has
    nothing to say about it); a type the format does not know is a ValueError."""
    for family in families:
        if family.kind not in TYPES:
            raise ValueError(f"metric type must be one of {', '.join(TYPES)}, got {family.kind!r}")
    return [family for family in families if family.samples]


def render(families: Sequence[Family]) -> str:
    """The text exposition of ``families``: HELP and TYPE lines, then the samples, one family after
    another (those ``_exposed``)."""
    lines: List[str] = []
    for family in _exposed(families):
        name = PREFIX + family.name
        lines.append(f"# HELP {name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {name} {family.kind}")
        for labels, value in family.samples:
            text = ",".join(f'{key}="{_escape_label(item)}"' for key, item in sorted(labels.items()))
            lines.append(f"{name}{{{text}}} {format_value(value)}" if text else f"{name} {format_value(value)}")
    return "".join(line + "\n" for line in lines)


def json_value(value: float) -> float | str:
    """A sample's value for JSON: the number, or the text format's NaN, +Inf, -Inf (JSON has none)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and not math.isfinite(value):
        return format_value(value)
    return value


def document(families: Sequence[Family]) -> Dict[str, Any]:
    """What ``render`` says, as data (``imgdist metrics --json``): the same families, names, types, help
    texts, labels and values, in the same order."""
    return {"metrics": [
        {"name": PREFIX + family.name, "type": family.kind, "help": family.help,
         "samples": [{"labels": dict(sorted(labels.items())), "value": json_value(value)}
                     for labels, value in family.samples]}
        for family in _exposed(families)]}


# --------------------------------------------------------------------------- last-sync.json


def _epoch(text: Optional[str]) -> Optional[float]:
    if not text:
        return None
    try:
        return parse_utc_timestamp(text, "timestamp").timestamp()
    except VmcloudError:
        return None


def read_json(path: str) -> Optional[Dict[str, Any]]:
    """A small JSON record of ours, or None when it is missing or unreadable (never raises)."""
    try:
        with open(path, "rb") as handle:
            document = json.loads(handle.read(1 << 20))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def read_last_sync(state_dir: str) -> Optional[Dict[str, Any]]:
    return read_json(os.path.join(state_dir, LAST_SYNC_NAME))


def sync_counts(report: Any) -> Dict[str, int]:
    """What a sync did, counted (``_sync.SyncReport``)."""
    return {
        "desired": len(report.desired),
        "ok": sum(1 for image in report.images if image.ok),
        "failed": len(report.failures),
        "promoted": len(report.promoted),
        "retired": len(report.retired),
    }


def write_last_sync(state_dir: str, started: datetime.datetime, finished: datetime.datetime, exit_status: int,
                    rule: Optional[str], message: Optional[str], report: Any = None) -> Dict[str, Any]:
    """Record one sync in ``<state_dir>/last-sync.json``; ``last_success`` survives a failure."""
    previous = read_last_sync(state_dir) or {}
    ok = exit_status == 0
    record = {
        "started": utc_text(started),
        "finished": utc_text(finished),
        "duration_seconds": round((finished - started).total_seconds(), 3),
        "result": "ok" if ok else "disabled" if rule == "host-disabled" else "failed",
        "exit_status": exit_status,
        "rule": rule,
        "message": message,
        "index_version": report.index.get("version") if report is not None else None,
        "counts": sync_counts(report) if report is not None else None,
        "last_success": utc_text(finished) if ok else previous.get("last_success"),
    }
    os.makedirs(state_dir, mode=0o755, exist_ok=True)
    write_atomic(os.path.join(state_dir, LAST_SYNC_NAME),
                 (json.dumps(record, indent=1, sort_keys=True) + "\n").encode("utf-8"))
    return record


def record_sync(state_dir: str, run: Callable[[], Tuple[int, Any]],
                clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC)) -> int:
    """Run a sync (``run`` returns its exit status and ``SyncReport``, or raises a VmcloudError with an
    ``exit_code``) and record it; return the exit status, re-raise what it raised."""
    started = clock()
    try:
        code, report = run()
    except VmcloudError as exc:
        write_last_sync(state_dir, started, clock(), getattr(exc, "exit_code", 5), exc.rule, exc.message)
        raise
    except OSError as exc:
        write_last_sync(state_dir, started, clock(), 5, "io-error", str(exc))
        raise
    failure = report.failures[0] if report.failures else None
    write_last_sync(state_dir, started, clock(), code, failure and failure["rule"],
                    failure and f"{failure['uuid'] or failure.get('info_hash') or ''}: {failure['message']}", report)
    return code


# --------------------------------------------------------------------------- run-guard denials


def record_denial(state_dir: str, rule: str, now: Optional[datetime.datetime] = None) -> None:
    """Count a guest the run guard refused (the libvirt hook). Never raises: a counter that cannot be
    written must not change the hook's answer. Concurrent hooks are serialised by a lock on the file."""
    now = now or datetime.datetime.now(datetime.UTC)
    path = os.path.join(state_dir, DENIALS_NAME)
    with contextlib.suppress(OSError):
        os.makedirs(state_dir, mode=0o755, exist_ok=True)
        with open(path + ".lock", "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            record = read_json(path) or {}
            count = record.get("count")
            count = count + 1 if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else 1
            record = {"count": count, "last": utc_text(now), "last_rule": rule}
            write_atomic(path, (json.dumps(record, sort_keys=True) + "\n").encode("utf-8"))


def denial_count(state_dir: str) -> int:
    count = (read_json(os.path.join(state_dir, DENIALS_NAME)) or {}).get("count")
    return count if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else 0


# --------------------------------------------------------------------------- the metrics


def families(status: Mapping[str, Any], last_sync: Optional[Mapping[str, Any]], denials: int) -> List[Family]:
    """The metric families from ``imgdist status``'s report, last-sync.json and the denial count.

    Per-image series carry only ``name`` and ``version`` of the desired images (the site's approved
    set, so bounded); held images no longer desired are counted, not labelled.
    """
    desired = [row for row in status["images"] if row["desired"]]
    held = [row for row in status["images"] if not row["desired"]]
    per_image: Dict[Tuple[str, str], int] = {}
    for row in desired:  # two images of one name and version: present only when both are
        key = (str(row["name"]), str(row["version"]))
        per_image[key] = min(per_image.get(key, 1), int(row["state"] == "ready"))
    image = Family("image_present", "gauge", "1 when the desired image (name, version) is verified in the store.")
    for (name, version), value in sorted(per_image.items()):
        image.add(value, name=name, version=version)
    engines = [row["engine"] for row in status["images"] if row["engine"]]
    result = [
        Family("enabled", "gauge", "1 unless imgdist is disabled on this host (imgdist --disable).")
        .add(int(status["enabled"])),
        Family("images_present", "gauge", "Desired images verified in the store.")
        .add(sum(1 for row in desired if row["state"] == "ready")),
        Family("images_missing", "gauge", "Desired images not verified in the store (absent, downloading, corrupt).")
        .add(sum(1 for row in desired if row["state"] != "ready")),
        Family("images_retiring", "gauge", "Held images no longer desired (retiring or kept as superseded).")
        .add(len(held)),
        image,
        Family("engine_downloaded_bytes", "gauge",
               "Bytes the engine holds of the torrents of these images (as it reports them).")
        .add(sum(engine["completed_bytes"] for engine in engines)),
        Family("engine_uploaded_bytes", "gauge",
               "Bytes the engine uploaded for the torrents of these images since it loaded them.")
        .add(sum(engine["uploaded_bytes"] for engine in engines)),
        Family("run_guard_denials_total", "counter", "Guests the libvirt hook refused to start (run guard).")
        .add(denials),
    ]
    index = status.get("index") or {}
    expires = _epoch(index.get("expires"))
    if expires is not None:
        result.append(Family("index_expiry_timestamp_seconds", "gauge", "When the kept index expires (Unix time).")
                      .add(expires))
    if index.get("version") is not None:
        result.append(Family("index_version", "gauge", "Version of the kept index.").add(index["version"]))
    if last_sync:
        success = _epoch(last_sync.get("last_success"))
        finished = _epoch(last_sync.get("finished"))
        if success is not None:
            result.append(Family("last_success_timestamp_seconds", "gauge",
                                 "When the last successful sync finished (Unix time).").add(success))
        if finished is not None:
            result.append(Family("last_sync_timestamp_seconds", "gauge",
                                 "When the last sync finished, successful or not (Unix time).").add(finished))
        duration = last_sync.get("duration_seconds")
        if isinstance(duration, (int, float)) and not isinstance(duration, bool):
            result.append(Family("last_sync_duration_seconds", "gauge", "How long the last sync took.")
                          .add(float(duration)))
        result.append(Family("last_sync_success", "gauge", "1 when the last sync succeeded, else 0.")
                      .add(int(last_sync.get("result") == "ok")))
        exit_status = last_sync.get("exit_status")
        if isinstance(exit_status, int) and not isinstance(exit_status, bool):
            result.append(Family("last_sync_exit_status", "gauge", "Exit status of the last sync (imgdist --help).")
                          .add(exit_status))
        if last_sync.get("rule"):
            result.append(Family("last_sync_failure", "gauge", "1, labelled with the rule the last sync failed on.")
                          .add(1, rule=last_sync["rule"]))
    return result


def write_textfile(directory: str, text: str) -> str:
    """Replace ``<directory>/vmcloud_imgdist.prom`` atomically; return its path."""
    path = os.path.join(directory, TEXTFILE_NAME)
    write_atomic(path, text.encode("utf-8"))
    return path
