"""Runs inside one benchmark host (a lab container): fetch the image one way, verify it, report when.

Copied into each container by benchmarks/bench_distribution.py together with the collection's
module_utils (so the BitTorrent methods drive the engine through the collection's own engine
interface, ``_engine.engine_for``). Runs on the host's Python (Debian bookworm, 3.11) with only
what bookworm ships. Prints one JSON line: wall-clock times (the containers share the host's clock).

  distribution_agent.py torrent --engine rtorrent|libtorrent --torrent T --directory D --sha256 X --start-at EPOCH
  distribution_agent.py http --url URL --dest PATH --sha256 X
  distribution_agent.py seed --engine rtorrent|libtorrent --torrent T --directory D
  distribution_agent.py obtain --method http|scp_wave|scp_tsunami --image IMAGE.json [--start-at EPOCH] ...
  distribution_agent.py push --sources PATH.. --destination IP --image IMAGE.json [--chunk K --chunk-size B]
  distribution_agent.py serve --sources PATH.. --queue '[[IP, K], ...]' --image IMAGE.json --chunk-size B
  distribution_agent.py held --image IMAGE.json --chunk-size B

``obtain`` and ``push`` are the product's own code paths, not copies: ``obtain`` is the pull path of a
method other than bittorrent (``_sync._obtain_and_promote`` with ``_methods.method_for``: http downloads
from the catalogue's nginx, a push method takes what was pushed into the push area, and either ends in
``ImageStore.promote``, which verifies the SHA-256 while copying into the store); ``push`` is what the
``image_push`` module runs on a sender (``_push.push_image`` through ``_push.ssh_command`` to the
receiver's forced command, ``_push.receiver_main``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import urllib.request

sys.path.insert(0, "/opt/bd")

CHUNK = 1 << 20


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def engine(args):
    from ansible_collections.vmcloud.fleet.plugins.module_utils._engine import engine_for

    options = {"socket": args.socket} if args.socket else {}
    return engine_for(args.engine, **options)


def cmd_torrent(args) -> dict:
    from ansible_collections.vmcloud.fleet.plugins.module_utils._torrent import parse_torrent

    data = read_bytes(args.torrent)
    info = parse_torrent(data)
    eng = engine(args)
    ready = time.time()
    if args.start_at:
        time.sleep(max(0.0, args.start_at - time.time()))
    started = time.time()
    info_hash = eng.add(data, args.directory)
    status = eng.wait_complete(info_hash, timeout=args.timeout, poll_interval=0.1)
    complete = time.time()
    path = os.path.join(args.directory, info.name)
    actual = sha256_of(path)
    verified = time.time()
    return {
        "ready": ready,
        "started": started,
        "complete": complete,
        "verified": verified,
        "ok": actual == args.sha256,
        "uploaded": status.uploaded_bytes,
    }


def cmd_http(args) -> dict:
    started = time.time()
    digest = hashlib.sha256()
    part = args.dest + ".part"
    # http only: the URL is the bench's own origin.
    response = urllib.request.urlopen(args.url, timeout=60)  # noqa: S310
    with response, open(part, "wb") as out:
        while block := response.read(CHUNK):
            out.write(block)
            digest.update(block)
        out.flush()
        os.fsync(out.fileno())
    os.rename(part, args.dest)
    complete = time.time()
    return {"started": started, "complete": complete, "verified": complete, "ok": digest.hexdigest() == args.sha256}


def cmd_seed(args) -> dict:
    data = read_bytes(args.torrent)
    eng = engine(args)
    if args.initial_seed:
        # rtorrent's super-seeding: offer each peer pieces nobody else has been offered yet. rtorrent
        # 0.9.8 has no d.connection_seed.set over XML-RPC; it is set as a command on load.
        import xmlrpc.client

        from ansible_collections.vmcloud.fleet.plugins.module_utils._engine_rtorrent import directory_command
        from ansible_collections.vmcloud.fleet.plugins.module_utils._torrent import parse_torrent

        info_hash = parse_torrent(data).info_hash
        eng.call(
            "load.raw_start_verbose",
            "",
            xmlrpc.client.Binary(data),
            directory_command(args.directory),
            "d.connection_seed.set=initial_seed",
        )
    else:
        info_hash = eng.add(data, args.directory)
    status = eng.wait_complete(info_hash, timeout=args.timeout, poll_interval=0.1)
    if args.engine != "rtorrent":
        return {"ok": bool(status.complete)}
    mode = eng.call("d.connection_seed", info_hash.upper())
    return {"ok": bool(status.complete) and (mode == "initial_seed" or not args.initial_seed), "mode": mode}


def cmd_uploaded(args) -> dict:
    from ansible_collections.vmcloud.fleet.plugins.module_utils._torrent import parse_torrent

    info = parse_torrent(read_bytes(args.torrent))
    status = engine(args).status(info.info_hash)
    return {"uploaded": status.uploaded_bytes if status else None}


def cmd_peers(args) -> dict:
    """Chunks held and every connected peer's state (the swarm analysis; libtorrent: bytes per peer)."""
    from ansible_collections.vmcloud.fleet.plugins.module_utils._torrent import parse_torrent

    info = parse_torrent(read_bytes(args.torrent))
    eng = engine(args)
    if args.engine == "libtorrent":
        status = eng.status(info.info_hash)
        return {"time": time.time(), "completed_bytes": status.completed_bytes, "peers": eng.peers(info.info_hash)}
    target = info.info_hash.upper()
    fields = ("address", "incoming", "snubbed", "percent", "up_rate", "down_rate", "up_total", "down_total")
    commands = (
        "p.address=",
        "p.is_incoming=",
        "p.is_snubbed=",
        "p.completed_percent=",
        "p.up_rate=",
        "p.down_rate=",
        "p.up_total=",
        "p.down_total=",
    )
    rows = eng.call("p.multicall", target, "", *commands)
    return {
        "time": time.time(),
        "chunks": eng.call("d.completed_chunks", target),
        "unchoked_uploads": eng.call("throttle.unchoked_uploads"),
        "unchoked_downloads": eng.call("throttle.unchoked_downloads"),
        "peers": [dict(zip(fields, row, strict=True)) for row in rows],
    }


