"""Distribution benchmark: one image of F bytes to N hypervisors, every upload shaped to U.

`make bench-distribution` (not part of `make test`). Starts its own Podman containers from the
lab image (`bd-origin` and `bd-hv01`.., network `vmcloud-bench`, 10.89.210.0/24; never the lab's
or molecule's), shapes every container's upload (the origin's included) with
`nsenter -t PID -n tc qdisc replace dev eth0 root tbf ...`, and distributes the image by each
method. A host's time is from the moment the hosts are told until it holds the image with its
SHA-256 checked. T* = F/U is the physical bound (one copy through one shaped upload).

A method is a plugin: a function `(bench, hosts, repetition) -> MethodRun` registered in METHODS
with the engine it uses. Results (median of the repetitions) go to
benchmarks/results/distribution-<date>.json (the schema of issue 8), every repetition's
per-host figures to distribution-<date>-runs.json, and a PNG plot of time against N.

rtorrent runs with the rtorrent role's own rtorrent.rc (roles/rtorrent/templates/rtorrent.rc.j2,
rendered with the role's defaults; `--rtorrent VAR=VALUE` overrides a role variable), and the
hosts drive it through the collection's engine interface (plugins/module_utils/_engine.py). The
libtorrent row runs the collection's seeder service (plugins/module_utils/_seeder.py) on every host
with the libtorrent_seeder role's seeder.json rendered the same way (`--libtorrent VAR=VALUE`), and
`--variant` runs libtorrent variants interleaved with it (A/B under the same load).

The methods without an engine run the product's own code on the hosts (benchmarks/distribution_agent.py):
`http` is the pull path of a non-bittorrent method (`_sync._obtain_and_promote` with `_methods.HttpMethod`:
`_fetch.download_file` from nginx on the origin, with the image_catalogue role's nginx.conf, then
`ImageStore.promote`); `scp_wave` and `scp_tsunami` run playbooks/push.yml's rounds (`drive_push` over
`_push.push_state`/`next_round`/`advance`), each push being what the image_push module runs on its sender
(`_push.push_image` over `_push.ssh_command`) into the receiver the hypervisor role installs from its
templates (the forced command `_push.receiver_main` of a restricted authorized_keys entry), and each
promotion the pull path of a push method (`_methods.PushedMethod`, `ImageStore.promote`). What the transfer
leaves out is Ansible itself: `--end-to-end ROW..` (default: the libtorrent row, at `--end-to-end-n`) then runs
benchmarks/bench_end_to_end.py (site.yml on a lab-shaped fleet, to the last verified copy) and fills the row's
`end_to_end_seconds`; rows not measured end to end keep null.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Callable

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "collections"), ROOT]

from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError  # noqa: E402
from ansible_collections.vmcloud.fleet.plugins.module_utils._push import (  # noqa: E402
    advance,
    chunk_count,
    next_round,
    push_state,
    wave_rounds,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._torrent import create_torrent  # noqa: E402
from ansible_collections.vmcloud.fleet.plugins.module_utils._tsunami import (  # noqa: E402
    choose_chunk_size,
    plan_queues,
)
from benchmarks._containers import (  # noqa: E402
    IMAGE,
    STORE,
    CpuReading,
    Testbed,
    container_pid,
    log,
    parallel,
    pexec,
    role_defaults,
    run,
    shape_upload,
)

NETWORK = "vmcloud-bench"
SUBNET = "10.89.210.0/24"
GATEWAY = "10.89.210.1"
ORIGIN = "bd-origin"
ORIGIN_IP = "10.89.210.10"
LABEL = "vmcloud.bench=1"
TRACKER_PORT = 6969
HTTP_PORT = 8000
ORIGIN_DIR = "/srv/bench"
SOCKET = "/run/rtorrent/rpc.socket"
SEEDER_CONFIG = "/etc/vmcloud/seeder.json"
SEEDER_STATE = "/var/lib/vmcloud-seeder"
SEEDER_MODULE = "ansible_collections.vmcloud.fleet.plugins.module_utils._seeder"
# The product's defaults, read from the roles (roles/vmcloud, roles/hypervisor, roles/image_catalogue, as
# STORE is): the staging and push areas, the push receiver's user and keys, the catalogue's images.
_SITE = role_defaults("vmcloud")
STAGING = _SITE["vmcloud_staging_dir"]
PUSH_DIR = _SITE["vmcloud_push_dir"]
PUSH_USER = _SITE["vmcloud_push_user"]
PUSH_KEY_DIR = role_defaults("hypervisor")["hypervisor_push_key_dir"]
CATALOGUE_ROOT = role_defaults("image_catalogue")["image_catalogue_root"]
CATALOGUE_IMAGES = f"{CATALOGUE_ROOT}/images"
CATALOGUE_PORT = 80
IMAGE_JSON = "/opt/bd/image.json"
IMAGE_UUID = "00000000-0000-4000-8000-0000000be9c4"
CACHE = os.path.join(ROOT, ".cache", "bench")
RESULTS = os.path.join(ROOT, "benchmarks", "results")
# Committed copies (benchmarks/results/ is ignored by git): --publish copies a run here.
PUBLISHED = os.path.join(ROOT, "benchmarks", "published")


def host_name(i: int) -> str:
    return f"bd-hv{i:02d}"


def host_ip(i: int) -> str:
    return f"10.89.210.{10 + i}"


@dataclasses.dataclass
class MethodRun:
    """One repetition of one method at one N."""

    host_seconds: dict[str, float]  # host -> seconds from "told" to holding the verified image
    origin_bytes: int
    peer_bytes: dict[str, int]  # host -> bytes it sent (to other hosts) during the run
    notes: dict = dataclasses.field(default_factory=dict)


# ---------------------------------------------------------------------------- rtorrent config


def render_rtorrent_rc(overrides: dict) -> str:
    """The rtorrent role's rtorrent.rc with its defaults, as the role would write it."""
    values = role_values("rtorrent")
    values["_rtorrent_runtime_dir"] = os.path.dirname(SOCKET)
    # The role's default is an expression over the inventory: the catalogue host (the origin).
    values["rtorrent_dht_bootstrap"] = [f"{ORIGIN_IP}:{values['rtorrent_dht_port']}"]
    values.update(overrides)
    return render_role_template("rtorrent", "rtorrent.rc.j2", values)


def role_values(role: str) -> dict:
    """A role's defaults and its plain (untemplated) vars."""
    values = role_defaults(role)
    with open(os.path.join(ROOT, "roles", role, "vars", "main.yml")) as handle:
        values.update({k: v for k, v in yaml.safe_load(handle).items() if "{{" not in str(v)})
    return values


def render_role_template(role: str, template: str, values: dict) -> str:
    """Render one of a role's templates with Ansible's filters that it uses."""
    import jinja2

    values = dict(values, ansible_managed=f"Rendered by benchmarks/bench_distribution.py from roles/{role}")
    env = jinja2.Environment(  # noqa: S701 (config files, not HTML)
        loader=jinja2.FileSystemLoader(os.path.join(ROOT, "roles", role, "templates")), keep_trailing_newline=True
    )
    env.filters["comment"] = lambda text: "\n".join(f"# {line}" for line in str(text).splitlines()) + "\n#"
    env.filters["bool"] = lambda value: value if isinstance(value, bool) else str(value).lower() in ("yes", "true", "1")
    env.filters["to_nice_json"] = lambda value, indent=4: json.dumps(value, indent=indent, sort_keys=True)
    env.filters["to_json"] = json.dumps
    return env.get_template(template).render(**values)


