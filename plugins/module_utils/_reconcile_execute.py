# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reconciliation, step three: carry out a plan (``_reconcile_plan``) and report what was done.

Private to the collection; not a public API. Plain Python (no ansible). ``apply_plan`` executes a
plan; in check mode it returns the plan's actions as done and touches nothing. Between planning
and acting the store may change: every action checks its precondition again (same inode, nothing
holds it open, still inside the store) and is deferred, never forced, when that no longer holds.
``report`` is the result the image_store module and ``imgdist`` return. See docs/reconcile.md.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ._errors import StoreError
from ._inuse import Libvirt
from ._io import fsync_directory
from ._reconcile_plan import Action, Held, Options, Plan, plan_reconcile
from ._reconcile_scan import (
    QUARANTINE_DIR,
    Holders,
    check_meta,
    find_holders,
    inspect_entry,
    is_plain_name,
    printable_all,
)
from ._store import META_DIR, ImageStore

# --------------------------------------------------------------------------- execution


@dataclass
class Outcome:
    plan: Plan
    check_mode: bool
    done: List[Action] = field(default_factory=list)
    deferred: List[Tuple[Action, str]] = field(default_factory=list)  # precondition gone since planning
    failures: List[Tuple[Action, str]] = field(default_factory=list)
    held_open: List[Held] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.done)


class _Executor:
    def __init__(self, plan: Plan, holders: Holders, outcome: Outcome) -> None:
        self.plan = plan
        self.root = plan.root
        self.real_root = os.path.realpath(plan.root)
        self.root_dev = os.stat(plan.root).st_dev
        self.holders = holders
        self.outcome = outcome
        self.store = ImageStore(plan.root)

    def run(self, action: Action) -> None:
        try:
            why = self._precondition(action)
            if why is None:
                why = getattr(self, "_" + action.kind)(action)
        except (OSError, StoreError) as exc:
            self.outcome.failures.append((action, f"{action.path}: {exc}"))
            return
        if why is None:
            self.outcome.done.append(action)
        else:
            self.outcome.deferred.append((action, why))

    def _confined(self, path: str, directory: str) -> bool:
        return os.path.realpath(os.path.dirname(path)) == directory and is_plain_name(os.path.basename(path))

    def _precondition(self, action: Action) -> Optional[str]:
        """None when the action may go ahead, else why it is deferred."""
        if action.identity is None:
            return None  # manifest-only, or a file that was already gone
        if not self._confined(action.path, self.real_root):
            raise StoreError("outside-store", f"{action.path} does not resolve inside {self.real_root}; not touched")
        found = inspect_entry(self.root, os.path.basename(action.path), self.root_dev, self.holders)
        if found is None:
            return None if action.uuid else "gone since planned"
        if found.identity != action.identity:
            return "replaced since planned; run again"
        if found.refusal:
            return found.refusal
        if found.in_use:
            self.outcome.held_open.append(Held.of(found, f"{found.use} since planned: not {action.kind}",
                                                  action.uuid))
            return f"{found.use} since planned"
        if found.kind == "directory" and not shutil.rmtree.avoids_symlink_attacks:
            return "this platform cannot remove a directory without following symlinks; not touched"
        return None

    def _forget(self, action: Action) -> Optional[str]:
        return None if self.store.forget([action.uuid or ""]) else "no longer in the manifest"

    def _retire(self, action: Action) -> Optional[str]:
        result = self.store.retire(action.uuid or "", domains=self.holders.found)
        if result["action"] == "held-open":
            self.outcome.held_open.append(Held(action.path, tuple(result["pids"]), "in use since planned: not "
                                               "retired", action.uuid, tuple(result["domains"])))
            return "in use since planned"
        return None if result["action"] == "removed" else "no longer in the manifest"

    def _evict(self, action: Action) -> Optional[str]:
        return self._retire(action)  # only managed images are evicted (module docstring)

    def _quarantine(self, action: Action) -> Optional[str]:
        target = action.target or ""
        directory = os.path.dirname(target)
        check_meta(self.root)  # before makedirs: it would follow a .vmcloud symlink out of the store
        os.makedirs(directory, mode=0o700, exist_ok=True)
        check_meta(self.root)
        if not self._confined(target, os.path.join(self.real_root, META_DIR, QUARANTINE_DIR)):
            raise StoreError("outside-store", f"{target} does not resolve inside the store's quarantine")
        if os.path.lexists(target):
            return f"{target} exists since planned; run again"
        os.rename(action.path, target)  # same filesystem (a mount point is refused): never a copy
        fsync_directory(self.root)
        fsync_directory(directory)
        return None

    def _clean(self, action: Action) -> Optional[str]:
        return self._remove(action)

    def _remove(self, action: Action) -> Optional[str]:
        if action.entry_kind == "directory":
            shutil.rmtree(action.path)
        else:
            os.unlink(action.path)
        fsync_directory(self.root)
        return None


