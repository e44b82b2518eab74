# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The vmcloud seeder: a libtorrent-rasterbar session behind a local unix socket.

Private to the collection; not a public API. Runs on hypervisors under Debian's python3 with
python3-libtorrent (2.0), as the systemd unit of the libtorrent_seeder role::

    python3 -m ansible_collections.vmcloud.fleet.plugins.module_utils._seeder --config /etc/vmcloud/seeder.json

``--check`` validates the configuration and exits (the role's ``validate:``).

What it does:
- holds one ``libtorrent.session`` and answers the engine interface (``_engine_libtorrent``) on
  a unix socket, in length-prefixed JSON frames (``_framing``), one request per connection;
- keeps every torrent it was given (until ``remove``) and persists each one's resume data (the
  .torrent, the save path, the pieces it has, its counters) to ``<state_dir>/<info_hash>.resume``,
  atomically; on start it re-adds them all and, with ``recheck_on_start`` (default), hash-checks the
  data, so a restart neither trusts a stale bitfield nor downloads again what is on disk;
- honours web seeds (BEP 19): an ``add`` may carry HTTP URLs of the content, used as sources
  alongside the peers (a catalogue's copy backs the swarm);
- torrents are not auto-managed: every one the seeder holds is active (no queue of 5 seeds);
- DHT, PEX and LSD as configured (the rtorrent role's defaults: DHT and PEX on; rtorrent has no
  LSD, so off), listen and outgoing interfaces, global rate limits and per-torrent peer and
  upload-slot limits. Rate limits apply to every peer, local-network ones included (libtorrent
  exempts those by default; a lab or a cluster network is all local).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import json
import logging
import os
import signal
import socket
import socketserver
import stat
import sys
import threading
import time
from typing import Any, Dict, Optional

from ansible_collections.vmcloud.fleet.plugins.module_utils._engine import DEFAULT_SOCKETS
from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import EngineError, VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._framing import (
    MAX_REQUEST_BYTES,
    FrameError,
    encode_frame,
    read_frame,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._io import write_atomic, write_line

LOG = logging.getLogger("vmcloud-seeder")
RESUME_SUFFIX = ".resume"
REQUEST_TIMEOUT = 30.0
SHUTDOWN_SAVE_TIMEOUT = 20.0
DELETE_TIMEOUT = 10.0

# Every configuration key with its default; the role's template writes them all.
DEFAULTS: Dict[str, Any] = {
    "socket": DEFAULT_SOCKETS["libtorrent"],
    "socket_mode": "0660",
    "state_dir": "/var/lib/vmcloud-seeder",
    "listen_interfaces": "0.0.0.0:6881",  # libtorrent's form: ADDRESS:PORT[,ADDRESS:PORT...]
    "outgoing_interfaces": "",  # bind outgoing connections to this address or device ("" = any)
    "announce_ip": "",  # the address told to trackers ("" = the connection's source address)
    "dht": True,
    "dht_bootstrap": [],  # HOST:PORT nodes (a closed network has no public DHT)
    "pex": True,
    "lsd": False,
    "upload_rate_kib": 0,  # KiB/s, 0 = unlimited
    "download_rate_kib": 0,
    "max_peers": 100,  # per torrent
    "max_uploads": 50,  # unchoked peers per torrent
    "max_uploads_global": 0,  # 0 = unlimited
    "recheck_on_start": True,
    "resume_save_interval": 60,  # seconds between saves of changed resume data
    "ssrf_mitigation": True,  # libtorrent's guard on web seeds / trackers pointing at local services
    # Extra libtorrent settings_pack entries (name -> bool, int or string; enums as their numbers),
    # applied over the ones above: the swarm's tuning (docs/performance.md, "Image distribution").
    "session_settings": {},
    "super_seeding": False,  # BEP 16 on every torrent this seeder seeds (the origin only)
    "log_level": "info",
}
_KINDS = {bool: "true or false", int: "an integer", str: "a string", list: "a list", dict: "a mapping"}
# Settings the seeder derives from its own keys: set them through those, not session_settings.
_OWN_SETTINGS = (
    "listen_interfaces", "outgoing_interfaces", "announce_ip", "enable_dht", "dht_bootstrap_nodes", "enable_lsd",
    "upload_rate_limit", "download_rate_limit", "ssrf_mitigation", "alert_mask",
)


class ConfigError(VmcloudError):
    def __init__(self, message: str) -> None:
        super().__init__("config-invalid", message)


def check_config(document: Any, where: str = "the seeder configuration") -> Dict[str, Any]:
    """Every key with its value or default; unknown keys and wrong types are config-invalid."""
    if not isinstance(document, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(document).__name__}")
    unknown = sorted(set(document) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
    config = dict(DEFAULTS)
    for key, value in document.items():
        kind = type(DEFAULTS[key])
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: {key} must be {_KINDS[kind]}, got {value!r}")
        config[key] = value
    for key in ("socket", "state_dir"):
        if not os.path.isabs(config[key]):
            raise ConfigError(f"{where}: {key} must be an absolute path, got {config[key]!r}")
    try:
        int(config["socket_mode"], 8)
    except ValueError:
        raise ConfigError(f"{where}: socket_mode must be octal digits such as \"0660\"") from None
    for key in ("upload_rate_kib", "download_rate_kib", "max_uploads_global"):
        if config[key] < 0:
            raise ConfigError(f"{where}: {key} must be 0 (unlimited) or more, got {config[key]}")
    for key in ("max_peers", "max_uploads", "resume_save_interval"):
        if config[key] < 1:
            raise ConfigError(f"{where}: {key} must be at least 1, got {config[key]}")
    if not config["listen_interfaces"]:
        raise ConfigError(f"{where}: listen_interfaces must name at least one ADDRESS:PORT")
    if not all(isinstance(node, str) and node.rpartition(":")[2].isdigit() for node in config["dht_bootstrap"]):
        raise ConfigError(f"{where}: every dht_bootstrap entry must be HOST:PORT")
    for name, value in config["session_settings"].items():
        if not isinstance(value, (bool, int, str)):
            raise ConfigError(f"{where}: session_settings.{name} must be a boolean, integer or string, got {value!r}")
        if name in _OWN_SETTINGS:
            raise ConfigError(f"{where}: session_settings.{name} is set by the seeder's own keys; use those")
    if config["log_level"] not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"{where}: log_level must be debug, info, warning or error")
    return config


def check_session_settings(wanted: Dict[str, Any], lt: Any) -> Dict[str, Any]:
    """``session_settings`` against the libtorrent at hand: every name known, every value of its type."""
    known = lt.default_settings()
    for name, value in wanted.items():
        if name not in known:
            raise ConfigError(f"session_settings.{name} is not a libtorrent {lt.__version__} setting")
        if type(value) is not type(known[name]):
            raise ConfigError(
                f"session_settings.{name} must be {_KINDS[type(known[name])]} (libtorrent's type), got {value!r}"
            )
    return dict(wanted)


def load_config(path: str) -> Dict[str, Any]:
    """Read the JSON configuration; lines starting with ``#`` (the role's managed-file header) are skipped."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = "".join(line for line in handle if not line.lstrip().startswith("#"))
        document = json.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not JSON: {exc}") from None
    return check_config(document, path)


def _request_error(message: str) -> EngineError:
    return EngineError("engine-request-invalid", message)


def _param(params: Dict[str, Any], name: str, kind: type, default: Any = None) -> Any:
    value = params.get(name, default)
    if not isinstance(value, kind):
        raise _request_error(f"parameter {name} must be {_KINDS.get(kind, kind.__name__)}, got {str(value)[:80]}")
    return value


def _info_hash_param(params: Dict[str, Any]) -> str:
    value = _param(params, "info_hash", str, "")
    if len(value) != 40 or any(char not in "0123456789abcdef" for char in value):
        raise _request_error(f"info_hash must be 40 lowercase hex characters, got {value[:80]!r}")
    return value


class Seeder:
    """The session, its torrents' resume data, and the request handlers."""

    def __init__(self, config: Dict[str, Any]) -> None:
        import libtorrent as lt  # Debian's python3-libtorrent; only the service needs it

        self.lt = lt
        self.config = config
        self.lock = threading.RLock()
        self.removed: set = set()  # info-hashes whose late resume data must not be written
        self.saving: set = set()  # info-hashes with a save_resume_data request in flight
        os.makedirs(config["state_dir"], mode=0o750, exist_ok=True)
        self.session = lt.session(self._settings(), 0)  # 0: the plugins are chosen below
        self.session.add_extension("ut_metadata")
        self.session.add_extension("smart_ban")
        if config["pex"]:
            self.session.add_extension("ut_pex")
        # Rate limits for every peer: libtorrent puts local-network peers in a class without limits.
        everyone = lt.ip_filter()
        every_address = (("0.0.0.0", "255.255.255.255"), ("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"))  # noqa: S104
        for first, last in every_address:
            everyone.add_rule(first, last, 1 << lt.session.global_peer_class_id)
        self.session.set_peer_class_filter(everyone)
        self.load_resume_data()

    def _settings(self) -> Dict[str, Any]:
        config, lt = self.config, self.lt
        categories = lt.alert.category_t
        settings = {
            "listen_interfaces": config["listen_interfaces"],
            "outgoing_interfaces": config["outgoing_interfaces"],
            "announce_ip": config["announce_ip"],
            "enable_dht": config["dht"],
            "dht_bootstrap_nodes": ",".join(config["dht_bootstrap"]),
            "enable_lsd": config["lsd"],
            "enable_upnp": False,
            "enable_natpmp": False,
            "upload_rate_limit": config["upload_rate_kib"] * 1024,
            "download_rate_limit": config["download_rate_kib"] * 1024,
            "unchoke_slots_limit": config["max_uploads_global"] or -1,
            "active_downloads": -1,
            "active_seeds": -1,
            "active_checking": 2,
            "active_limit": -1,
            "ssrf_mitigation": config["ssrf_mitigation"],
            "alert_mask": categories.error_notification | categories.storage_notification
            | categories.status_notification,
        }
        if not config["dht_bootstrap"]:
            settings["dht_bootstrap_nodes"] = ""
        settings.update(check_session_settings(config["session_settings"], lt))
        return settings

    # ------------------------------------------------------------------ resume data

    def resume_path(self, info_hash: str) -> str:
        return os.path.join(self.config["state_dir"], info_hash + RESUME_SUFFIX)

    def load_resume_data(self) -> None:
        """Re-add every torrent of ``state_dir``; with recheck_on_start, hash-check its data."""
        lt = self.lt
        for name in sorted(os.listdir(self.config["state_dir"])):
            if not name.endswith(RESUME_SUFFIX):
                continue
            path = os.path.join(self.config["state_dir"], name)
            try:
                with open(path, "rb") as handle:
                    params = lt.read_resume_data(handle.read())
                if self.config["recheck_on_start"]:
                    # Forget which pieces the resume data says it has: libtorrent then hash-checks the
                    # files as for a fresh add (reported "checking" from the start, never "seeding"
                    # on a stale bitfield), keeping the save path, flags and counters.
                    params.have_pieces = []
                    params.verified_pieces = []
                    params.unfinished_pieces = {}
                    params.flags &= ~lt.torrent_flags.seed_mode
                handle = self.session.add_torrent(params)
            except (RuntimeError, OSError) as exc:
                LOG.error("resume data %s not usable, left as it is: %s", path, exc)
                continue
            LOG.info("re-added %s from %s", self.hash_of(handle), path)

    def request_save(self, handle: Any) -> None:
        self.saving.add(self.hash_of(handle))
        handle.save_resume_data(self.lt.save_resume_flags_t.save_info_dict)

    def save_changed(self) -> None:
        with self.lock:
            for handle in self.session.get_torrents():
                if handle.is_valid() and handle.need_save_resume_data():
                    self.request_save(handle)

    def handle_alerts(self) -> None:
        lt = self.lt
        with self.lock:
            for alert in self.session.pop_alerts():
                if isinstance(alert, lt.save_resume_data_alert):
                    info_hash = str(alert.params.info_hashes.v1)
                    self.saving.discard(info_hash)
                    if info_hash in self.removed:
                        continue
                    write_atomic(self.resume_path(info_hash), lt.write_resume_data_buf(alert.params), mode=0o640)
                elif isinstance(alert, lt.save_resume_data_failed_alert):
                    with contextlib.suppress(RuntimeError):
                        self.saving.discard(self.hash_of(alert.handle))
                elif isinstance(alert, (lt.torrent_finished_alert, lt.torrent_checked_alert)) \
                        and alert.handle.is_valid():
                    self.request_save(alert.handle)
                if alert.category() & lt.alert.category_t.error_notification:
                    LOG.warning("%s", alert.message())
                elif isinstance(alert, (lt.torrent_finished_alert, lt.listen_succeeded_alert)):
                    LOG.info("%s", alert.message())

    def shutdown(self) -> None:
        """Pause, save the resume data of every torrent, wait (bounded) for it to be written."""
        with self.lock:
            self.session.pause()
            for handle in self.session.get_torrents():
                if handle.is_valid():
                    self.request_save(handle)
        deadline = time.monotonic() + SHUTDOWN_SAVE_TIMEOUT
        while self.saving and time.monotonic() < deadline:
            time.sleep(0.1)
            self.handle_alerts()
        if self.saving:
            LOG.warning("resume data of %s not saved before the deadline", ", ".join(sorted(self.saving)))

    # ------------------------------------------------------------------ requests

    @staticmethod
    def hash_of(handle: Any) -> str:
        return str(handle.info_hashes().v1)

    def find(self, info_hash: str) -> Optional[Any]:
        handle = self.session.find_torrent(self.lt.sha1_hash(bytes.fromhex(info_hash)))
        return handle if handle.is_valid() else None

    def require(self, info_hash: str) -> Any:
        handle = self.find(info_hash)
        if handle is None:
            raise EngineError("torrent-not-loaded", f"the seeder does not have {info_hash}; add it first")
        return handle

    def status_of(self, handle: Any) -> Dict[str, Any]:
        lt = self.lt
        st = handle.status()
        states = lt.torrent_status.states
        flags = st.flags
        paused = bool(flags & lt.torrent_flags.paused) and not (flags & lt.torrent_flags.auto_managed)
        message = ""
        if st.errc.value():
            state = "error"
            message = st.errc.message() + (f" ({st.error_file})" if st.error_file >= 0 else "")
        elif st.state in (states.checking_files, states.checking_resume_data, states.queued_for_checking):
            state = "checking"
        elif paused:
            state = "stopped"
        elif st.is_seeding or st.is_finished:
            state = "seeding"
        else:
            state = "downloading"
        info = handle.torrent_file()
        size = info.total_size() if info is not None else st.total_wanted
        completed = st.total_wanted_done
        uploaded = st.all_time_upload
        return {
            "info_hash": self.hash_of(handle),
            "name": st.name,
            "size_bytes": int(size),
            "completed_bytes": int(completed),
            "complete": bool(st.is_seeding or st.is_finished) and size > 0,
            "state": state,
            "down_rate": int(st.download_payload_rate),
            "up_rate": int(st.upload_payload_rate),
            "uploaded_bytes": int(uploaded),
            "ratio": round(uploaded / completed, 4) if completed else 0.0,
            "peers": int(st.num_peers),
            "message": message,
            "directory": st.save_path,
            "base_path": os.path.join(st.save_path, st.name),
        }

    def add(self, params: Dict[str, Any]) -> str:
        lt = self.lt
        try:
            data = base64.b64decode(_param(params, "torrent", str), validate=True)
        except binascii.Error:
            raise _request_error("torrent must be the .torrent in base64") from None
        directory = _param(params, "directory", str)
        if not os.path.isabs(directory) or "\0" in directory:
            raise EngineError("engine-directory-invalid", f"download directory {directory[:200]!r} must be absolute")
        directory = os.path.normpath(directory)
        start = _param(params, "start", bool, True)
        web_seeds = _param(params, "web_seeds", list, [])
        for url in web_seeds:
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise _request_error(f"web seed {str(url)[:200]!r} is not an http(s) URL")
        decoded = lt.bdecode(data)
        if decoded is None:
            raise EngineError("torrent-malformed", "the .torrent is not bencoded data")
        try:
            info = lt.torrent_info(decoded)
        except RuntimeError as exc:
            raise EngineError("torrent-malformed", f"libtorrent refused the .torrent: {exc}") from None
        info_hash = str(info.info_hashes().v1)
        with self.lock:
            current = self.find(info_hash)
            if current is not None:
                have = os.path.normpath(current.status().save_path)
                if have != directory:
                    raise EngineError(
                        "torrent-directory-conflict",
                        f"{info_hash} is already loaded with its data in {have}, not {directory}; "
                        "remove it from the engine first to move it",
                    )
                known = set(current.url_seeds())
                for url in web_seeds:
                    if url not in known:
                        current.add_url_seed(url)
                return info_hash
            add = lt.add_torrent_params()
            add.ti = info
            add.save_path = directory
            add.url_seeds = list(web_seeds)
            add.max_connections = self.config["max_peers"]
            add.max_uploads = self.config["max_uploads"]
            flags = lt.torrent_flags.default_flags & ~lt.torrent_flags.auto_managed & ~lt.torrent_flags.paused
            if self.config["super_seeding"]:
                flags |= lt.torrent_flags.super_seeding
            add.flags = flags if start else flags | lt.torrent_flags.paused
            self.removed.discard(info_hash)
            handle = self.session.add_torrent(add)
            self.request_save(handle)
        LOG.info("added %s (%s) in %s with %d web seed(s)", info_hash, info.name(), directory, len(web_seeds))
        return info_hash

    def status(self, params: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        handle = self.find(_info_hash_param(params))
        return None if handle is None else self.status_of(handle)

    def list(self, params: Dict[str, Any]) -> list:
        return [self.status_of(handle) for handle in self.session.get_torrents() if handle.is_valid()]

    def remove(self, params: Dict[str, Any]) -> bool:
        info_hash = _info_hash_param(params)
        delete_data = _param(params, "delete_data", bool, False)
        with self.lock:
            handle = self.find(info_hash)
            if handle is None:
                return False
            base_path = self.status_of(handle)["base_path"]
            self.removed.add(info_hash)
            self.session.remove_torrent(handle, self.lt.session.delete_files if delete_data else 0)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.resume_path(info_hash))
        if delete_data:  # libtorrent deletes once the storage is closed: wait for it (bounded)
            deadline = time.monotonic() + DELETE_TIMEOUT
            while os.path.lexists(base_path) and time.monotonic() < deadline:
                time.sleep(0.05)
        LOG.info("removed %s%s", info_hash, " and its data" if delete_data else "")
        return True

    def ensure_seeding(self, params: Dict[str, Any]) -> bool:
        with self.lock:
            handle = self.require(_info_hash_param(params))
            st = handle.status()
            if st.errc.value():
                handle.clear_error()
                handle.unset_flags(self.lt.torrent_flags.auto_managed)
                handle.resume()
                handle.force_recheck()
                return True
            if st.flags & self.lt.torrent_flags.paused:
                handle.unset_flags(self.lt.torrent_flags.auto_managed)
                handle.resume()
                self.request_save(handle)
                return True
            return False

    def stop(self, params: Dict[str, Any]) -> bool:
        with self.lock:
            handle = self.require(_info_hash_param(params))
            if handle.status().flags & self.lt.torrent_flags.paused:
                return False
            handle.unset_flags(self.lt.torrent_flags.auto_managed)
            handle.pause()
            self.request_save(handle)
            return True

    def recheck(self, params: Dict[str, Any]) -> None:
        self.require(_info_hash_param(params)).force_recheck()

    def announce(self, params: Dict[str, Any]) -> bool:
        """Announce to the trackers now, past their minimum interval (a restarted tracker knows no one)."""
        handle = self.require(_info_hash_param(params))
        handle.force_reannounce(0, -1, self.lt.reannounce_flags_t.ignore_min_interval)
        if self.session.is_dht_running():
            handle.force_dht_announce()
        return True

    def peers(self, params: Dict[str, Any]) -> list:
        handle = self.require(_info_hash_param(params))
        web = self.lt.peer_info.web_seed
        return [
            {"address": peer.ip[0], "port": peer.ip[1], "uploaded_bytes": peer.total_upload,
             "downloaded_bytes": peer.total_download, "web_seed": peer.connection_type == web}
            for peer in handle.get_peer_info()
        ]

    def version(self, params: Dict[str, Any]) -> Dict[str, Any]:
        current = self.session.get_settings()
        return {
            "libtorrent": self.lt.__version__,
            "listen_port": self.session.listen_port(),
            # The configured session_settings as the session holds them (what tuning changed).
            "session_settings": {name: current[name] for name in self.config["session_settings"]},
        }

    METHODS = ("add", "status", "list", "remove", "ensure_seeding", "stop", "recheck", "announce", "peers", "version")

    def dispatch(self, request: Dict[str, Any]) -> Dict[str, Any]:
        request_id = request.get("id")
        method = request.get("method")
        params = request.get("params", {})
        try:
            if method not in self.METHODS:
                raise EngineError("engine-method-unknown", f"the seeder has no method {str(method)[:80]!r}")
            if not isinstance(params, dict):
                raise _request_error("params must be a JSON object")
            with self.lock:  # one request at a time, never while the alerts are popped
                result = getattr(self, method)(params)
            return {"id": request_id, "result": result}
        except VmcloudError as exc:
            return {"id": request_id, "error": {"rule": exc.rule, "message": exc.message}}
        except Exception as exc:  # noqa: BLE001 - answered, never a dead service
            LOG.exception("request %s failed", method)
            return {"id": request_id, "error": {"rule": "engine-fault", "message": f"{type(exc).__name__}: {exc}"}}


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        seeder: Seeder = self.server.seeder  # type: ignore[attr-defined]
        deadline = time.monotonic() + REQUEST_TIMEOUT
        try:
            request = read_frame(self.request, MAX_REQUEST_BYTES, deadline)
        except FrameError as exc:
            answer = {"id": None, "error": {"rule": exc.rule, "message": exc.message}}
        except (TimeoutError, OSError):
            return
        else:
            answer = seeder.dispatch(request)
        with contextlib.suppress(OSError):
            self.request.settimeout(REQUEST_TIMEOUT)
            self.request.sendall(encode_frame(answer))


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def bind_socket(path: str, mode: int, seeder: Seeder) -> _Server:
    """Listen on ``path``; a stale socket there (a killed seeder's) is replaced, anything else refused."""
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise ConfigError(f"{path} exists and is not a socket; refusing to replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)
        else:
            raise ConfigError(f"another seeder answers on {path}")
        finally:
            probe.close()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    server = _Server(path, _Handler)
    os.chmod(path, mode)
    server.seeder = seeder  # type: ignore[attr-defined]
    return server


def serve(config: Dict[str, Any]) -> int:
    logging.basicConfig(level=config["log_level"].upper(), stream=sys.stderr,
                        format="%(levelname)s %(message)s")
    seeder = Seeder(config)
    server = bind_socket(config["socket"], int(config["socket_mode"], 8), seeder)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    LOG.info("serving on %s (libtorrent %s)", config["socket"], seeder.lt.__version__)
    next_save = time.monotonic() + config["resume_save_interval"]
    try:
        while not stopping.is_set():
            # No libtorrent call runs beside another from a second Python thread (a request thread):
            # the alerts are popped under the same lock as requests, and the loop sleeps outside it.
            # (A wait_for_alert here, beside a request's add_torrent, crashed python3-libtorrent 2.0.8.)
            stopping.wait(0.1)
            seeder.handle_alerts()
            if time.monotonic() >= next_save:
                seeder.save_changed()
                next_save = time.monotonic() + config["resume_save_interval"]
    finally:
        server.shutdown()
        server.server_close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(config["socket"])
        seeder.shutdown()
        LOG.info("stopped")
    return 0


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="vmcloud-seeder", description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--config", required=True, help="the JSON configuration file")
    parser.add_argument("--check", action="store_true", help="validate the configuration and exit")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        if args.check:
            import libtorrent as lt  # the host's python3-libtorrent: the setting names it knows

            check_session_settings(config["session_settings"], lt)
            write_line(f"{args.config}: valid")
            return 0
        return serve(config)
    except VmcloudError as exc:
        write_line(f"vmcloud-seeder: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
