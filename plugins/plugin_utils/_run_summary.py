# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The per-host summary of a run, built on the controller from what the modules returned. Private to the
collection; not a public API.

The callback plugin ``vmcloud.fleet.reconcile_summary`` feeds it each task result and writes ``as_dict()``
as the run's JSON artifact. Only controller-side code uses it (the hypervisors never see it), so it reads
the module results as Ansible hands them over: plain dicts.

What counts, per host (the keys of ``HostSummary.as_dict``):
- ``added``: desired images put into the store for the first time (``image_sync`` ``images[].store`` is
  ``promoted``);
- ``corrupt``: desired images whose stored copy no longer matched what was verified: fetched and put back
  in this run (``store`` is ``repaired``), or still corrupt after it (``image_store`` ``corrupt``);
- ``retired``: images removed because they are no longer desired (``image_sync`` and ``image_store``);
- ``unknown``: entries of the store nobody declared (``image_store`` ``unknown``, or ``image_sync`` ``store.unknown``
  when the sync ran that pass itself, whatever the policy did);
- ``disabled``: the host was taken out with ``imgdist --disable`` (the hypervisor role's
  ``hypervisor_summary.disabled``), so the run left it alone;
- ``failures``: per-image failures of ``image_sync`` and ``image_store``, every other failed task, and an
  unreachable host; each with the rule that failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

SUMMARY_FORMAT = "vmcloud.fleet.reconcile_summary/1"
SYNC_ACTIONS = frozenset({"vmcloud.fleet.image_sync", "image_sync"})
STORE_ACTIONS = frozenset({"vmcloud.fleet.image_store", "image_store"})
SET_FACT_ACTIONS = frozenset({"ansible.builtin.set_fact", "ansible.legacy.set_fact", "set_fact"})
# The fact the hypervisor role sets on every host it runs on (``disabled`` is true on a disabled host).
ROLE_SUMMARY_FACT = "hypervisor_summary"


def _extend_unique(target: List[Any], values: Any) -> None:
    for value in values or ():
        if value not in target:
            target.append(value)


@dataclass
class HostSummary:
    """What one host's run did (or, in check mode, would do)."""

    added: List[str] = field(default_factory=list)
    corrupt: List[str] = field(default_factory=list)
    retired: List[str] = field(default_factory=list)
    unknown: List[str] = field(default_factory=list)
    quarantined: List[str] = field(default_factory=list)
    removed: List[str] = field(default_factory=list)
    held_open: List[Dict[str, Any]] = field(default_factory=list)
    failures: List[Dict[str, Any]] = field(default_factory=list)
    disabled: bool = False
    unreachable: bool = False
    failed: bool = False
    changed: bool = False
    converged: bool = False  # image_sync ran on the host
    index_version: Optional[int] = None

    @property
    def status(self) -> str:
        if self.unreachable:
            return "unreachable"
        if self.failed:
            return "failed"
        if self.disabled:
            return "disabled"
        if self.converged:
            return "changed" if self.changed else "ok"
        return "skipped"  # the play ended for it before the sync (a check run on a host without trust anchors)

    def as_dict(self) -> Dict[str, Any]:
        return {
            "status": self.status,
            "changed": self.changed,
            "disabled": self.disabled,
            "index_version": self.index_version,
            "added": list(self.added),
            "corrupt": list(self.corrupt),
            "retired": list(self.retired),
            "unknown": list(self.unknown),
            "quarantined": list(self.quarantined),
            "removed": list(self.removed),
            "held_open": list(self.held_open),
            "failures": list(self.failures),
        }


def _sync_failures(task: str, result: Mapping[str, Any]) -> List[Dict[str, Any]]:
    return [{"task": task, "uuid": failure.get("uuid"), "step": failure.get("step"),
             "rule": failure.get("rule"), "message": failure.get("message")}
            for failure in result.get("failures") or ()]


