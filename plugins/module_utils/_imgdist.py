# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``imgdist`` command on hypervisors. Private to the collection; not a public API.

Plain Python (no ansible import): the agent role installs the module_utils package in the
hypervisor artifact ``/usr/lib/vmcloud/vmcloud-hypervisor.pyz`` (one zip application built by
``plugins/plugin_utils/_artifact.py``), and Debian's python3 runs it as
``python3 -I /usr/lib/vmcloud/vmcloud-hypervisor.pyz imgdist ...`` (the launcher
``/usr/local/sbin/imgdist``); the libvirt hook imports ``check_image`` from the same file.

Seed-compatible flags (2010's imgdist) come first: ``--enable``, ``--disable`` (a flag file;
prints ``current state: <old>`` then the new state) and ``--list_unknown_files`` (one name a
line). The commands ``status``, ``sync`` and ``check IMAGE`` run the collection's own library:
``_sync.sync`` for the pull path, ``_index_service`` / ``_index_state`` to re-verify the kept
index offline, ``_selection`` for approval, ``ImageStore`` for the store. ``config-check``
validates the configuration file (the agent role's ``validate:``); ``metrics`` prints the
Prometheus text a sync writes to ``metrics_textfile_dir`` (``_metrics``, with ``last-sync.json``).
Every read command takes ``--json`` (``metrics`` prints its text format anyway). Errors are one line
naming the rule; exit codes are in ``EXIT_CODES``.

The configuration file (YAML, default ``/etc/vmcloud/imgdist.yml``) holds the keys of
``CONFIG_KEYS``; any other key is refused, naming it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import difflib
import json
import os
import socket as socket_module
import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, TextIO

from . import _crl, _metrics, _status_cache
from ._approvals_record import ConfigBehind, check_config_current
from ._argspec import FETCH_ARGSPEC, INDEX_TRUST_ARGSPEC, SELECTION_ARGSPEC, SYNC_ARGSPEC
from ._engine import TorrentStatus, default_engine_user, engine_for
from ._errors import ApprovalConfigError, IndexRefused, VmcloudError
from ._index_service import build_policy, selection_for
from ._index_state import reset_high_water_mark
from ._io import fsync_directory, write_atomic, write_line
from ._lock import host_lock, lock_path
from ._options import INDEX_CHECKS, SYNC_CHECKS, check_options
from ._reconcile import Pending, find_pending
from ._run_guard import DEFAULT_GRACE_SECONDS, KeptIndex, check_grace_seconds, claimed_url, guarded_accept
from ._selection import parse_approvals
from ._store import ImageStore
from ._sync import (
    SyncReport,
    retire_now,
    retire_options,
    sync,
    verified_index_path,
)
from ._time import TIMESTAMP_FORMAT
from ._trust import parse_pins
from ._yaml import load_untrusted_yaml

PROG = "imgdist"
DEFAULT_CONFIG = "/etc/vmcloud/imgdist.yml"
DEFAULT_DISABLED_FLAG = "/var/lib/vmcloud/disabled"

EXIT_OK = 0
EXIT_IMAGES_FAILED = 1
EXIT_INDEX_REFUSED = 2
EXIT_DISABLED = 3
EXIT_CONFIG = 4
EXIT_ERROR = 5
EXIT_CONFIG_BEHIND = 6
EXIT_NOT_ENDORSED = 10
EXIT_NOT_APPROVED = 11
EXIT_NOT_VERIFIED = 12
EXIT_USAGE = 64
EXIT_INTERRUPTED = 130

USAGE_SEED = "imgdist [-c CONFIG] [--json] {--enable | --disable | --list_unknown_files}"
USAGE_STATUS = "imgdist [-c CONFIG] status [--json]"
USAGE_SYNC = "imgdist [-c CONFIG] sync [--check] [--json]"
USAGE_CHECK = "imgdist [-c CONFIG] check IMAGE [--json]"
USAGE_CONFIG_CHECK = "imgdist [-c CONFIG] config-check [--json]"
USAGE_METRICS = "imgdist [-c CONFIG] metrics"
USAGE_CRL_REFRESH = "imgdist [-c CONFIG] crl-refresh [--json]"
USAGE_RESET_MARK = "imgdist [-c CONFIG] reset-mark [--url URL] --to-version N --confirm [--json]"
USAGE = "\n       ".join((USAGE_SEED, USAGE_STATUS, USAGE_SYNC, USAGE_CHECK, USAGE_CONFIG_CHECK, USAGE_CRL_REFRESH,
                         USAGE_RESET_MARK, USAGE_METRICS))

EXIT_CODES = """\
exit status:
  0   success (check: the image is endorsed, approved and verified in the store; or, with a warning
      naming superseded-pending, a verified image the store keeps until its successor arrives)
  1   sync: some image failed (the others went on; the output says which and why)
  2   the index was refused by a verification rule (the rule is printed)
  3   sync: imgdist is disabled on this host (imgdist --enable)
  4   configuration error (file, key or value; approvals); config-check: the file is not valid
  5   other error (index or engine unreachable, I/O, not available); crl-refresh: a CRL was not installed;
      reset-mark: refused (mark-reset-refused: no mark, or the accepted version is not above N; lock-timeout)
  6   sync: config-behind: an Ansible run converged this host to other approvals after this file was
      written; the host stays as that run left it until the vmic_agent role writes the new ones
  10  check: not endorsed (not in the last verified index)
  11  check: endorsed, but not approved for this host (not approved, blocked or not targeted)
  12  check: endorsed and approved, but not verified in the store (missing or changed)
  64  usage error (reset-mark without --confirm: says what it would do, changes nothing)"""


class CliError(VmcloudError):
    """An error that ends the command with a given exit status."""

    def __init__(self, rule: str, message: str, exit_code: int) -> None:
        super().__init__(rule, message)
        self.exit_code = exit_code


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class ConfigKey:
    """One key of imgdist.yml: its type, the library option it feeds, and its default."""

    kind: str  # str, path, paths, strs, list, int, number, bool
    option: Optional[str]  # the option name of _argspec / SYNC_ARGSPEC; None for imgdist's own
    default: Any = None
    choices: tuple = ()


# The options the keys feed, as the modules declare them (_argspec): a key takes its option's type,
# default and choices from there, so imgdist.yml and the modules cannot drift apart.
_OPTIONS = {**INDEX_TRUST_ARGSPEC, **SELECTION_ARGSPEC, **FETCH_ARGSPEC, **SYNC_ARGSPEC}
_KIND_OF_TYPE = {"str": "str", "path": "path", "int": "int", "float": "number", "bool": "bool"}
_KIND_OF_ELEMENTS = {"path": "paths", "str": "strs"}  # other lists (dict, raw): "list"


def option(name: str) -> ConfigKey:
    """The key that feeds the module option ``name``, typed and defaulted as the option is."""
    spec = _OPTIONS[name]
    kind = _KIND_OF_ELEMENTS.get(spec.get("elements"), "list") if spec["type"] == "list" else \
        _KIND_OF_TYPE[spec["type"]]
    return ConfigKey(kind, name, spec.get("default"), tuple(spec.get("choices", ())))


CONFIG_KEYS: Dict[str, ConfigKey] = {
    # Where the endorsers publish, and whom the site trusts.
    "index_url": ConfigKey("str", "src"),
    "trust_anchors": option("trust_anchors"),
    "crl": option("crl"),
    # CRLs `imgdist crl-refresh` (the timer, before each sync) fetches: [{url, path}], path in `crl`.
    "crl_sources": ConfigKey("list", None, []),
    "endorsers": option("endorsers"),
    "endorser_pins": option("endorser_pins"),  # [{subject, issuer}], checked by _trust.parse_pins
    "threshold": option("threshold"),
    "legacy": option("legacy"),
    "endorser_certificates": option("endorser_certificates"),
    "max_size": option("max_size"),
    "clock_skew": option("clock_skew"),
    "fetch_timeout": option("timeout"),
    "validate_certs": option("validate_certs"),
    "ca_path": option("ca_path"),
    # What the site approves, and where this host sits. approved_images has no default: a missing
    # key is refused by sync and config-check, never read as "approve nothing" (an explicit [] is).
    "approved_images": option("approved"),
    "blocked_images": option("blocked"),
    "approval_rules": option("rules"),
    "host": option("host"),  # default: this machine's host name
    "subcluster": option("subcluster"),
    "cluster": option("cluster"),
    # On the host.
    "store_dir": option("store_dir"),
    "staging_dir": option("staging_dir"),
    "torrent_dir": option("torrent_dir"),
    "engine_user": option("engine_user"),  # who owns staged files (default: the engine's user)
    "state_dir": option("state_dir"),
    "torrent_max_size": option("torrent_max_size"),
    # Images no longer desired (the image_store module's options, _reconcile): retire or keep, the
    # store's quota, and the mass-deletion guard (retire-guard unless retire_confirm).
    "not_desired": option("not_desired"),
    "max_bytes": option("max_bytes"),
    "high_watermark_percent": option("high_watermark_percent"),
    "retire_max_percent": option("retire_max_percent"),
    "retire_confirm": option("retire_confirm"),
    "disabled_flag": ConfigKey("path", None, DEFAULT_DISABLED_FLAG),
    # The run guard (check, the libvirt hook): seconds a guest may still start after the kept index
    # stops verifying on a time rule alone (expiry, stale CRL); 0 refuses at once (_run_guard).
    "run_guard_grace_seconds": ConfigKey("int", None, DEFAULT_GRACE_SECONDS),
    # The BitTorrent engine.
    "engine": option("engine"),
    "socket": option("socket"),  # default: the engine's (_engine.DEFAULT_SOCKETS)
    "timeout": option("download_timeout"),
    "rpc_timeout": option("rpc_timeout"),
    "poll_interval": option("poll_interval"),
    # How the image bytes arrive (_methods): the timer honours the host's method.
    "distribution_method": option("distribution_method"),
    "http_url": option("http_url"),
    "sharedfs_dir": option("sharedfs_dir"),
    "sharedfs_owner": option("sharedfs_owner"),
    "push_dir": option("push_dir"),
    "push_user": option("push_user"),
    # node_exporter's textfile collector directory: each sync writes vmcloud_imgdist.prom there (_metrics).
    "metrics_textfile_dir": ConfigKey("path", None),
}

_KIND_TEXT = {
    "str": "a non-empty string",
    "path": "an absolute path",
    "paths": "a list of absolute paths",
    "strs": "a list of strings",
    "list": "a list",
    "int": "an integer",
    "number": "a number",
    "bool": "true or false",
}


def _config_error(path: str, message: str) -> CliError:
    return CliError("config-invalid", f"{path}: {message}", EXIT_CONFIG)


def _valid(kind: str, value: Any) -> bool:
    if kind == "str":
        return isinstance(value, str) and bool(value)
    if kind == "path":
        return isinstance(value, str) and os.path.isabs(value)
    if kind == "paths":
        return isinstance(value, list) and all(isinstance(v, str) and os.path.isabs(v) for v in value)
    if kind == "strs":
        return isinstance(value, list) and all(isinstance(v, str) and v for v in value)
    if kind == "list":
        return isinstance(value, list)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, bool)