def render_seeder_config(overrides: dict) -> str:
    """The libtorrent_seeder role's seeder.json with its defaults, as the role would write it."""
    values = role_values("libtorrent_seeder")
    # The role's default is an expression over the inventory: the catalogue host (the origin).
    values["libtorrent_seeder_dht_bootstrap"] = [f"{ORIGIN_IP}:{values['libtorrent_seeder_dht_port']}"]
    values.update(overrides)
    return render_role_template("libtorrent_seeder", "seeder.json.j2", values)


# ---------------------------------------------------------------------------- the testbed


class Bench:
    def __init__(self, args):
        self.args = args
        self.file_bytes = args.file_mib << 20
        self.upload = args.upload_mbit * 1_000_000
        self.bound = self.file_bytes * 8 / self.upload
        most = max(n for ns in args.planned.values() for n in ns)
        self.hosts_all = [host_name(i) for i in range(1, most + 1)]
        self.address = {ORIGIN: ORIGIN_IP, **{host_name(i): host_ip(i) for i in range(1, most + 1)}}
        self.image_path = os.path.join(CACHE, f"image-{args.file_mib}mib.img")
        self.torrent_path = ""
        self.sha256 = ""
        self.pids: dict[str, int] = {}
        self.testbed = Testbed(NETWORK, SUBNET, GATEWAY, LABEL, IMAGE)
        # The libtorrent variant being run: {"all": {...}, "origin": {...}} role-variable overrides.
        self.variant: dict = {}
        self.image: dict = {}
        self.catalogue_up = False  # the catalogue's nginx on the origin (http)
        self.push_up = False  # receivers, key and host keys (scp_wave, scp_tsunami)
        self.engines_quiet = False  # no rtorrent or seeder runs on any host (set by quiet_engines)
        self.push_detail: list[dict] = []  # per round of the push being run: the slowest push, inside and out
        self.promote_detail: list[dict] = []  # per promotion step: the slowest promotion inside the agent

    # containers ---------------------------------------------------------------
    def up(self) -> None:
        wanted = [(ORIGIN, ORIGIN_IP)] + [(host_name(i), host_ip(i)) for i in range(1, len(self.hosts_all) + 1)]
        names = self.testbed.up(wanted)
        for name in names:
            self.pids[name] = container_pid(name)
        self.install_agent(names)
        for name in names:
            self.shape(name)
        log(
            f"testbed up: {ORIGIN} + {len(self.hosts_all)} hosts, every upload shaped to {self.args.upload_mbit} Mbit/s"
        )

    def down(self) -> None:
        self.testbed.down()
        log("testbed removed")

    def shape(self, name: str) -> None:
        shape_upload(self.pids[name], self.upload, self.args.burst)

    def install_agent(self, names: list[str]) -> None:
        tree = os.path.join(CACHE, "opt-bd")
        mu = os.path.join(tree, "ansible_collections", "vmcloud", "fleet", "plugins", "module_utils")
        run(["rm", "-rf", tree])
        os.makedirs(mu)
        for rel in (
            "ansible_collections",
            "ansible_collections/vmcloud",
            "ansible_collections/vmcloud/fleet",
            "ansible_collections/vmcloud/fleet/plugins",
            "ansible_collections/vmcloud/fleet/plugins/module_utils",
        ):
            open(os.path.join(tree, rel, "__init__.py"), "w").close()
        src = os.path.join(ROOT, "plugins", "module_utils")
        for entry in os.listdir(src):
            if entry.endswith(".py"):
                run(["cp", os.path.join(src, entry), mu])
        run(["cp", os.path.join(ROOT, "benchmarks", "distribution_agent.py"), tree])

        def copy(name):
            pexec(name, "rm -rf /opt/bd")
            run(["podman", "cp", tree, f"{name}:/opt/bd"])

        parallel(copy, names)

    def tx_bytes(self, name: str) -> int:
        return int(pexec(name, "cat /sys/class/net/eth0/statistics/tx_bytes").strip())

    def tx_all(self, names: list[str]) -> dict[str, int]:
        """Every host's tx counter, read in parallel (one podman exec each: about a second under load)."""
        return dict(zip(names, parallel(self.tx_bytes, names), strict=True))

    # the image ------------------------------------------------------------------
    def make_image(self) -> None:
        os.makedirs(CACHE, exist_ok=True)
        if not os.path.exists(self.image_path) or os.path.getsize(self.image_path) != self.file_bytes:
            with open(self.image_path + ".part", "wb") as out:
                for _unused in range(self.args.file_mib):
                    out.write(os.urandom(1 << 20))
            os.rename(self.image_path + ".part", self.image_path)
        piece = self.args.piece_kib * 1024 if self.args.piece_kib else None
        created = create_torrent(
            self.image_path,
            announce=[f"http://{ORIGIN_IP}:{TRACKER_PORT}/announce"],
            piece_length=piece,
            name="bench.img",
        )
        self.sha256 = created.content_sha256
        self.info_hash = created.info.info_hash
        self.piece_length = created.info.piece_length
        self.torrent_path = os.path.join(CACHE, "bench.torrent")
        with open(self.torrent_path, "wb") as out:
            out.write(created.data)
        pexec(ORIGIN, f"mkdir -p {ORIGIN_DIR}")
        have = pexec(ORIGIN, f"sha256sum {ORIGIN_DIR}/bench.img 2>/dev/null | cut -d' ' -f1", check=False).strip()
        if have != self.sha256:
            run(["podman", "cp", self.image_path, f"{ORIGIN}:{ORIGIN_DIR}/bench.img"])
        self.image = image_entry(self.file_bytes, self.sha256, self.info_hash)
        image_json = os.path.join(CACHE, "image.json")
        with open(image_json, "w") as out:
            json.dump(self.image, out)
        for name in [ORIGIN, *self.hosts_all]:
            run(["podman", "cp", self.torrent_path, f"{name}:/opt/bd/bench.torrent"])
            run(["podman", "cp", image_json, f"{name}:{IMAGE_JSON}"])
        # The catalogue's copy (image_catalogue_root/images): what nginx serves and the push origin sends.
        pexec(ORIGIN, f"mkdir -p {CATALOGUE_IMAGES} && ln -f {ORIGIN_DIR}/bench.img {CATALOGUE_IMAGES}/bench.img")
        log(f"image: {self.file_bytes} bytes, piece {self.piece_length // 1024} KiB, T* = {self.bound:.2f} s")

    # services on the origin -----------------------------------------------------
    def restart_unit(self, name: str, unit: str, command: str) -> None:
        pexec(
            name,
            f"systemctl stop {unit} >/dev/null 2>&1; systemctl reset-failed {unit} >/dev/null 2>&1; "
            f"systemd-run --unit {unit} --quiet {command}",
        )

    def start_tracker(self) -> None:
        pexec(ORIGIN, f"mkdir -p /etc/bd && echo {self.info_hash} > /etc/bd/whitelist")
        self.restart_unit(
            ORIGIN, "bd-tracker", f"/usr/bin/opentracker -p {TRACKER_PORT} -P {TRACKER_PORT} -w /etc/bd/whitelist"
        )

    def start_http(self) -> None:
        self.restart_unit(ORIGIN, "bd-http", f"/usr/bin/python3 -m http.server {HTTP_PORT} --directory {ORIGIN_DIR}")

    def stop_seeder(self, name: str) -> None:
        pexec(
            name,
            "systemctl stop bd-seeder >/dev/null 2>&1; systemctl reset-failed bd-seeder >/dev/null 2>&1;"
            f" rm -rf {SEEDER_STATE} {STAGING}/*; true",
        )

    def start_seeder(self, name: str, data_dir: str) -> None:
        """The collection's seeder service with the role's seeder.json (as root: the bench's containers)."""
        self.engines_quiet = False
        overrides = dict(self.args.libtorrent)
        overrides.update(self.variant.get("all", {}))
        if name == ORIGIN:
            overrides.update(dict(self.args.origin_libtorrent))
            overrides.update(self.variant.get("origin", {}))
        overrides["libtorrent_seeder_data_dirs"] = [data_dir]
        config = render_seeder_config(overrides)
        run(
            ["podman", "exec", "-i", name, "sh", "-c", f"mkdir -p /etc/vmcloud && cat > {SEEDER_CONFIG}"],
            input=config.encode(),
        )
        self.stop_seeder(name)
        self.stop_rtorrent(name)
        command = f"/usr/bin/python3 -m {SEEDER_MODULE} --config {SEEDER_CONFIG}"
        pexec(name, f"mkdir -p {data_dir} && PYTHONPATH=/opt/bd {command} --check")  # the role's validate:
        self.restart_unit(name, "bd-seeder", f"--setenv=PYTHONPATH=/opt/bd {command}")
        socket = json.loads(config[config.index("{") :])["socket"]
        pexec(name, f"for i in $(seq 150); do [ -S {socket} ] && exit 0; sleep 0.1; done; exit 1")

    def stop_rtorrent(self, name: str) -> None:
        pexec(
            name,
            "systemctl stop bd-rtorrent >/dev/null 2>&1; systemctl reset-failed bd-rtorrent >/dev/null 2>&1;"
            f" rm -rf /var/lib/rtorrent/session {STAGING}/*; true",
        )

    def start_rtorrent(self, name: str, data_dir: str) -> None:
        self.engines_quiet = False
        self.stop_seeder(name)
        overrides = dict(self.args.rtorrent)
        if name == ORIGIN:
            overrides.update(dict(self.args.origin_rtorrent))
        overrides["rtorrent_data_dirs"] = [data_dir]
        overrides["rtorrent_extra_config"] = list(self.args.rtorrent_extra)
        rc = render_rtorrent_rc(overrides)
        run(
            ["podman", "exec", "-i", name, "sh", "-c", "mkdir -p /etc/rtorrent && cat > /etc/rtorrent/rtorrent.rc"],
            input=rc.encode(),
        )
        self.stop_rtorrent(name)
        pexec(name, f"mkdir -p /var/lib/rtorrent/session /var/log/rtorrent /run/rtorrent {data_dir}")
        self.restart_unit(name, "bd-rtorrent", "/usr/bin/rtorrent -n -o import=/etc/rtorrent/rtorrent.rc")
        pexec(name, f"for i in $(seq 100); do [ -S {SOCKET} ] && exit 0; sleep 0.1; done; exit 1")

    def agent(self, name: str, *argv: str) -> dict:
        out = run(["podman", "exec", name, "python3", "/opt/bd/distribution_agent.py", *argv])
        return json.loads(out.strip().splitlines()[-1])

    def agent_argv(self, name: str, *argv: str) -> list[str]:
        return ["podman", "exec", name, "python3", "/opt/bd/distribution_agent.py", *argv, "--image", IMAGE_JSON]

    # the methods without an engine ------------------------------------------------
    def quiet_engines(self) -> None:
        """No BitTorrent daemon left from an earlier row seeds or burns CPU while another method runs."""
        if self.engines_quiet:
            return
        names = [ORIGIN, *self.hosts_all]
        parallel(lambda name: (self.stop_rtorrent(name), self.stop_seeder(name)), names)
        self.engines_quiet = True

    def clean_hosts(self, hosts: list[str]) -> None:
        """Nothing of an earlier repetition on the hosts: an empty store, staging and push area."""
        script = (
            f"rm -rf {STORE} {STAGING} && mkdir -p {STORE} {STAGING}"
            f" && if [ -d {PUSH_DIR} ]; then find {PUSH_DIR} -mindepth 1 -delete; fi"
        )
        parallel(lambda h: pexec(h, script), hosts)

    def start_catalogue(self) -> None:
        """nginx on the origin with the image_catalogue role's nginx.conf (its defaults, no TLS)."""
        if self.catalogue_up:
            return
        values = role_values("image_catalogue")
        values.update(_image_catalogue_tls=False, image_catalogue_root=CATALOGUE_ROOT,
                      image_catalogue_http_port=CATALOGUE_PORT)  # fmt: skip
        config = render_role_template("image_catalogue", "nginx.conf.j2", values)
        run(["podman", "exec", "-i", ORIGIN, "sh", "-c", "cat > /etc/nginx/nginx.conf"], input=config.encode())
        pexec(ORIGIN, "nginx -t -q && systemctl restart nginx")  # the role's validate:, then its handler
        self.catalogue_up = True

    def setup_push(self) -> None:
        """What roles/hypervisor/tasks/push.yml installs, from its templates: the receiver (the collection's
        _push and _errors), the push user whose root-owned authorized_keys lets the fleet key run only the
        receiver, and on every sender (the origin too, push_sender.yml) the key and the receivers' host keys."""
        if self.push_up:
            return
        key = os.path.join(CACHE, "push", "id_ed25519")
        if not os.path.exists(key):
            os.makedirs(os.path.dirname(key), exist_ok=True)
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vmcloud-push", "-f", key])
        with open(key + ".pub") as handle:
            public = handle.read().strip()
        hostvars = {}
        for name in [ORIGIN, *self.hosts_all]:
            kind, text = pexec(name, "cat /etc/ssh/ssh_host_ed25519_key.pub").split()[:2]
            hostvars[name] = {"ansible_host": self.address[name], "ansible_ssh_host_key_ed25519_public": text,
                              "ansible_ssh_host_key_ed25519_public_keytype": kind}  # fmt: skip
        values = role_values("hypervisor")
        library = values["_hypervisor_push_library_dir"]
        package = f"{library}/ansible_collections/vmcloud/fleet/plugins/module_utils"
        receiver = values["_hypervisor_push_receiver"]
        values.update(hypervisor_push_dir=PUSH_DIR, _hypervisor_push_public_key=public, hostvars=hostvars,
                      _hypervisor_push_peers=self.hosts_all)  # fmt: skip
        files = {
            "receiver": render_role_template("hypervisor", "vmcloud-push-receive.j2", values),
            "authorized_keys": render_role_template("hypervisor", "push_authorized_keys.j2", values),
            "known_hosts": render_role_template("hypervisor", "push_known_hosts.j2", values),
        }
        with open(key) as handle:
            private = handle.read()
        home = f"/var/lib/vmcloud/{PUSH_USER}"
        mu = "/opt/bd/ansible_collections/vmcloud/fleet/plugins/module_utils"

        def put(name: str, path: str, text: str, mode: str) -> None:
            run(["podman", "exec", "-i", name, "sh", "-c", f"umask 077; cat > {path}.tmp && chmod {mode} {path}.tmp"
                 f" && mv {path}.tmp {path}"], input=text.encode())  # fmt: skip

        def sender(name: str) -> None:
            pexec(name, f"install -d -o root -g root -m 0700 {PUSH_KEY_DIR}")
            put(name, f"{PUSH_KEY_DIR}/id_ed25519", private, "0600")
            put(name, f"{PUSH_KEY_DIR}/known_hosts", files["known_hosts"], "0644")
            pexec(name, f"ssh-keygen -l -f {PUSH_KEY_DIR}/known_hosts >/dev/null")

        def receiver_host(name: str) -> None:
            pexec(name, f"mkdir -p /var/lib/vmcloud && (id -u {PUSH_USER} >/dev/null 2>&1 || useradd --system"
                  f" --shell /bin/sh --home-dir {home} --create-home {PUSH_USER})"
                  f" && install -d -o {PUSH_USER} -g root -m 0750 {PUSH_DIR}"
                  f" && install -d -o root -g root -m 0755 {package} {home}/.ssh"
                  f" && install -o root -g root -m 0644 {mu}/_errors.py {mu}/_push.py {package}/")  # fmt: skip
            put(name, receiver, files["receiver"], "0755")
            pexec(name, f"/usr/bin/python3 -I {receiver} --help 2>/dev/null")  # the role's validate:
            put(name, f"{home}/.ssh/authorized_keys", files["authorized_keys"], "0644")
            pexec(name, f"ssh-keygen -l -f {home}/.ssh/authorized_keys >/dev/null && systemctl is-active -q ssh")
            sender(name)

        sender(ORIGIN)
        parallel(receiver_host, self.hosts_all)
        self.push_up = True

    def push_round(self, pairs: list[dict], chunk_size: int) -> dict[str, bool]:
        """One round's pushes in parallel, each on its source (the playbook delegates image_push there)."""
        holder_dir = f"{PUSH_DIR}/{self.info_hash}"

        def one(pair: dict) -> tuple[str, bool]:
            source = pair["source"]
            if source == ORIGIN:
                sources = [f"{CATALOGUE_IMAGES}/bench.img"]
            else:
                sources = [f"{holder_dir}/bench.img", f"{holder_dir}/.bench.img.part"]
            argv = ["push", "--sources", *sources, "--destination", self.address[pair["destination"]]]
            if "chunk" in pair:
                argv += ["--chunk", str(pair["chunk"]), "--chunk-size", str(chunk_size)]
            began = time.time()
            proc = subprocess.run(self.agent_argv(source, *argv), capture_output=True, check=False, timeout=1800)
            result = agent_result(source, proc.stdout, proc.stderr)
            if not result["ok"]:
                log(f"push {source} -> {pair['destination']} failed (planned again): {result['error']}")
            # Inside: push_image on the sender (ssh, the wire, the receiver); outside: podman exec and Python.
            return pair["destination"], bool(result["ok"]), result["finished"] - result["started"], time.time() - began

        done = parallel(one, pairs)
        self.push_detail.append({"push_inside_max": max(d[2] for d in done), "push_wall_max": max(d[3] for d in done)})
        return {destination: ok for destination, ok, _inside, _wall in done}

    def serve_queues(self, queues: dict[str, list], chunk_size: int) -> dict[str, dict | None]:
        """One pipelined tsunami pass: every sender works through its queue at once, each in one agent run
        (what the playbook's one image_push task per sender runs: `_push.serve_queue`); None for a sender
        whose run failed as a whole."""
        holder_dir = f"{PUSH_DIR}/{self.info_hash}"
        by_address = {address: name for name, address in self.address.items()}

        def one(sender: str) -> tuple[str, dict | None, float]:
            if sender == ORIGIN:
                sources = [f"{CATALOGUE_IMAGES}/bench.img"]
            else:
                sources = [f"{holder_dir}/bench.img", f"{holder_dir}/.bench.img.part"]
            queue = [[self.address[destination], chunk] for destination, chunk in queues[sender]]
            argv = ["serve", "--sources", *sources, "--queue", json.dumps(queue), "--chunk-size", str(chunk_size)]
            proc = subprocess.run(self.agent_argv(sender, *argv), capture_output=True, check=False, timeout=3600)
            try:
                result = agent_result(sender, proc.stdout, proc.stderr)
            except (RuntimeError, ValueError) as exc:
                log(f"serve on {sender} failed as a whole: {exc}")
                return sender, None, 0.0
            for item in result.get("failed", []):
                log(f"push {sender} -> {by_address.get(item['destination'])} #{item['chunk']}: {item['msg']}")
            for key in ("sent", "left"):
                result[key] = [[by_address.get(d, d), c] for d, c in result.get(key, [])]
            for item in result.get("failed", []):
                item["destination"] = by_address.get(item["destination"], item["destination"])
            return sender, result, result["finished"] - result["started"]

        done = parallel(one, list(queues))
        self.push_detail.append({"push_inside_max": max(d[2] for d in done)})
        return {sender: result for sender, result, _inside in done}

    def held_by(self, hosts: list[str], chunk_size: int) -> dict[str, list[int]]:
        """The chunks each receiver holds (`_push.held_chunks` on the host)."""

        def one(host: str) -> list[int]:
            argv = ["held", "--chunk-size", str(chunk_size)]
            proc = subprocess.run(self.agent_argv(host, *argv), capture_output=True, check=False, timeout=600)
            return agent_result(host, proc.stdout, proc.stderr)["held"]

        return dict(zip(hosts, parallel(one, hosts), strict=True))

    def promote_pushed(self, receivers: list[str], method: str) -> dict[str, float | None]:
        """Each receiver verifies and promotes what was pushed (the hypervisor role's sync.yml does it)."""

        def one(host: str) -> tuple[str, float | None, float]:
            proc = subprocess.run(self.agent_argv(host, "obtain", "--method", method), capture_output=True,
                                  check=False, timeout=1800)  # fmt: skip
            result = agent_result(host, proc.stdout, proc.stderr)
            if not result["ok"]:
                log(f"{host}: {method} promotion failed: {result['error']}")
            return host, result["verified"] if result["ok"] else None, result["verified"] - result["started"]

        done = parallel(one, receivers)
        self.promote_detail.append({"promote_inside_max": max(d[2] for d in done)})
        return {host: at for host, at, _inside in done}


