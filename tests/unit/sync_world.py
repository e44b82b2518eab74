# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small world for pull-path tests: a PKI, published images with real .torrent files, a signed
index, the hypervisor's directories, and an in-memory BitTorrent engine.

No ansible imports: the module_utils tests run under the hypervisor venv too. The engine stand-in
implements ``TorrentEngine`` (so ``wait_complete`` and ``reconcile`` are the real ones); a download
"completes" by writing the published bytes into the staging directory, or never does when the
image is not in the swarm.
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

import yaml

from ansible_collections.vmcloud.fleet.plugins.module_utils import _imgdist, _sync
from ansible_collections.vmcloud.fleet.plugins.module_utils._argspec import (
    FETCH_ARGSPEC,
    INDEX_TRUST_ARGSPEC,
    SELECTION_ARGSPEC,
    SYNC_ARGSPEC,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._engine import TorrentEngine, TorrentStatus
from ansible_collections.vmcloud.fleet.plugins.module_utils._torrent import create_torrent, parse_torrent
from tests.unit import index_factory as factory
from tests.unit import pki

PIECE = 16 * 1024


def utc(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def default_options() -> Dict[str, Any]:
    """Every option of the pull path at its argspec default (what AnsibleModule would fill in)."""
    specs = {**INDEX_TRUST_ARGSPEC, **SELECTION_ARGSPEC, **FETCH_ARGSPEC, **SYNC_ARGSPEC}
    return {name: spec.get("default") for name, spec in specs.items()}


def sha256_of(path: os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Published:
    """One image as an endorser publishes it: the file, its .torrent and its index entry."""

    entry: Dict[str, Any]
    path: Path  # the distributed file (compressed for compressed images)
    torrent: bytes
    content_sha256: str  # of what the store keeps (unpacked)

    @property
    def uuid(self) -> str:
        return self.entry["uuid"]

    @property
    def info_hash(self) -> str:
        return self.entry["torrent"]["info_hash"]

    @property
    def torrent_name(self) -> str:
        return self.entry["file"] + ".torrent"


@dataclass
class World:
    """A CA with an endorser, an origin directory of published images, and a hypervisor's paths."""

    root: Path
    base_url: str = "http://catalogue"
    announce: str = "http://127.0.0.1:1/announce"
    published: Dict[str, Published] = field(default_factory=dict)

    def __post_init__(self) -> None:
        start = now() - datetime.timedelta(days=30)
        end = now() + datetime.timedelta(days=365)
        self.ca = pki.make_ca("sync test CA", not_before=start, not_after=end)
        self.endorser = pki.make_endorser(self.ca, "lab-endorser", key_type="ec", not_before=start, not_after=end)
        for sub in ("origin", "origin/torrents", "trust", "host"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "trust" / "ca.pem").write_bytes(pki.pem(self.ca.cert))

    # ---------------------------------------------------------------- hypervisor paths

    def host_path(self, name: str) -> str:
        return str(self.root / "host" / name)

    @property
    def index_path(self) -> Path:
        return self.root / "origin" / "index.yaml"

    @property
    def index_url(self) -> str:
        return f"{self.base_url}/index.yaml"

    def options(self, approved: Optional[List[Dict[str, Any]]] = None, src: Optional[str] = None,
                **overrides: Any) -> Dict[str, Any]:
        options = default_options()
        options.update(
            src=src or str(self.index_path),
            trust_anchors=[str(self.root / "trust" / "ca.pem")],
            state_dir=self.host_path("index"),
            store_dir=self.host_path("images"),
            staging_dir=self.host_path("staging"),
            torrent_dir=self.host_path("torrents"),
            approved=approved if approved is not None else [{"uuid": p.uuid} for p in self.published.values()],
            host="hv1",
            download_timeout=10,
            poll_interval=0.01,
        )
        options.update(overrides)
        return options

    # ---------------------------------------------------------------- publishing

    def publish(self, name: str, version: int, size: int = 3 * PIECE + 123, compressed: bool = False,
                **entry_overrides: Any) -> Published:
        content = os.urandom(size)
        file_name = f"{name}_{version}.img" + (".gz" if compressed else "")
        path = self.root / "origin" / file_name
        path.write_bytes(gzip.compress(content, compresslevel=1) if compressed else content)
        created = create_torrent(str(path), announce=[self.announce], piece_length=PIECE, creation_date=0)
        (self.root / "origin" / "torrents" / (file_name + ".torrent")).write_bytes(created.data)
        entry = factory.image(
            0,
            family=name,
            version=version,
            file=file_name,
            size=path.stat().st_size,
            sha256=created.content_sha256,
            compressed=compressed,
            torrent={
                "url": f"{self.base_url}/torrents/{file_name}.torrent",
                "sha256": created.torrent_sha256,
                "info_hash": created.info.info_hash,
            },
            web_seeds=[],
        )
        entry.update(entry_overrides)
        published = Published(entry, path, created.data, hashlib.sha256(content).hexdigest())
        self.published[published.uuid] = published
        return published

    def index_document(self, version: int, images: Iterable[Dict[str, Any]], **signed_overrides: Any) -> bytes:
        fields = {"version": version, "url": self.index_url, "created": utc(now() - datetime.timedelta(hours=1)),
                  "expires": utc(now() + datetime.timedelta(days=30))}
        fields.update(signed_overrides)
        return factory.document(factory.signed_index(images, **fields), [self.endorser])

    def write_index(self, version: int, images: Optional[Iterable[Dict[str, Any]]] = None, **overrides: Any) -> bytes:
        entries = images if images is not None else [p.entry for p in self.published.values()]
        data = self.index_document(version, entries, **overrides)
        self.index_path.write_bytes(data)
        return data

    def fetcher(self, fetched: Optional[List[str]] = None, tampered: Iterable[str] = ()):
        """A stand-in for _fetch.read_source serving the origin's .torrent files by URL."""
        tampered = set(tampered)

        def read_source(src: str, max_size: int, **_: Any):
            if fetched is not None:
                fetched.append(src)
            for published in self.published.values():
                if published.entry["torrent"]["url"] == src:
                    data = published.torrent
                    return (data[:-1] + b"x" if published.uuid in tampered else data), src
            raise AssertionError(f"unexpected fetch of {src}")

        return read_source


class FakeEngine(TorrentEngine):
    """An in-memory engine: ``swarm`` maps info-hash to the bytes peers would send."""

    name = "fake"

    def __init__(self, swarm: Optional[Dict[str, bytes]] = None) -> None:
        self.swarm = dict(swarm or {})
        self.torrents: Dict[str, Dict[str, Any]] = {}
        self.calls: List[tuple] = []
        self.web_seeds: Dict[str, List[str]] = {}

    @classmethod
    def serving(cls, world: World, *published: Published) -> FakeEngine:
        chosen = published or tuple(world.published.values())
        return cls({p.info_hash: p.path.read_bytes() for p in chosen})

    def add(self, torrent_bytes: bytes, directory: str, start: bool = True, web_seeds=()) -> str:
        info = parse_torrent(torrent_bytes)
        self.calls.append(("add", info.info_hash, directory))
        self.web_seeds[info.info_hash] = list(web_seeds)
        path = os.path.join(os.path.normpath(directory), info.name)
        if info.info_hash not in self.torrents and info.info_hash in self.swarm and os.path.exists(path):
            # A newly loaded torrent hash-checks its data: a bad copy is fetched again.
            with open(path, "rb") as handle:
                if handle.read() != self.swarm[info.info_hash]:
                    os.unlink(path)
        self.torrents.setdefault(info.info_hash, {
            "name": info.name, "size": info.length, "directory": os.path.normpath(directory),
            "state": "downloading" if start else "stopped", "uploaded": 0,
        })
        return info.info_hash

    def _deliver(self, info_hash: str, torrent: Dict[str, Any]) -> bool:
        path = os.path.join(torrent["directory"], torrent["name"])
        if os.path.exists(path):
            return True
        if info_hash not in self.swarm or torrent["state"] == "stopped":
            return False
        os.makedirs(torrent["directory"], exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(self.swarm[info_hash])
        return True

    def status(self, info_hash: str) -> Optional[TorrentStatus]:
        torrent = self.torrents.get(info_hash)
        if torrent is None:
            return None
        complete = self._deliver(info_hash, torrent)
        state = torrent["state"] if torrent["state"] == "stopped" else ("seeding" if complete else "downloading")
        return TorrentStatus(
            info_hash=info_hash, name=torrent["name"], size_bytes=torrent["size"],
            completed_bytes=torrent["size"] if complete else 0, complete=complete, state=state,
            down_rate=0, up_rate=0, uploaded_bytes=torrent["uploaded"], ratio=0.0, peers=1 if complete else 0,
            message="", directory=torrent["directory"],
            base_path=os.path.join(torrent["directory"], torrent["name"]),
        )

    def list(self) -> List[TorrentStatus]:
        return [status for status in map(self.status, sorted(self.torrents)) if status is not None]

    def remove(self, info_hash: str, delete_data: bool = False) -> bool:
        self.calls.append(("remove", info_hash))
        return self.torrents.pop(info_hash, None) is not None

    def ensure_seeding(self, info_hash: str) -> bool:
        self.calls.append(("start", info_hash))
        changed = self.torrents[info_hash]["state"] == "stopped"
        self.torrents[info_hash]["state"] = "downloading"
        return changed

    def recheck(self, info_hash: str) -> None:
        self.calls.append(("recheck", info_hash))

    def announce(self, info_hash: str) -> bool:
        self.calls.append(("announce", info_hash))
        return True


class FakeClock:
    """Monotonic time that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.001)


def snapshot(directory: os.PathLike) -> Dict[str, bytes]:
    root = Path(directory)
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- a served catalogue

ALMA_AND_SLC = (("alma", 9, True), ("slc", 5, False))  # (name, version, compressed)


def served_world(tmp_path: Path, monkeypatch: Any, published: Iterable[tuple] = ALMA_AND_SLC, index_version: int = 3,
                 engine_for: Iterable[Any] = (), fetches: Optional[List[str]] = None) -> World:
    """A catalogue publishing ``published`` in index ``index_version``, whose .torrent files stand in
    for ``_sync.read_source`` (the fetched URLs appended to ``fetches``) and, when ``engine_for`` names
    modules, a FakeEngine seeding every image (``world.engine``) as each of those modules' ``engine_for``."""
    world = World(tmp_path)
    for name, version, compressed in published:
        world.publish(name, version, compressed=compressed)
    world.write_index(index_version)
    if fetches is not None:
        world.fetches = fetches
    monkeypatch.setattr(_sync, "read_source", world.fetcher(fetches))
    modules = list(engine_for)
    if modules:
        world.engine = FakeEngine.serving(world)
        for module in modules:
            monkeypatch.setattr(module, "engine_for", lambda *a, **k: world.engine)
    return world


# ---------------------------------------------------------------- imgdist on the host


def write_imgdist_config(world: World, **overrides: Any) -> str:
    """The host's imgdist.yml (as the vmic_agent role writes it) for ``world``, with ``overrides``
    (an engine, its socket, an HTTP ``index_url``...)."""
    document = {
        "index_url": str(world.index_path),
        "trust_anchors": [str(world.root / "trust" / "ca.pem")],
        "approved_images": [{"name": "alma", "version": "latest"}, {"name": "slc", "version": 5}],
        "host": "hv1",
        "store_dir": world.host_path("images"),
        "staging_dir": world.host_path("staging"),
        "torrent_dir": world.host_path("torrents"),
        "state_dir": world.host_path("index"),
        "disabled_flag": world.host_path("disabled"),
        "timeout": 5,
        "poll_interval": 0.01,
    }
    document.update(overrides)
    path = world.root / "imgdist.yml"
    path.write_text(yaml.safe_dump(document))
    return str(path)


def imgdist(*argv: str) -> tuple:
    """``imgdist ARGV`` in process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = _imgdist.main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def imgdist_json(*argv: str) -> tuple:
    """``imgdist ARGV --json`` in process: (exit status, the parsed output); never a traceback."""
    code, out, err = imgdist(*argv, "--json")
    assert "Traceback" not in err
    return code, json.loads(out)
