# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``imgdist``'s configuration file and exit statuses. Private to the collection; not a public API.

Plain Python (no ansible import). The configuration file (YAML, default ``/etc/vmcloud/imgdist.yml``)
holds the keys of ``CONFIG_KEYS``; any other key is refused, naming it. A key that feeds a library
option takes its type, default and choices from the modules' argument spec (``_argspec``), and its
value is checked by the modules' own validators (``_options``), so imgdist.yml and the modules
cannot drift apart. ``options_from`` turns a checked file into the library's options.

Errors end the command with an exit status (``CliError``, the ``EXIT_*`` codes, ``EXIT_CODES``),
shared by the status and check commands (``_imgdist_status``) and the command line (``_imgdist``).
"""

from __future__ import annotations

import difflib
import os
import socket as socket_module
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

from . import _crl
from ._argspec import FETCH_ARGSPEC, INDEX_TRUST_ARGSPEC, SELECTION_ARGSPEC, SYNC_ARGSPEC
from ._errors import VmcloudError
from ._options import INDEX_CHECKS, SYNC_CHECKS, check_options
from ._run_guard import DEFAULT_GRACE_SECONDS, check_grace_seconds
from ._selection import parse_approvals
from ._sync import retire_options
from ._trust import parse_pins
from ._yaml import load_untrusted_yaml

PROG = "imgdist"
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


# --------------------------------------------------------------------------- keys checked beyond their type


def crl_sources(config: Mapping[str, Any], path: str) -> List[Dict[str, str]]:
    try:
        return _crl.check_sources(config["crl_sources"], config["crl"], f"{path}: key 'crl_sources'")
    except VmcloudError as exc:
        raise CliError(exc.rule, exc.message, EXIT_CONFIG) from exc


def grace_seconds(config: Mapping[str, Any], path: str) -> int:
    try:
        return check_grace_seconds(config["run_guard_grace_seconds"], f"{path}: key 'run_guard_grace_seconds'")
    except VmcloudError as exc:
        raise CliError(exc.rule, exc.message, EXIT_CONFIG) from exc
