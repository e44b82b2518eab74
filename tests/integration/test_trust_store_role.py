# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The trust_store role, run by ansible-playbook on localhost into a temporary directory: CRLs are
checked with the library's rules before anything is copied (a stale CRL would fail every
verification on the host), and the CRLs the host fetches itself are kept."""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.unit import pki

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK_BIN = Path(sys.executable).parent / "ansible-playbook"
NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)
PLAY = """\
- name: Install trust material
  hosts: localhost
  gather_facts: false
  roles:
    - role: vmcloud.fleet.trust_store
"""


def run_role(tmp_path: Path, **variables) -> subprocess.CompletedProcess:
    (tmp_path / "play.yml").write_text(PLAY)
    (tmp_path / "vars.json").write_text(json.dumps({"ansible_python_interpreter": sys.executable, **variables}))
    return subprocess.run(
        [str(PLAYBOOK_BIN) if PLAYBOOK_BIN.exists() else "ansible-playbook", "-i", "localhost,", "-c", "local",
         str(tmp_path / "play.yml"), "-e", f"@{tmp_path / 'vars.json'}"],
        cwd=REPO, env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1"),
        capture_output=True, text=True, timeout=300, check=False,
    )


def snapshot(directory: Path) -> dict:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def controller_with_ca_and_crl(tmp_path: Path) -> tuple:
    """The controller's side: a CA (ca.pem) and its current CRL (ca.crl) in tmp_path/controller."""
    ca = pki.make_ca("role test CA", not_before=NOW - 30 * DAY, not_after=NOW + 365 * DAY)
    controller = tmp_path / "controller"
    controller.mkdir()
    (controller / "ca.pem").write_bytes(pki.pem(ca.cert))
    (controller / "ca.crl").write_bytes(pki.pem(pki.make_crl(ca, [], last_update=NOW - DAY, next_update=NOW + DAY)))
    return ca, controller


def test_a_stale_crl_is_refused_before_anything_is_copied(tmp_path):
    ca, controller = controller_with_ca_and_crl(tmp_path)
    host = tmp_path / "host"
    common = {"trust_store_dir": str(host), "trust_store_anchors": [str(controller / "ca.pem")],
              "trust_store_crl_urls": [{"url": "http://127.0.0.1:1/fetched.crl", "name": "fetched.crl"}]}
    done = run_role(tmp_path, trust_store_crls=[str(controller / "ca.crl")], **common)
    assert done.returncode == 0, done.stdout[-3000:]
    (host / "crl" / "fetched.crl").write_bytes(b"what imgdist crl-refresh installed")
    before = snapshot(host)
    assert sorted(before) == ["anchors/ca.pem", "crl/ca.crl", "crl/fetched.crl"]

    stale = pki.make_crl(ca, [], last_update=NOW - 10 * DAY, next_update=NOW - DAY)
    (controller / "new.crl").write_bytes(pki.pem(stale))
    (controller / "other.pem").write_bytes(pki.pem(pki.make_ca("another CA").cert))
    done = run_role(tmp_path, trust_store_crls=[str(controller / "new.crl")],
                    **{**common, "trust_store_anchors": [str(controller / "ca.pem"), str(controller / "other.pem")]})
    assert done.returncode == 2, done.stdout[-3000:]
    assert (f"crl-stale: {controller / 'new.crl'}: the CRL of O=vmcloud tests,CN=role test CA was due for "
            "renewal at ") in done.stdout
    assert snapshot(host) == before  # neither the new anchor nor anything else: the refusal comes first

    forged = pki.make_crl(pki.make_ca("role test CA"), [], last_update=NOW, next_update=NOW + DAY)
    (controller / "new.crl").write_bytes(pki.pem(forged))
    done = run_role(tmp_path, trust_store_crls=[str(controller / "new.crl")], **common)
    assert done.returncode == 2 and "crl-signature-invalid: " in done.stdout
    assert snapshot(host) == before


RECAP = re.compile(r"^localhost\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)\s+skipped=(\d+)", re.M)


def recap(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stdout[-3000:]
    ok, changed, failed, skipped = (int(value) for value in RECAP.search(done.stdout).groups())
    return {"ok": ok, "changed": changed, "failed": failed, "skipped": skipped}


def test_what_matches_is_skipped_and_what_differs_is_copied_again(tmp_path):
    """One look at the trust store: a second run copies nothing (the writing tasks are skipped as one), and an
    anchor changed on the host, in content or mode, is put back; one no longer configured is removed."""
    ca, controller = controller_with_ca_and_crl(tmp_path)
    host = tmp_path / "host"
    settings = {"trust_store_dir": str(host), "trust_store_anchors": [str(controller / "ca.pem")],
                "trust_store_crls": [str(controller / "ca.crl")], "trust_store_crl_urls": []}
    assert recap(run_role(tmp_path, **settings))["changed"] == 3  # the directories, the anchor, the CRL
    installed = snapshot(host)
    second = run_role(tmp_path, **settings)
    assert recap(second)["changed"] == 0
    # Nothing differs: the writing tasks are skipped as one include; none of them is even judged.
    assert re.search(r"Install what differs in the trust store, and remove what was withdrawn\] \*+\nskipping: "
                     r"\[localhost\]", second.stdout), second.stdout[-3000:]
    for task in ("Trust store directories", "Trust anchors", "Certificate revocation lists", "Remove withdrawn"):
        assert f"trust_store : {task}" not in second.stdout, second.stdout[-3000:]
    (host / "anchors" / "ca.pem").write_bytes(b"changed on the host")
    (host / "crl" / "ca.crl").chmod(0o600)
    (host / "anchors" / "withdrawn.pem").write_bytes(b"no longer configured")
    assert recap(run_role(tmp_path, **settings))["changed"] == 3
    assert snapshot(host) == installed and oct((host / "crl" / "ca.crl").stat().st_mode & 0o777) == "0o644"
    assert recap(run_role(tmp_path, **settings))["changed"] == 0