def load_image(path: str) -> dict:
    with open(path) as handle:
        return json.load(handle)


def cmd_obtain(args) -> dict:
    """One image by a method other than bittorrent, through the product's pull path, into the store."""
    from ansible_collections.vmcloud.fleet.plugins.module_utils import _sync
    from ansible_collections.vmcloud.fleet.plugins.module_utils._methods import method_for
    from ansible_collections.vmcloud.fleet.plugins.module_utils._store import ImageStore

    image = load_image(args.image)
    options = {
        "distribution_method": args.method,
        "staging_dir": args.staging_dir,
        "store_dir": args.store_dir,
        "push_dir": args.push_dir,
        "push_user": args.push_user,
        "http_url": args.http_url or None,
        "engine_user": None,
        "download_timeout": args.timeout,
    }
    os.makedirs(args.staging_dir, exist_ok=True)
    os.makedirs(args.store_dir, exist_ok=True)
    ready = time.time()
    if args.start_at:
        time.sleep(max(0.0, args.start_at - time.time()))
    started = time.time()
    store = ImageStore(args.store_dir)
    outcome = _sync._outcome_for(store, image)
    error = None
    try:
        _sync._obtain_and_promote(
            options, method_for(options), store, image, outcome, time.monotonic() + args.timeout, time.monotonic
        )
    except Exception as exc:  # noqa: BLE001 - reported to the bench with its rule
        error = {"rule": getattr(exc, "rule", type(exc).__name__), "message": str(exc)}
    verified = time.time()
    entry = store.manifest().get(image["uuid"]) or {}
    return {
        "ready": ready,
        "started": started,
        "verified": verified,
        "store": outcome.store,
        "ok": error is None and store.is_current(image) and entry.get("sha256") == image["sha256"],
        "error": error,
    }


def cmd_push(args) -> dict:
    """What the image_push module does on a sender: the image, or one chunk of it, to a receiver."""
    from ansible_collections.vmcloud.fleet.plugins.module_utils._push import push_image, ssh_command

    image = load_image(args.image)
    started = time.time()
    error = None
    result: dict = {}
    try:
        ssh = ssh_command(args.destination, 22, args.push_user, args.key, args.known_hosts)
        result = push_image(
            args.sources,
            image["torrent"]["info_hash"],
            image["file"],
            int(image["size"]),
            ssh,
            chunk=args.chunk,
            chunk_size=args.chunk_size,
        )
    except Exception as exc:  # noqa: BLE001 - a failed push is planned again (the playbook's failed_when: false)
        error = {"rule": getattr(exc, "rule", type(exc).__name__), "message": str(exc)}
    return {"started": started, "finished": time.time(), "ok": error is None, "error": error, **result}