def check_config(document: Any, path: str) -> Dict[str, Any]:
    """Validate a parsed config file; return every key with its value or default."""
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise _config_error(path, f"expected a mapping of keys, got {type(document).__name__}")
    for key in document:
        if key not in CONFIG_KEYS:
            close = difflib.get_close_matches(str(key), CONFIG_KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(CONFIG_KEYS)}"
            raise _config_error(path, f"unknown key {key!r}{hint}")
    config: Dict[str, Any] = {}
    for key, spec in CONFIG_KEYS.items():
        value = document.get(key)
        if value is None:
            config[key] = list(spec.default) if isinstance(spec.default, list) else spec.default
            continue
        if spec.kind in ("paths", "strs") and isinstance(value, str):
            value = [value]
        if not _valid(spec.kind, value):
            raise _config_error(path, f"key {key!r} must be {_KIND_TEXT[spec.kind]}, got {value!r}")
        if spec.choices and value not in spec.choices:
            raise _config_error(path, f"key {key!r} must be one of {', '.join(spec.choices)}, got {value!r}")
        config[key] = value
    if config["host"] is None:
        config["host"] = socket_module.gethostname()
    check_values(config, path)
    return config


def check_values(config: Mapping[str, Any], path: str) -> None:
    """Ranges and forms of the values (_options, the modules' validator): config-invalid naming the key."""
    key_of = {spec.option: key for key, spec in CONFIG_KEYS.items() if spec.option}
    try:
        check_options(options_from(config), {**INDEX_CHECKS, **SYNC_CHECKS}, rule="config-invalid",
                      name_of=lambda option: f"{path}: key '{key_of[option]}'")
    except VmcloudError as exc:
        raise CliError(exc.rule, exc.message, EXIT_CONFIG) from exc