def apply_plan(plan: Plan, check_mode: bool = False, proc: str = "/proc", libvirt: Optional[Libvirt] = None) -> Outcome:
    """Carry out ``plan``; in check mode report its actions as done and touch nothing."""
    outcome = Outcome(plan, check_mode, held_open=list(plan.held_open))
    if check_mode:
        outcome.done.extend(plan.actions)
        return outcome
    if plan.actions:
        executor = _Executor(plan, find_holders(proc, libvirt), outcome)
        for action in plan.actions:
            executor.run(action)
    return outcome


# --------------------------------------------------------------------------- report


def diff(outcome: Outcome) -> Dict[str, Dict[str, List[str]]]:
    """The store's file list and managed uuids before, and after the actions done (or, in check
    mode, to be done)."""
    plan = outcome.plan
    moved = ("retire", "evict", "quarantine", "remove", "clean")
    gone_files = {os.path.basename(a.path) for a in outcome.done if a.kind in moved}
    gone_uuids = {a.uuid for a in outcome.done if a.uuid and a.kind in ("forget", "retire", "evict")}
    return {
        "before": {"files": list(plan.files), "managed": list(plan.managed)},
        "after": {"files": [name for name in plan.files if name not in gone_files],
                  "managed": [uuid for uuid in plan.managed if uuid not in gone_uuids]},
    }


def report(outcome: Outcome) -> Dict[str, Any]:
    """The module's (and imgdist's) result: plain lists and dicts."""
    plan = outcome.plan

    def done(kind: str) -> List[Action]:
        return [action for action in outcome.done if action.kind == kind]

    return printable_all({
        "changed": outcome.changed,
        "store": plan.root,
        "present": plan.uuids("present"),
        "missing": plan.uuids("missing"),
        "corrupt": plan.uuids("corrupt"),
        "images": [image.as_dict() for image in plan.images],
        "unknown": [entry.path for entry in plan.unknown],
        "unknown_entries": [entry.as_dict() for entry in plan.unknown],
        "quarantined": [action.path for action in done("quarantine")],  # destinations: actions[].to
        "removed": [action.path for action in done("remove")],
        "cleaned": [action.path for action in done("clean")],  # interrupted promotions' temporary files
        "retired": [action.uuid for action in done("retire")],
        "forgotten": [action.uuid for action in done("forget")],
        "evicted": [{"path": action.path, "uuid": action.uuid, "size": action.size, "mtime": action.mtime}
                    for action in done("evict")],
        "kept": list(plan.kept),
        "superseded_pending": [pending.as_dict() for pending in plan.pending],
        "held_open": [held.as_dict() for held in outcome.held_open],
        "libvirt": plan.libvirt,  # where the domains came from (source), unknown, chain problems
        "in_progress": list(plan.in_progress),
        "quota": plan.quota.as_dict() if plan.quota else None,
        "actions": [action.as_dict() for action in plan.actions],
        "deferred": [dict(action.as_dict(), why=why) for action, why in outcome.deferred],
        "failures": [dict(action.as_dict(), error=error) for action, error in outcome.failures],
        "diff": diff(outcome),
    })


def reconcile(root: str, desired: Sequence[Mapping[str, Any]], options: Optional[Options] = None,
              check_mode: bool = False) -> Dict[str, Any]:
    """Plan and apply in one call (the module's path); returns ``report``."""
    return report(apply_plan(plan_reconcile(root, desired, options), check_mode=check_mode))
