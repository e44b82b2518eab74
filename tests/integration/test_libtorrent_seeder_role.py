# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The libtorrent_seeder role's configuration and unit, rendered by ansible-playbook after the role's
own checks with the role's validate: commands (the seeder's --check, systemd-analyze verify), and the
rendered configuration run by the real seeder on loopback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils._engine import engine_for
from ansible_collections.vmcloud.fleet.plugins.plugin_utils import _artifact
from tests.integration.conftest import (
    COLLECTIONS,
    free_port,
    require,
    require_libtorrent,
    start_daemon,
    stop_daemon,
    wait_until,
)

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK_BIN = Path(sys.executable).parent / "ansible-playbook"
PLAY = """\
- name: Render the seeder's files as the libtorrent_seeder role does
  hosts: localhost
  gather_facts: false
  tasks:
    - name: The role's checks of its settings
      ansible.builtin.include_role:
        name: vmcloud.fleet.libtorrent_seeder
        tasks_from: validate
        public: true
    - name: The role's configuration, validated by the seeder
      ansible.builtin.template:
        src: "{role}/templates/seeder.json.j2"
        dest: "{{{{ base }}}}/seeder.json"
        mode: "0644"
        validate: "/usr/bin/env PYTHONPATH={collections} /usr/bin/python3 -m {module} --check --config %s"
    - name: The role's unit, validated by systemd-analyze when present
      ansible.builtin.template:
        src: "{role}/templates/vmcloud-seeder.service.j2"
        dest: "{{{{ base }}}}/vmcloud-seeder.service"
        mode: "0644"
        validate: "{{{{ _libtorrent_seeder_verify_unit }}}}"
"""
MODULE = "ansible_collections.vmcloud.fleet.plugins.module_utils._seeder"
IMAGE = os.environ.get("VMCLOUD_LAB_IMAGE", "localhost/vmcloud-lab:bookworm")


def render(base: Path, **variables) -> subprocess.CompletedProcess:
    role = REPO / "roles" / "libtorrent_seeder"
    (base / "play.yml").write_text(PLAY.format(role=role, collections=COLLECTIONS, module=MODULE))
    settings = {"ansible_python_interpreter": sys.executable, "base": str(base), **variables}
    (base / "vars.json").write_text(json.dumps(settings))
    return subprocess.run(
        [str(PLAYBOOK_BIN) if PLAYBOOK_BIN.exists() else "ansible-playbook", "-i", "localhost,", "-c", "local",
         str(base / "play.yml"), "-e", f"@{base / 'vars.json'}"],
        cwd=REPO, env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1"),
        capture_output=True, text=True, timeout=300, check=False,
    )


def test_rendered_configuration_runs(short_tmp):
    base = Path(short_tmp)
    address = "127.0.0.150"
    port = free_port(address)
    done = render(base, libtorrent_seeder_listen_interfaces=f"{address}:{port}",
                  libtorrent_seeder_dht=False, libtorrent_seeder_upload_rate_kib=512)
    assert done.returncode == 0, done.stdout + done.stderr
    config = json.loads("".join(line for line in (base / "seeder.json").read_text().splitlines(True)
                                if not line.startswith("#")))
    assert config["listen_interfaces"] == f"{address}:{port}" and config["upload_rate_kib"] == 512
    assert config["pex"] is True and config["lsd"] is False and config["recheck_on_start"] is True
    unit = (base / "vmcloud-seeder.service").read_text()
    assert f"-m {MODULE} --config /etc/vmcloud/seeder.json" in unit and "RuntimeDirectory=vmcloud\n" in unit

    # The rendered file, with the paths moved into the test directory, runs the real seeder.
    config.update(socket=str(base / "seeder.socket"), state_dir=str(base / "state"))
    (base / "run.json").write_text(json.dumps(config))
    process = start_daemon([require_libtorrent(), "-m", MODULE, "--config", str(base / "run.json")],
                           str(base / "seeder.log"), str(base), {"PYTHONPATH": COLLECTIONS, "PATH": "/usr/bin:/bin"})
    try:
        engine = engine_for("libtorrent", socket=str(base / "seeder.socket"), timeout=5)

        def answers() -> bool:
            try:
                return engine.version()["listen_port"] == port
            except Exception:  # not up yet
                return False

        wait_until(answers, 15, "the seeder with the role's configuration")
    finally:
        stop_daemon(process)


