# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the inventory last told a host, so the agent's timer never undoes an Ansible run.

Private to the collection; not a public API. Plain Python (no ansible import).

``site.yml`` converges a hypervisor (the image_sync module, with the inventory's approvals) before
it writes the agent's ``imgdist.yml`` (the vmic_agent play). A timed ``imgdist sync`` in between,
or one that read its file before and waited for the host lock, would converge the host back to the
approvals the inventory just replaced. So a real image_sync run records, under the host lock, a
digest of the inputs that decide the desired set (approvals, blocks, rules, the host's placement)
and when it converged them. An ``imgdist sync`` whose file differs from that record and is older
than it stops with ``config-behind`` before anything changes; a file written after the record (the
agent play, or an operator's edit) is the newer word and is followed.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import time
from typing import Any, Callable, Dict, Mapping, Optional

from ._errors import VmcloudError
from ._io import write_atomic
from ._selection import ImageRef, parse_approvals
from ._time import TIMESTAMP_FORMAT

RECORD_NAME = "ansible-approvals.json"


class ConfigBehind(VmcloudError):
    """The agent's configuration predates the approvals an Ansible run converged the host to."""

    def __init__(self, message: str) -> None:
        super().__init__("config-behind", message)


def record_path(state_dir: str) -> str:
    return os.path.join(state_dir, RECORD_NAME)


def _refs(refs) -> list:
    return sorted({(ref.name or "", str(ref.version) if ref.version is not None else "", ref.uuid or "")
                   for ref in refs if isinstance(ref, ImageRef)})


def approvals_digest(options: Mapping[str, Any]) -> str:
    """Digest of what decides the desired set; entry order and comments do not count."""
    approvals = parse_approvals(options.get("approved"), options.get("blocked"), options.get("rules"))
    rules = options.get("rules") or []
    document = {
        "approved": _refs(approvals.approved),
        "blocked": _refs(approvals.blocked),
        "rules": sorted([rules] if isinstance(rules, str) else rules),
        "host": [options.get("host") or "", options.get("subcluster") or "", options.get("cluster") or ""],
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def _utc(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime(TIMESTAMP_FORMAT)


def record(state_dir: str, options: Mapping[str, Any], wall_clock: Callable[[], float] = time.time) -> None:
    """Note that an Ansible run converges this host to ``options``' approvals (call under the host lock)."""
    at = wall_clock()
    document = {"digest": approvals_digest(options), "converged_at": at, "converged_at_utc": _utc(at)}
    os.makedirs(state_dir, mode=0o755, exist_ok=True)
    write_atomic(record_path(state_dir), (json.dumps(document, sort_keys=True) + "\n").encode(), mode=0o644)


def _read(state_dir: str) -> Optional[Dict[str, Any]]:
    try:
        with open(record_path(state_dir), "rb") as handle:
            document = json.loads(handle.read(4096))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise VmcloudError("state-unreadable", f"cannot read {record_path(state_dir)}: {exc}") from exc
    at = document.get("converged_at") if isinstance(document, dict) else None
    if not (isinstance(document.get("digest") if at is not None else None, str)
            and isinstance(at, (int, float)) and not isinstance(at, bool)):
        raise VmcloudError("state-unreadable", f"{record_path(state_dir)} is not an approvals record")
    return document


def check_config_current(state_dir: str, options: Mapping[str, Any], config_path: str, config_mtime: float) -> None:
    """Raise ``config-behind`` when the agent's file is older than a differing Ansible record."""
    recorded = _read(state_dir)
    if recorded is None or recorded["digest"] == approvals_digest(options) or config_mtime > recorded["converged_at"]:
        return
    raise ConfigBehind(
        f"{config_path} (written {_utc(config_mtime)}) is older than the approvals an Ansible run converged this "
        f"host to at {_utc(recorded['converged_at'])}, and its approvals differ; the host stays as that run left it "
        "until the vmic_agent role writes them (run site.yml, or the vmic_agent role)"
    )