# ---------------------------------------------------------------------------- the push and pull methods


def image_entry(file_bytes: int, sha256: str, info_hash: str, file: str = "bench.img") -> dict:
    """The index entry of the bench's image, as the product's pull path and promotion read it."""
    return {
        "uuid": IMAGE_UUID,
        "name": "bench-img",
        "version": 1,
        "file": file,
        "size": file_bytes,
        "sha256": sha256,
        "compressed": False,
        "torrent": {"info_hash": info_hash},
    }


def push_round_budget(n_lackers: int) -> int:
    """How many rounds playbooks/tasks/push_image.yml runs for a wave: ceil(log2(N+1)), plus two spare
    rounds that retry failed pushes (a tsunami has no rounds: drive_tsunami)."""
    return wave_rounds(n_lackers) + 2


@dataclasses.dataclass
class PushOutcome:
    """A push driven to its end: when each host held the verified image, and how it went."""

    verified_at: dict[str, float]  # host -> wall-clock time its promotion succeeded
    rounds: list[list[dict]]  # the pairs of every round that sent something
    failed: list[dict]  # pairs whose push failed (planned again the next round)
    timings: list[dict] = dataclasses.field(default_factory=list)  # per round: send and promote seconds


def drive_push(
    method: str,
    origin: str,
    hosts: list[str],
    size: int,
    chunk_size: int,
    send: Callable[[list[dict]], dict[str, bool]],
    promote: Callable[[list[str]], dict[str, float | None]],
    clock: Callable[[], float] = time.time,
) -> PushOutcome:
    """playbooks/push.yml's rounds of a wave (scp_wave) for one image, over the product's planner (_push).

    Each round is planned from who holds the image now (``next_round``); ``send(pairs)`` runs the
    round's pushes in parallel and says, by destination, whether each arrived; the receivers then promote
    (``promote(hosts)``: by host, the time its store verified the image, or None), and only the verified
    ones are sources next round (``advance``). As in the playbook, the rounds stop at the budget (two spare
    rounds for failures). A tsunami is drive_tsunami's.
    """
    state = push_state(method, [origin], hosts, size, chunk_size)
    budget = push_round_budget(len(state["lackers"]))
    verified_at: dict[str, float] = {}
    rounds: list[list[dict]] = []
    failed: list[dict] = []
    timings: list[dict] = []
    for _unused in range(budget):
        pairs = next_round(state)
        if not pairs:
            break
        rounds.append(pairs)
        began = clock()
        delivered = send(pairs)
        sent = clock()
        failed += [pair for pair in pairs if not delivered.get(pair["destination"])]
        arrived = [pair["destination"] for pair in pairs if delivered.get(pair["destination"])]
        times = promote(arrived) if arrived else {}
        verified_at.update({host: at for host, at in times.items() if at is not None})
        verified = {host: at is not None for host, at in times.items()}
        timings.append({"pairs": len(pairs), "send_seconds": sent - began, "promote_seconds": clock() - sent})
        state = advance(state, pairs, delivered, verified)
    return PushOutcome(verified_at, rounds, failed, timings)