def test_role_checks_refuse_low_ports(short_tmp):
    done = render(Path(short_tmp), libtorrent_seeder_listen_interfaces="0.0.0.0:80")
    assert done.returncode != 0
    assert "listen_interfaces must be ADDRESS:PORT" in done.stdout


def test_role_validate_refuses_a_setting_libtorrent_does_not_know(short_tmp):
    base = Path(short_tmp)
    done = render(base, libtorrent_seeder_session_settings={"choking_algorithm": 2, "no_such_setting": True})
    assert done.returncode != 0
    assert "config-invalid: session_settings.no_such_setting is not a libtorrent" in done.stdout + done.stderr
    assert not (base / "seeder.json").exists()
    tuned = {"choking_algorithm": 2}
    done = render(base, libtorrent_seeder_session_settings=tuned, libtorrent_seeder_super_seeding=True)
    assert done.returncode == 0, done.stdout + done.stderr
    config = json.loads("".join(line for line in (base / "seeder.json").read_text().splitlines(True)
                                if not line.startswith("#")))
    assert config["session_settings"] == {"choking_algorithm": 2} and config["super_seeding"] is True


def test_the_seeder_starts_from_the_hypervisor_artifact_alone(tmp_path):
    """The unit runs the seeder from the hypervisor artifact on its PYTHONPATH (the role's one copy task):
    the seeder must start from that file alone, with Debian's python3 and nothing else of the collection."""
    artifact = _artifact.build(tmp_path / "vmcloud-hypervisor.pyz")
    result = subprocess.run(
        ["/usr/bin/python3", "-s", "-m", MODULE, "--help"],
        cwd=tmp_path, env={"PATH": os.environ["PATH"], "PYTHONPATH": str(artifact)},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--config" in result.stdout


# ------------------------------------------------------------------ the whole role on a systemd host
# A container from the lab image (systemd as PID 1, python3-libtorrent baked in) without any network
# (the seeder listens inside the container's own namespace), reached through podman's connection.
ROLE_PLAY = """\
- name: The libtorrent_seeder role on a systemd host
  hosts: all
  gather_facts: false
  roles:
    - role: vmcloud.fleet.libtorrent_seeder
"""
LABEL = "vmcloud.test=libtorrent-seeder-role"
OLD_LIBRARY = "/usr/lib/vmcloud-seeder/ansible_collections/vmcloud/fleet/plugins/module_utils"


def podman(*argv: str, check: bool = True) -> str:
    done = subprocess.run(["podman", *argv], capture_output=True, text=True, timeout=300, check=False)
    assert not check or done.returncode == 0, f"podman {' '.join(argv)}: {done.stderr}"
    return done.stdout


@pytest.fixture
def systemd_host():
    require("podman")
    subprocess.run([str(REPO / "lab" / "build-image")], check=True, capture_output=True, timeout=1800)
    name = f"vmcloud-test-seeder-role-{os.getpid()}"
    podman("run", "-d", "--name", name, "--hostname", name, "--network", "none", "--systemd=always",
           "--label", LABEL, IMAGE, "/sbin/init")
    try:
        wait_until(lambda: podman("exec", name, "sh", "-c", "systemctl is-system-running 2>/dev/null; true",
                                  check=False).strip() in ("running", "degraded"), 120, f"{name} booted")
        yield name
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)


def exists(host: str, path: str) -> bool:
    return podman("exec", host, "sh", "-c", 'test -e "$1" && echo yes || echo no', "sh", path).strip() == "yes"