def cmd_serve(args) -> dict:
    """What the image_push module does on a sender of a pipelined tsunami: its whole queue at once, each chunk
    as soon as this host holds it, over one stream session per destination (``_push.serve_queue``)."""
    from ansible_collections.vmcloud.fleet.plugins.module_utils._push import serve_queue, ssh_command

    image = load_image(args.image)
    started = time.time()
    result = serve_queue(
        args.sources,
        [(destination, int(chunk)) for destination, chunk in json.loads(args.queue)],
        lambda destination: ssh_command(destination, 22, args.push_user, args.key, args.known_hosts),
        image["torrent"]["info_hash"],
        image["file"],
        int(image["size"]),
        args.chunk_size,
        stall_seconds=args.stall_seconds,
    )
    return {"started": started, "finished": time.time(), "ok": True, **result}


def cmd_held(args) -> dict:
    """The chunks this host's push area holds of the image (``_push.held_chunks``)."""
    from ansible_collections.vmcloud.fleet.plugins.module_utils._push import held_chunks

    image = load_image(args.image)
    info_hash, name, size = image["torrent"]["info_hash"], image["file"], int(image["size"])
    return {"held": held_chunks(args.push_dir, info_hash, name, size, args.chunk_size)}


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("torrent", "seed", "uploaded", "peers"):
        p = sub.add_parser(name)
        p.add_argument("--engine", default="rtorrent")
        p.add_argument("--socket", default="")
        p.add_argument("--torrent", required=True)
        p.add_argument("--directory", default="/var/lib/vmcloud/staging")
        p.add_argument("--sha256", default="")
        p.add_argument("--start-at", type=float, default=0.0)
        p.add_argument("--timeout", type=float, default=900.0)
        p.add_argument("--initial-seed", action="store_true")
    p = sub.add_parser("http")
    p.add_argument("--url", required=True)
    p.add_argument("--dest", required=True)
    p.add_argument("--sha256", required=True)
    p = sub.add_parser("obtain")
    p.add_argument("--method", required=True, choices=("http", "scp_wave", "scp_tsunami"))
    p.add_argument("--image", required=True, help="the index entry (JSON)")
    p.add_argument("--staging-dir", default="/var/lib/vmcloud/staging")
    p.add_argument("--store-dir", default="/var/lib/vmcloud/images")
    p.add_argument("--push-dir", default="/var/lib/vmcloud/push")
    p.add_argument("--push-user", default="vmcloud-push")
    p.add_argument("--http-url", default="")
    p.add_argument("--start-at", type=float, default=0.0)
    p.add_argument("--timeout", type=float, default=900.0)
    p = sub.add_parser("push")
    p.add_argument("--sources", nargs="+", required=True)
    p.add_argument("--destination", required=True)
    p.add_argument("--image", required=True, help="the index entry (JSON)")
    p.add_argument("--chunk", type=int, default=None)
    p.add_argument("--chunk-size", type=int, default=32 << 20)
    p.add_argument("--push-user", default="vmcloud-push")
    p.add_argument("--key", default="/etc/vmcloud/push/id_ed25519")
    p.add_argument("--known-hosts", default="/etc/vmcloud/push/known_hosts")
    p = sub.add_parser("serve")
    p.add_argument("--sources", nargs="+", required=True)
    p.add_argument("--queue", required=True, help="JSON: [[destination, chunk], ...]")
    p.add_argument("--image", required=True, help="the index entry (JSON)")
    p.add_argument("--chunk-size", type=int, required=True)
    p.add_argument("--stall-seconds", type=float, default=120.0)
    p.add_argument("--push-user", default="vmcloud-push")
    p.add_argument("--key", default="/etc/vmcloud/push/id_ed25519")
    p.add_argument("--known-hosts", default="/etc/vmcloud/push/known_hosts")
    p = sub.add_parser("held")
    p.add_argument("--image", required=True, help="the index entry (JSON)")
    p.add_argument("--chunk-size", type=int, required=True)
    p.add_argument("--push-dir", default="/var/lib/vmcloud/push")
    args = parser.parse_args()
    commands = {
        "serve": cmd_serve,
        "held": cmd_held,
        "torrent": cmd_torrent,
        "seed": cmd_seed,
        "uploaded": cmd_uploaded,
        "http": cmd_http,
        "peers": cmd_peers,
        "obtain": cmd_obtain,
        "push": cmd_push,
    }
    result = commands[args.command](args)
    print(json.dumps(result))
    return 0 if result.get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main())
