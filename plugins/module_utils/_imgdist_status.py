# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What ``imgdist`` reports about a host: status, check, metrics, unknown files, the enable flag.

Private to the collection; not a public API. Plain Python (no ansible import).

``check_image`` is ``imgdist check`` and the libvirt hook's check (the run guard: endorsed in the
kept index, verified again offline under ``_run_guard``'s policy, approved for this host, verified
in the store); ``collect_status`` is ``imgdist status`` and the metrics' source (``_metrics``);
``unknown_files`` is ``--list_unknown_files``; ``enabled_state`` / ``set_state`` the ``--enable`` /
``--disable`` flag file. Problems are reported, and refusals name their rule.
"""

from __future__ import annotations

import datetime
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, TextIO

from . import _metrics, _status_cache
from ._approvals_record import check_config_current
from ._engine import TorrentStatus, engine_for
from ._errors import IndexRefused, VmcloudError
from ._imgdist_config import (
    EXIT_ERROR,
    EXIT_INDEX_REFUSED,
    EXIT_NOT_APPROVED,
    EXIT_NOT_ENDORSED,
    EXIT_NOT_VERIFIED,
    EXIT_OK,
    PROG,
    CliError,
    grace_seconds,
    options_from,
    require_keys,
)
from ._index_service import build_policy, selection_for
from ._io import fsync_directory, write_atomic, write_line
from ._reconcile_plan import Pending, find_pending
from ._run_guard import KeptIndex, guarded_accept
from ._store import ImageStore
from ._sync import retire_now, verified_index_path
from ._time import TIMESTAMP_FORMAT

# --------------------------------------------------------------------------- enable / disable


def enabled_state(flag: str) -> str:
    return "disable" if os.path.lexists(flag) else "enable"


def set_state(flag: str, state: str) -> str:
    """Write (disable) or remove (enable) the flag file; return the state before."""
    before = enabled_state(flag)
    if state == "disable" and before == "enable":
        os.makedirs(os.path.dirname(flag) or ".", mode=0o755, exist_ok=True)
        stamp = datetime.datetime.now(datetime.UTC).strftime(TIMESTAMP_FORMAT)
        write_atomic(flag, f"disabled by imgdist at {stamp}\n".encode("ascii"))
    elif state == "enable" and before == "disable":
        os.unlink(flag)
        fsync_directory(os.path.dirname(os.path.abspath(flag)))
    return before


# --------------------------------------------------------------------------- the kept index


def kept_index(config: Mapping[str, Any], now: Optional[datetime.datetime] = None) -> KeptIndex:
    """The last verified index, verified again offline under the run guard's policy (``_run_guard``):
    valid now, or failing on a time rule alone inside the grace period. The rollback mark is checked,
    never advanced."""
    path = verified_index_path(config["state_dir"])
    try:
        with open(path, "rb") as handle:
            data = handle.read(config["max_size"] + 1)
    except FileNotFoundError as exc:
        raise CliError(
            "index-missing", f"there is no verified index at {path}; run imgdist sync first", EXIT_NOT_ENDORSED
        ) from exc
    grace = grace_seconds(config, "the configuration")
    policy = build_policy(options_from(config), None)
    return guarded_accept(data, policy, config["state_dir"], path, grace, now)


# --------------------------------------------------------------------------- check


def find_image(images: List[Dict[str, Any]], target: str, store: ImageStore) -> tuple:
    """(image or None, uuid or None): ``target`` is a uuid, or a path of the store."""
    by_uuid = {image["uuid"]: image for image in images}
    if os.sep not in target and target in by_uuid:
        return by_uuid[target], target
    if os.sep not in target and not os.path.exists(target):
        return None, target
    wanted = os.path.realpath(target)
    for image in images:
        if os.path.realpath(store.path_of(image)) == wanted:
            return image, image["uuid"]
    for uuid, entry in store.manifest().items():  # held, but no longer in the index
        if os.path.realpath(os.path.join(store.root, entry.get("file", ""))) == wanted:
            return None, uuid
    return None, None


def _not_selected_reason(uuid: str, selection: Mapping[str, Any]) -> str:
    host = selection["host"]
    for entry in selection["blocked"]:
        if entry["uuid"] == uuid:
            return f"{uuid} is approved by {entry['approved_by']} but blocked by {entry['blocked_by']}"
    for entry in selection["not_targeted"]:
        if entry["uuid"] == uuid:
            return f"{uuid} is approved by {entry['approved_by']} but its targets exclude host {host}"
    return f"{uuid} is endorsed but not approved for host {host} (no approval or rule selects it)"


PENDING_RULE = "superseded-pending"


def superseded_pending(config: Mapping[str, Any], store: ImageStore, images: Sequence[Dict[str, Any]],
                       desired: Sequence[Dict[str, Any]]) -> Dict[str, Pending]:
    """The held images a sync keeps because a desired image of their name is not verified in the store
    yet (supersede, never strand): the sync's own decision (``_sync.retire_now`` for what is blocked or
    withdrawn, ``_reconcile_plan.find_pending`` for the planner's rule), never restated here."""
    return find_pending(store.root, desired, retire_now(store, images, options_from(config)))


