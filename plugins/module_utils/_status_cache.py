# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What ``imgdist status`` learns from the kept index, cached. Private to the collection; not a public API.

``imgdist status`` (the local fact ``ansible_local.vmcloud``, run at every fact gathering, and the metrics)
re-verifies the kept index offline under the run guard's policy and selects this host's images from it.
That verification is the expensive part of a status and its result changes only when its inputs do. So its
outcome (the run guard's verdict, the index summary, the desired and the endorsed images) is kept in
``<state_dir>/status-cache.json`` with a key made of:

- the options the verification and the selection read (trust paths, pins, threshold, approvals, host, grace;
  as loaded from the configuration), hashed;
- ``(mtime_ns, ctime_ns, size, inode)`` of every file they read: the kept index, the rollback marks, each
  trust anchor and CRL (a directory: itself and each entry), and the library itself (the hypervisor artifact
  or the module_utils files). Every writer of these files replaces them atomically (new inode) or at least
  touches mtime and ctime, so any change misses the cache;
- the time window the verdict holds for: written only for a ``current`` verdict (never a grace or a refusal,
  which are recomputed each time), after verifying the same inputs again at the end of the window (an hour or
  a day ahead). Validity over time is one interval (``_run_guard``), so the verdict holds throughout; outside
  the window (or with the clock set back before it) the cache misses.

A miss computes the status as before and writes the cache (atomically; never when the inputs changed while
computing, and a failure to write is ignored: the cache only saves work). The live parts of a status (the
store's holdings, the engine, the disabled flag, the last sync) are never cached. No lock is taken: a status
must not wait for a sync that downloads for an hour, and the key check above makes a concurrent sync harmless.
"""

from __future__ import annotations

import datetime
import glob
import hashlib
import json
import os
from typing import Any, Callable, Dict, List, Mapping, Optional

from ._errors import VmcloudError
from ._index_service import selection_for
from ._io import write_atomic

CACHE_NAME = "status-cache.json"
FORMAT = 1
# How far ahead a current verdict is verified before it is cached: a day, else an hour, else not cached.
HORIZONS = (datetime.timedelta(days=1), datetime.timedelta(hours=1))
# The options of a configuration the kept index's verification and the selection read.
TRUST_FILE_OPTIONS = ("trust_anchors", "crl", "endorser_certificates")

View = Dict[str, Any]
Compute = Callable[[datetime.datetime], View]


def cache_path(state_dir: str) -> str:
    return os.path.join(state_dir, CACHE_NAME)


def _stat(path: str) -> Optional[List[int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino]


def _library_paths() -> List[str]:
    """The code that computes a status: the zip application it runs from, or the module_utils files."""
    here = os.path.abspath(__file__)
    archive = here
    while archive and not os.path.isfile(archive):
        parent = os.path.dirname(archive)
        if parent == archive:
            break
        archive = parent
    if archive and archive != here and os.path.isfile(archive):
        return [archive]
    return sorted(glob.glob(os.path.join(os.path.dirname(here), "*.py")))


def input_paths(state_dir: str, kept_index: str, options: Mapping[str, Any]) -> List[str]:
    """Every file whose change may change the cached part of a status."""
    paths = [kept_index, *sorted(glob.glob(os.path.join(state_dir, "index-*.json")))]
    for option in TRUST_FILE_OPTIONS:
        for path in options.get(option) or []:
            paths.append(path)
            if os.path.isdir(path):
                paths.extend(sorted(os.path.join(path, name) for name in os.listdir(path)))
    return paths + _library_paths()


def fingerprint(state_dir: str, kept_index: str, options: Mapping[str, Any]) -> Dict[str, Any]:
    """The cache key: the options (hashed) and the stat of every input file."""
    text = json.dumps(options, sort_keys=True, default=str)
    return {
        "format": FORMAT,
        "options": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "files": [[path, _stat(path)] for path in input_paths(state_dir, kept_index, options)],
    }


def _parse(text: Any) -> Optional[datetime.datetime]:
    try:
        return datetime.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None


def read(state_dir: str, key: Mapping[str, Any], now: datetime.datetime) -> Optional[View]:
    """The cached view when its key is ``key`` and ``now`` is inside its window; None otherwise."""
    try:
        with open(cache_path(state_dir), "rb") as handle:
            record = json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("key") != key:
        return None
    start, end = _parse(record.get("verified_at")), _parse(record.get("valid_until"))
    if start is None or end is None or not start <= now <= end:
        return None
    view = record.get("view")
    return view if isinstance(view, dict) else None


def _holds_until(compute: Compute, now: datetime.datetime) -> Optional[datetime.datetime]:
    """The end of the first horizon at which the verdict is still current, or None."""
    for horizon in HORIZONS:
        try:
            later = compute(now + horizon)
        except (VmcloudError, OSError):  # refused then: not that far ahead
            later = {}
        if later.get("run_guard", {}).get("state") == "current":
            return now + horizon
    return None


def write(state_dir: str, key: Mapping[str, Any], view: View, verified_at: datetime.datetime,
          valid_until: datetime.datetime) -> bool:
    """Keep ``view``; return whether it was written (a state directory this user cannot write is fine)."""
    record = {"key": key, "verified_at": verified_at.isoformat(), "valid_until": valid_until.isoformat(),
              "view": view}
    try:
        write_atomic(cache_path(state_dir), (json.dumps(record, sort_keys=True) + "\n").encode("utf-8"))
    except OSError:
        return False
    return True


def cached_view(state_dir: str, kept_index: str, options: Mapping[str, Any], compute: Compute,
                now: Optional[datetime.datetime] = None) -> View:
    """``compute(now)`` (the kept index's part of a status, JSON data), from the cache when its inputs and the
    time allow; a refusal raised by ``compute`` propagates as without a cache."""
    now = now or datetime.datetime.now(datetime.UTC)
    key = fingerprint(state_dir, kept_index, options)
    hit = read(state_dir, key, now)
    if hit is not None:
        return hit
    view = json.loads(json.dumps(compute(now)))  # what a hit returns: JSON's types
    if view.get("run_guard", {}).get("state") == "current":
        until = _holds_until(compute, now)
        if until is not None and fingerprint(state_dir, kept_index, options) == key:
            write(state_dir, key, view, now, until)
    return view


def view_of(accepted: Any, options: Mapping[str, Any]) -> View:
    """The kept index's part of a status: the run guard's verdict (``_run_guard.KeptIndex``), the index's
    summary, this host's desired images and every endorsed image."""
    index = accepted.index
    return {
        "run_guard": accepted.run_guard(),
        "warning": accepted.warning(),
        "index": {"url": index.url, "version": index.version, "expires": index.expires},
        "desired": selection_for(index.images, options)["desired"],
        "endorsed": index.images,
    }
