# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The attack suite's world: a hostile catalogue on loopback, a PKI, a hypervisor's directories,
and runners for the real module (direct call or the ``ansible`` CLI) and the real ``imgdist``.

Black box, as TUF's conformance tests are: the catalogue server (``Catalogue``, a real HTTP server
on 127.0.0.1, with a twin on 127.0.0.2 for redirects to another address) serves whatever a test
puts at a path: bytes, a redirect, a body that never ends, one that trickles. Between runs a test
asserts the outcome, the rule the message names, and that the host's trusted state (``state_dir``)
and store are byte for byte what they were (``snapshot``: paths, modes, content hashes).

``imgdist`` runs as a subprocess under the hypervisor venv (Debian bookworm's libraries, no
ansible), through a launcher like the one the vmic_agent role installs (``roles/vmic_agent/
templates/imgdist.j2``). Modules run in-process through AnsibleModule (fast) or through
``ansible localhost -m`` with the checkout's ansible.cfg (a few cases, and every case that could
hang: a subprocess has a timeout).

The pull path uses real daemons on loopback (opentracker, a seeding rtorrent, the host's rtorrent),
started once per session with the integration suite's classes.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import io
import itertools
import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest
import yaml

from ansible_collections.vmcloud.fleet.plugins.module_utils._approvals_record import RECORD_NAME
from ansible_collections.vmcloud.fleet.plugins.module_utils._metrics import LAST_SYNC_NAME
from ansible_collections.vmcloud.fleet.plugins.module_utils._store import ImageStore
from tests.integration.conftest import Rtorrent, Tracker, free_port
from tests.unit import index_factory as factory
from tests.unit import pki
from tests.unit.sync_world import World

REPO = Path(__file__).resolve().parents[2]
HYPERVISOR_PYTHON = REPO / ".venv-hypervisor" / "bin" / "python"
CONTROLLER_BIN = REPO / ".venv" / "bin"
RUN_TIMEOUT = 45  # seconds any one run of imgdist or ansible may take before the test fails
WAIT = 30  # seconds for a real download on loopback

# ``imgdist`` exit statuses (plugins/module_utils/_imgdist.py EXIT_CODES), spelled out: black box.
EXIT_OK, EXIT_IMAGES_FAILED, EXIT_INDEX_REFUSED, EXIT_CONFIG, EXIT_ERROR = 0, 1, 2, 4, 5


def utc(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


# --------------------------------------------------------------------------- the hostile catalogue


class Route:
    """What the catalogue answers at one path; ``serve`` writes the whole response."""

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError


@dataclass
class Static(Route):
    body: bytes
    content_type: str = "application/yaml"
    status: int = 200

    def serve(self, handler):
        handler.send_response(self.status)
        handler.send_header("Content-Type", self.content_type)
        handler.send_header("Content-Length", str(len(self.body)))
        handler.end_headers()
        handler.wfile.write(self.body)


@dataclass
class Redirect(Route):
    location: str
    status: int = 302

    def serve(self, handler):
        handler.send_response(self.status)
        handler.send_header("Location", self.location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()


@dataclass
class Forever(Route):
    """A body that never ends (no Content-Length), as fast as the client reads it."""

    chunk: bytes = b"# " + b"x" * 65533 + b"\n"
    limit: int = 1 << 30  # the server gives up after 1 GiB

    def serve(self, handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/yaml")
        handler.end_headers()
        sent = 0
        with contextlib.suppress(OSError):
            while sent < self.limit:
                handler.wfile.write(self.chunk)
                sent += len(self.chunk)


@dataclass
class Stall(Route):
    """One byte a second, each well inside any per-read timeout: only an overall deadline ends it."""

    body: bytes
    interval: float = 1.0
    limit: float = 150.0  # the server gives up after this many seconds

    def serve(self, handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/yaml")
        handler.send_header("Content-Length", str(len(self.body) * 100))
        handler.end_headers()
        started = time.monotonic()
        with contextlib.suppress(OSError):
            for byte in itertools.cycle(self.body):
                if time.monotonic() - started > self.limit:
                    return
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                time.sleep(self.interval)


@dataclass
class Raw(Route):
    """Bytes written as they are, status line and headers included: protocol abuse."""

    data: bytes

    def serve(self, handler):
        with contextlib.suppress(OSError):
            handler.wfile.write(self.data)
            handler.wfile.flush()
        handler.close_connection = True


@dataclass
class Directory(Route):
    """Files under a directory (the origin of a ``World``)."""

    root: Path

    def serve(self, handler):
        raise NotImplementedError  # looked up by prefix in Catalogue.answer


class Catalogue:
    """The routes, shared by a server on 127.0.0.1 and its twin on 127.0.0.2 ("another address")."""

    def __init__(self) -> None:
        self.routes: Dict[str, Route] = {}
        self.directories: Dict[str, Path] = {}
        self.requests: List[tuple] = []
        self.lock = threading.Lock()
        self.servers = [self._server("127.0.0.1"), self._server("127.0.0.2")]
        self.threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in self.servers]
        for thread in self.threads:
            thread.start()

    def _server(self, address: str) -> ThreadingHTTPServer:
        catalogue = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self):  # noqa: N802 - the http.server interface
                catalogue.answer(self)

            def log_message(self, format, *args):  # noqa: A002 - the base class's name
                return

        server = ThreadingHTTPServer((address, 0), Handler)
        server.daemon_threads = True
        server.block_on_close = False
        return server

    def base(self, twin: bool = False) -> str:
        host, port = self.servers[1 if twin else 0].server_address[:2]
        return f"http://{host}:{port}"

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.split("?", 1)[0]
        host = handler.server.server_address[0]
        with self.lock:
            self.requests.append((host, path))
            route = self.routes.get(f"{host}{path}") or self.routes.get(path)
            directory = next((root for prefix, root in self.directories.items() if path.startswith(prefix)), None)
        if route is None and directory is not None:
            prefix = next(prefix for prefix in self.directories if path.startswith(prefix))
            candidate = (directory / path[len(prefix):]).resolve()
            if candidate.is_file() and directory.resolve() in candidate.parents:
                route = Static(candidate.read_bytes(), "application/octet-stream")
        (route or Static(b"not found\n", "text/plain", 404)).serve(handler)

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="session")
def catalogue() -> Iterator[Catalogue]:
    served = Catalogue()
    try:
        yield served
    finally:
        served.close()


_SITES = itertools.count(1)


class Site:
    """One test's corner of the catalogue: paths under ``/t<N>/``, dropped when the test ends."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self.prefix = f"/t{next(_SITES)}/"
        self.paths: List[str] = []

    def url(self, name: str, twin: bool = False) -> str:
        return f"{self.catalogue.base(twin)}{self.prefix}{name}"

    @property
    def index_url(self) -> str:
        return self.url("index.yaml")

    def serve(self, name: str, route: Any, twin_only: bool = False) -> str:
        if isinstance(route, bytes):
            route = Static(route)
        key = self.prefix + name
        if twin_only:
            key = self.catalogue.servers[1].server_address[0] + key
        with self.catalogue.lock:
            self.catalogue.routes[key] = route
        self.paths.append(key)
        return self.url(name, twin=twin_only)

    def serve_directory(self, root: Path) -> None:
        with self.catalogue.lock:
            self.catalogue.directories[self.prefix] = root

    def requested(self, name: str) -> int:
        with self.catalogue.lock:
            return sum(1 for _unused, path in self.catalogue.requests if path == self.prefix + name)

    def close(self) -> None:
        with self.catalogue.lock:
            for key in self.paths:
                self.catalogue.routes.pop(key, None)
            self.catalogue.directories.pop(self.prefix, None)


@pytest.fixture
def site(catalogue) -> Iterator[Site]:
    corner = Site(catalogue)
    try:
        yield corner
    finally:
        corner.close()


# --------------------------------------------------------------------------- the PKI


class Pki:
    """Every identity the attacks need, valid around the real clock (imgdist has no reference time)."""

    def __init__(self, root: Path) -> None:
        start, end = now() - datetime.timedelta(days=30), now() + datetime.timedelta(days=365)
        self.ca = pki.make_ca("attack CA", not_before=start, not_after=end)
        self.endorser = pki.make_endorser(self.ca, "lab-endorser", key_type="ec", not_before=start, not_after=end)
        self.second = pki.make_endorser(self.ca, "second-endorser", key_type="ed25519", not_before=start,
                                        not_after=end)
        # The same key in a second certificate (same subject, new serial): one endorser, not two.
        self.reissued = pki.make_endorser(self.ca, "lab-endorser", key=self.endorser.key, not_before=start,
                                          not_after=end)
        self.intruder = pki.make_endorser(self.ca, "intruder", key_type="ec", not_before=start, not_after=end)
        self.expired = pki.make_endorser(self.ca, "lab-endorser", key_type="ec", not_before=start,
                                         not_after=now() - datetime.timedelta(days=1))
        self.revoked = pki.make_endorser(self.ca, "lab-endorser", key_type="ec", not_before=start, not_after=end)
        self.crl = pki.make_crl(self.ca, [self.revoked.cert.serial_number],
                                last_update=now() - datetime.timedelta(days=1),
                                next_update=now() + datetime.timedelta(days=30))
        # Another CA of the site's bundle (an IGTF-style anchor directory) minting the pinned DN.
        self.other_ca = pki.make_ca("other bundle CA", not_before=start, not_after=end)
        self.other_minted = pki.make_endorser(self.other_ca, "lab-endorser", key_type="ec", not_before=start,
                                              not_after=end)
        # ... or minting an intermediate that carries the pinned issuer's name.
        self.fake_issuer = pki.make_intermediate(self.other_ca, "attack CA")
        self.fake_issued = pki.make_endorser(self.fake_issuer, "lab-endorser", key_type="ec", not_before=start,
                                             not_after=end)
        # A CA nobody trusts.
        self.rogue_ca = pki.make_ca("attack CA", not_before=start, not_after=end)  # same name, other key
        self.rogue = pki.make_endorser(self.rogue_ca, "lab-endorser", key_type="ec", not_before=start,
                                       not_after=end)

        root.mkdir(parents=True, exist_ok=True)
        self.ca_pem = root / "ca.pem"
        self.ca_pem.write_bytes(pki.pem(self.ca.cert))
        self.bundle_pem = root / "bundle.pem"
        self.bundle_pem.write_bytes(pki.pem(self.ca.cert) + pki.pem(self.other_ca.cert))
        self.crl_pem = root / "ca.crl"
        self.crl_pem.write_bytes(pki.pem(self.crl))

    @staticmethod
    def dn(identity) -> str:
        return identity.cert.subject.rfc4514_string()

    def pin(self) -> List[Dict[str, str]]:
        """The recommended pin: the endorser's subject and its issuing CA."""
        return [{"subject": self.dn(self.endorser), "issuer": self.dn(self.ca)}]


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


# --------------------------------------------------------------------------- the hypervisor


def snapshot(root: Path) -> Dict[str, tuple]:
    """Every path under ``root`` with its mode and content hash (or link target): the trusted state."""
    tree: Dict[str, tuple] = {}
    if not os.path.lexists(root):
        return tree
    for directory, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            path = os.path.join(directory, name)
            st = os.lstat(path)
            relative = os.path.relpath(path, root)
            if stat.S_ISLNK(st.st_mode):
                tree[relative] = (st.st_mode, "->" + os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as handle:
                    tree[relative] = (st.st_mode, hashlib.sha256(handle.read()).hexdigest())
            else:
                tree[relative] = (st.st_mode, None)
    return tree


def _imgdist_key(option: str) -> str:
    return {"timeout": "fetch_timeout", "approved": "approved_images", "blocked": "blocked_images",
            "src": "index_url", "download_timeout": "timeout"}.get(option, option)


class Host:
    """A hypervisor's directories, its trust configuration, and the runs against them."""

    def __init__(self, root: Path, keys: Pki, site: Site) -> None:
        self.root = root
        self.keys = keys
        self.site = site
        self.dir = root / "host"
        for name in ("index", "images", "staging", "torrents"):
            (self.dir / name).mkdir(parents=True, exist_ok=True)
        self.socket = str(root / "no-engine.socket")  # index attacks never reach the engine
        self.trust: Dict[str, Any] = {"trust_anchors": [str(keys.ca_pem)]}
        self.approved: Optional[List[Any]] = []

    state_dir = property(lambda self: str(self.dir / "index"))
    store_dir = property(lambda self: str(self.dir / "images"))
    staging_dir = property(lambda self: str(self.dir / "staging"))
    torrent_dir = property(lambda self: str(self.dir / "torrents"))
    verified_index = property(lambda self: str(self.dir / "index" / "verified-index.yaml"))

    def snapshot(self) -> Dict[str, tuple]:
        """The host's trusted state and store. The approvals record is left out: a real image_sync run
        writes it from the operator's options (never from served bytes), whatever the index brings. So is
        imgdist's last-sync.json: every sync records its outcome there (the rule that refused), trusted by none."""
        tree = snapshot(self.dir)
        tree.pop(os.path.join("index", RECORD_NAME), None)
        tree.pop(os.path.join("index", LAST_SYNC_NAME), None)
        return tree

    def store(self) -> ImageStore:
        return ImageStore(self.store_dir)

    # ---------------------------------------------------------------- options

    def options(self, **overrides: Any) -> Dict[str, Any]:
        """The options of the pull path, in the modules' argument names."""
        options = {"src": self.site.index_url, "state_dir": self.state_dir, **self.trust}
        options.update(overrides)
        return {key: value for key, value in options.items() if value is not None}

    def sync_options(self, **overrides: Any) -> Dict[str, Any]:
        options = self.options(store_dir=self.store_dir, staging_dir=self.staging_dir,
                               torrent_dir=self.torrent_dir, approved=self.approved, host="hv1",
                               engine="rtorrent", socket=self.socket, download_timeout=WAIT, poll_interval=0.2)
        options.update(overrides)
        return {key: value for key, value in options.items() if value is not None}

    def imgdist_config(self, omit: tuple = (), **overrides: Any) -> str:
        config = {_imgdist_key(key): value for key, value in self.sync_options(**overrides).items()}
        config["disabled_flag"] = str(self.root / "disabled")
        for key in omit:
            config.pop(key, None)
        path = self.root / "imgdist.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=True))
        return str(path)

    # ---------------------------------------------------------------- runs

    def imgdist(self, *argv: str, config: Optional[str] = None, run_timeout: float = RUN_TIMEOUT,
                **overrides: Any) -> ImgdistRun:
        return run_imgdist(config or self.imgdist_config(**overrides), *argv, timeout=run_timeout)

    def module(self, name: str, **args: Any) -> Dict[str, Any]:
        """The module's main(), in-process (AnsibleModule reads the arguments, exit_json prints)."""
        return run_module(name, args)

    def ansible(self, name: str, run_timeout: float = RUN_TIMEOUT, **args: Any) -> Dict[str, Any]:
        return run_ansible(name, args, timeout=run_timeout)

    def image_index(self, cli: bool = False, **overrides: Any) -> Dict[str, Any]:
        args = self.options(dest=self.verified_index, **overrides)
        return self.ansible("image_index", **args) if cli else self.module("image_index", **args)


@pytest.fixture
def host(tmp_path, keys, site) -> Host:
    return Host(tmp_path, keys, site)


# --------------------------------------------------------------------------- runners


@dataclass
class ImgdistRun:
    code: int
    out: str
    err: str

    @property
    def result(self) -> Dict[str, Any]:
        return json.loads(self.out)


_LAUNCHER: Dict[str, str] = {}


def imgdist_launcher(directory: Path) -> str:
    """The launcher the vmic_agent role installs (templates/imgdist.j2), pointing at the checkout."""
    if "path" not in _LAUNCHER:
        path = directory / "imgdist"
        library = str(REPO / "collections")
        path.write_text(
            f"#!{HYPERVISOR_PYTHON} -I\n"
            "import sys\n"
            f"sys.path.insert(0, {library!r})\n"
            "from ansible_collections.vmcloud.fleet.plugins.module_utils._imgdist import main  # noqa: E402\n"
            "if __name__ == '__main__':\n"
            "    sys.exit(main())\n"
        )
        path.chmod(0o755)
        _LAUNCHER["path"] = str(path)
    return _LAUNCHER["path"]


@pytest.fixture(scope="session", autouse=True)
def _launcher(tmp_path_factory) -> str:
    return imgdist_launcher(tmp_path_factory.mktemp("bin"))


def run_bounded(argv: List[str], timeout: float, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run ``argv`` in its own process group; when it outlives ``timeout``, kill the whole group
    (``ansible`` forks the module: killing the CLI alone would leave the module running)."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, **kwargs)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise AssertionError(f"{argv[0]} did not end within {timeout} s: {' '.join(argv[1:])[:300]}") from None
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


def run_imgdist(config: str, *argv: str, timeout: float = RUN_TIMEOUT) -> ImgdistRun:
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": os.path.dirname(config)}
    done = run_bounded([str(HYPERVISOR_PYTHON), "-I", _LAUNCHER["path"], "-c", config, *argv], timeout, env=env)
    assert "Traceback" not in done.stderr, done.stderr
    return ImgdistRun(done.returncode, done.stdout, done.stderr)


def run_module(name: str, args: Dict[str, Any]) -> Dict[str, Any]:
    import importlib

    from ansible.module_utils.testing import patch_module_args

    module = importlib.import_module(f"ansible_collections.vmcloud.fleet.plugins.modules.{name}")
    out = io.StringIO()
    with patch_module_args(args), contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        module.main()
    return json.loads(out.getvalue())


ANSIBLE_ENV = {
    "PATH": f"{CONTROLLER_BIN}:/usr/bin:/bin",
    "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
    "ANSIBLE_STDOUT_CALLBACK": "json",
    "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
    "ANSIBLE_NOCOLOR": "1",
    "LANG": "C.UTF-8",
}


def run_ansible(name: str, args: Dict[str, Any], timeout: float = RUN_TIMEOUT) -> Dict[str, Any]:
    """``ansible localhost -m vmcloud.fleet.<name>`` from the checkout, arguments as JSON."""
    env = dict(ANSIBLE_ENV, HOME=os.environ.get("HOME", "/root"))
    done = run_bounded(
        [str(CONTROLLER_BIN / "ansible"), "localhost", "-m", f"vmcloud.fleet.{name}", "-a", json.dumps(args)],
        timeout, cwd=REPO, env=env,
    )
    report = json.loads(done.stdout)
    return report["plays"][0]["tasks"][0]["hosts"]["localhost"]


# --------------------------------------------------------------------------- assertions


def assert_module_refused(result: Dict[str, Any], rule: str) -> None:
    assert result.get("failed") is True, result
    assert result["rule"] == rule, result["msg"]
    assert result["msg"].startswith(f"{rule}: "), result["msg"]
    assert "Traceback" not in result["msg"], result


def assert_imgdist_refused(run: ImgdistRun, rule: str, code: int = EXIT_INDEX_REFUSED) -> None:
    assert run.code == code, run
    assert run.err.startswith(f"imgdist: {rule}: "), run.err
    assert len(run.err.splitlines()) == 1, run.err
    assert run.result["rule"] == rule and run.result["ok"] is False


# --------------------------------------------------------------------------- index documents


class Publisher:
    """Signed index documents for one site's URL, as the endorsers (or an attacker) make them."""

    def __init__(self, keys: Pki, site: Site) -> None:
        self.keys = keys
        self.site = site

    def signed(self, version: int, images: List[Dict[str, Any]], **overrides: Any) -> Dict[str, Any]:
        fields = {"version": version, "url": self.site.index_url,
                  "created": utc(now() - datetime.timedelta(hours=1)),
                  "expires": utc(now() + datetime.timedelta(days=30))}
        fields.update(overrides)
        return factory.signed_index(images, **fields)

    def document(self, version: int, images: List[Dict[str, Any]], signers: Optional[List[Any]] = None,
                 chains: tuple = (), **overrides: Any) -> bytes:
        signers = signers if signers is not None else [self.keys.endorser]
        return factory.document(self.signed(version, images, **overrides), signers, chains=chains)


@dataclass
class Trusted:
    """A host that accepted version 5 of the index and holds one image: the state attacks must not move."""

    host: Host
    site: Site
    publisher: Publisher
    images: List[Dict[str, Any]]
    document: bytes

    def serve(self, body: Any) -> None:
        self.site.serve("index.yaml", body)

    def refused_everywhere(self, rule: str, cli: bool = False, module_args: Optional[Dict[str, Any]] = None,
                           imgdist_args: Optional[Dict[str, Any]] = None, code: int = EXIT_INDEX_REFUSED,
                           timeout: float = RUN_TIMEOUT) -> tuple:
        """The module and ``imgdist sync`` both refuse with ``rule`` and change nothing on the host."""
        before = self.host.snapshot()
        if cli:
            result = self.host.ansible("image_index", run_timeout=timeout,
                                       **self.host.options(dest=self.host.verified_index, **(module_args or {})))
        else:
            result = self.host.image_index(**(module_args or {}))
        assert_module_refused(result, rule)
        assert self.host.snapshot() == before
        run = self.host.imgdist("sync", "--json", run_timeout=timeout, **(imgdist_args or module_args or {}))
        assert_imgdist_refused(run, rule, code)
        assert self.host.snapshot() == before
        return result, run


def content_entry(name: str, version: int, content: bytes, **overrides: Any) -> Dict[str, Any]:
    """An index entry whose sha256 and size are those of ``content`` (an uncompressed image)."""
    entry = factory.image(0, family=name, version=version, file=f"{name}_{version}.img", size=len(content),
                          sha256=hashlib.sha256(content).hexdigest(), compressed=False, web_seeds=[])
    entry.update(overrides)
    return entry


@pytest.fixture
def publisher(keys, site) -> Publisher:
    return Publisher(keys, site)


@pytest.fixture
def trusted(host, site, publisher, tmp_path) -> Trusted:
    """Version 5 accepted (mark and verified copy written), one approved image promoted, a sync lock."""
    content = os.urandom(4096)
    image = content_entry("cernvm", 5, content)
    document = publisher.document(5, [image])
    site.serve("index.yaml", document)
    accepted = host.image_index()
    assert accepted.get("failed") is not True and accepted["version"] == 5, accepted
    staged = tmp_path / "staged.img"
    staged.write_bytes(content)
    host.store().promote(image, str(staged))
    Path(host.state_dir, "sync.lock").touch()
    host.approved = [{"uuid": image["uuid"]}]
    return Trusted(host, site, publisher, [image], document)


# --------------------------------------------------------------------------- the pull path: real daemons


@dataclass
class Swarm:
    tracker: Tracker
    seeder: Rtorrent
    leecher: Rtorrent


@pytest.fixture(scope="session")
def swarm() -> Iterator[Swarm]:
    """opentracker, an origin rtorrent (seeder) and the hypervisor's rtorrent, on loopback."""
    base = tempfile.mkdtemp(prefix="vmca-")
    started: List[Any] = []
    try:
        os.makedirs(os.path.join(base, "tracker"))
        tracker = Tracker(directory=os.path.join(base, "tracker"), port=free_port())
        started.append(tracker)
        tracker.start()
        daemons = []
        for number, name in enumerate(("seeder", "leecher"), start=2):
            address = f"127.0.0.{number + 10}"
            daemon = Rtorrent(name=name, base=os.path.join(base, name), address=address, port=free_port(address))
            started.append(daemon)
            daemon.start()
            daemons.append(daemon)
        yield Swarm(tracker, *daemons)
    finally:
        for daemon in reversed(started):
            daemon.stop()
        shutil.rmtree(base, ignore_errors=True)


class Fleet:
    """One test's published images (seeded for real) and a host whose rtorrent fetches them."""

    def __init__(self, host: Host, site: Site, swarm: Swarm, keys: Pki, root: Path) -> None:
        self.host = host
        self.site = site
        self.swarm = swarm
        self.world = World(root, base_url=site.url("").rstrip("/"), announce=swarm.tracker.announce)
        self.world.endorser = keys.endorser
        self.publisher = Publisher(keys, site)
        site.serve_directory(root / "origin")
        host.socket = swarm.leecher.socket

    def publish(self, name: str, version: int, seed: bool = True, world: Optional[World] = None, **kwargs: Any):
        published = (world or self.world).publish(name, version, **kwargs)
        if seed:
            self.swarm.tracker.allow(published.info_hash)
            origin = self.swarm.seeder.engine()
            origin.add(published.torrent, str(published.path.parent))
            assert origin.wait_complete(published.info_hash, timeout=WAIT, poll_interval=0.1).state == "seeding"
        return published

    def index(self, version: int, *published, **overrides: Any) -> bytes:
        document = self.publisher.document(version, [p.entry for p in published], **overrides)
        self.site.serve("index.yaml", document)
        return document

    def engine_view(self) -> List[tuple]:
        """The host engine's torrents that download into this host's staging directory."""
        staging = os.path.normpath(self.host.staging_dir)
        return sorted((s.info_hash, s.complete) for s in self.swarm.leecher.engine().list()
                      if os.path.dirname(os.path.normpath(s.directory)) == staging)

    def sync(self, approved: Optional[List[Any]] = None, **overrides: Any) -> ImgdistRun:
        if approved is not None:
            self.host.approved = approved
        return self.host.imgdist("sync", "--json", **overrides)

    def converge(self, approved: List[Any]) -> Dict[str, Any]:
        run = self.sync(approved)
        assert run.code == EXIT_OK, run
        return run.result

    def cleanup(self) -> None:
        engine = self.swarm.leecher.engine()
        staging = os.path.normpath(self.host.staging_dir)
        for status in engine.list():
            if os.path.dirname(os.path.normpath(status.directory)) == staging:
                with contextlib.suppress(Exception):
                    engine.remove(status.info_hash)


@pytest.fixture
def fleet(host, site, swarm, keys, tmp_path) -> Iterator[Fleet]:
    made = Fleet(host, site, swarm, keys, tmp_path / "world")
    try:
        yield made
    finally:
        made.cleanup()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)
