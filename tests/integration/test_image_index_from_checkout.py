"""The trust core as users run it: `ansible` and `ansible-playbook` from a checkout,
fetching the index over HTTP from a server on loopback."""

from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

from tests.unit import index_factory as factory
from tests.unit import pki

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="json",
           ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_NOCOLOR="1")


@pytest.fixture
def catalogue(tmp_path):
    """A loopback HTTP server publishing a signed index; yields (url, trust dir, re-publish function)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/index.yaml"
    ca = pki.make_ca("checkout CA")
    endorser = pki.make_endorser(ca, "lab-endorser", key_type="ed25519")
    (tmp_path / "ca.pem").write_bytes(pki.pem(ca.cert))

    def publish(version, images, index_url=url):
        signed = factory.signed_index(images, version=version, url=index_url)
        (root / "index.yaml").write_bytes(factory.document(signed, [endorser]))

    try:
        yield url, tmp_path, publish
    finally:
        server.shutdown()
        server.server_close()


def ansible_module(args: str) -> dict:
    completed = subprocess.run(
        ["ansible", "localhost", "-m", "vmcloud.fleet.image_index", "-a", args],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120, check=False,
    )
    report = json.loads(completed.stdout)
    return report["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_ansible_adhoc_fetches_and_verifies_over_http(catalogue):
    url, tmp, publish = catalogue
    publish(2, [factory.image(1), factory.image(2)])
    args = f"src={url} trust_anchors={tmp}/ca.pem state_dir={tmp}/state reference_time={factory.NOW}"
    result = ansible_module(args)
    assert result.get("failed") is not True, result
    assert result["changed"] is True and result["version"] == 2 and len(result["images"]) == 2
    again = ansible_module(args)
    assert again["changed"] is False and again["previous_version"] == 2

    publish(1, [factory.image(1)])
    refused = ansible_module(args)
    assert refused["failed"] is True and refused["rule"] == "rollback"
    assert "index version 1 is lower than the last accepted version 2" in refused["msg"]


def test_index_published_elsewhere_is_refused(catalogue):
    url, tmp, publish = catalogue
    publish(1, [factory.image(1)], index_url="http://catalogue/index.yaml")
    result = ansible_module(f"src={url} trust_anchors={tmp}/ca.pem state_dir={tmp}/state "
                            f"reference_time={factory.NOW}")
    assert result["failed"] is True and result["rule"] == "url-mismatch"
    assert not (tmp / "state").exists()


def test_playbook_selects_with_the_filter(catalogue):
    url, tmp, publish = catalogue
    publish(1, [factory.image(1, family="cernvm", version=1), factory.image(2, family="cernvm", version=2)])
    playbook = tmp / "select.yml"
    playbook.write_text(f"""
- name: Select images
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Verify the index
      vmcloud.fleet.image_index:
        src: {url}
        trust_anchors: [{tmp}/ca.pem]
        state_dir: {tmp}/state
        reference_time: "{factory.NOW}"
      register: verified
    - name: Desired images of hv01
      ansible.builtin.set_fact:
        desired: "{{{{ verified.images | vmcloud.fleet.desired_images(approved=[{{'name': 'cernvm'}}],
                    host='hv01') | map(attribute='uuid') | list }}}}"
    - name: Show them
      ansible.builtin.debug:
        var: desired
""")
    completed = subprocess.run(["ansible-playbook", str(playbook)], cwd=REPO, env=ENV, capture_output=True,
                               text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(completed.stdout)
    facts = report["plays"][0]["tasks"][1]["hosts"]["localhost"]["ansible_facts"]
    assert facts["desired"] == ["cernvm-2"]
