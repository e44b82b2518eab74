"""vmcloud.fleet.index_image: check → apply → check → apply, versions, stale signatures, refusals."""

from __future__ import annotations

import datetime
import json
import os

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

from ansible_collections.vmcloud.fleet.plugins.module_utils._endorse_document import (
    format_timestamp,
    load_document,
    write_document,
)
from ansible_collections.vmcloud.fleet.plugins.module_utils._endorse_sign import load_signer, sign_document
from ansible_collections.vmcloud.fleet.plugins.module_utils._index import IndexPolicy, verify_index
from ansible_collections.vmcloud.fleet.plugins.module_utils._trust import TrustStore
from ansible_collections.vmcloud.fleet.plugins.modules import index_image
from tests.unit import index_factory as factory
from tests.unit import pki

URL = "http://catalogue/index.yaml"


def image_option(n: int, **overrides):
    """factory.image(n) as the module's typed option takes it."""
    entry = factory.image(n, **overrides)
    entry["targets"] = {"clusters": ["lxcloud"]}
    return entry


@pytest.fixture(scope="module")
def pki_now():
    now = datetime.datetime.now(pki.UTC)
    ca = pki.make_ca("index_image test CA", not_before=now - datetime.timedelta(days=1),
                     not_after=now + datetime.timedelta(days=365))
    endorser = pki.make_endorser(ca, "image-endorser", key_type="ed25519",
                                 not_before=now - datetime.timedelta(days=1),
                                 not_after=now + datetime.timedelta(days=365))
    return {"ca": ca, "signer": load_signer(pki.pem(endorser.cert), pki.key_pem(endorser.key))}


def test_create_check_apply_check_apply(run_module, tmp_path):
    path = tmp_path / "index.yaml"
    args = {"path": str(path), "url": URL, "endorser": "cern-it", "image": image_option(1)}
    results = [
        run_module(index_image, _ansible_check_mode=True, _ansible_diff=True, **args),
        run_module(index_image, _ansible_diff=True, **args),
        run_module(index_image, _ansible_check_mode=True, _ansible_diff=True, **args),
        run_module(index_image, **args),
    ]
    assert [r["changed"] for r in results] == [True, True, False, False]
    assert {r["version"] for r in results} == {1}
    assert all(r["images"] == [factory.image(1)["uuid"]] for r in results)

    first = results[0]
    assert first["diff"]["before"] == ""
    after = yaml.safe_load(first["diff"]["after"])
    assert after["version"] == 1 and after["images"][0]["targets"]["clusters"] == ["lxcloud"]
    assert results[2]["diff"]["before"] == results[2]["diff"]["after"]

    document = load_document(path.read_bytes())
    assert document["signed"]["url"] == URL
    assert document["signatures"] == []
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"


def test_check_mode_changes_nothing_on_disk(run_module, tmp_path):
    path = tmp_path / "index.yaml"
    run_module(index_image, path=str(path), url=URL, endorser="cern-it", image=image_option(1))
    before = path.read_bytes()
    stat_before = os.stat(path)
    for args in (
        {"image": image_option(2)},
        {"image": image_option(1, size=9)},
        {"state": "absent", "uuid": factory.image(1)["uuid"]},
        {"image": image_option(1), "url": "http://mirror/index.yaml"},
    ):
        result = run_module(index_image, _ansible_check_mode=True, _ansible_diff=True, path=str(path), **args)
        assert result["changed"] is True
        assert result["version"] == 2
        assert result["diff"]["before"] != result["diff"]["after"]
    assert path.read_bytes() == before
    assert os.stat(path).st_mtime_ns == stat_before.st_mtime_ns
    assert os.listdir(tmp_path) == ["index.yaml"]


def test_replace_remove_and_versions(run_module, tmp_path):
    path = str(tmp_path / "index.yaml")
    base = {"path": path, "url": URL, "endorser": "cern-it"}
    assert run_module(index_image, image=image_option(1), **base)["version"] == 1
    added = run_module(index_image, image=image_option(2), **base)
    assert added["changed"] and added["version"] == 2
    assert added["images"] == [factory.image(1)["uuid"], factory.image(2)["uuid"]]
    replaced = run_module(index_image, image=image_option(1, size=42), **base)
    assert replaced["changed"] and replaced["version"] == 3
    assert replaced["images"] == added["images"]
    removed = run_module(index_image, state="absent", uuid=factory.image(1)["uuid"], path=path)
    assert removed["changed"] and removed["version"] == 4 and removed["images"] == [factory.image(2)["uuid"]]
    again = run_module(index_image, state="absent", uuid=factory.image(1)["uuid"], path=path)
    assert not again["changed"] and again["version"] == 4


def test_validity_sets_expiry(run_module, tmp_path):
    result = run_module(index_image, path=str(tmp_path / "i.yaml"), url=URL, endorser="e", image=image_option(1),
                        validity=3)
    document = load_document((tmp_path / "i.yaml").read_bytes())
    created = datetime.datetime.fromisoformat(document["signed"]["created"].replace("Z", "+00:00"))
    assert result["expires"] == format_timestamp(created + datetime.timedelta(days=3))


