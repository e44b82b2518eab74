"""playbooks/publish.yml as an endorser runs it: check → apply → check → apply, then a new
image (the index gets a new version, stale signatures replaced), verified by the reader."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ansible_collections.vmcloud.fleet.plugins.module_utils._index import IndexPolicy, verify_index
from ansible_collections.vmcloud.fleet.plugins.module_utils._torrent import parse_torrent
from ansible_collections.vmcloud.fleet.plugins.module_utils._trust import TrustStore
from tests.unit import pki

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="json",
           ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_NOCOLOR="1")
PLAYBOOK_BIN = Path(sys.executable).parent / "ansible-playbook"
BASE_URL = "http://catalogue"
PASSPHRASE = "publish-test-passphrase-93b1"  # noqa: S105 - a throwaway test key's passphrase


@pytest.fixture
def endorsers(tmp_path):
    now = datetime.datetime.now(pki.UTC)
    window = {"not_before": now - datetime.timedelta(days=1), "not_after": now + datetime.timedelta(days=365)}
    ca = pki.make_ca("publish CA", **window)
    first = pki.make_endorser(ca, "endorser-a", key_type="ec", **window)
    second = pki.make_endorser(ca, "endorser-b", key_type="rsa", **window)
    (tmp_path / "a.pem").write_bytes(pki.pem(first.cert))
    (tmp_path / "a.key").write_bytes(pki.key_pem(first.key))
    (tmp_path / "b.pem").write_bytes(pki.pem(second.cert))
    signers = [
        {"certificate": str(tmp_path / "a.pem"), "private_key": str(tmp_path / "a.key")},
        {"certificate": str(tmp_path / "b.pem"),
         "private_key_content": pki.key_pem(second.key, PASSPHRASE.encode()).decode(), "passphrase": PASSPHRASE},
    ]
    return ca, signers


def publish_vars(tmp_path, signers, images):
    variables = {
        "vmcloud_publish_images": images,
        "vmcloud_publish_dir": str(tmp_path / "www"),
        "vmcloud_publish_base_url": BASE_URL + "/",
        "vmcloud_publish_announce": ["http://catalogue:6969/announce"],
        "vmcloud_publish_endorser": "lab-endorser",
        "vmcloud_publish_signers": signers,
    }
    path = tmp_path / "publish-vars.yml"
    path.write_text(yaml.safe_dump(variables))
    return path


def play(vars_file, *options):
    completed = subprocess.run(
        [str(PLAYBOOK_BIN) if PLAYBOOK_BIN.exists() else "ansible-playbook", "playbooks/publish.yml",
         "-e", f"@{vars_file}", *options],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300, check=False,
    )
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    assert PASSPHRASE not in completed.stdout + completed.stderr
    assert "PRIVATE KEY" not in completed.stdout + completed.stderr
    return json.loads(completed.stdout)["stats"]["localhost"]["changed"]


def test_publish_check_apply_check_apply_then_add(tmp_path, endorsers):
    ca, signers = endorsers
    sources = tmp_path / "src"
    sources.mkdir()
    (sources / "alma9.img.gz").write_bytes(os.urandom(150_000))
    (sources / "cernvm.img").write_bytes(os.urandom(70_000))
    images = [
        {"path": str(sources / "alma9.img.gz"), "name": "alma9-img", "version": 20240601, "compressed": True,
         "volume_size": 20, "targets": {"clusters": ["lxcloud"]}},
        {"path": str(sources / "cernvm.img"), "name": "cernvm-img", "version": 3, "compressed": False},
    ]
    vars_file = publish_vars(tmp_path, signers, images)

    changes = [play(vars_file, "--check"), play(vars_file), play(vars_file, "--check"), play(vars_file)]
    assert changes[0] > 0 and changes[1] > 0
    assert changes[2:] == [0, 0]

    www = tmp_path / "www"
    data = (www / "index.yaml").read_bytes()
    policy = IndexPolicy(trust=TrustStore(anchors=[ca.cert]), threshold=2, fetched_url=f"{BASE_URL}/index.yaml")
    verified = verify_index(data, policy)
    assert [i["uuid"] for i in verified.images] == ["alma9-img-20240601", "cernvm-img-3"]
    assert verified.images[0]["targets"]["clusters"] == ["lxcloud"]
    for entry in verified.images:
        content = www / "images" / entry["file"]
        assert entry["size"] == content.stat().st_size
        torrent = parse_torrent((www / "torrents" / f"{entry['file']}.torrent").read_bytes())
        assert torrent.info_hash == entry["torrent"]["info_hash"]
        assert entry["torrent"]["url"] == f"{BASE_URL}/torrents/{entry['file']}.torrent"
        assert entry["web_seeds"] == [f"{BASE_URL}/images/{entry['file']}"]

    (sources / "extra.img").write_bytes(os.urandom(20_000))
    images.append({"path": str(sources / "extra.img"), "name": "extra", "version": 1, "compressed": False})
    vars_file = publish_vars(tmp_path, signers, images)
    assert play(vars_file) > 0
    newer = verify_index((www / "index.yaml").read_bytes(), policy)
    assert newer.version == verified.version + 1
    assert len(newer.images) == 3 and len(newer.signers) == 2


def test_vmcloud_publish_private_makes_private_torrents_the_index_names(tmp_path, endorsers):
    ca, signers = endorsers
    sources = tmp_path / "src"
    sources.mkdir()
    (sources / "cernvm.img").write_bytes(os.urandom(40_000))
    images = [{"path": str(sources / "cernvm.img"), "name": "cernvm-img", "version": 3, "compressed": False}]
    vars_file = publish_vars(tmp_path, signers, images)
    policy = IndexPolicy(trust=TrustStore(anchors=[ca.cert]), threshold=2, fetched_url=f"{BASE_URL}/index.yaml")
    torrent_file = tmp_path / "www" / "torrents" / "cernvm.img.torrent"

    assert play(vars_file) > 0  # by default: not private (DHT and PEX may find peers too)
    public = parse_torrent(torrent_file.read_bytes())
    assert public.private is False

    assert play(vars_file, "-e", "vmcloud_publish_private=true") > 0
    private = parse_torrent(torrent_file.read_bytes())
    entry = verify_index((tmp_path / "www" / "index.yaml").read_bytes(), policy).images[0]
    assert private.private is True and private.info_hash != public.info_hash
    assert entry["torrent"]["info_hash"] == private.info_hash  # the flag is in the info-hash the index names
    assert play(vars_file, "-e", "vmcloud_publish_private=true") == 0