def _store_failures(task: str, result: Mapping[str, Any]) -> List[Dict[str, Any]]:
    # image_store's failures are actions with the error that stopped them.
    return [{"task": task, "uuid": failure.get("uuid"), "step": failure.get("action"),
             "rule": "store-action-failed", "message": failure.get("error")}
            for failure in result.get("failures") or ()]


def _task_failure(task: str, result: Mapping[str, Any], rule: str) -> Dict[str, Any]:
    message = result.get("msg") or result.get("stderr") or result.get("reason") or ""
    return {"task": task, "uuid": None, "step": None, "rule": result.get("rule") or rule,
            "message": " ".join(str(message).split())}


class RunSummary:
    """Collects task results per host; ``as_dict`` is the artifact."""

    def __init__(self, playbook: str = "", check_mode: bool = False) -> None:
        self.playbook = playbook
        self.check_mode = check_mode
        self.hosts: Dict[str, HostSummary] = {}

    def host(self, name: str) -> HostSummary:
        return self.hosts.setdefault(name, HostSummary())

    def record(self, host: str, action: str, task: str, result: Mapping[str, Any], failed: bool = False,
               ignore_errors: bool = False) -> None:
        """One task result (ok, changed, or failed) for ``host``."""
        summary = self.host(host)
        if action in SYNC_ACTIONS:
            self._record_sync(summary, task, result)
        elif action in STORE_ACTIONS:
            self._record_store(summary, task, result)
        elif action in SET_FACT_ACTIONS:
            role_summary = (result.get("ansible_facts") or {}).get(ROLE_SUMMARY_FACT)
            if isinstance(role_summary, Mapping) and role_summary.get("disabled"):
                summary.disabled = True
        if failed and not ignore_errors:
            summary.failed = True
            if action not in SYNC_ACTIONS | STORE_ACTIONS or not result.get("failures"):
                summary.failures.append(_task_failure(task, result, "task-failed"))

    def record_unreachable(self, host: str, task: str, result: Mapping[str, Any]) -> None:
        summary = self.host(host)
        summary.unreachable = True
        summary.failures.append(_task_failure(task, result, "host-unreachable"))

    @staticmethod
    def _record_sync(summary: HostSummary, task: str, result: Mapping[str, Any]) -> None:
        summary.converged = True
        summary.changed = summary.changed or bool(result.get("changed"))
        version = (result.get("index") or {}).get("version")
        if version is not None:
            summary.index_version = version
        for image in result.get("images") or ():
            if image.get("store") == "promoted":
                _extend_unique(summary.added, [image.get("uuid")])
            elif image.get("store") == "repaired":
                _extend_unique(summary.corrupt, [image.get("uuid")])
        _extend_unique(summary.retired, result.get("retired"))
        _extend_unique(summary.held_open, result.get("held_open"))
        summary.failures.extend(_sync_failures(task, result))
        store = result.get("store")  # the image_store pass the sync ran in its own plan (option unknown)
        if isinstance(store, Mapping):
            for name in ("corrupt", "unknown", "quarantined", "removed"):
                _extend_unique(getattr(summary, name), store.get(name))

    @staticmethod
    def _record_store(summary: HostSummary, task: str, result: Mapping[str, Any]) -> None:
        summary.changed = summary.changed or bool(result.get("changed"))
        _extend_unique(summary.corrupt, result.get("corrupt"))
        _extend_unique(summary.retired, result.get("retired"))
        _extend_unique(summary.unknown, result.get("unknown"))
        _extend_unique(summary.quarantined, result.get("quarantined"))
        _extend_unique(summary.removed, result.get("removed"))
        _extend_unique(summary.held_open, result.get("held_open"))
        summary.failures.extend(_store_failures(task, result))

    def as_dict(self) -> Dict[str, Any]:
        hosts = {name: self.hosts[name].as_dict() for name in sorted(self.hosts)}
        return {
            "format": SUMMARY_FORMAT,
            "playbook": self.playbook,
            "check_mode": self.check_mode,
            "ok": all(host["status"] not in ("failed", "unreachable") for host in hosts.values()),
            "hosts": hosts,
        }