def pending_message(pending: Pending) -> str:
    waiting = ", ".join(pending.waiting_for)
    verb = "is" if len(pending.waiting_for) == 1 else "are"
    return (f"{PENDING_RULE}: {pending.uuid} is superseded by {waiting}, which {verb} not verified in the store "
            f"yet (a failed or unfinished download); the store keeps {pending.uuid} and guests may start from it "
            f"until {waiting} {verb} there, then it is retired and refused: see imgdist status, run imgdist sync")


def check_image(config: Mapping[str, Any], target: str) -> tuple:
    """(exit code, result dict) of ``imgdist check``: endorsed, approved, verified, in that order.

    An endorsed image that is not approved any more, but that the sync keeps because its desired
    successor is not verified in the store yet (``superseded_pending``), passes too when verified,
    with a warning naming ``superseded-pending``; blocked and withdrawn images are never kept so.
    """
    store = ImageStore(config["store_dir"])
    result: Dict[str, Any] = {"image": target, "uuid": None, "path": None, "endorsed": False,
                              "approved": False, "verified": False, "ok": False, "superseded_pending": None}

    def verdict(code: int, rule: str, reason: str) -> tuple:
        result.update(rule=rule, reason=reason, ok=code == EXIT_OK)
        return code, result

    try:
        accepted = kept_index(config)
    except CliError as exc:
        result.update(run_guard={"state": "refused", "rule": exc.rule}, warning=None, warnings=[])
        return verdict(exc.exit_code, exc.rule, exc.message)
    except IndexRefused as exc:
        result.update(run_guard={"state": "refused", "rule": exc.rule}, warning=None, warnings=[])
        return verdict(EXIT_INDEX_REFUSED, exc.rule, exc.message)
    # Inside the grace period the checks below go on (approval and blocking are never graced), and
    # the result says so: the hook logs it, `imgdist check` prints it. Each warning begins with its rule.
    warnings = [accepted.warning()] if accepted.warning() else []
    result.update(run_guard=accepted.run_guard(), warnings=warnings, warning="; ".join(warnings) or None)
    index = accepted.index
    where = f"the verified index version {index.version}" if index.version is not None else "the verified index"
    result["index_version"] = index.version
    image, uuid = find_image(index.images, target, store)
    result["uuid"] = uuid
    if image is None:
        what = f"{target} holds {uuid}, which" if uuid and uuid != target else f"{target}"
        return verdict(EXIT_NOT_ENDORSED, "not-endorsed", f"{what} is not in {where}")
    result["endorsed"] = True
    result["path"] = store.path_of(image)
    selection = selection_for(index.images, options_from(config))
    pending = None
    if uuid not in selection["desired_uuids"]:
        reason = _not_selected_reason(uuid, selection)
        try:
            pending = superseded_pending(config, store, index.images, selection["desired"]).get(uuid)
        except VmcloudError as exc:  # fail closed: refused as not approved, saying why
            return verdict(EXIT_NOT_APPROVED, "not-approved", f"{reason}; whether the store keeps it as "
                           f"superseded cannot be told ({exc.rule}: {exc.message})")
        if pending is None:
            return verdict(EXIT_NOT_APPROVED, "not-approved", reason)
        result["superseded_pending"] = pending.as_dict()
    else:
        result["approved"] = True
    approved = "approved" if pending is None else "kept as superseded"
    if not store.is_current(image):
        state = "is not in the store" if not os.path.exists(result["path"]) else "changed since it was verified"
        return verdict(EXIT_NOT_VERIFIED, "not-verified", f"{uuid} is endorsed and {approved} but {result['path']} "
                       f"{state}; run imgdist sync")
    result["verified"] = True
    if pending is not None:
        warnings.append(pending_message(pending))
        result["warning"] = "; ".join(warnings)
        return verdict(EXIT_OK, PENDING_RULE, f"{pending_message(pending)[len(PENDING_RULE) + 2:]} (endorsed in "
                       f"{where}, verified in the store at {result['path']})")
    return verdict(EXIT_OK, "ok", f"{uuid} is endorsed ({where}), approved for host {selection['host']} "
                   f"and verified in the store at {result['path']}")


# --------------------------------------------------------------------------- status