def converge(base: Path, host: str, *options: str) -> subprocess.CompletedProcess:
    (base / "role.yml").write_text(ROLE_PLAY)
    (base / "role-vars.json").write_text(json.dumps({"ansible_python_interpreter": "/usr/bin/python3",
                                                     "vmcloud_staging_dir": "/var/lib/vmcloud/staging"}))
    return subprocess.run(
        [str(PLAYBOOK_BIN) if PLAYBOOK_BIN.exists() else "ansible-playbook", "-i", f"{host},",
         "-c", "containers.podman.podman", str(base / "role.yml"), "-e", f"@{base / 'role-vars.json'}", *options],
        cwd=REPO, env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1"),
        capture_output=True, text=True, timeout=600, check=False,
    )


def recap(done: subprocess.CompletedProcess, host: str) -> dict:
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith(host) and "changed=" in line)
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line)}


def test_role_converges_in_check_mode_then_changes_nothing(systemd_host, short_tmp):
    base = Path(short_tmp)
    host = systemd_host
    # What an earlier version of the role left: the library copied file by file.
    podman("exec", host, "sh", "-c", f"mkdir -p {OLD_LIBRARY} && touch {OLD_LIBRARY}/_seeder.py")

    first_check = recap(converge(base, host, "--check", "--diff"), host)
    assert first_check["changed"] > 0 and first_check["failed"] == 0
    assert not exists(host, "/etc/vmcloud/seeder.json")

    first = recap(converge(base, host), host)
    assert first["changed"] > 0
    assert podman("exec", host, "systemctl", "is-active", "vmcloud-seeder.service").strip() == "active"
    unit = podman("exec", host, "cat", "/etc/systemd/system/vmcloud-seeder.service")
    assert "Environment=PYTHONPATH=/usr/lib/vmcloud-seeder/vmcloud-hypervisor.pyz\n" in unit
    assert not exists(host, "/usr/lib/vmcloud-seeder/ansible_collections")
    started = podman("exec", host, "systemctl", "show", "-P", "ActiveEnterTimestampMonotonic", "vmcloud-seeder.service")

    # Nothing to do: one look at the kept paths, every write skipped, the service neither restarted nor
    # asked to start twice; the same in check mode (with --diff: no diff to show).
    for options in (("--check", "--diff"), ()):
        again = converge(base, host, *options)
        counts = recap(again, host)
        assert counts["changed"] == 0, again.stdout[-6000:]
        # Run: two argument specs, the settings check, the one look (user, group, unit, packages, paths).
        # Skipped: the include of every write, enable-and-start and the socket check, judged once (nothing
        # differs from what the role keeps, and the service the look found active is not asked again).
        assert (counts["ok"], counts["skipped"]) == (4, 1), again.stdout[-6000:]
        assert "Install, configure and run the seeder" in again.stdout
    assert podman("exec", host, "systemctl", "show", "-P", "ActiveEnterTimestampMonotonic",
                  "vmcloud-seeder.service") == started

    # Under another role's tags (docs/security.md pushes a CRL with site.yml --tags hypervisor_trust) the role
    # neither looks nor writes, and does not fail on the look it did not take.
    other = recap(converge(base, host, "--tags", "hypervisor_trust"), host)
    assert other["changed"] == other["failed"] == 0

    # A changed configuration is written and restarts the service once; the next run changes nothing.
    changed = converge(base, host, "-e", "libtorrent_seeder_max_peers=60")
    assert recap(changed, host)["changed"] == 1 + 1, changed.stdout[-6000:]  # the file and the restart
    # ... and the restarted service is waited for until its socket answers.
    check = changed.stdout.split("Check that the seeder answers on its socket", 1)[1].split("TASK [", 1)[0]
    assert f"ok: [{host}]" in check, changed.stdout[-6000:]
    assert podman("exec", host, "systemctl", "show", "-P", "ActiveEnterTimestampMonotonic",
                  "vmcloud-seeder.service") != started
    assert recap(converge(base, host, "-e", "libtorrent_seeder_max_peers=60"), host)["changed"] == 0
