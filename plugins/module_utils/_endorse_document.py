# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The endorser side of the v2 image index, serialisation: the index document as bytes and as a file.

Private to the collection; not a public API.

``load_document`` parses an index for editing (its shape and entries checked by the reader,
``_index``; signatures not), ``dump_document`` writes it back as YAML or JSON (no anchors or
aliases, which the reader refuses; the signed keys in a fixed order), ``read_document`` /
``write_document`` do the same with a file (atomic, keeping its mode and syntax). The edits are in
``_endorse_edit``, the signatures in ``_endorse_sign``.
"""

from __future__ import annotations

import datetime
import json
import os
import stat
from typing import Any, Dict, Optional

from ._errors import VmcloudError
from ._index import canonical_signed_bytes, check_signed_fields, check_v2_document
from ._io import write_atomic
from ._requirements import absent, is_absent
from ._time import utc_text
from ._trust import UTC
from ._yaml import load_untrusted_yaml

try:
    import yaml
except ImportError:
    yaml = absent("yaml")

_SIGNED_KEY_ORDER = ("_type", "spec_version", "version", "created", "expires", "endorser", "url", "images")


class EndorseError(VmcloudError):
    """The index cannot be edited or signed as asked; the file was left as it was."""


# ---------------------------------------------------------------- time


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(UTC).replace(microsecond=0)


format_timestamp = utc_text  # the signing side's name for it


# ---------------------------------------------------------------- serialisation


class _IndexDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Safe dumper that never writes anchors or aliases (the reader refuses them)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # PEM bundles read best as literal blocks; the emitter falls back when it cannot.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


if not is_absent(yaml):
    _IndexDumper.add_representer(str, _represent_str)


def _dump(value: Any) -> bytes:
    return yaml.dump(
        value, Dumper=_IndexDumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=4096
    ).encode("utf-8")


def dump_document(document: Dict[str, Any], syntax: str = "yaml") -> bytes:
    """Text of an index document that the reader loads back to the very same structure.

    ``json`` syntax (JSON is YAML) reads about fifty times faster: use it for large catalogues.
    """
    if syntax == "json":
        text = (json.dumps(document, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
    else:
        text = _dump(document)
    if load_untrusted_yaml(text, "the serialised index") != document:
        raise EndorseError(
            "index-serialisation",
            "the index does not read back as written (a value YAML cannot carry as is); this is a bug",
        )
    return text


def dump_signed(signed: Optional[Dict[str, Any]]) -> str:
    """The signed content as YAML text, for diffs ('' when there is none)."""
    if signed is None:
        return ""
    return _dump(signed).decode("utf-8")


# ---------------------------------------------------------------- structure


def order_signed(signed: Dict[str, Any]) -> Dict[str, Any]:
    ordered = {key: signed[key] for key in _SIGNED_KEY_ORDER if key in signed}
    ordered.update((key, value) for key, value in signed.items() if key not in ordered)
    return ordered


def check_signed(signed: Any, origin: str = "the index") -> None:
    """Refuse a ``signed`` mapping that the reader would refuse for its shape or entries."""
    check_signed_fields(signed, origin)
    canonical_signed_bytes(signed)


def load_document(data: bytes, origin: str = "the index") -> Dict[str, Any]:
    """Parse an existing v2 index for editing: shape and entries checked, signatures not."""
    document = check_v2_document(load_untrusted_yaml(data, origin), origin)
    signatures = document.get("signatures")
    if signatures is None:
        signatures = []
    if not isinstance(signatures, list):
        raise EndorseError("index-malformed", f"{origin}: 'signatures' must be a list")
    check_signed(document["signed"], origin)
    return {"signed": document["signed"], "signatures": signatures}


# ---------------------------------------------------------------- files


def read_file(path: str, rule: str, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise EndorseError(rule, f"cannot read {what} {path}: {exc.strerror}") from exc


def read_document(path: str) -> Optional[Dict[str, Any]]:
    """The index at ``path`` parsed for editing, or None when there is no file yet."""
    if not os.path.lexists(path):
        return None
    return load_document(read_file(path, "index-unreadable", "the index"), path)


def existing_syntax(path: str) -> Optional[str]:
    """``json`` or ``yaml`` for the index at ``path``; None when there is no file."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096).lstrip()
    except FileNotFoundError:
        return None
    return "json" if head[:1] == b"{" else "yaml"


def write_document(path: str, document: Dict[str, Any], syntax: Optional[str] = None) -> None:
    """Write the index atomically, keeping the mode and the syntax of the file it replaces
    (new files: 0644, YAML unless ``syntax`` says otherwise)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = 0o644
    write_atomic(path, dump_document(document, syntax or existing_syntax(path) or "yaml"), mode)