def progress_bar(fraction: float, width: int = 24) -> str:
    fraction = min(max(fraction, 0.0), 1.0)
    filled = int(fraction * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def image_state(holding: Optional[str], status: Optional[TorrentStatus], desired: bool,
                superseded: bool = False) -> str:
    """One word for an image: ready, corrupt, downloading, checking, downloaded, stopped, error,
    pending (desired, nothing yet), superseded-pending (held, no longer desired, kept until a desired
    image of its name is in the store; guests may still start from it) or retiring (held, no longer
    desired)."""
    if not desired:
        return PENDING_RULE if superseded and holding == "present" else "retiring"
    if holding == "present":
        return "ready"
    if holding == "corrupt":
        return "corrupt"
    if status is None:
        return "pending"
    if status.state in ("error", "checking", "stopped"):
        return status.state
    return "downloaded" if status.complete else "downloading"


def status_row(image: Dict[str, Any], holding: Optional[Dict[str, Any]], status: Optional[TorrentStatus],
               desired: bool, path: str, pending: Optional[Pending] = None) -> Dict[str, Any]:
    row = {
        "uuid": image["uuid"],
        "name": image.get("name"),
        "version": image.get("version"),
        "desired": desired,
        "state": image_state(holding["state"] if holding else None, status, desired, pending is not None),
        "waiting_for": list(pending.waiting_for) if pending is not None else [],
        "path": path,
        "store": holding["state"] if holding else None,
        "store_reason": holding.get("reason") if holding else None,
        "info_hash": (image.get("torrent") or {}).get("info_hash"),
        "engine": status.to_dict() if status else None,
    }
    return row


def _row_detail(row: Dict[str, Any]) -> str:
    engine = row["engine"]
    if row["state"] == PENDING_RULE:
        return f"kept until {', '.join(row['waiting_for'])} is in the store"
    if row["state"] == "downloading" and engine:
        return (f"{progress_bar(engine['progress'])} {engine['progress'] * 100:5.1f}%  "
                f"{human_bytes(engine['down_rate'])}/s  {engine['peers']} peer(s)")
    if engine is None:
        return {"ready": "not seeding", "pending": "waiting for imgdist sync"}.get(row["state"], "")
    seeding = "seeding" if engine["state"] == "seeding" else engine["state"]
    detail = f"{seeding}, ratio {engine['ratio']:.2f}, {engine['peers']} peer(s)"
    if engine["up_rate"]:
        detail += f", up {human_bytes(engine['up_rate'])}/s"
    if engine["message"]:
        detail += f" ({engine['message']})"
    return detail


def collect_status(config: Mapping[str, Any]) -> Dict[str, Any]:
    """What ``imgdist status`` reports; problems (index, engine) are listed, not raised."""
    problems: List[str] = []
    store = ImageStore(config["store_dir"])
    desired: List[Dict[str, Any]] = []
    endorsed: List[Dict[str, Any]] = []
    index_summary = None
    run_guard: Dict[str, Any] = {"state": "refused", "rule": None}
    if "agent_config" in config:  # the timer's syncs stop until the agent role catches up: say so
        try:
            check_config_current(config["state_dir"], options_from(config), *config["agent_config"])
        except VmcloudError as exc:
            problems.append(f"config: {exc.rule}: {exc.message}")
    try:
        require_keys(config, "the configuration", ["trust_anchors"])
        # The kept index's verification and selection, cached while their inputs are unchanged (_status_cache).
        view = _status_cache.cached_view(
            config["state_dir"], verified_index_path(config["state_dir"]), config,
            lambda moment: _status_cache.view_of(kept_index(config, moment), options_from(config)))
        run_guard, index_summary, desired = view["run_guard"], view["index"], view["desired"]
        endorsed = view["endorsed"]
        if view["warning"]:
            problems.append(view["warning"])
    except (VmcloudError, OSError) as exc:
        run_guard["rule"] = getattr(exc, "rule", "io-error")
        problems.append(f"index: {getattr(exc, 'rule', 'io-error')}: {getattr(exc, 'message', exc)}")
    try:  # lstat first, never a read of anything but a regular file (a FIFO there does not hang)
        holdings = {held["uuid"]: held for held in store.holdings()}
        manifest = store.manifest()
    except (VmcloudError, OSError) as exc:
        holdings, manifest = {}, {}
        problems.append(f"store: {getattr(exc, 'rule', 'io-error')}: {getattr(exc, 'message', exc)}")
    statuses: Dict[str, TorrentStatus] = {}
    try:
        engine = engine_for(config["engine"], socket=config["socket"], timeout=config["rpc_timeout"])
        statuses = {status.info_hash: status for status in engine.list()}
    except (VmcloudError, OSError) as exc:
        problems.append(f"engine: {getattr(exc, 'rule', 'io-error')}: {getattr(exc, 'message', exc)}")
    pending: Dict[str, Pending] = {}
    if endorsed:
        try:
            pending = superseded_pending(config, store, endorsed, desired)
        except (VmcloudError, OSError) as exc:
            problems.append(f"store: {getattr(exc, 'rule', 'io-error')}: {getattr(exc, 'message', exc)}")
    rows = []
    for image in desired:
        status = statuses.get(image["torrent"]["info_hash"])
        rows.append(status_row(image, holdings.get(image["uuid"]), status, True, store.path_of(image)))
    desired_uuids = {image["uuid"] for image in desired}
    for uuid, held in holdings.items():
        if uuid not in desired_uuids:
            entry = manifest.get(uuid, {})
            image = {"uuid": uuid, "name": held["name"], "version": held["version"],
                     "torrent": {"info_hash": entry.get("info_hash")}}
            row = status_row(image, held, statuses.get(entry.get("info_hash") or ""), False, held["path"],
                             pending.get(uuid))
            if row["state"] == PENDING_RULE:
                problems.append(pending_message(pending[uuid]))
            rows.append(row)
    return {
        "host": config["host"],
        "enabled": enabled_state(config["disabled_flag"]) == "enable",
        "index": index_summary,
        # What the run guard decides for guests now: current, grace (with the deadline) or refused.
        "run_guard": run_guard,
        "problems": problems,
        "images": rows,
        "last_sync": _metrics.read_last_sync(config["state_dir"]),  # the last sync's record, or None
    }


def print_status(report: Mapping[str, Any], out: TextIO) -> None:
    state = "enabled" if report["enabled"] else "DISABLED (imgdist --enable)"
    write_line(f"host {report['host']}: {state}", file=out)
    index = report["index"]
    if index:
        write_line(f"index: version {index['version']} from {index['url']}, expires {index['expires']}", file=out)
    last = report.get("last_sync")
    if last:
        failure = f" ({last['rule']})" if last.get("rule") else ""
        write_line(f"last sync: {last.get('finished')}: {last.get('result')}{failure}; last success: "
                   f"{last.get('last_success') or 'never'}", file=out)
    for problem in report["problems"]:
        write_line(f"problem: {problem}", file=out)
    if not report["images"]:
        write_line("no images desired or held", file=out)
        return
    width = max(len(row["uuid"]) for row in report["images"])
    for row in report["images"]:
        write_line(f"{row['uuid']:<{width}}  {row['state']:<11}  {_row_detail(row)}".rstrip(), file=out)


def metrics_families(config: Mapping[str, Any]) -> List[_metrics.Family]:
    """The metrics of this host (status, last-sync.json, run-guard denials)."""
    return _metrics.families(collect_status(config), _metrics.read_last_sync(config["state_dir"]),
                             _metrics.denial_count(config["state_dir"]))


def metrics_text(config: Mapping[str, Any]) -> str:
    """``imgdist metrics``: the Prometheus text of this host."""
    return _metrics.render(metrics_families(config))


def metrics_document(config: Mapping[str, Any]) -> Dict[str, Any]:
    """``imgdist metrics --json``: the same metrics as data (``_metrics.document``)."""
    return _metrics.document(metrics_families(config))


def write_metrics(config: Mapping[str, Any], err: TextIO) -> None:
    """Write the textfile when ``metrics_textfile_dir`` is set; a failure is a warning, never the sync's."""
    if config["metrics_textfile_dir"]:
        try:
            _metrics.write_textfile(config["metrics_textfile_dir"], metrics_text(config))
        except (VmcloudError, OSError) as exc:
            write_line(f"{PROG}: warning: metrics-unwritable: {config['metrics_textfile_dir']}: "
                       f"{getattr(exc, 'message', None) or exc}", file=err)


def record_run_guard_denial(config: Mapping[str, Any], rule: str) -> None:
    """The libvirt hook refused a guest: count it for the metrics (never raises)."""
    _metrics.record_denial(config["state_dir"], rule)


# --------------------------------------------------------------------------- unknown files


def unknown_files(config: Mapping[str, Any]) -> List[str]:
    """Names of entries in the image store that nobody declared (as the image_store module sees them).

    The desired set comes from the last verified index (verified again offline); before the
    first sync there is none, and every entry that vmcloud did not put there is unknown.
    """
    from ._reconcile_plan import find_unknown
    from ._reconcile_scan import printable

    try:
        images = kept_index(config).index.images
    except CliError as exc:
        if exc.rule != "index-missing":
            raise
        images = []
    desired = selection_for(images, options_from(config))["desired"]
    try:
        return sorted(printable(entry.name) for entry in find_unknown(config["store_dir"], desired))
    except VmcloudError as exc:
        raise CliError(exc.rule, exc.message, EXIT_ERROR) from exc
