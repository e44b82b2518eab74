# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specs shared by modules (documented once in doc_fragments/_index_trust.py).

Private to the collection; not a public API.
"""

from __future__ import annotations

from ._engine import DEFAULT_ENGINE, DEFAULT_RPC_TIMEOUT, ENGINES
from ._index import DEFAULT_CLOCK_SKEW, DEFAULT_MAX_SIZE
from ._methods import METHODS_ARGSPEC
from ._reconcile_plan import DEFAULT_RETIRE_MAX_PERCENT, NOT_DESIRED
from ._store import DEFAULT_STORE_DIR
from ._sync import (
    DEFAULT_DOWNLOAD_TIMEOUT,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_STAGING_DIR,
    DEFAULT_TORRENT_DIR,
    MAX_TORRENT_BYTES,
)

DEFAULT_STATE_DIR = "/var/lib/vmcloud/index"

INDEX_TRUST_ARGSPEC = {
    "trust_anchors": {"type": "list", "elements": "path", "required": True},
    "endorsers": {"type": "list", "elements": "str", "default": []},
    "endorser_pins": {
        "type": "list",
        "elements": "dict",
        "default": [],
        "options": {"subject": {"type": "str", "required": True}, "issuer": {"type": "str", "required": True}},
    },
    "crl": {"type": "list", "elements": "path", "default": []},
    "threshold": {"type": "int", "default": 1},
    "legacy": {"type": "bool", "default": False},
    "endorser_certificates": {"type": "list", "elements": "path", "default": []},
    "max_size": {"type": "int", "default": DEFAULT_MAX_SIZE},
    "clock_skew": {"type": "int", "default": DEFAULT_CLOCK_SKEW},
    "state_dir": {"type": "path", "default": DEFAULT_STATE_DIR},
    "reference_time": {"type": "str"},
}

SELECTION_ARGSPEC = {
    "approved": {"type": "list", "elements": "raw"},
    "blocked": {"type": "list", "elements": "raw", "default": []},
    "rules": {"type": "list", "elements": "str", "default": []},
    "host": {"type": "str"},
    "subcluster": {"type": "str"},
    "cluster": {"type": "str"},
}

FETCH_ARGSPEC = {
    "timeout": {"type": "int", "default": 30},
    "validate_certs": {"type": "bool", "default": True},
    "ca_path": {"type": "path"},
}

# The BitTorrent engine a module talks to (documented in doc_fragments/_engine.py).
ENGINE_ARGSPEC = {
    "engine": {"type": "str", "choices": list(ENGINES), "default": DEFAULT_ENGINE},
    "socket": {"type": "path"},  # default: the engine's (_engine.DEFAULT_SOCKETS)
    "rpc_timeout": {"type": "float", "default": DEFAULT_RPC_TIMEOUT},
}

# How images that are no longer desired leave the store (_reconcile_plan.Options): image_store and
# image_sync alike, so the sync's retirement and the reconcile run follow one plan.
RETIRE_ARGSPEC = {
    "not_desired": {"type": "str", "choices": list(NOT_DESIRED), "default": "retire"},
    "max_bytes": {"type": "int"},
    "high_watermark_percent": {"type": "int"},
    "retire_max_percent": {"type": "int", "default": DEFAULT_RETIRE_MAX_PERCENT},
    "retire_confirm": {"type": "bool", "default": False},
}

SYNC_ARGSPEC = {
    "store_dir": {"type": "path", "default": DEFAULT_STORE_DIR},
    "staging_dir": {"type": "path", "default": DEFAULT_STAGING_DIR},
    "torrent_dir": {"type": "path", "default": DEFAULT_TORRENT_DIR},
    "engine_user": {"type": "str"},
    **ENGINE_ARGSPEC,
    "download_timeout": {"type": "int", "default": DEFAULT_DOWNLOAD_TIMEOUT},
    "poll_interval": {"type": "float", "default": DEFAULT_POLL_INTERVAL},
    "torrent_max_size": {"type": "int", "default": MAX_TORRENT_BYTES},
    **RETIRE_ARGSPEC,
    **METHODS_ARGSPEC,
}
