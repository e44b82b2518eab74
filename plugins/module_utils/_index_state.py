# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rollback and replay protection: the last accepted index version per index URL.

Private to the collection; not a public API. The high-water mark is one small JSON
file per index URL in ``state_dir``, written atomically; a refused index never
touches it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Dict, Optional

from ._errors import IndexRefused, VmcloudError
from ._index import IndexPolicy, VerifiedIndex, verify_index
from ._io import write_atomic
from ._lock import host_lock, lock_path
from ._time import TIMESTAMP_FORMAT

RESET_REFUSED = "mark-reset-refused"


def state_path(state_dir: str, url: str) -> str:
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:32]
    return os.path.join(state_dir, f"index-{key}.json")


def read_high_water_mark(state_dir: str, url: str) -> Optional[Dict[str, Any]]:
    path = state_path(state_dir, url)
    try:
        with open(path, "rb") as handle:
            mark = json.loads(handle.read().decode("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as exc:
        # A damaged mark must not silently reset protection to "anything goes".
        raise IndexRefused(
            "state-unreadable", f"cannot read the high-water mark {path} ({exc}); inspect or remove it by hand"
        ) from exc
    if not isinstance(mark, dict) or mark.get("url") != url:
        raise IndexRefused("state-unreadable", f"the high-water mark {path} is not for {url}; inspect it by hand")
    version = mark.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        # true is an int in Python; reading it as version 1 would reopen every rollback above 1.
        raise IndexRefused(
            "state-unreadable",
            f"the high-water mark {path} holds version {str(version)[:40]!r}, not an integer >= 1; "
            "inspect it by hand",
        )
    return mark


def check_rollback(index: VerifiedIndex, mark: Optional[Dict[str, Any]]) -> bool:
    """True when ``index`` moves the mark forward; False when it is the accepted one again."""
    if mark is None or index.version is None:
        return index.version is not None
    last = mark["version"]
    if index.version < last:
        raise IndexRefused(
            "rollback",
            f"index version {index.version} is lower than the last accepted version {last} for "
            f"{index.url}; refusing (rollback)",
        )
    if index.version == last:
        if index.digest != mark.get("digest"):
            raise IndexRefused(
                "rollback",
                f"index version {index.version} for {index.url} differs from the accepted version "
                f"{last} with the same number; refusing (an endorser must bump the version)",
            )
        return False
    return True


def write_high_water_mark(state_dir: str, index: VerifiedIndex, now: datetime.datetime) -> None:
    os.makedirs(state_dir, mode=0o755, exist_ok=True)
    record = {
        "url": index.url,
        "version": index.version,
        "digest": index.digest,
        "expires": index.expires,
        "accepted_at": now.strftime(TIMESTAMP_FORMAT),
    }
    write_atomic(state_path(state_dir, index.url), (json.dumps(record, sort_keys=True) + "\n").encode("utf-8"))


def reset_high_water_mark(state_dir: str, url: str, to_version: Any, now: datetime.datetime,
                          lock_timeout: Optional[float] = None, check_mode: bool = False) -> Dict[str, Any]:
    """Lower the mark for ``url`` to ``to_version``: the recovery from a fast-forward (docs/trust.md).

    Under the host lock (``_lock``), and only when the accepted version is greater than
    ``to_version``; otherwise ``mark-reset-refused`` and nothing changes (a damaged mark stays
    ``state-unreadable``). The new mark records no digest, so the next index accepted must have a
    version above ``to_version``; it keeps where it came from (``reset_from``, ``reset_at``).
    Written atomically. Returns {url, previous, new, path}.
    """
    if isinstance(to_version, bool) or not isinstance(to_version, int) or to_version < 1:
        raise VmcloudError("option-invalid", f"the version to reset the mark to must be an integer >= 1, "
                           f"got {to_version!r}")
    path = state_path(state_dir, url)
    with host_lock(lock_path(state_dir), lock_timeout):
        mark = read_high_water_mark(state_dir, url)
        if mark is None:
            raise VmcloudError(RESET_REFUSED, f"there is no high-water mark for {url} in {state_dir} ({path}); "
                               "nothing to reset (check the URL: it is the index's signed url)")
        previous = mark["version"]
        if previous <= to_version:
            raise VmcloudError(RESET_REFUSED, f"the accepted version for {url} is {previous}, not greater than "
                               f"{to_version}; a reset only lowers the mark after a fast-forward, never raises it "
                               "or rewrites it in place: nothing changed")
        if not check_mode:
            record = {"url": url, "version": to_version, "digest": None, "expires": None,
                      "reset_from": previous, "reset_at": now.strftime(TIMESTAMP_FORMAT)}
            write_atomic(path, (json.dumps(record, sort_keys=True) + "\n").encode("utf-8"))
    return {"url": url, "previous": previous, "new": to_version, "path": path}


@dataclass
class AcceptedIndex:
    index: VerifiedIndex
    previous_version: Optional[int]
    advanced: bool


def accept_index(
    data: bytes, policy: IndexPolicy, state_dir: Optional[str], persist: bool, origin: str = "the index"
) -> AcceptedIndex:
    """Verify ``data`` and, unless ``persist`` is false (check mode), advance the high-water mark.

    Legacy lists carry no version: they are verified but leave no mark (see docs/trust.md).
    """
    index = verify_index(data, policy, origin)
    if index.format != "v2" or state_dir is None:
        return AcceptedIndex(index=index, previous_version=None, advanced=False)
    mark = read_high_water_mark(state_dir, index.url)
    advanced = check_rollback(index, mark)
    if advanced and persist:
        write_high_water_mark(state_dir, index, policy.trust.now)
    return AcceptedIndex(index=index, previous_version=mark["version"] if mark else None, advanced=advanced)