def load_config(path: str, required: bool) -> Dict[str, Any]:
    """Read and validate the config file; a missing file gives the defaults unless ``required``."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
            written = os.fstat(handle.fileno()).st_mtime
    except FileNotFoundError as exc:
        if required:
            raise CliError(
                "config-missing", f"{path} does not exist; the agent role writes it (or pass --config)", EXIT_CONFIG
            ) from exc
        return check_config({}, path)
    except OSError as exc:
        raise CliError("config-unreadable", f"cannot read {path}: {exc.strerror or exc}", EXIT_CONFIG) from exc
    try:
        document = load_untrusted_yaml(data, path)
    except VmcloudError as exc:
        raise CliError("config-invalid", exc.message, EXIT_CONFIG) from exc
    config = check_config(document, path)
    config["agent_config"] = (path, written)  # what the file is, for the sync's config-behind check
    return config


def require_keys(config: Mapping[str, Any], path: str, keys: Sequence[str]) -> None:
    for key in keys:
        if config.get(key) in (None, []):
            raise CliError("config-invalid", f"{path}: key {key!r} is required for this command", EXIT_CONFIG)


def require_approvals(config: Mapping[str, Any], path: str) -> None:
    """A sync needs ``approved_images`` given: a missing key is an error, never "approve nothing"."""
    if config.get("approved_images") is None:
        raise _config_error(path, "key 'approved_images' is missing; list the approved images (the agent role "
                            "writes vmcloud_approved_images there; an explicit [] approves nothing)")


def validate_config(config: Mapping[str, Any], path: str) -> None:
    """``config-check``: beyond each key's type, what a sync needs (index URL, anchors, valid approvals)."""
    require_keys(config, path, ["index_url", "trust_anchors"])
    grace_seconds(config, path)
    crl_sources(config, path)
    try:
        parse_approvals(config["approved_images"], config["blocked_images"], config["approval_rules"])
        parse_pins(config["endorser_pins"])
        retire_options(options_from(config)).validate()
    except VmcloudError as exc:  # malformed approvals (ApprovalConfigError), pins or retirement options
        raise _config_error(path, exc.message) from exc
    require_approvals(config, path)


