# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The endorser side of the v2 image index, edits: new index, image entries, header, stamp.

Private to the collection; not a public API.

The reader (_index) is the authority on what an index may hold: image entries are
validated here by the reader's own entry rules. Editing the signed content bumps ``version``
by exactly one and sets ``created``/``expires``; signatures that no longer verify over the new
content are dropped (``_endorse_sign.prune_signatures``), still-valid ones are kept, so several
endorsers can co-sign one version (threshold).
"""

from __future__ import annotations

import copy
import datetime
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ._endorse_document import EndorseError, check_signed, format_timestamp, order_signed, utc_now
from ._endorse_sign import prune_signatures
from ._index import INDEX_TYPE, SPEC_VERSION, canonical_signed_bytes, normalise_v2_image, parse_utc_timestamp
from ._trust import UTC

DEFAULT_VALIDITY_DAYS = 30
# Fields that stamping rewrites; everything else in ``signed`` is the content.
STAMP_KEYS = ("version", "created", "expires")


def new_index(
    url: str, endorser: str, now: Optional[datetime.datetime] = None, validity_days: int = DEFAULT_VALIDITY_DAYS
) -> Dict[str, Any]:
    """A new, empty, unsigned index (version 1) published at ``url`` by ``endorser``."""
    signed: Dict[str, Any] = {
        "_type": INDEX_TYPE,
        "spec_version": SPEC_VERSION,
        "version": 1,
        "created": "",
        "expires": "",
        "endorser": endorser,
        "url": url,
        "images": [],
    }
    _set_times(signed, now or utc_now(), validity_days)
    check_signed(signed)
    return {"signed": signed, "signatures": []}


# ---------------------------------------------------------------- content edits


def stored_image(entry: Dict[str, Any], position: int = 0) -> Dict[str, Any]:
    """The entry as the index stores it, validated by the reader's own entry rules.

    Optional fields that are unset or empty are left out, hex is lower case, and the key
    order is fixed, so the same image always serialises to the same text.
    """
    normal = normalise_v2_image(entry, position)
    stored: Dict[str, Any] = {
        key: normal[key] for key in ("uuid", "name", "version", "file", "size", "sha256", "compressed")
    }
    for key in ("volume_size", "piece_size"):
        if normal[key] is not None:
            stored[key] = normal[key]
    stored["torrent"] = {key: normal["torrent"][key] for key in ("url", "sha256", "info_hash")}
    if normal["web_seeds"]:
        stored["web_seeds"] = normal["web_seeds"]
    if any(normal["targets"].values()):
        stored["targets"] = normal["targets"]
    stored.update(sorted(normal["extra"].items()))
    return copy.deepcopy(stored)


def _position_of(signed: Dict[str, Any], uuid: str) -> Optional[int]:
    return next((i for i, entry in enumerate(signed["images"]) if entry.get("uuid") == uuid), None)


def upsert_image(signed: Dict[str, Any], entry: Dict[str, Any]) -> bool:
    """Add ``entry``, or replace the entry with its uuid; True when the content changed."""
    position = _position_of(signed, entry.get("uuid"))  # type: ignore[arg-type]
    images = signed["images"]
    new = stored_image(entry, len(images) if position is None else position)
    if position is None:
        images.append(new)
        return True
    if stored_image(images[position], position) == new:
        return False
    images[position] = new
    return True


def remove_image(signed: Dict[str, Any], uuid: str) -> bool:
    """Remove the entry with ``uuid``; True when there was one."""
    position = _position_of(signed, uuid)
    if position is None:
        return False
    del signed["images"][position]
    return True


def set_header(signed: Dict[str, Any], url: Optional[str] = None, endorser: Optional[str] = None) -> bool:
    """Set the published URL and the endorser name when given; True when either changed."""
    changed = False
    for key, value in (("url", url), ("endorser", endorser)):
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise EndorseError("index-malformed", f"{key} must be a non-empty string")
        if signed.get(key) != value:
            signed[key] = value
            changed = True
    return changed


def content_of(signed: Dict[str, Any]) -> bytes:
    """Canonical bytes of the content, that is ``signed`` without version and timestamps."""
    return canonical_signed_bytes({k: v for k, v in signed.items() if k not in STAMP_KEYS})


def _set_times(signed: Dict[str, Any], now: datetime.datetime, validity_days: int) -> None:
    if isinstance(validity_days, bool) or not isinstance(validity_days, int) or validity_days < 1:
        raise EndorseError("validity-invalid", f"validity must be a whole number of days >= 1, got {validity_days!r}")
    signed["created"] = format_timestamp(now)
    signed["expires"] = format_timestamp(now + datetime.timedelta(days=validity_days))


def stamp(signed: Dict[str, Any], now: datetime.datetime, validity_days: int = DEFAULT_VALIDITY_DAYS) -> None:
    """Mark a new version: ``version`` + 1, ``created`` = now, ``expires`` = now + validity."""
    _set_times(signed, now, validity_days)
    signed["version"] = signed["version"] + 1


def needs_renewal(signed: Dict[str, Any], now: datetime.datetime, renew_before_days: int) -> bool:
    """True when ``expires`` is less than ``renew_before_days`` days after ``now`` (0: never)."""
    if renew_before_days <= 0:
        return False
    expires = parse_utc_timestamp(signed["expires"], "signed.expires")
    return expires - now < datetime.timedelta(days=renew_before_days)


@dataclass
class EditResult:
    """What an edit produced: the document to write, and what changed."""

    before: Optional[Dict[str, Any]]
    after: Dict[str, Any]
    changed: bool
    dropped_signers: List[str] = field(default_factory=list)

    @property
    def version(self) -> int:
        return self.after["signed"]["version"]

    @property
    def uuids(self) -> List[str]:
        return [entry["uuid"] for entry in self.after["signed"]["images"]]


def edit_index(
    document: Optional[Dict[str, Any]],
    *,
    upsert: Optional[Dict[str, Any]] = None,
    remove: Optional[str] = None,
    url: Optional[str] = None,
    endorser: Optional[str] = None,
    now: Optional[datetime.datetime] = None,
    validity_days: int = DEFAULT_VALIDITY_DAYS,
    renew_before_days: int = 0,
) -> EditResult:
    """Apply one edit to ``document`` (None: a new index) without touching the original.

    A new index starts at version 1. An existing one gets version + 1 and fresh timestamps
    when (and only when) its content changes or it is due for renewal; signatures that no
    longer verify are then dropped. Otherwise the result equals the original.
    """
    moment = (now or utc_now()).astimezone(UTC)
    if renew_before_days < 0 or (renew_before_days and renew_before_days >= validity_days):
        raise EndorseError(
            "validity-invalid",
            f"renew_before ({renew_before_days} days) must be 0 or less than validity ({validity_days} days), "
            "or every run would publish a new version",
        )
    if document is None:
        if not url or not endorser:
            raise EndorseError(
                "index-missing", "the index does not exist yet; give url and endorser to create it"
            )
        working = new_index(url, endorser, moment, validity_days)
    else:
        working = copy.deepcopy(document)
    signed = working["signed"]
    before_content = content_of(signed)
    set_header(signed, url, endorser)
    if upsert is not None:
        upsert_image(signed, upsert)
    if remove is not None:
        remove_image(signed, remove)
    working["signed"] = signed = order_signed(signed)
    content_changed = content_of(signed) != before_content
    if document is None:
        return EditResult(before=None, after=working, changed=True)
    if not content_changed and not needs_renewal(signed, moment, renew_before_days):
        return EditResult(before=document, after=copy.deepcopy(document), changed=False)
    stamp(signed, moment, validity_days)
    check_signed(signed)
    dropped = prune_signatures(working)
    return EditResult(before=document, after=working, changed=True, dropped_signers=dropped)
