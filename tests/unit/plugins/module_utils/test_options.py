"""Option values: one validator (_options) for the modules (option-invalid) and imgdist (config-invalid).

Each refusal names the option (or config key) and the value, changes nothing in state_dir,
and is one line.
"""

from __future__ import annotations

import io

import pytest
import yaml

from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._imgdist import main
from ansible_collections.vmcloud.fleet.plugins.module_utils._imgdist_config import EXIT_CONFIG
from ansible_collections.vmcloud.fleet.plugins.module_utils._options import (
    INDEX_CHECKS,
    SYNC_CHECKS,
    check_options,
)
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