def options_from(config: Mapping[str, Any]) -> Dict[str, Any]:
    """The library's options (argument names of _argspec and SYNC_ARGSPEC) from a checked config."""
    return {spec.option: config[key] for key, spec in CONFIG_KEYS.items() if spec.option}


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


# --------------------------------------------------------------------------- CRL refresh


def crl_sources(config: Mapping[str, Any], path: str) -> List[Dict[str, str]]:
    try:
        return _crl.check_sources(config["crl_sources"], config["crl"], f"{path}: key 'crl_sources'")
    except VmcloudError as exc:
        raise CliError(exc.rule, exc.message, EXIT_CONFIG) from exc


def run_crl_refresh(config: Mapping[str, Any], path: str, as_json: bool, out: TextIO) -> int:
    """Fetch and install every configured CRL (``_crl``); exit 5 when one was not installed."""
    sources = crl_sources(config, path)
    require_keys(config, path, ["trust_anchors"])
    results = _crl.refresh(sources, config["trust_anchors"], timeout=config["fetch_timeout"],
                           ca_path=config["ca_path"], validate_certs=config["validate_certs"])
    if as_json:
        write_line(json.dumps(results, indent=1, sort_keys=True), file=out)
    else:
        for result in results:
            outcome = ("installed" if result["changed"] else "unchanged") if result["rule"] is None else \
                f"NOT installed: {result['rule']}: {' '.join(str(result['message']).split())}"
            write_line(f"crl {result['url']} -> {result['path']}: {outcome}", file=out)
        if not results:
            write_line("no crl_sources configured", file=out)
    return EXIT_ERROR if any(result["rule"] for result in results) else EXIT_OK


