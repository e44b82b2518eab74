"""Option values: one validator (_options) for the modules (option-invalid) and imgdist (config-invalid).

Each refusal names the option (or config key) and the value, changes nothing in state_dir,
and is one line.
"""

from __future__ import annotations

import io
import json

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._imgdist import EXIT_CONFIG, main
from ansible_collections.vmcloud.fleet.plugins.module_utils._options import (
    INDEX_CHECKS,
    SYNC_CHECKS,
    TORRENT_DOWNLOAD_CHECKS,
    check_options,
)
from ansible_collections.vmcloud.fleet.plugins.modules import image_index, image_sync, torrent_download
from tests.unit import index_factory as factory
from tests.unit import pki
from tests.unit.plugins.module_utils.test_index import snapshot

BAD_INDEX_OPTIONS = [
    ("timeout", -1, "must be more than 0"),
    ("timeout", 0, "must be more than 0"),
    ("timeout", 10**9, "at most 3600"),
    ("timeout", float("nan"), "must be more than 0"),
    ("clock_skew", -5, "at least 0"),
    ("clock_skew", 10**12, "at most 86400"),
    ("max_size", 0, "at least 1"),
    ("max_size", -1, "at least 1"),
    ("threshold", 0, "at least 1"),
    ("threshold", 1000, "at most 32"),
    ("src", "http://catalogue:port/index.yaml", "port is not a number"),
    ("src", "http://catalogue/my index.yaml", "space"),
    ("src", "http://:80/index.yaml", "names no host"),
    ("src", "ftp://catalogue/index.yaml", "http(s) URL or a path"),
]
BAD_SYNC_OPTIONS = [
    ("download_timeout", -1, "at least 0"),
    ("poll_interval", -1, "more than 0"),
    ("poll_interval", 0, "more than 0"),
    ("rpc_timeout", -0.5, "more than 0"),
    ("torrent_max_size", 0, "at least 1"),
]


@pytest.mark.parametrize(("option", "value", "fragment"), BAD_INDEX_OPTIONS + BAD_SYNC_OPTIONS)
def test_the_validator_names_the_option(option, value, fragment):
    with pytest.raises(VmcloudError) as caught:
        check_options({option: value}, {**INDEX_CHECKS, **SYNC_CHECKS})
    assert caught.value.rule == "option-invalid"
    assert str(caught.value).startswith(f"option-invalid: option '{option}' ") and fragment in str(caught.value)


def test_the_validator_accepts_the_defaults_and_paths():
    check_options({"timeout": 30, "clock_skew": 300, "max_size": 16 << 20, "threshold": 1,
                   "src": "/var/lib/vmcloud/index.yaml", "download_timeout": 3600, "poll_interval": 2.0,
                   "rpc_timeout": 30.0, "torrent_max_size": 1 << 20}, {**INDEX_CHECKS, **SYNC_CHECKS})
    check_options({"src": "https://catalogue.example:8443/v2/index.yaml?x=1", "timeout": None}, INDEX_CHECKS)


# ------------------------------------------------------------------ modules


@pytest.fixture(scope="module")
def trust(tmp_path_factory):
    directory = tmp_path_factory.mktemp("trust")
    ca = pki.make_ca("options CA")
    endorser = pki.make_endorser(ca, "lab-endorser", key_type="ec")
    (directory / "ca.pem").write_bytes(pki.pem(ca.cert))
    return {"dir": directory, "endorser": endorser}


def run_module(capsys, module, **args):
    with patch_module_args(args), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(("option", "value", "fragment"), [bad for bad in BAD_INDEX_OPTIONS if bad[1] == bad[1]])
def test_image_index_refuses_bad_values(capsys, trust, tmp_path, option, value, fragment):
    src = tmp_path / "index.yaml"
    src.write_bytes(factory.document(factory.signed_index([factory.image(1)], version=2), [trust["endorser"]]))
    state = tmp_path / "state"
    args = {"src": str(src), "trust_anchors": [str(trust["dir"] / "ca.pem")], "state_dir": str(state),
            "reference_time": factory.NOW}
    run_module(capsys, image_index, **args)
    before = snapshot(state)
    result = run_module(capsys, image_index, **{**args, option: value})
    assert result["failed"] and result["rule"] == "option-invalid", result["msg"]
    assert f"option '{option}'" in result["msg"] and "\n" not in result["msg"]
    assert snapshot(state) == before


@pytest.mark.parametrize(("option", "value", "fragment"), BAD_SYNC_OPTIONS + BAD_INDEX_OPTIONS[:3])
def test_image_sync_refuses_bad_values_before_anything_runs(capsys, trust, tmp_path, option, value, fragment):
    store = tmp_path / "images"
    store.mkdir()
    (store / "kept.img").write_bytes(b"kept")
    result = run_module(capsys, image_sync, src=str(tmp_path / "absent.yaml"),
                        trust_anchors=[str(trust["dir"] / "ca.pem")], state_dir=str(tmp_path / "state"),
                        store_dir=str(store), approved=[], socket=str(tmp_path / "no.socket"), **{option: value})
    assert result["failed"] and result["rule"] == "option-invalid", result["msg"]
    assert fragment in result["msg"]
    assert sorted(p.name for p in store.iterdir()) == ["kept.img"] and not (tmp_path / "state").exists()


@pytest.mark.parametrize(("option", "value"), [("timeout", -1), ("timeout", 10**9), ("poll_interval", -1),
                                               ("poll_interval", 0), ("rpc_timeout", -1)])
def test_torrent_download_refuses_bad_values(capsys, tmp_path, option, value):
    result = run_module(capsys, torrent_download, info_hash="a" * 40, state="absent",
                        socket=str(tmp_path / "no.socket"), **{option: value})
    assert result["failed"] and result["rule"] == "option-invalid", result["msg"]
    assert f"option '{option}'" in result["msg"]


def test_torrent_download_checks_cover_its_own_timeout():
    assert set(TORRENT_DOWNLOAD_CHECKS) == {"timeout", "poll_interval", "rpc_timeout"}


# ------------------------------------------------------------------ imgdist


def imgdist(*argv: str) -> tuple:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("fetch_timeout", -1, "more than 0"),
        ("fetch_timeout", 0, "more than 0"),
        ("timeout", -5, "at least 0"),
        ("clock_skew", 10**12, "at most 86400"),
        ("clock_skew", -1, "at least 0"),
        ("poll_interval", -1, "more than 0"),
        ("rpc_timeout", 0, "more than 0"),
        ("max_size", 0, "at least 1"),
        ("torrent_max_size", -1, "at least 1"),
        ("threshold", 0, "at least 1"),
        ("index_url", "http://catalogue:port/index.yaml", "port is not a number"),
        ("index_url", "http://catalogue/my index.yaml", "space"),
    ],
)
@pytest.mark.parametrize("command", ["config-check", "status", "sync"])
def test_imgdist_refuses_bad_values_as_config_invalid(tmp_path, key, value, fragment, command):
    path = tmp_path / "imgdist.yml"
    state = tmp_path / "state"
    state.mkdir()
    (state / "keep").write_bytes(b"x")
    path.write_text(yaml.safe_dump({"index_url": "http://c/index.yaml", "trust_anchors": ["/a"],
                                    "state_dir": str(state), key: value}))
    code, out, err = imgdist("-c", str(path), command)
    assert code == EXIT_CONFIG and out == "", err
    assert err.startswith(f"imgdist: config-invalid: {path}: key '{key}' ") and fragment in err
    assert err.count("\n") == 1
    assert snapshot(state) == {"keep": b"x"}