TSUNAMI_PASSES = 3  # the first pass and two repair passes (playbooks/tasks/push_image.yml)


def drive_tsunami(
    origin: str,
    hosts: list[str],
    size: int,
    chunk_size: int,
    serve: Callable[[dict[str, list]], dict[str, dict | None]],
    held: Callable[[list[str]], dict[str, list[int]]],
    promote: Callable[[list[str]], dict[str, float | None]],
    clock: Callable[[], float] = time.time,
) -> PushOutcome:
    """playbooks/tasks/push_image.yml's pipelined tsunami for one image: each pass plans every sender's queue
    (``_tsunami.plan_queues``) from what the hosts hold, ``serve(queues)`` runs every sender's queue at once
    (by sender, what was sent, failed and left, or None when the sender failed as a whole: it sends nothing in
    the next pass), ``held(hosts)`` says what each host holds afterwards; a repair pass plans what is still
    missing (at most two). Then every host that holds every chunk promotes, once."""
    chunks = chunk_count(size, chunk_size)
    holdings: dict[str, list[int]] = {}
    dead: set[str] = set()
    rounds: list[list[dict]] = []
    failed: list[dict] = []
    timings: list[dict] = []
    for _unused in range(TSUNAMI_PASSES):
        lacking = [h for h in hosts if len(holdings.get(h, [])) < chunks]
        if not lacking:
            break
        try:
            queues = plan_queues(chunks, [origin], hosts, held=holdings, dead_senders=dead)
        except VmcloudError as exc:
            log(f"scp_tsunami: no repair pass: {exc}")
            break
        rounds.append([{"source": s, "destination": d, "chunk": c} for s, q in queues.items() for d, c in q])
        began = clock()
        results = serve(queues)
        dead |= {sender for sender, result in results.items() if result is None}
        failed += [{"source": s, **f} for s, r in results.items() if r for f in r.get("failed", [])]
        holdings = held(hosts)
        timings.append({"pairs": len(rounds[-1]), "send_seconds": clock() - began, "promote_seconds": 0.0})
    complete = [h for h in hosts if len(holdings.get(h, [])) >= chunks]
    began = clock()
    times = promote(complete) if complete else {}
    timings.append({"pairs": 0, "send_seconds": 0.0, "promote_seconds": clock() - began})
    verified_at = {host: at for host, at in times.items() if at is not None}
    return PushOutcome(verified_at, rounds, failed, timings)


