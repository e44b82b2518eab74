# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The signed image index: parse, verify, normalise. Private to the collection.

Two formats share one result: the native v2 document (``signed`` + ``signatures``)
and the 2010 legacy torrent list (``torrent-id N`` entries + ``x509-signature``).
Verification fails closed: the first broken rule raises IndexRefused naming it.
Replay and rollback protection (the high-water mark) lives in _index_state.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import email.utils
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from ._cryptography import InvalidSignature, UnsupportedAlgorithm, x509
from ._errors import IndexRefused, VmcloudError
from ._limits import MAX_FILE_NAME_BYTES, MAX_SIGNATURES
from ._time import TIMESTAMP_FORMAT, utc_text
from ._trust import (
    SITE_TRUST_RULES,
    TrustStore,
    fingerprint,
    load_pem_certificates,
    public_key_digest,
    subject_of,
    verify_data_signature,
)
from ._yaml import load_untrusted_yaml

INDEX_TYPE = "vmcloud-image-index"
SPEC_VERSION = 2
DEFAULT_MAX_SIZE = 16 * 1024 * 1024
DEFAULT_CLOCK_SKEW = 300
LEGACY_SIGNATURE_KEY = b"x509-signature:"

_HEX = re.compile(r"\A[0-9a-fA-F]*\Z")
_UTC_TIMESTAMP = re.compile(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?Z\Z")
_SIZE_WITH_UNIT = re.compile(r"\A\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)(?:i?B|Bs|bytes?)?\s*\Z", re.IGNORECASE)
_UNIT_FACTOR = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def canonical_signed_bytes(signed: Dict[str, Any]) -> bytes:
    """The bytes every v2 signature covers: canonical JSON of ``signed``, UTF-8."""
    try:
        text = json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise IndexRefused(
            "index-malformed", f"'signed' holds a value JSON cannot represent ({exc}); quote timestamps"
        ) from exc
    return text.encode("utf-8")


@dataclass
class IndexPolicy:
    """What the site trusts and how strictly; one reference time for the whole run."""

    trust: TrustStore
    threshold: int = 1
    legacy: bool = False
    legacy_certificates: Sequence[x509.Certificate] = ()
    clock_skew: int = DEFAULT_CLOCK_SKEW
    max_size: int = DEFAULT_MAX_SIZE
    fetched_url: Optional[str] = None


@dataclass
class VerifiedIndex:
    format: str
    url: Optional[str]
    version: Optional[int]
    created: Optional[str]
    expires: Optional[str]
    endorser: Optional[str]
    digest: str
    signers: List[Dict[str, str]]
    images: List[Dict[str, Any]]
    problems: List[str] = field(default_factory=list)

    def as_dict(self) -> Dict[str, Any]:
        return {
            "format": self.format,
            "url": self.url,
            "version": self.version,
            "created": self.created,
            "expires": self.expires,
            "endorser": self.endorser,
            "digest": self.digest,
            "signers": self.signers,
            "images": self.images,
            "problems": self.problems,
        }


# ---------------------------------------------------------------- field checks


def _where(entry_index: int, key: str) -> str:
    return f"images[{entry_index}].{key}"


def _require(mapping: Dict[str, Any], key: str, where: str) -> Any:
    if key not in mapping or mapping[key] is None:
        raise IndexRefused("entry-malformed", f"{where}: '{key}' is required")
    return mapping[key]


def _as_str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise IndexRefused("entry-malformed", f"{where}: expected a non-empty string, got {_short(value)}")
    return value


def _as_int(value: Any, where: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise IndexRefused("entry-malformed", f"{where}: expected an integer, got {_short(value)}")
    if value < minimum:
        raise IndexRefused("entry-malformed", f"{where}: must be >= {minimum}, got {value}")
    return value


def _as_hex(value: Any, length: int, where: str) -> str:
    if not isinstance(value, str) or len(value) != length or not _HEX.match(value):
        raise IndexRefused("entry-malformed", f"{where}: expected {length} hex digits, got {_short(value)}")
    return value.lower()


def _as_url(value: Any, where: str) -> str:
    text = _as_str(value, where)
    if not text.startswith(("http://", "https://")):
        raise IndexRefused("entry-malformed", f"{where}: expected an http(s) URL, got {_short(text)}")
    return text


def check_plain_file_name(value: Any, where: str) -> str:
    """A content file name that cannot leave the image store."""
    name = _as_str(value, where)
    if "/" in name or "\\" in name or "\0" in name or name.startswith(".") or ".." in name:
        raise IndexRefused(
            "entry-malformed",
            f"{where}: {_short(name)} is not a plain file name (no '/', no '..', no NUL, no leading dot)",
        )
    if len(name.encode("utf-8", "surrogatepass")) > MAX_FILE_NAME_BYTES:
        raise IndexRefused(
            "entry-malformed",
            f"{where}: {_short(name)} is longer than {MAX_FILE_NAME_BYTES} bytes (UTF-8), more than a file "
            "name can be on the hypervisors' filesystems; publish a shorter name",
        )
    return name


def _as_name_list(value: Any, where: str) -> List[str]:
    """Target lists: a YAML list, a comma/space separated string (legacy), or empty."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [part for part in re.split(r"[,\s]+", value) if part]
    if isinstance(value, list) and all(isinstance(item, str) and item for item in value):
        return list(value)
    raise IndexRefused("entry-malformed", f"{where}: expected a list of names, got {_short(value)}")


def parse_size(value: Any, where: str) -> int:
    """Bytes from an integer or a legacy size with a unit ('236.39 MBs' is MiB-based)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _as_int(value, where)
    if isinstance(value, float) and value >= 0:
        return int(value)
    if isinstance(value, str):
        match = _SIZE_WITH_UNIT.match(value)
        if match:
            return int(round(float(match.group(1)) * _UNIT_FACTOR[match.group(2).upper()]))
    raise IndexRefused("entry-malformed", f"{where}: expected a non-negative size, got {_short(value)}")


def parse_utc_timestamp(value: Any, where: str) -> datetime.datetime:
    """An RFC 3339 UTC time written as the endorser tools write it: ``YYYY-MM-DDTHH:MM:SS[.fff]Z``."""
    if not isinstance(value, str):
        raise IndexRefused("index-malformed", f"{where}: expected an RFC 3339 UTC string, got {_short(value)}")
    if not _UTC_TIMESTAMP.match(value):
        raise IndexRefused(
            "index-malformed", f"{where}: {_short(value)} must read YYYY-MM-DDTHH:MM:SSZ (UTC, end with Z)"
        )
    try:
        return datetime.datetime.fromisoformat(value[:-1] + "+00:00")
    except ValueError as exc:
        raise IndexRefused("index-malformed", f"{where}: {_short(value)} is not an RFC 3339 timestamp") from exc


# ---------------------------------------------------------------- v2


_V2_IMAGE_KEYS = {
    "uuid", "name", "version", "file", "size", "sha256", "compressed", "volume_size",
    "piece_size", "torrent", "web_seeds", "targets",
}


def normalise_v2_image(entry: Any, position: int) -> Dict[str, Any]:
    where = f"images[{position}]"
    if not isinstance(entry, dict):
        raise IndexRefused("entry-malformed", f"{where}: expected a mapping")
    torrent = _require(entry, "torrent", where)
    if not isinstance(torrent, dict):
        raise IndexRefused("entry-malformed", f"{where}.torrent: expected a mapping")
    # Absent or null means none; any other value must have the documented type ([] is no mapping).
    targets = entry.get("targets")
    targets = {} if targets is None else targets
    if not isinstance(targets, dict) or set(targets) - {"hosts", "subclusters", "clusters"}:
        raise IndexRefused(
            "entry-malformed", f"{where}.targets: expected a mapping of hosts/subclusters/clusters lists, got "
            f"{_short(targets)}"
        )
    web_seeds = entry.get("web_seeds")
    web_seeds = [] if web_seeds is None else web_seeds
    if not isinstance(web_seeds, list):
        raise IndexRefused("entry-malformed", f"{where}.web_seeds: expected a list of URLs, got {_short(web_seeds)}")
    compressed = entry.get("compressed", False)
    if not isinstance(compressed, bool):
        raise IndexRefused("entry-malformed", f"{where}.compressed: expected true or false")
    optional_ints = {}
    for key in ("volume_size", "piece_size"):
        if entry.get(key) is not None:
            optional_ints[key] = _as_int(entry[key], _where(position, key), minimum=1)
    return {
        "uuid": _as_str(_require(entry, "uuid", where), _where(position, "uuid")),
        "name": _as_str(_require(entry, "name", where), _where(position, "name")),
        "version": _as_int(_require(entry, "version", where), _where(position, "version")),
        "file": check_plain_file_name(_require(entry, "file", where), _where(position, "file")),
        "size": _as_int(_require(entry, "size", where), _where(position, "size")),
        "sha256": _as_hex(_require(entry, "sha256", where), 64, _where(position, "sha256")),
        "compressed": compressed,
        "volume_size": optional_ints.get("volume_size"),
        "piece_size": optional_ints.get("piece_size"),
        "torrent": {
            "url": _as_url(_require(torrent, "url", where + ".torrent"), where + ".torrent.url"),
            "sha256": _as_hex(_require(torrent, "sha256", where + ".torrent"), 64, where + ".torrent.sha256"),
            "sha1": None,
            "info_hash": _as_hex(
                _require(torrent, "info_hash", where + ".torrent"), 40, where + ".torrent.info_hash"
            ),
        },
        "web_seeds": [_as_url(url, f"{where}.web_seeds[{i}]") for i, url in enumerate(web_seeds)],
        "targets": {
            kind: _as_name_list(targets.get(kind), f"{where}.targets.{kind}")
            for kind in ("hosts", "subclusters", "clusters")
        },
        "created": None,
        "extra": {key: value for key, value in entry.items() if key not in _V2_IMAGE_KEYS},
    }


@dataclass
class SignedFields:
    """The checked header and normalised entries of a v2 ``signed`` mapping."""

    version: int
    created: datetime.datetime
    expires: datetime.datetime
    url: str
    endorser: str
    images: List[Dict[str, Any]]


def check_v2_document(document: Any, origin: str) -> Dict[str, Any]:
    """The top level of a v2 document: ``signed`` and ``signatures``, nothing unsigned beside them."""
    if not isinstance(document, dict) or "signed" not in document:
        raise IndexRefused("index-malformed", f"{origin}: expected a mapping with 'signed' and 'signatures'")
    unsigned = sorted(set(document) - {"signed", "signatures"})
    if unsigned:
        raise IndexRefused("index-malformed", f"{origin}: unsigned top-level keys {unsigned} are not allowed")
    return document


def check_signed_fields(signed: Any, origin: str) -> SignedFields:
    """Shape, header fields and every entry of ``signed``; shared by the reader and the endorser tools."""
    if not isinstance(signed, dict):
        raise IndexRefused("index-malformed", f"{origin}: 'signed' must be a mapping")
    if signed.get("_type") != INDEX_TYPE:
        raise IndexRefused("index-malformed", f"{origin}: signed._type must be {INDEX_TYPE!r}")
    if signed.get("spec_version") != SPEC_VERSION:
        raise IndexRefused(
            "index-spec-version",
            f"{origin}: spec_version {_short(signed.get('spec_version'))} is not supported (this reader knows 2)",
        )
    version = signed.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise IndexRefused("index-malformed", f"signed.version must be an integer >= 1, got {_short(version)}")
    created = parse_utc_timestamp(signed.get("created"), "signed.created")
    expires = parse_utc_timestamp(signed.get("expires"), "signed.expires")
    if created > expires:
        raise IndexRefused(
            "index-malformed",
            f"signed.created {signed['created']} is later than signed.expires {signed['expires']}; "
            "the endorser must fix the dates",
        )
    url = signed.get("url")
    if not isinstance(url, str) or not url:
        raise IndexRefused("index-malformed", "signed.url must be the address where the index is published")
    endorser = signed.get("endorser")
    if not isinstance(endorser, str) or not endorser:
        raise IndexRefused("index-malformed", "signed.endorser must be a non-empty string")
    images = signed.get("images")
    if not isinstance(images, list):
        raise IndexRefused("index-malformed", "signed.images must be a list")
    normalised = [normalise_v2_image(entry, i) for i, entry in enumerate(images)]
    check_unique_uuids(normalised)
    return SignedFields(version, created, expires, url, endorser, normalised)


def _parse_v2(document: Any, policy: IndexPolicy, origin: str) -> VerifiedIndex:
    signed = check_v2_document(document, origin)["signed"]
    signed_bytes = canonical_signed_bytes(signed)
    signers, problems = _verify_v2_signatures(document.get("signatures"), signed_bytes, policy)
    _check_threshold(signers, problems, policy.threshold)

    fields = check_signed_fields(signed, origin)
    now = policy.trust.now
    if fields.expires <= now:
        raise IndexRefused(
            "index-expired",
            f"index version {fields.version} expired at {signed['expires']} (reference time "
            f"{now.strftime(TIMESTAMP_FORMAT)}); the endorser must publish a fresh index",
        )
    if fields.created > now + datetime.timedelta(seconds=policy.clock_skew):
        raise IndexRefused(
            "index-from-future",
            f"index version {fields.version} was created at {signed['created']}, more than "
            f"{policy.clock_skew} s after the reference time {now.strftime(TIMESTAMP_FORMAT)}; "
            "check the clocks",
        )
    if policy.fetched_url is not None and fields.url != policy.fetched_url:
        raise IndexRefused(
            "url-mismatch",
            f"the index says it is published at {fields.url} but was fetched from {policy.fetched_url}",
        )
    return VerifiedIndex(
        format="v2",
        url=fields.url,
        version=fields.version,
        created=signed["created"],
        expires=signed["expires"],
        endorser=fields.endorser,
        digest=hashlib.sha256(signed_bytes).hexdigest(),
        signers=signers,
        images=fields.images,
        problems=problems,
    )


def decode_signature(text: Any, where: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError(f"{where}: signature must be base64 text")
    compact = "".join(text.split())
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{where}: signature is not valid base64") from exc


def _verify_one(
    cert: x509.Certificate, chain: Sequence[x509.Certificate], signature: bytes, data: bytes, policy: IndexPolicy
) -> None:
    try:
        verify_data_signature(cert, signature, data)
    except InvalidSignature as exc:
        raise IndexRefused("signature-invalid", f"signature by {subject_of(cert)} does not verify") from exc
    except UnsupportedAlgorithm as exc:
        raise IndexRefused("signature-algorithm", f"signature by {subject_of(cert)}: {exc}") from exc
    policy.trust.verify_endorser(cert, chain)


def _signer_record(cert: x509.Certificate) -> Dict[str, str]:
    return {
        "subject": subject_of(cert),
        "issuer": cert.issuer.rfc4514_string(),
        "fingerprint": fingerprint(cert),
        "serial": format(cert.serial_number, "x"),
    }


def _verify_v2_signatures(signatures: Any, data: bytes, policy: IndexPolicy):
    if not isinstance(signatures, list) or not signatures:
        raise IndexRefused("signature-missing", "the index carries no signatures")
    if len(signatures) > MAX_SIGNATURES:
        raise IndexRefused(
            "signature-count",
            f"the index carries {len(signatures)} signatures; at most {MAX_SIGNATURES} are read, none was "
            "verified; the endorsers must publish it with fewer",
        )
    signers: Dict[str, Dict[str, str]] = {}
    problems: List[str] = []
    for position, item in enumerate(signatures):
        where = f"signatures[{position}]"
        if not isinstance(item, dict) or not isinstance(item.get("certificate"), str):
            problems.append(f"{where}: malformed (needs 'certificate' and 'signature')")
            continue
        try:
            chain = load_pem_certificates(item["certificate"].encode("ascii", "replace"), where)
            signature = decode_signature(item.get("signature"), where)
            _verify_one(chain[0], chain[1:], signature, data, policy)
        except (IndexRefused, ValueError) as exc:
            _raise_site_trust_refusal(exc)
            problems.append(f"{where}: {exc}")
            continue
        _count_signer(signers, problems, chain[0], where)
    return list(signers.values()), problems


def _raise_site_trust_refusal(exc: Exception) -> None:
    """A broken site trust configuration (a forged CRL) ends the verification, not one signature."""
    if isinstance(exc, IndexRefused) and exc.rule in SITE_TRUST_RULES:
        raise exc


def _count_signer(signers: Dict[str, Dict[str, str]], problems: List[str], cert: x509.Certificate,
                  where: str) -> None:
    """Endorsers count by distinct public key: one key in several certificates counts once."""
    key = public_key_digest(cert)
    if key in signers:
        problems.append(f"{where}: same public key as the signature of {signers[key]['subject']} (counted once)")
        return
    signers[key] = _signer_record(cert)


def _check_threshold(signers: List[Dict[str, str]], problems: List[str], threshold: int) -> None:
    if len(signers) >= threshold:
        return
    detail = "; ".join(problems) if problems else "no further signatures"
    raise IndexRefused(
        "threshold-not-met",
        f"{len(signers)} valid endorser key(s), {threshold} required ({detail})",
    )


def check_unique_uuids(images: List[Dict[str, Any]]) -> None:
    seen: Dict[str, int] = {}
    for position, image in enumerate(images):
        if image["uuid"] in seen:
            raise IndexRefused(
                "uuid-duplicate",
                f"images[{position}] repeats uuid {_short(image['uuid'])} of images[{seen[image['uuid']]}]",
            )
        seen[image["uuid"]] = position


# ---------------------------------------------------------------- legacy (2010 torrent list)


def split_legacy_document(data: bytes) -> tuple:
    """(signed bytes, signature bytes): the signature covers every byte before its line."""
    starts = [m.start() for m in re.finditer(rb"^x509-signature:", data, re.MULTILINE)]
    if not starts:
        raise IndexRefused("signature-missing", "the legacy torrent list has no x509-signature line")
    if len(starts) > 1:
        raise IndexRefused("index-malformed", "the legacy torrent list has more than one x509-signature line")
    signed = data[: starts[0]]
    text = data[starts[0] + len(LEGACY_SIGNATURE_KEY):].decode("ascii", "replace")
    try:
        signature = decode_signature(text, "x509-signature")
    except ValueError as exc:
        raise IndexRefused("signature-malformed", str(exc)) from exc
    return signed, signature


def _legacy_created(value: Any, where: str) -> Optional[str]:
    if value in (None, ""):
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError) as exc:
        raise IndexRefused("entry-malformed", f"{where}: {_short(value)} is not an RFC 2822 date") from exc
    return utc_text(parsed)


def _legacy_compressed(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().upper() in ("Y", "YES", "N", "NO"):
        return value.strip().upper().startswith("Y")
    if value is None:
        return False
    raise IndexRefused("entry-malformed", f"{where}: expected Y or N, got {_short(value)}")


def _normalise_legacy_entry(key: str, entry: Any) -> Dict[str, Any]:
    where = key
    if not isinstance(entry, dict):
        raise IndexRefused("entry-malformed", f"{where}: expected a mapping")

    def field_of(name: str) -> str:
        return f"{where}.{name}"

    size = entry.get("torrent-content-size")
    volume_size = entry.get("volume-size")
    known = {
        "torrent-name", "torrent-file-sha1", "download-url", "torrent-content-hash", "torrent-content-name",
        "torrent-content-size", "torrent-creation-time", "torrent-content-compressed", "volume-name",
        "volume-size", "image-version", "distribution-hosts", "distribution-subcluster",
        "distribution-cluster", "uuid",
    }
    return {
        "uuid": _as_str(_require(entry, "uuid", where), field_of("uuid")),
        "name": _as_str(_require(entry, "volume-name", where), field_of("volume-name")),
        "version": _as_int(_require(entry, "image-version", where), field_of("image-version")),
        "file": check_plain_file_name(
            _require(entry, "torrent-content-name", where), field_of("torrent-content-name")
        ),
        # Legacy sizes are rounded display values: the exact size comes from the verified torrent.
        "size": None,
        "size_approx": parse_size(size, field_of("torrent-content-size")) if size not in (None, "") else None,
        "sha256": None,
        "compressed": _legacy_compressed(
            entry.get("torrent-content-compressed"), field_of("torrent-content-compressed")
        ),
        "volume_size": parse_size(volume_size, field_of("volume-size")) if volume_size not in (None, "") else None,
        "piece_size": None,
        "torrent": {
            "url": _as_url(_require(entry, "download-url", where), field_of("download-url")),
            "name": check_plain_file_name(_require(entry, "torrent-name", where), field_of("torrent-name")),
            "sha256": None,
            "sha1": _as_hex(_require(entry, "torrent-file-sha1", where), 40, field_of("torrent-file-sha1")),
            "info_hash": _as_hex(
                _require(entry, "torrent-content-hash", where), 40, field_of("torrent-content-hash")
            ),
        },
        "web_seeds": [],
        "targets": {
            "hosts": _as_name_list(entry.get("distribution-hosts"), field_of("distribution-hosts")),
            "subclusters": _as_name_list(entry.get("distribution-subcluster"), field_of("distribution-subcluster")),
            "clusters": _as_name_list(entry.get("distribution-cluster"), field_of("distribution-cluster")),
        },
        "created": _legacy_created(entry.get("torrent-creation-time"), field_of("torrent-creation-time")),
        "extra": {k: v for k, v in entry.items() if k not in known},
    }


def _parse_legacy(data: bytes, policy: IndexPolicy, origin: str) -> VerifiedIndex:
    if not policy.legacy:
        raise IndexRefused(
            "legacy-disabled",
            f"{origin} is a legacy torrent list (no version, no expiry); enable legacy mode to accept it",
        )
    signed, signature = split_legacy_document(data)
    if not policy.legacy_certificates:
        raise IndexRefused("endorser-certificates-missing", "legacy mode needs endorser_certificates")
    signers: Dict[str, Dict[str, str]] = {}
    problems: List[str] = []
    for cert in policy.legacy_certificates:
        try:
            _verify_one(cert, (), signature, signed, policy)
        except IndexRefused as exc:
            _raise_site_trust_refusal(exc)
            problems.append(f"{subject_of(cert)}: {exc}")
            continue
        _count_signer(signers, problems, cert, subject_of(cert))
    _check_threshold(list(signers.values()), problems, policy.threshold)

    document = load_untrusted_yaml(signed, origin)
    if not isinstance(document, dict) or not document:
        raise IndexRefused("index-malformed", f"{origin}: expected 'torrent-id N' entries")
    images = []
    for key, entry in document.items():
        if not isinstance(key, str) or not key.startswith("torrent-id"):
            raise IndexRefused("index-malformed", f"{origin}: unexpected top-level key {_short(key)}")
        images.append(_normalise_legacy_entry(key, entry))
    check_unique_uuids(images)
    return VerifiedIndex(
        format="legacy",
        url=policy.fetched_url,
        version=None,
        created=None,
        expires=None,
        endorser=None,
        digest=hashlib.sha256(signed).hexdigest(),
        signers=list(signers.values()),
        images=images,
        problems=problems,
    )


# ---------------------------------------------------------------- entry point


def is_legacy_document(data: bytes) -> bool:
    return re.search(rb"^(x509-signature|torrent-id)", data, re.MULTILINE) is not None


def verify_index(data: bytes, policy: IndexPolicy, origin: str = "the index") -> VerifiedIndex:
    """Verify an index document (either format) against ``policy``; raise IndexRefused on failure."""
    if len(data) > policy.max_size:
        raise IndexRefused(
            "size-cap", f"{origin} is {len(data)} bytes, above the cap of {policy.max_size}; raise max_size"
        )
    if policy.threshold < 1:
        raise IndexRefused("threshold-invalid", f"threshold must be >= 1, got {policy.threshold}")
    try:
        if is_legacy_document(data):
            return _parse_legacy(data, policy, origin)
        return _parse_v2(load_untrusted_yaml(data, origin), policy, origin)
    except IndexRefused:
        raise
    except VmcloudError as exc:
        raise IndexRefused(exc.rule, exc.message) from exc