# --------------------------------------------------------------------------- the kept index


def grace_seconds(config: Mapping[str, Any], path: str) -> int:
    try:
        return check_grace_seconds(config["run_guard_grace_seconds"], f"{path}: key 'run_guard_grace_seconds'")
    except VmcloudError as exc:
        raise CliError(exc.rule, exc.message, EXIT_CONFIG) from exc


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


# --------------------------------------------------------------------------- reset-mark


def positive_version(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an index version, an integer >= 1, got {text!r}")
    return value


def mark_url(config: Mapping[str, Any], url: Optional[str]) -> str:
    """The URL whose mark ``reset-mark`` lowers: ``--url``, else the signed url of the kept index (the
    mark is keyed by it), else ``index_url``."""
    if url:
        return url
    path = verified_index_path(config["state_dir"])
    try:
        with open(path, "rb") as handle:
            claimed = claimed_url(handle.read(config["max_size"] + 1), path)
    except FileNotFoundError:
        claimed = None
    if claimed or config.get("index_url"):
        return claimed or config["index_url"]
    raise CliError("config-invalid", "give --url: there is no kept index and no index_url in the configuration",
                   EXIT_CONFIG)


def run_reset_mark(config: Mapping[str, Any], url: Optional[str], to_version: int, confirm: bool, as_json: bool,
                   out: TextIO, err: TextIO) -> int:
    """Lower the rollback mark after a fast-forward (``_index_state.reset_high_water_mark``, under the
    host lock); without ``confirm`` only say what it would do."""
    url = mark_url(config, url)
    now = datetime.datetime.now(datetime.UTC)
    result = reset_high_water_mark(config["state_dir"], url, to_version, now, lock_timeout=config["timeout"],
                                   check_mode=not confirm)
    line = f"high-water mark for {url}: previous version {result['previous']}, new version {result['new']}"
    if not confirm:
        write_line(f"{PROG}: mark-reset-refused: would set the {line}; nothing changed: run again with --confirm",
                   file=err)
        return EXIT_USAGE
    if as_json:
        write_line(json.dumps(result, sort_keys=True), file=out)
    else:
        write_line(line, file=out)
    return EXIT_OK


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
    withdrawn, ``_reconcile.find_pending`` for the planner's rule), never restated here."""
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


def _status_row(image: Dict[str, Any], holding: Optional[Dict[str, Any]], status: Optional[TorrentStatus],
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
        rows.append(_status_row(image, holdings.get(image["uuid"]), status, True, store.path_of(image)))
    desired_uuids = {image["uuid"] for image in desired}
    for uuid, held in holdings.items():
        if uuid not in desired_uuids:
            entry = manifest.get(uuid, {})
            image = {"uuid": uuid, "name": held["name"], "version": held["version"],
                     "torrent": {"info_hash": entry.get("info_hash")}}
            row = _status_row(image, held, statuses.get(entry.get("info_hash") or ""), False, held["path"],
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


# --------------------------------------------------------------------------- sync


class ProgressLine:
    """A progress callback for ``sync`` drawing one line per image on a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.open = False

    def __call__(self, image: Dict[str, Any], status: TorrentStatus) -> None:
        line = (f"{image['uuid']} {progress_bar(status.progress)} {status.progress * 100:5.1f}% "
                f"{human_bytes(status.down_rate)}/s {status.peers} peer(s)")
        self.stream.write("\r" + line[:200])
        self.open = not status.complete
        if status.complete:
            self.stream.write("\n")
        self.stream.flush()

    def close(self) -> None:
        if self.open:
            self.stream.write("\n")
            self.stream.flush()
            self.open = False


def print_sync(report: SyncReport, out: TextIO) -> None:
    would = "would be " if report.check_mode else ""
    index = report.index
    previous = f" (previous {index['previous_version']})" if index.get("previous_version") is not None else ""
    write_line(f"index {index['url']}: version {index['version']}{previous}; "
               f"{len(report.desired)} image(s) desired for host {report.selection['host']}", file=out)
    for image in report.images:
        steps = []
        if image.torrent == "fetched":
            steps.append(f".torrent {would}fetched")
        if image.engine in ("add", "start"):
            steps.append(f"{would}{'added to' if image.engine == 'add' else 'restarted in'} the engine")
        if image.store in ("promoted", "repaired"):
            steps.append(f"{would}{image.store} to {image.path}")
        if image.failure:
            failure = image.failure
            steps.append(f"FAILED at {failure['step']}: {failure['rule']}: {failure['message']}")
        write_line(f"  {image.uuid}: {', '.join(steps) or 'present'}", file=out)
    for uuid in report.retired:
        write_line(f"  {uuid}: {would}retired", file=out)
    for held in report.held_open:
        write_line(f"  {held['uuid']}: not retired, held open by pid(s) {', '.join(map(str, held['pids']))}", file=out)
    for pending in report.superseded_pending:
        write_line(f"  {pending['uuid']}: kept (superseded) until {', '.join(pending['waiting_for'])} is in the store",
                   file=out)
    for info_hash in report.removed:
        write_line(f"  torrent {info_hash}: {would}removed from the engine and staging", file=out)
    for failure in report.failures:
        if failure["uuid"] is None:
            write_line(f"  FAILED {failure['step']} {failure['info_hash'] or ''}: {failure['rule']}: "
                       f"{failure['message']}", file=out)
    for entry in report.selection["not_endorsed"]:
        write_line(f"  not endorsed: {entry['approved_by']} ({entry['image']})", file=out)
    ok = sum(1 for image in report.images if image.ok)
    verdict = ("would change" if report.check_mode else "changed") if report.changed else "no change"
    write_line(f"{ok} ok, {len(report.failures)} failed; {verdict}", file=out)


def run_sync(config: Mapping[str, Any], check_mode: bool, as_json: bool, out: TextIO, err: TextIO) -> int:
    if check_mode:  # changes nothing: no lock, no record
        return _run_sync(config, check_mode, as_json, out, err)[0]
    # The flag is read under the host lock the sync holds (re-entered), so --disable is never missed.
    with host_lock(lock_path(config["state_dir"]), config["timeout"]):
        try:  # last-sync.json, then the textfile (_metrics), whatever the outcome
            return _metrics.record_sync(config["state_dir"], lambda: _run_sync(config, check_mode, as_json, out, err))
        finally:
            write_metrics(config, err)


def metrics_text(config: Mapping[str, Any]) -> str:
    """``imgdist metrics``: the Prometheus text of this host (status, last-sync.json, run-guard denials)."""
    return _metrics.render(_metrics.families(collect_status(config), _metrics.read_last_sync(config["state_dir"]),
                                             _metrics.denial_count(config["state_dir"])))


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


def _run_sync(config: Mapping[str, Any], check_mode: bool, as_json: bool, out: TextIO, err: TextIO) -> tuple:
    if enabled_state(config["disabled_flag"]) == "disable":
        raise CliError(
            "host-disabled",
            f"imgdist is disabled on this host ({config['disabled_flag']} exists); run imgdist --enable to sync",
            EXIT_DISABLED,
        )
    engine = engine_for(config["engine"], socket=config["socket"], timeout=config["rpc_timeout"])
    progress = ProgressLine(err) if not as_json and err.isatty() else None
    try:
        options = options_from(config)
        options["engine_user"] = default_engine_user(config["engine"], config["engine_user"])
        # A missing file (defaults) is never behind an Ansible run; the sync needs the file anyway.
        options["agent_config"] = config.get("agent_config", ("(no file)", float("inf")))
        report = sync(options, engine, check_mode=check_mode, progress=progress)
    except IndexRefused as exc:
        raise CliError(exc.rule, exc.message, EXIT_INDEX_REFUSED) from exc
    except ConfigBehind as exc:
        raise CliError(exc.rule, exc.message, EXIT_CONFIG_BEHIND) from exc
    except ApprovalConfigError as exc:
        raise CliError(exc.rule, exc.message, EXIT_CONFIG) from exc
    finally:
        if progress is not None:
            progress.close()
    if as_json:
        write_line(json.dumps(report.to_dict(), indent=1, sort_keys=True), file=out)
    else:
        print_sync(report, out)
    return (EXIT_IMAGES_FAILED if report.failures else EXIT_OK), report


# --------------------------------------------------------------------------- unknown files


def unknown_files(config: Mapping[str, Any]) -> List[str]:
    """Names of entries in the image store that nobody declared (as the image_store module sees them).

    The desired set comes from the last verified index (verified again offline); before the
    first sync there is none, and every entry that vmcloud did not put there is unknown.
    """
    from ._reconcile import find_unknown, printable

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


# --------------------------------------------------------------------------- command line


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits with EXIT_USAGE (2 means a refused index here)."""

    def error(self, message: str):  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", default=argparse.SUPPRESS,
                        help=f"configuration file (default {DEFAULT_CONFIG})")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print the result as JSON")
    parser = _Parser(
        prog=PROG,
        usage=USAGE,
        description="Keep this hypervisor's VM images in line with the endorsed and approved set.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-c", "--config", default=None,
                        help=f"configuration file (default {DEFAULT_CONFIG})")
    parser.add_argument("--json", action="store_true", default=False, help="print the result as JSON")
    seed = parser.add_mutually_exclusive_group()
    seed.add_argument("--enable", dest="action", action="store_const", const="enable",
                      help="let imgdist sync this host again")
    seed.add_argument("--disable", dest="action", action="store_const", const="disable",
                      help="stop imgdist from syncing this host (a flag file)")
    seed.add_argument("--list_unknown_files", "--list-unknown-files", dest="action", action="store_const",
                      const="list_unknown_files", help="list files in the image directories vmcloud did not put there")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser, prog=PROG)
    commands.add_parser("status", parents=[common], usage=USAGE_STATUS,
                        help="per image: state, download progress, seeding ratio",
                        description="Per image: state, download progress and rate, seeding ratio.")
    sync_parser = commands.add_parser(
        "sync", parents=[common], usage=USAGE_SYNC, help="verify the index, download, verify and promote, retire",
        description="Verify the index, download the desired images, verify and promote them, retire the rest.",
    )
    sync_parser.add_argument("--check", action="store_true", help="say what would change, change nothing")
    check_parser = commands.add_parser(
        "check", parents=[common], usage=USAGE_CHECK, help="is IMAGE endorsed, approved and verified in the store?",
        description="Exit 0 only when IMAGE is endorsed (in the last verified index, verified again now), "
        "approved for this host, and verified in the store.",
    )
    check_parser.add_argument("image", metavar="IMAGE", help="an image uuid, or a path in the image store")
    commands.add_parser(
        "config-check", parents=[common], usage=USAGE_CONFIG_CHECK, help="validate the configuration file",
        description="Validate the configuration file without using it: every key, the keys a sync needs, "
        "and the approvals. Exit 0 when it is valid, 4 naming the first problem.",
    )
    commands.add_parser(
        "crl-refresh", parents=[common], usage=USAGE_CRL_REFRESH, help="fetch and install the configured CRLs",
        description="Fetch each CRL of crl_sources and install it atomically, unless it is past its nextUpdate "
        "(crl-stale), not signed by its trust anchor (crl-signature-invalid) or older than the installed one "
        "(crl-rollback). Exit 0 when every CRL is installed or unchanged, 5 otherwise.",
    )
    reset = commands.add_parser(
        "reset-mark", parents=[common], usage=USAGE_RESET_MARK,
        help="lower the rollback mark after a fast-forward (under the host lock)",
        description="Recover from a fast-forward (a stolen key signed a huge index version): after the key is "
        "revoked, set the high-water mark for URL to version N, only when the accepted version is greater than N "
        "(else mark-reset-refused). The next index accepted must be above N. Prints the previous and new "
        "version. Without --confirm, says what it would do and changes nothing.",
    )
    reset.add_argument("--url", help="the index's signed url (default: that of the kept index, else index_url)")
    reset.add_argument("--to-version", dest="to_version", type=positive_version, required=True, metavar="N",
                       help="the last genuine version")
    reset.add_argument("--confirm", action="store_true", help="really rewrite the mark")
    commands.add_parser(
        "metrics", parents=[common], usage=USAGE_METRICS, help="print the Prometheus metrics of this host",
        description="Print what a sync writes to metrics_textfile_dir/vmcloud_imgdist.prom (Prometheus text "
        "format): images present and missing, engine bytes, the last sync, the index expiry, run-guard denials.",
    )
    return parser


def _emit_error(exc: VmcloudError, as_json: bool, out: TextIO, err: TextIO) -> None:
    message = " ".join(str(exc.message).split())
    write_line(f"{PROG}: {exc.rule}: {message}", file=err)
    if as_json:
        write_line(json.dumps({"ok": False, "rule": exc.rule, "message": message}), file=out)


def _dispatch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    needs_index = args.command in ("sync", "check", "config-check", "crl-refresh", "reset-mark")
    path = args.config or DEFAULT_CONFIG
    config = load_config(path, required=needs_index or args.config is not None)
    if args.action in ("enable", "disable"):
        # Under the host lock: once --disable returns, no sync is running and none starts.
        with host_lock(lock_path(config["state_dir"]), config["timeout"]):
            before = set_state(config["disabled_flag"], args.action)
        if args.json:
            write_line(json.dumps({"previous": before, "state": args.action}), file=out)
        else:
            write_line(f"current state: {before}", file=out)
            write_line(args.action, file=out)
        return EXIT_OK
    if args.action == "list_unknown_files":
        names = unknown_files(config)
        if args.json:
            write_line(json.dumps(names), file=out)
        else:
            for name in names:
                write_line(name, file=out)
        return EXIT_OK
    if args.command == "status":
        report = collect_status(config)
        if args.json:
            write_line(json.dumps(report, indent=1, sort_keys=True), file=out)
        else:
            print_status(report, out)
        return EXIT_OK
    if args.command == "metrics":
        out.write(metrics_text(config))
        return EXIT_OK
    if args.command == "config-check":
        validate_config(config, path)
        if args.json:
            write_line(json.dumps({"ok": True, "config": path}), file=out)
        else:
            write_line(f"{path}: valid", file=out)
        return EXIT_OK
    if args.command == "crl-refresh":
        return run_crl_refresh(config, path, args.json, out)
    if args.command == "reset-mark":
        return run_reset_mark(config, args.url, args.to_version, args.confirm, args.json, out, err)
    if args.command == "sync":
        require_keys(config, path, ["index_url", "trust_anchors"])
        require_approvals(config, path)
        return run_sync(config, args.check, args.json, out, err)
    require_keys(config, path, ["trust_anchors"])
    code, result = check_image(config, args.image)
    for warning in result.get("warnings") or []:
        write_line(f"{PROG}: warning: {warning}", file=err)
    if args.json:
        write_line(json.dumps(result, indent=1, sort_keys=True), file=out)
    else:
        write_line(f"{result['rule']}: {result['reason']}", file=out)
    return code


def main(argv: Optional[Sequence[str]] = None, out: Optional[TextIO] = None, err: Optional[TextIO] = None) -> int:
    """Run imgdist with ``argv`` (default: the process's); return the exit status."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    parser = build_parser()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = parser.parse_args(list(argv) if argv is not None else sys.argv[1:])
    except SystemExit as exc:  # --help (0) or a usage error (EXIT_USAGE)
        return int(exc.code or 0)
    if (args.action is None) == (args.command is None):
        parser.print_usage(err)
        write_line(f"{PROG}: error: give one of --enable, --disable, --list_unknown_files, or a command "
                   "(status, sync, check, config-check, crl-refresh, reset-mark, metrics)", file=err)
        return EXIT_USAGE
    as_json = bool(getattr(args, "json", False))
    try:
        return _dispatch(args, out, err)
    except CliError as exc:
        _emit_error(exc, as_json, out, err)
        return exc.exit_code
    except IndexRefused as exc:
        _emit_error(exc, as_json, out, err)
        return EXIT_INDEX_REFUSED
    except ApprovalConfigError as exc:
        _emit_error(exc, as_json, out, err)
        return EXIT_CONFIG
    except VmcloudError as exc:
        _emit_error(exc, as_json, out, err)
        return EXIT_ERROR
    except OSError as exc:
        _emit_error(VmcloudError("io-error", str(exc)), as_json, out, err)
        return EXIT_ERROR
    except KeyboardInterrupt:
        write_line(f"{PROG}: interrupted", file=err)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the last resort: one line, never a traceback
        _emit_error(VmcloudError("internal-error", f"{type(exc).__name__}: {exc}"), as_json, out, err)
        return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
