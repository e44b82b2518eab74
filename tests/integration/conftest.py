# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Real BitTorrent daemons on loopback for integration tests: opentracker and rtorrent.

Everything listens on 127.0.0.1 only: the tracker (HTTP only, no UDP port), each
rtorrent's peer port, and each rtorrent's XML-RPC is a unix socket in a private
temporary directory. DHT is off. Every daemon is stopped in the fixture's
teardown, and is also sent SIGKILL by the kernel if the test process dies
(PR_SET_PDEATHSIG), so no run leaves daemons behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from ansible_collections.vmcloud.fleet.plugins.module_utils._engine import engine_for
from ansible_collections.vmcloud.fleet.plugins.module_utils._engine_rtorrent import RtorrentEngine

LOOPBACK = "127.0.0.1"
# Each rtorrent gets its own loopback address (127.0.0.2, 127.0.0.3, ...): libtorrent 0.13
# keeps one peer-list entry per IP address, so with every daemon on 127.0.0.1 a leecher
# whose tracker answer lists itself first never tries the seeder ("is self"), at random.
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
_PR_SET_PDEATHSIG = 1

# The rtorrent settings the integration tests run with; {placeholders} are per daemon.
# The rtorrent role's template starts from the same lines.
RTORRENT_RC = """\
# vmcloud.fleet integration test daemon {name}
system.daemon.set = true
session.path.set = {base}/session
directory.default.set = {base}/data
network.scgi.open_local = {base}/rpc.socket
network.xmlrpc.size_limit.set = 4M
network.bind_address.set = {address}
network.local_address.set = {address}
network.port_range.set = {port}-{port}
network.port_random.set = no
dht.mode.set = disable
protocol.pex.set = yes
trackers.use_udp.set = no
protocol.encryption.set = allow_incoming,try_outgoing,enable_retry
pieces.hash.on_completion.set = yes
log.open_file = "rtorrent", {base}/rtorrent.log
log.add_output = "info", "rtorrent"
"""


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(
            f"{tool} is not installed; the engine integration tests run the real daemon. "
            f"`make test` installs it (Debian package {tool})"
        )
    return path


