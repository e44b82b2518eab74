# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``imgdist`` command on hypervisors. Private to the collection; not a public API.

Plain Python (no ansible import): the agent role installs the module_utils package in the
hypervisor artifact ``/usr/lib/vmcloud/vmcloud-hypervisor.pyz`` (one zip application built by
``plugins/plugin_utils/_artifact.py``), and Debian's python3 runs it as
``python3 -I /usr/lib/vmcloud/vmcloud-hypervisor.pyz imgdist ...`` (the launcher
``/usr/local/sbin/imgdist``); the libvirt hook imports ``_imgdist_status.check_image`` from the
same file. This module is the command line (argument parsing, dispatch, the sync and the
maintenance commands, printing); the configuration file and the exit statuses are
``_imgdist_config``, what the host reports (status, check, metrics, unknown files, the enable flag)
is ``_imgdist_status``, and the run guard's policy ``_run_guard``.

Seed-compatible flags (2010's imgdist) come first: ``--enable``, ``--disable`` (a flag file;
prints ``current state: <old>`` then the new state) and ``--list_unknown_files`` (one name a
line). The commands ``status``, ``sync`` and ``check IMAGE`` run the collection's own library:
``_sync.sync`` for the pull path, ``_index_service`` / ``_index_state`` to re-verify the kept
index offline, ``_selection`` for approval, ``ImageStore`` for the store. ``config-check``
validates the configuration file (the agent role's ``validate:``); ``metrics`` prints the
Prometheus text a sync writes to ``metrics_textfile_dir`` (``_metrics``, with ``last-sync.json``).
Every read command takes ``--json`` (``metrics``: the same families as data). Errors are one line
naming the rule; exit codes are in ``_imgdist_config.EXIT_CODES``.

The configuration file (YAML, default ``/etc/vmcloud/imgdist.yml``) holds the keys of
``_imgdist_config.CONFIG_KEYS``; any other key is refused, naming it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import sys
from typing import Any, Dict, Mapping, Optional, Sequence, TextIO

from . import _crl, _metrics
from ._approvals_record import ConfigBehind
from ._engine import TorrentStatus, default_engine_user, engine_for
from ._errors import ApprovalConfigError, IndexRefused, VmcloudError
from ._imgdist_config import (
    EXIT_CODES,
    EXIT_CONFIG,
    EXIT_CONFIG_BEHIND,
    EXIT_DISABLED,
    EXIT_ERROR,
    EXIT_IMAGES_FAILED,
    EXIT_INDEX_REFUSED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    CliError,
    crl_sources,
    load_config,
    options_from,
    require_approvals,
    require_keys,
    validate_config,
)
from ._imgdist_status import (
    check_image,
    collect_status,
    enabled_state,
    human_bytes,
    metrics_document,
    metrics_text,
    print_status,
    progress_bar,
    set_state,
    unknown_files,
    write_metrics,
)
from ._index_state import reset_high_water_mark
from ._io import write_line
from ._lock import host_lock, lock_path
from ._run_guard import claimed_url
from ._sync import SyncReport, sync, verified_index_path

DEFAULT_CONFIG = "/etc/vmcloud/imgdist.yml"

USAGE_SEED = "imgdist [-c CONFIG] [--json] {--enable | --disable | --list_unknown_files}"
USAGE_STATUS = "imgdist [-c CONFIG] status [--json]"
USAGE_SYNC = "imgdist [-c CONFIG] sync [--check] [--json]"
USAGE_CHECK = "imgdist [-c CONFIG] check IMAGE [--json]"
USAGE_CONFIG_CHECK = "imgdist [-c CONFIG] config-check [--json]"
USAGE_METRICS = "imgdist [-c CONFIG] metrics [--json]"
USAGE_CRL_REFRESH = "imgdist [-c CONFIG] crl-refresh [--json]"
USAGE_RESET_MARK = "imgdist [-c CONFIG] reset-mark [--url URL] --to-version N --confirm [--json]"
USAGE = "\n       ".join((USAGE_SEED, USAGE_STATUS, USAGE_SYNC, USAGE_CHECK, USAGE_CONFIG_CHECK, USAGE_CRL_REFRESH,
                         USAGE_RESET_MARK, USAGE_METRICS))


# --------------------------------------------------------------------------- CRL refresh


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
        if args.json:
            write_line(json.dumps(metrics_document(config), indent=1, sort_keys=True), file=out)
        else:
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