def test_editing_drops_signatures_and_unchanged_keeps_them(run_module, tmp_path, pki_now):
    path = tmp_path / "index.yaml"
    run_module(index_image, path=str(path), url=URL, endorser="cern-it", image=image_option(1))
    document = load_document(path.read_bytes())
    sign_document(document, pki_now["signer"])
    write_document(str(path), document)
    signed_bytes = path.read_bytes()

    unchanged = run_module(index_image, path=str(path), image=image_option(1))
    assert unchanged["changed"] is False and unchanged["dropped_signers"] == []
    assert path.read_bytes() == signed_bytes
    policy = IndexPolicy(trust=TrustStore(anchors=[pki_now["ca"].cert]))
    assert verify_index(signed_bytes, policy).version == 1

    edited = run_module(index_image, path=str(path), image=image_option(2))
    assert edited["changed"] is True and edited["version"] == 2
    assert edited["dropped_signers"] == [pki_now["signer"].subject]
    assert load_document(path.read_bytes())["signatures"] == []


def test_mode_of_existing_file_is_kept(run_module, tmp_path):
    path = tmp_path / "index.yaml"
    run_module(index_image, path=str(path), url=URL, endorser="cern-it", image=image_option(1))
    os.chmod(path, 0o640)
    run_module(index_image, path=str(path), image=image_option(2))
    assert os.stat(path).st_mode & 0o777 == 0o640


def test_renew_before(run_module, tmp_path):
    path = str(tmp_path / "index.yaml")
    run_module(index_image, path=path, url=URL, endorser="cern-it", image=image_option(1), validity=5)
    assert run_module(index_image, path=path, image=image_option(1), renew_before=3)["changed"] is False
    renewed = run_module(index_image, path=path, image=image_option(1), renew_before=7)
    assert renewed["changed"] is True and renewed["version"] == 2


@pytest.mark.parametrize(
    "args, rule, text",
    [
        ({"image": image_option(1)}, "index-missing", "give url and endorser"),
        ({"url": URL, "endorser": "e", "image": image_option(1, sha256="xyz")}, "entry-malformed", "sha256"),
        ({"url": URL, "endorser": "e", "image": image_option(1, file="../x")}, "entry-malformed", "plain file"),
        ({"url": URL, "endorser": "e", "image": image_option(1), "validity": 0}, "validity-invalid", ">= 1"),
        ({"url": URL, "endorser": "e", "image": image_option(1), "renew_before": 30}, "validity-invalid",
         "less than validity"),
    ],
)
def test_refusals_write_nothing(run_module, tmp_path, args, rule, text):
    result = run_module(index_image, path=str(tmp_path / "index.yaml"), **args)
    assert result["failed"] is True and result["rule"] == rule
    assert text in result["msg"]
    assert os.listdir(tmp_path) == []


def test_refuses_a_file_that_is_not_a_v2_index(run_module, tmp_path):
    path = tmp_path / "index.yaml"
    path.write_bytes(b"torrent-id 1:\n  uuid: x\n")
    result = run_module(index_image, path=str(path), image=image_option(1))
    assert result["failed"] is True and result["rule"] == "index-malformed"
    assert path.read_bytes() == b"torrent-id 1:\n  uuid: x\n"


def test_option_rules(run_module, tmp_path):
    path = str(tmp_path / "index.yaml")
    assert "uuid" in run_module(index_image, path=path, state="absent")["msg"]
    assert "image" in run_module(index_image, path=path)["msg"]
    both = run_module(index_image, path=path, image=image_option(1), uuid="x")
    assert both["failed"] is True and "mutually exclusive" in both["msg"]


def test_json_syntax_is_written_kept_and_reads_the_same(capsys, tmp_path):
    from ansible_collections.vmcloud.fleet.plugins.module_utils._yaml import load_untrusted_yaml

    path = tmp_path / "index.json"
    args = {"path": str(path), "url": "http://catalogue/index.json", "endorser": "lab", "state": "present",
            "image": {"uuid": "a-1", "name": "a", "version": 1, "file": "a.img", "size": 1, "sha256": "a" * 64,
                      "torrent": {"url": "http://catalogue/a.torrent", "sha256": "b" * 64, "info_hash": "c" * 40}}}
    with patch_module_args(dict(args, syntax="json")), pytest.raises(SystemExit):
        index_image.main()
    assert json.loads(capsys.readouterr().out)["changed"] is True
    assert path.read_bytes().startswith(b"{")
    as_json = load_untrusted_yaml(path.read_bytes(), "x")
    with patch_module_args(args), pytest.raises(SystemExit):
        index_image.main()
    assert json.loads(capsys.readouterr().out)["changed"] is False
    with patch_module_args(dict(args, syntax="yaml")), pytest.raises(SystemExit):
        index_image.main()
    assert json.loads(capsys.readouterr().out)["changed"] is True
    assert not path.read_bytes().startswith(b"{")
    assert load_untrusted_yaml(path.read_bytes(), "x") == as_json