def free_port(address: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here, not between fork and exec


def _die_with_parent() -> None:
    """In the child: ask the kernel for SIGKILL when the test process goes away."""
    with contextlib.suppress(OSError, AttributeError):
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def start_daemon(argv: list[str], log_path: str, cwd: str, env: dict | None = None) -> subprocess.Popen:
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed after Popen
    try:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    finally:
        log.close()


def stop_daemon(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT)


def port_open(port: int, address: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((address, port)) == 0


def _tracker_query(fields: dict) -> str:
    """A tracker query string: every reserved byte as %XX. (urlencode's default writes a space as
    '+', which opentracker does not decode: an info-hash holding 0x20 became another torrent's.)"""
    return urllib.parse.urlencode(fields, quote_via=urllib.parse.quote)


@dataclass
class Tracker:
    """opentracker in whitelist mode, HTTP on loopback."""

    directory: str
    port: int
    process: subprocess.Popen | None = None
    allowed: list[str] = field(default_factory=list)

    @property
    def announce(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/announce"

    def start(self) -> None:
        binary = require("opentracker")
        # As root, opentracker chroots into its directory (-d, default ".") and switches to
        # the -u user ('nobody') itself; that credential change would clear the parent-death
        # signal. So it is started as 'nobody' by setpriv, which sets the signal after the
        # switch; opentracker then skips the chroot (EPERM) and reads the whitelist from its
        # working directory, which must be open to 'nobody'.
        os.chmod(self.directory, 0o755)  # noqa: S103 - the tracker's own directory, public data
        self._write_whitelist()
        # -p without -P: TCP (HTTP) only, no UDP port.
        argv = [binary, "-i", LOOPBACK, "-p", str(self.port), "-w", "whitelist"]
        if os.getuid() == 0:
            drop = ["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--pdeathsig=KILL"]
            argv = [require("setpriv"), *drop, *argv]
        self.process = start_daemon(argv, os.path.join(self.directory, "opentracker.log"), cwd=self.directory)
        wait_until(lambda: port_open(self.port) or self.process.poll() is not None, START_TIMEOUT, "opentracker")
        if self.process.poll() is not None:
            raise RuntimeError(f"opentracker exited: {self.log()}")

    def _write_whitelist(self) -> None:
        path = os.path.join(self.directory, "whitelist")
        with open(path, "w", encoding="ascii") as handle:
            handle.writelines(f"{info_hash}\n" for info_hash in self.allowed)
        os.chmod(path, 0o644)

    def allow(self, info_hash: str) -> None:
        """Whitelist an info-hash and wait until the tracker accepts announces for it."""
        self.allowed.append(info_hash)
        self._write_whitelist()
        self.process.send_signal(signal.SIGHUP)
        wait_until(lambda: self.accepts(info_hash), START_TIMEOUT, f"opentracker to accept {info_hash}", 0.2)

    def accepts(self, info_hash: str) -> bool:
        """Whether the tracker takes announces for ``info_hash`` now (its whitelist is loaded).

        opentracker checks the whitelist on every event but 'stopped', so the probe announces a
        leecher ('started', left=1) and then withdraws it ('stopped'): no seed or leecher stays."""

        def probe(event: str) -> bytes:
            query = _tracker_query(
                {
                    "info_hash": bytes.fromhex(info_hash),
                    "peer_id": b"-VMCLOUD-PROBE-00000",
                    "port": 1,
                    "uploaded": 0,
                    "downloaded": 0,
                    "left": 1,
                    "event": event,
                    "compact": 1,
                }
            )
            with urllib.request.urlopen(f"{self.announce}?{query}", timeout=2) as answer:  # noqa: S310 - loopback
                return answer.read()

        try:
            if b"failure reason" in probe("started"):
                return False
            probe("stopped")
        except (urllib.error.URLError, OSError):
            return False
        return True

    def scrape(self, info_hash: str) -> dict:
        """The tracker's scrape entry for ``info_hash`` (``complete``: seeds, ``incomplete``: leechers)."""
        import fastbencode

        query = _tracker_query({"info_hash": bytes.fromhex(info_hash)})
        scrape = self.announce.rsplit("/", 1)[0] + "/scrape"
        with urllib.request.urlopen(f"{scrape}?{query}", timeout=2) as answer:  # noqa: S310 - loopback
            files = fastbencode.bdecode(answer.read()).get(b"files", {})
        return files.get(bytes.fromhex(info_hash), {})

    def seeders(self, info_hash: str) -> int:
        """How many seeds the tracker knows for ``info_hash`` (its scrape answer's ``complete``)."""
        return int(self.scrape(info_hash).get(b"complete", 0))

    def log(self) -> str:
        with open(os.path.join(self.directory, "opentracker.log"), errors="replace") as handle:
            return handle.read()[-2000:]

    def stop(self) -> None:
        if self.process is not None:
            stop_daemon(self.process)


@dataclass
class Rtorrent:
    """One headless rtorrent with its own session, data directory, SCGI socket and port."""

    name: str
    base: str
    address: str
    port: int
    process: subprocess.Popen | None = None

    @property
    def socket(self) -> str:
        return os.path.join(self.base, "rpc.socket")

    @property
    def data(self) -> str:
        return os.path.join(self.base, "data")

    @property
    def rc(self) -> str:
        return os.path.join(self.base, "rtorrent.rc")

    def engine(self, timeout: float = 10.0) -> RtorrentEngine:
        engine = engine_for("rtorrent", socket=self.socket, timeout=timeout)
        assert isinstance(engine, RtorrentEngine)
        return engine

    def start(self) -> None:
        binary = require("rtorrent")
        for sub in ("session", "data"):
            os.makedirs(os.path.join(self.base, sub), exist_ok=True)
        with open(self.rc, "w", encoding="utf-8") as handle:
            handle.write(RTORRENT_RC.format(name=self.name, base=self.base, address=self.address, port=self.port))
        # -n: no ~/.rtorrent.rc; HOME points into the test directory anyway.
        env = {"HOME": self.base, "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "dumb"}
        self.process = start_daemon(
            [binary, "-n", "-o", f"import={self.rc}"], os.path.join(self.base, "stdout.log"), self.base, env
        )
        wait_until(self._answers, START_TIMEOUT, f"rtorrent {self.name} on {self.socket}")

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"rtorrent {self.name} exited with {self.process.returncode}: {self.log()}")
        if not os.path.exists(self.socket):
            return False
        try:
            return bool(self.engine(timeout=2).call("system.client_version"))
        except Exception:  # not up yet
            return False

    def log(self) -> str:
        text = ""
        for name in ("stdout.log", "rtorrent.log"):
            path = os.path.join(self.base, name)
            if os.path.exists(path):
                with open(path, errors="replace") as handle:
                    text += f"--- {name}\n" + handle.read()[-3000:]
        return text

    def stop(self) -> None:
        if self.process is not None:
            stop_daemon(self.process)


@pytest.fixture
def short_tmp() -> Iterator[str]:
    """A short temporary directory (unix socket paths are limited to 107 bytes)."""
    path = tempfile.mkdtemp(prefix="vmc-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def tracker(short_tmp) -> Iterator[Tracker]:
    directory = os.path.join(short_tmp, "tracker")
    os.makedirs(directory)
    tracker = Tracker(directory=directory, port=free_port())
    try:
        tracker.start()
        yield tracker
    finally:
        tracker.stop()


@pytest.fixture
def rtorrent_factory(short_tmp) -> Iterator[Callable[[str], Rtorrent]]:
    started: list[Rtorrent] = []

    def make(name: str) -> Rtorrent:
        address = f"127.0.0.{len(started) + 2}"
        daemon = Rtorrent(name=name, base=os.path.join(short_tmp, name), address=address, port=free_port(address))
        started.append(daemon)
        daemon.start()
        return daemon

    try:
        yield make
    finally:
        for daemon in reversed(started):
            daemon.stop()


@pytest.fixture
def seeder(rtorrent_factory) -> Rtorrent:
    return rtorrent_factory("seeder")


@pytest.fixture
def leecher(rtorrent_factory) -> Rtorrent:
    return rtorrent_factory("leecher")


# --------------------------------------------------------------------------- libtorrent seeder

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with python3-libtorrent
COLLECTIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "collections")


def require_libtorrent() -> str:
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import libtorrent"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.fail("python3-libtorrent is not installed; the libtorrent engine tests run the real seeder. "
                    "`make test` installs it (Debian package python3-libtorrent)")
    return SYSTEM_PYTHON


@dataclass
class LibtorrentSeeder:
    """One vmcloud seeder service (a libtorrent session) with its own socket, state and address."""

    name: str
    base: str
    address: str
    settings: dict = field(default_factory=dict)
    process: subprocess.Popen | None = None

    @property
    def socket(self) -> str:
        return os.path.join(self.base, "seeder.socket")

    @property
    def data(self) -> str:
        return os.path.join(self.base, "data")

    @property
    def state_dir(self) -> str:
        return os.path.join(self.base, "state")

    @property
    def config_path(self) -> str:
        return os.path.join(self.base, "seeder.json")

    def config(self) -> dict:
        config = {
            "socket": self.socket,
            "state_dir": self.state_dir,
            "listen_interfaces": f"{self.address}:{free_port(self.address)}",
            "outgoing_interfaces": self.address,
            "dht": False,
            "lsd": False,
            "resume_save_interval": 1,
            "log_level": "debug",
        }
        config.update(self.settings)
        return config

    def engine(self, timeout: float = 10.0):
        return engine_for("libtorrent", socket=self.socket, timeout=timeout)

    def start(self) -> None:
        python = require_libtorrent()
        os.makedirs(self.data, exist_ok=True)
        with open(self.config_path, "w", encoding="utf-8") as handle:
            json.dump(self.config(), handle)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": COLLECTIONS}
        argv = [python, "-m", "ansible_collections.vmcloud.fleet.plugins.module_utils._seeder",
                "--config", self.config_path]
        self.process = start_daemon(argv, os.path.join(self.base, "seeder.log"), self.base, env)
        wait_until(self._answers, START_TIMEOUT, f"the seeder {self.name} on {self.socket}")

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"seeder {self.name} exited with {self.process.returncode}: {self.log()}")
        if not os.path.exists(self.socket):
            return False
        try:
            return bool(self.engine(timeout=2).version())
        except Exception:  # not up yet
            return False

    def log(self) -> str:
        path = os.path.join(self.base, "seeder.log")
        if not os.path.exists(path):
            return ""
        with open(path, errors="replace") as handle:
            running = self.process is None or self.process.poll() is None
            state = "running" if running else f"exited {self.process.returncode}"
            return f"--- {self.name} seeder.log ({state})\n" + handle.read()[-4000:]

    def stop(self) -> None:
        if self.process is not None:
            stop_daemon(self.process)


@pytest.fixture
def libtorrent_factory(short_tmp) -> Iterator[Callable[..., LibtorrentSeeder]]:
    started: list[LibtorrentSeeder] = []

    def make(name: str, **settings) -> LibtorrentSeeder:
        daemon = LibtorrentSeeder(name=name, base=os.path.join(short_tmp, name),
                                  address=f"127.0.0.{100 + len(started)}", settings=settings)
        started.append(daemon)
        daemon.start()
        return daemon

    try:
        yield make
    finally:
        for daemon in reversed(started):
            daemon.stop()


REPO = Path(__file__).resolve().parents[2]
PLAYBOOK_BIN = Path(sys.executable).parent / "ansible-playbook"


def run_local_play(directory: Path, play: list, inventory: dict, check: bool = True) -> subprocess.CompletedProcess:
    """Write ``play`` and ``inventory`` (YAML) into ``directory`` and run ansible-playbook on them from the
    checkout, with its ansible.cfg (no colour); with ``check``, a failed run fails the test with its output."""
    (directory / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    (directory / "inventory.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    done = subprocess.run(
        [str(PLAYBOOK_BIN) if PLAYBOOK_BIN.exists() else "ansible-playbook", "-i", str(directory / "inventory.yml"),
         str(directory / "play.yml")],
        cwd=REPO, env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1"),
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert not check or done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done
