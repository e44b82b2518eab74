# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The libtorrent_seeder role's configuration and unit, rendered by ansible-playbook after the role's
own checks with the role's validate: commands (the seeder's --check, systemd-analyze verify), and the
rendered configuration run by the real seeder on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ansible_collections.vmcloud.fleet.plugins.module_utils._engine import engine_for
from tests.integration.conftest import COLLECTIONS, free_port, require_libtorrent, start_daemon, stop_daemon, wait_until

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


def test_the_roles_library_files_are_all_the_seeder_imports(tmp_path):
    """The role copies a list of module_utils files to the host: the seeder must start from those alone
    (a constant moved to another file once left the service unable to import, found only on hosts)."""
    import yaml

    role_vars = yaml.safe_load((REPO / "roles" / "libtorrent_seeder" / "vars" / "main.yml").read_text())
    package = tmp_path / "ansible_collections" / "vmcloud" / "fleet" / "plugins" / "module_utils"
    package.mkdir(parents=True)
    for name in role_vars["_libtorrent_seeder_sources"]:
        (package / name).write_bytes((REPO / "plugins" / "module_utils" / name).read_bytes())
    result = subprocess.run(
        ["/usr/bin/python3", "-s", "-m", MODULE, "--help"],
        cwd=tmp_path, env={"PATH": os.environ["PATH"], "PYTHONPATH": str(tmp_path)},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--config" in result.stdout