# ---------------------------------------------------------------------------- methods


def method_sequential(bench: Bench, hosts: list[str], repetition: int) -> MethodRun:
    """The baseline: an HTTP copy from the origin to each host, one after another."""
    bench.start_http()
    parallel(lambda h: pexec(h, f"mkdir -p {STAGING}; rm -f {STAGING}/*"), hosts)
    tx0 = bench.tx_bytes(ORIGIN)
    t0 = time.time()
    seconds = {}
    for host in hosts:
        result = bench.agent(
            host,
            "http",
            "--url",
            f"http://{ORIGIN_IP}:{HTTP_PORT}/bench.img",
            "--dest",
            f"{STAGING}/bench.img",
            "--sha256",
            bench.sha256,
        )
        if not result["ok"]:
            raise RuntimeError(f"{host}: sha256 mismatch")
        seconds[host] = result["verified"] - t0
    return MethodRun(seconds, bench.tx_bytes(ORIGIN) - tx0, {h: 0 for h in hosts})


def method_bittorrent_rtorrent(bench: Bench, hosts: list[str], repetition: int) -> MethodRun:
    """rtorrent everywhere: the origin seeds, opentracker tracks, every host's rtorrent downloads."""
    idle = [h for h in bench.hosts_all if h not in hosts]
    parallel(bench.stop_rtorrent, idle)
    bench.start_tracker()
    parallel(lambda h: bench.start_rtorrent(*h), [(ORIGIN, ORIGIN_DIR)] + [(h, STAGING) for h in hosts])
    seed = ["--initial-seed"] if bench.args.origin_initial_seed else []
    bench.agent(ORIGIN, "seed", "--torrent", "/opt/bd/bench.torrent", "--directory", ORIGIN_DIR, *seed)
    return swarm(bench, hosts, "rtorrent")


def method_bittorrent_libtorrent(bench: Bench, hosts: list[str], repetition: int) -> MethodRun:
    """The collection's libtorrent seeder service everywhere (the role's seeder.json), same tracker and shaping."""
    idle = [h for h in bench.hosts_all if h not in hosts]
    parallel(bench.stop_seeder, idle)
    bench.start_tracker()
    parallel(lambda h: bench.start_seeder(*h), [(ORIGIN, ORIGIN_DIR)] + [(h, STAGING) for h in hosts])
    torrent = "/opt/bd/bench.torrent"
    bench.agent(ORIGIN, "seed", "--engine", "libtorrent", "--torrent", torrent, "--directory", ORIGIN_DIR)
    return swarm(bench, hosts, "libtorrent")


def swarm(bench: Bench, hosts: list[str], engine: str) -> MethodRun:
    """The origin seeds already: every host adds the torrent at one instant and waits for its verified copy."""
    tx0 = bench.tx_all([ORIGIN, *hosts])
    # Every host loads the torrent at the same wall-clock moment (plus --stagger s per host).
    start_at = time.time() + 2.0 + 0.4 * len(hosts)
    procs = {}
    for i, host in enumerate(hosts):
        argv = [
            "podman",
            "exec",
            host,
            "python3",
            "/opt/bd/distribution_agent.py",
            "torrent",
            "--engine",
            engine,
            "--torrent",
            "/opt/bd/bench.torrent",
            "--directory",
            STAGING,
            "--sha256",
            bench.sha256,
            "--start-at",
            str(start_at + i * bench.args.stagger),
        ]
        procs[host] = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    probes = []
    probe = bench.args.probe
    peers = ["peers", "--engine", engine, "--torrent", "/opt/bd/bench.torrent"]
    if probe:
        # The first host's view of its peers, twice mid-transfer: who is interested, who is choked.
        for at in (0.3, 0.6):
            time.sleep(max(0.0, start_at + at * bench.bound * len(hosts) ** 0.5 - time.time()))
            probes.append(bench.agent(hosts[0], *peers))
    seconds, late = {}, []
    for host, proc in procs.items():
        out, err = proc.communicate(timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"{host}: agent failed: {err.decode(errors='replace')} {out.decode(errors='replace')}")
        result = json.loads(out.decode().strip().splitlines()[-1])
        if result["ready"] > start_at:
            late.append(host)
        seconds[host] = result["verified"] - start_at
    tx1 = bench.tx_all([ORIGIN, *hosts])
    notes = {"late_starters": late, "piece_bytes": bench.piece_length}
    if probe:
        # Who sent what to whom: every host's per-peer totals once all are done.
        notes["probe_mid"] = probes
        notes["probe_end"] = {h: bench.agent(h, *peers) for h in hosts}
    return MethodRun(seconds, tx1[ORIGIN] - tx0[ORIGIN], {h: tx1[h] - tx0[h] for h in hosts}, notes)


def method_http(bench: Bench, hosts: list[str], repetition: int) -> MethodRun:
    """Every host at once from the catalogue's nginx (the image_catalogue role's nginx.conf), by the
    product's pull path: `_methods.HttpMethod` (`_fetch.download_file`, ranges) then `ImageStore.promote`."""
    bench.quiet_engines()
    bench.start_catalogue()
    bench.clean_hosts(hosts)
    tx0 = bench.tx_all([ORIGIN, *hosts])
    start_at = time.time() + 2.0 + 0.4 * len(hosts)
    url = f"http://{ORIGIN_IP}:{CATALOGUE_PORT}/images"
    procs = {
        host: subprocess.Popen(
            [*bench.agent_argv(host, "obtain", "--method", "http", "--http-url", url), "--start-at", str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for host in hosts
    }
    seconds, late = {}, []
    for host, proc in procs.items():
        out, err = proc.communicate(timeout=1800)
        result = agent_result(host, out, err)
        if not result["ok"]:
            raise RuntimeError(f"{host}: http did not end in the verified image: {result}")
        if result["ready"] > start_at:
            late.append(host)
        seconds[host] = result["verified"] - start_at
    tx1 = bench.tx_all([ORIGIN, *hosts])
    return MethodRun(seconds, tx1[ORIGIN] - tx0[ORIGIN], {h: tx1[h] - tx0[h] for h in hosts}, {"late_starters": late})


def method_push(method: str) -> Callable[[Bench, list[str], int], MethodRun]:
    def run_push(bench: Bench, hosts: list[str], repetition: int) -> MethodRun:
        """playbooks/push.yml's rounds (drive_push over `_push`'s planner), each push what the image_push
        module runs on its sender (`_push.push_image` over ssh to the restricted receiver), each promotion the
        product's pull path for a push method (`_methods.PushedMethod`, `ImageStore.promote`)."""
        bench.quiet_engines()
        bench.setup_push()
        bench.clean_hosts(hosts)
        chunk_size = (bench.args.chunk_mib << 20) or choose_chunk_size(bench.file_bytes, len(hosts))
        bench.push_detail, bench.promote_detail = [], []
        tx0 = bench.tx_all([ORIGIN, *hosts])
        t0 = time.time()
        if method == "scp_tsunami":
            outcome = drive_tsunami(
                ORIGIN,
                hosts,
                bench.file_bytes,
                chunk_size,
                lambda queues: bench.serve_queues(queues, chunk_size),
                lambda receivers: bench.held_by(receivers, chunk_size),
                lambda receivers: bench.promote_pushed(receivers, method),
            )
        else:
            outcome = drive_push(
                method,
                ORIGIN,
                hosts,
                bench.file_bytes,
                chunk_size,
                lambda pairs: bench.push_round(pairs, chunk_size),
                lambda receivers: bench.promote_pushed(receivers, method),
            )
        tx1 = bench.tx_all([ORIGIN, *hosts])
        missing = [h for h in hosts if h not in outcome.verified_at]
        if missing:
            raise RuntimeError(f"{method}: {missing} hold no verified image after {len(outcome.rounds)} rounds")
        notes = {
            "rounds": len(outcome.rounds),
            "failed_pushes": outcome.failed,
            "chunk_bytes": chunk_size if method == "scp_tsunami" else None,
            # Where the time goes, per round: the round's wall time of sending and promoting, the slowest
            # push_image inside its sender and with podman exec around it, the slowest promotion inside.
            "round_seconds": [{k: round(v, 3) for k, v in t.items()} for t in outcome.timings],
            "push_detail": [{k: round(v, 3) for k, v in d.items()} for d in bench.push_detail],
            "promote_detail": [{k: round(v, 3) for k, v in d.items()} for d in bench.promote_detail],
        }
        seconds = {h: outcome.verified_at[h] - t0 for h in hosts}
        return MethodRun(seconds, tx1[ORIGIN] - tx0[ORIGIN], {h: tx1[h] - tx0[h] for h in hosts}, notes)

    run_push.__name__ = f"method_{method}"
    return run_push


def agent_result(host: str, out: bytes, err: bytes) -> dict:
    lines = out.decode(errors="replace").strip().splitlines()
    if not lines:
        raise RuntimeError(f"{host}: the agent printed nothing: {err.decode(errors='replace')}")
    return json.loads(lines[-1])


# name -> (method, engine, function). A new method registers here.
METHODS: dict[str, tuple[str, str, Callable[[Bench, list[str], int], MethodRun]]] = {
    "sequential": ("sequential", "none", method_sequential),
    "http": ("http", "none", method_http),
    "scp_wave": ("scp_wave", "none", method_push("scp_wave")),
    "scp_tsunami": ("scp_tsunami", "none", method_push("scp_tsunami")),
    "bittorrent": ("bittorrent", "rtorrent", method_bittorrent_rtorrent),
    "libtorrent": ("bittorrent", "libtorrent", method_bittorrent_libtorrent),
}

# The default run (`make bench-distribution`, about 20 minutes here): every method, at the N where its
# target is stated (issue 8), the default engine's swarm at every N and three times (its target is
# flatness in N). The others once: sequential and http are one shaped link at a time or all through the
# origin's one upload (deterministic, N x T*), the push methods and rtorrent are the comparisons.
DEFAULT_ROWS = {"sequential": (4,), "http": (4,), "scp_wave": (16,), "scp_tsunami": (16,), "bittorrent": (8,),
                "libtorrent": (2, 4, 8, 16)}  # fmt: skip
DEFAULT_REPEAT = {"libtorrent": 3}
DEFAULT_END_TO_END_N = (4,)


def planned_rows(methods: list[str], n: list[int] | None) -> dict[str, tuple[int, ...]]:
    """method key -> the N it runs at, ascending: `--n` for every method when given, else DEFAULT_ROWS."""
    return {key: tuple(sorted(set(n))) if n else DEFAULT_ROWS[key] for key in methods}


# ---------------------------------------------------------------------------- main


def override_parser(prefix: str) -> Callable[[str], tuple[str, object]]:
    """VAR=VALUE for a role variable starting with prefix (the value in YAML)."""

    def parse(text: str) -> tuple[str, object]:
        key, separator, value = text.partition("=")
        if not key.startswith(prefix) or not separator:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {prefix}VAR=VALUE")
        return key, yaml.safe_load(value)

    return parse


parse_override = override_parser("rtorrent_")


def parse_variant(text: str) -> tuple[str, str, str, object]:
    """LABEL[@origin]:libtorrent_seeder_VAR=VALUE -> (label, "all" or "origin", var, value)."""
    label, sep, rest = text.partition(":")
    label, at, where = label.partition("@")
    if not sep or not label or (at and where != "origin"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected LABEL[@origin]:libtorrent_seeder_VAR=VALUE")
    key, value = override_parser("libtorrent_seeder_")(rest)
    return label, "origin" if at else "all", key, value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", help="every chosen method at these N (default: DEFAULT_ROWS)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--file-mib", type=int, default=256)
    parser.add_argument("--upload-mbit", type=int, default=100)
    parser.add_argument("--burst", default="", help="tbf burst (default: 10 ms of U, at least 64 KiB)")
    parser.add_argument("--repeat", type=int, help="repetitions of every row (default: DEFAULT_REPEAT)")
    parser.add_argument(
        "--chunk-mib",
        type=int,
        default=0,
        help="scp_tsunami's chunk size in MiB (default 0: the product's choice from F and N, "
        "_tsunami.choose_chunk_size, as vmcloud_push_chunk_size 0 does)",
    )
    parser.add_argument("--piece-kib", type=int, default=0, help="torrent piece size (default: mktorrent's choice)")
    parser.add_argument(
        "--rtorrent",
        type=parse_override,
        action="append",
        default=[],
        help="override an rtorrent role variable, e.g. rtorrent_max_uploads=8",
    )
    parser.add_argument("--rtorrent-extra", action="append", default=[], help="an extra rtorrent.rc line")
    parser.add_argument(
        "--origin-rtorrent",
        type=parse_override,
        action="append",
        default=[],
        help="override an rtorrent role variable on the origin only",
    )
    parser.add_argument(
        "--origin-initial-seed",
        action="store_true",
        help="the origin seeds in rtorrent's initial_seed (super-seeding) mode",
    )
    parser.add_argument(
        "--libtorrent",
        type=override_parser("libtorrent_seeder_"),
        action="append",
        default=[],
        help="override a libtorrent_seeder role variable, e.g. 'libtorrent_seeder_max_uploads=8'",
    )
    parser.add_argument(
        "--origin-libtorrent",
        type=override_parser("libtorrent_seeder_"),
        action="append",
        default=[],
        help="override a libtorrent_seeder role variable on the origin only, e.g. libtorrent_seeder_super_seeding=true",
    )
    parser.add_argument(
        "--variant",
        type=parse_variant,
        action="append",
        default=[],
        help="a libtorrent variant run beside the libtorrent row (A/B, interleaved), e.g. "
        "'tcp:libtorrent_seeder_session_settings={enable_outgoing_utp: false}' or "
        "'super@origin:libtorrent_seeder_super_seeding=true'; several with one LABEL make one variant",
    )
    parser.add_argument(
        "--end-to-end",
        nargs="+",
        default=["libtorrent"],
        choices=["none", *(key for key in METHODS if key != "sequential")],
        help="also measure these rows end to end (benchmarks/bench_end_to_end.py: site.yml on a lab-shaped "
        "fleet, once this testbed is down; default: libtorrent; 'none': no end-to-end figure)",
    )
    parser.add_argument("--end-to-end-n", type=int, nargs="+", default=list(DEFAULT_END_TO_END_N),
                        help="the N of the end-to-end runs")
    parser.add_argument("--stagger", type=float, default=0.0, help="seconds between the hosts' starts")
    parser.add_argument("--probe", action="store_true", help="record peer states (swarm analysis)")
    parser.add_argument("--tag", default="", help="suffix of the result files (tuning runs)")
    parser.add_argument("--publish", action="store_true", help="also copy the results to benchmarks/published/")
    parser.add_argument("--keep", action="store_true", help="leave the containers running")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--down", action="store_true", help="only remove the benchmark's containers and network")
    args = parser.parse_args()
    args.variants = {}
    for label, where, key, value in args.variant:
        args.variants.setdefault(label, {"all": {}, "origin": {}})[where][key] = value

    args.planned = planned_rows(args.methods, args.n)
    bench = Bench(args)
    if args.down:
        bench.down()
        return 0
    started = time.time()
    rows, runs = [], []
    try:
        bench.up()
        bench.make_image()
        for key in args.methods:
            method, engine, fn = METHODS[key]
            repeat = args.repeat or DEFAULT_REPEAT.get(key, 1)
            # A/B within one run: the libtorrent row's variants run interleaved with it, repetition by
            # repetition, so that the machine's load drifts over all of them alike.
            arms = [(engine, {})] + (
                [(f"{engine} {label}", v) for label, v in args.variants.items()] if key == "libtorrent" else []
            )
            for n in args.planned[key]:
                hosts = bench.hosts_all[:n]
                reps: dict[str, list[MethodRun]] = {label: [] for label, _unused in arms}
                for r in range(repeat):
                    for label, variant in arms:
                        bench.variant = variant
                        cpu_before = CpuReading.take([ORIGIN, *hosts])
                        result = fn(bench, hosts, r)
                        # The machine's CPU over the run (its setup included): near 1.0, the CPU limits it.
                        result.notes["cpu"] = CpuReading.take([ORIGIN, *hosts]).since(cpu_before)
                        last = max(result.host_seconds.values())
                        reps[label].append(result)
                        runs.append(
                            {
                                "method": method,
                                "engine": label,
                                "n": n,
                                "repetition": r,
                                "seconds": round(last, 3),
                                "ratio_to_bound": round(last / bench.bound, 3),
                                "origin_bytes": result.origin_bytes,
                                "host_seconds": {h: round(s, 3) for h, s in result.host_seconds.items()},
                                "peer_bytes": result.peer_bytes,
                                "load_average": round(os.getloadavg()[0], 1),
                                **result.notes,
                            }
                        )
                        log(
                            f"{method}/{label} N={n} rep {r + 1}/{repeat}: {last:.1f} s = "
                            f"{last / bench.bound:.2f} x T*, origin sent "
                            f"{result.origin_bytes / bench.file_bytes:.2f} copies (load {os.getloadavg()[0]:.1f})"
                        )
                for label, results in reps.items():
                    rows.append(summary_row(method, label, n, results, bench.bound))
    finally:
        if not args.keep:
            bench.down()
    args.end_to_end = [key for key in args.end_to_end if key != "none"]
    if args.end_to_end:
        ends = end_to_end_rows(args, bench.upload)
        fill_end_to_end(rows, ends)
        runs += [{"end_to_end": row} for row in ends]
    write_results(bench, rows, runs, args, time.time() - started)
    return 0


def end_to_end_rows(args, bits_per_s: int) -> list[dict]:
    """The end-to-end figures of the rows named by --end-to-end, on bench_end_to_end's own fleet."""
    import benchmarks.bench_end_to_end as end_to_end

    out_dir = os.path.join(RESULTS, "end-to-end-runs")
    os.makedirs(out_dir, exist_ok=True)
    found = []
    try:
        for n in sorted(args.end_to_end_n):
            for key in args.end_to_end:
                method, engine, _unused = METHODS[key]
                log(f"end to end: {key} N={n}")
                repeat = args.repeat or DEFAULT_REPEAT.get(key, 1)
                found.append(end_to_end.measure(n, repeat, args.file_mib, bits_per_s, method, engine, out_dir))
    finally:
        if not args.keep:
            end_to_end.FLEET.down()
    return found


def fill_end_to_end(rows: list[dict], ends: list[dict]) -> None:
    """Set each transfer row's ``end_to_end_seconds`` from the end-to-end row of its method, engine and N."""
    by_key = {(end["method"], end["engine"] or "none", end["n"]): end for end in ends}
    for row in rows:
        end = by_key.get((row["method"], row["engine"], row["n"]))
        if end is not None:
            row["end_to_end_seconds"] = end["end_to_end_seconds"]


def summary_row(method: str, engine: str, n: int, results: list[MethodRun], bound: float) -> dict:
    """One row of the result (issue 8's schema): the medians of the repetitions. ``seconds`` is the
    transfer (told -> last verified copy); ``end_to_end_seconds`` is null until ``fill_end_to_end`` sets it
    from bench_end_to_end.py's run of the same method, engine and N."""
    median = statistics.median([max(x.host_seconds.values()) for x in results])
    return {
        "method": method,
        "engine": engine,
        "n": n,
        "seconds": round(median, 3),
        "end_to_end_seconds": None,
        "bound_seconds": round(bound, 3),
        "ratio_to_bound": round(median / bound, 3),
        "origin_bytes": int(statistics.median([x.origin_bytes for x in results])),
        # What the CPU did meanwhile (1.0 = both cores busy all the time): the limit, when near 1.0.
        "cpu_busy_share": statistics.median([x.notes["cpu"]["busy_share"] for x in results])
        if all("cpu" in x.notes for x in results)
        else None,
    }


def machine() -> str:
    load = os.getloadavg()
    return (
        f"{platform.node()}: {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"load average {load[0]:.1f} at the end"
    )


def write_results(bench: Bench, rows: list, runs: list, args, elapsed: float) -> None:
    os.makedirs(RESULTS, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    base = os.path.join(RESULTS, f"distribution-{stamp}{('-' + args.tag) if args.tag else ''}")
    doc = {"machine": machine(), "file_bytes": bench.file_bytes, "upload_bits_per_s": bench.upload, "rows": rows}
    with open(base + ".json", "w") as out:
        json.dump(doc, out, indent=2)
        out.write("\n")
    detail = {
        "settings": {
            "rtorrent": dict(args.rtorrent),
            "origin_rtorrent": dict(args.origin_rtorrent),
            "origin_initial_seed": args.origin_initial_seed,
            "rtorrent_extra": args.rtorrent_extra,
            "libtorrent": dict(args.libtorrent),
            "origin_libtorrent": dict(args.origin_libtorrent),
            "variants": args.variants,
            "piece_bytes": bench.piece_length,
            "stagger": args.stagger,
            "burst": args.burst,
            "repeat_of": {key: args.repeat or DEFAULT_REPEAT.get(key, 1) for key in args.methods},
            "chunk_bytes": args.chunk_mib << 20,
        },
        "elapsed_seconds": round(elapsed, 1),
        "runs": runs,
    }
    with open(base + "-runs.json", "w") as out:
        json.dump(detail, out, indent=2)
        out.write("\n")
    print()
    print(
        f"F = {bench.file_bytes} bytes, U = {args.upload_mbit} Mbit/s, T* = F/U = {bench.bound:.2f} s "
        f"(run took {elapsed / 60:.1f} min; {machine()})"
    )
    print(table(rows, bench.file_bytes))
    print(f"wrote {base}.json and {base}-runs.json")
    if not args.no_plot:
        plot(doc, base + ".png")
        print(f"wrote {base}.png")
    if args.publish:
        os.makedirs(PUBLISHED, exist_ok=True)
        for suffix in (".json", "-runs.json", ".png"):
            if os.path.exists(base + suffix):
                run(["cp", base + suffix, PUBLISHED])
        print(f"copied to {PUBLISHED}")


def table(rows: list[dict], file_bytes: int) -> str:
    """The printed table: one line per row of the JSON (end to end "-" where the bench cannot measure it)."""
    lines = [
        f"{'method':<12} {'engine':<10} {'N':>3} {'seconds':>9} {'x T*':>6} {'end to end':>10} "
        f"{'origin bytes':>14} {'copies':>7} {'CPU busy':>8}"
    ]
    for row in rows:
        e2e = "-" if row["end_to_end_seconds"] is None else f"{row['end_to_end_seconds']:.1f}"
        busy = "-" if row.get("cpu_busy_share") is None else f"{row['cpu_busy_share']:.0%}"
        lines.append(
            f"{row['method']:<12} {row['engine']:<10} {row['n']:>3} {row['seconds']:>9.1f} "
            f"{row['ratio_to_bound']:>6.2f} {e2e:>10} {row['origin_bytes']:>14} "
            f"{row['origin_bytes'] / file_bytes:>7.2f} {busy:>8}"
        )
    return "\n".join(lines)


def series_label(row: dict) -> str:
    """A plot line per method and engine: "bittorrent (libtorrent)", or the method alone without an engine."""
    return row["method"] if row["engine"] == "none" else f"{row['method']} ({row['engine']})"


def plot(doc: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bound = doc["file_bytes"] * 8 / doc["upload_bits_per_s"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series: dict[str, list] = {}
    for row in doc["rows"]:
        series.setdefault(series_label(row), []).append((row["n"], row["seconds"]))
    ns = sorted({row["n"] for row in doc["rows"]})
    for label, points in series.items():
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    ax.plot(ns, [bound] * len(ns), "k--", label="T* = F/U (bound)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_xlabel("hypervisors N")
    ax.set_ylabel("seconds until the last host holds the verified image")
    ax.set_title(f"{doc['file_bytes'] >> 20} MiB to N hosts, every upload {doc['upload_bits_per_s'] / 1e6:g} Mbit/s")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
