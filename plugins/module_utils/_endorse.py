# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The endorser side of the v2 image index: edit, stamp, sign, serialise.

Private to the collection; not a public API.

The reader (_index) is the authority on what an index may hold: image entries are
validated here by the reader's own entry rules, and every signature made here is
checked with the reader's own verifier before it is kept. Editing the signed content
bumps ``version`` by exactly one and sets ``created``/``expires``; signatures that no
longer verify over the new content are dropped, still-valid ones are kept, so several
endorsers can co-sign one version (threshold).
"""

from __future__ import annotations

import base64
import copy
import datetime
import json
import os
import stat
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from ._errors import VmcloudError
from ._index import (
    INDEX_TYPE,
    SPEC_VERSION,
    canonical_signed_bytes,
    check_signed_fields,
    check_v2_document,
    decode_signature,
    normalise_v2_image,
    parse_utc_timestamp,
)
from ._io import write_atomic
from ._requirements import absent, is_absent
from ._time import utc_text
from ._trust import (
    UTC,
    end_entity_problem,
    fingerprint,
    load_pem_certificates,
    not_after,
    not_before,
    subject_of,
    verify_data_signature,
)
from ._yaml import load_untrusted_yaml

try:
    import yaml
except ImportError:
    yaml = absent("yaml")
from ._cryptography import (
    InvalidSignature,
    UnsupportedAlgorithm,
    ec,
    ed25519,
    hashes,
    padding,
    rsa,
    serialization,
    x509,
)

DEFAULT_VALIDITY_DAYS = 30
# Fields that stamping rewrites; everything else in ``signed`` is the content.
STAMP_KEYS = ("version", "created", "expires")
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


def _order_signed(signed: Dict[str, Any]) -> Dict[str, Any]:
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
    working["signed"] = signed = _order_signed(signed)
    content_changed = content_of(signed) != before_content
    if document is None:
        return EditResult(before=None, after=working, changed=True)
    if not content_changed and not needs_renewal(signed, moment, renew_before_days):
        return EditResult(before=document, after=copy.deepcopy(document), changed=False)
    stamp(signed, moment, validity_days)
    check_signed(signed)
    dropped = prune_signatures(working)
    return EditResult(before=document, after=working, changed=True, dropped_signers=dropped)


# ---------------------------------------------------------------- signatures


@dataclass
class Signer:
    """An endorser's private key and certificate (leaf first, then any intermediates)."""

    key: Any
    chain: Sequence[x509.Certificate]

    @property
    def cert(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def subject(self) -> str:
        return subject_of(self.cert)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.cert)

    @property
    def certificate_pem(self) -> str:
        return "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in self.chain)


def _public_der(key: Any) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_signer(
    certificate_pem: bytes,
    private_key_pem: bytes,
    passphrase: str | bytes | None = None,
    certificate_origin: str = "the certificate",
    key_origin: str = "the private key",
) -> Signer:
    """Load and pair an endorser key with its certificate; error messages never quote the key."""
    chain = load_pem_certificates(certificate_pem, certificate_origin)
    password = passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase
    try:
        key = serialization.load_pem_private_key(private_key_pem, password=password or None)
    except TypeError as exc:
        hint = "it is encrypted; give its passphrase" if not password else "it is not encrypted; drop the passphrase"
        raise EndorseError("private-key-unreadable", f"cannot load {key_origin}: {hint}") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise EndorseError(
            "private-key-unreadable",
            f"cannot load {key_origin}: not a PEM private key, or the passphrase is wrong",
        ) from exc
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)):
        raise EndorseError(
            "signature-algorithm", f"{key_origin}: {type(key).__name__} keys cannot sign (RSA, EC P-256, Ed25519)"
        )
    if _public_der(key.public_key()) != _public_der(chain[0].public_key()):
        raise EndorseError(
            "private-key-mismatch",
            f"{key_origin} does not belong to certificate {subject_of(chain[0])} ({certificate_origin}); "
            "give the key the certificate was issued for",
        )
    return Signer(key=key, chain=chain)


def check_signer_usable(signer: Signer, now: datetime.datetime) -> None:
    """Refuse a certificate that every reader would refuse for its dates or key usage."""
    if now < not_before(signer.cert):
        raise EndorseError(
            "certificate-not-yet-valid",
            f"certificate {signer.subject} is valid from {format_timestamp(not_before(signer.cert))} only",
        )
    if now > not_after(signer.cert):
        raise EndorseError(
            "certificate-expired",
            f"certificate {signer.subject} expired at {format_timestamp(not_after(signer.cert))}; renew it first",
        )
    problem = end_entity_problem(signer.cert)
    if problem:
        raise EndorseError("certificate-usage", f"certificate {signer.subject} {problem}; readers would refuse it")


def _sign_bytes(key: Any, data: bytes) -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    return key.sign(data)


@dataclass
class SignatureStatus:
    """One entry of ``signatures``: who made it and whether it verifies over the content."""

    item: Any
    subject: str
    fingerprint: Optional[str]
    valid: bool
    problem: Optional[str] = None


def signature_statuses(document: Dict[str, Any]) -> List[SignatureStatus]:
    """Check every signature over the current content (not the certificates' trust)."""
    data = canonical_signed_bytes(document["signed"])
    statuses: List[SignatureStatus] = []
    for position, item in enumerate(document.get("signatures") or []):
        where = f"signatures[{position}]"
        if not isinstance(item, dict) or not isinstance(item.get("certificate"), str):
            statuses.append(SignatureStatus(item, "<malformed>", None, False, f"{where}: malformed"))
            continue
        try:
            chain = load_pem_certificates(item["certificate"].encode("ascii", "replace"), where)
        except VmcloudError as exc:
            statuses.append(SignatureStatus(item, "<unreadable certificate>", None, False, str(exc)))
            continue
        status = SignatureStatus(item, subject_of(chain[0]), fingerprint(chain[0]), False)
        try:
            verify_data_signature(chain[0], decode_signature(item.get("signature"), where), data)
        except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError) as exc:
            status.problem = f"{where}: signature by {status.subject} does not verify ({exc or 'mismatch'})"
        else:
            status.valid = True
        statuses.append(status)
    return statuses


def prune_signatures(document: Dict[str, Any]) -> List[str]:
    """Drop signatures that do not verify over the current content, and repeats by one
    certificate; return the subjects whose signatures were dropped."""
    kept: List[Any] = []
    seen: set = set()
    dropped: List[str] = []
    for status in signature_statuses(document):
        if status.valid and status.fingerprint not in seen:
            seen.add(status.fingerprint)
            kept.append(status.item)
        else:
            dropped.append(status.subject)
    document["signatures"] = kept
    return dropped


def valid_signers(document: Dict[str, Any]) -> List[Dict[str, str]]:
    """Distinct certificates whose signatures verify over the current content."""
    signers: Dict[str, Dict[str, str]] = {}
    for status in signature_statuses(document):
        if status.valid and status.fingerprint is not None:
            signers.setdefault(status.fingerprint, {"subject": status.subject, "fingerprint": status.fingerprint})
    return list(signers.values())


def check_signable(document: Dict[str, Any], now: datetime.datetime) -> None:
    """Refuse to sign an index that every reader would refuse as expired."""
    signed = document["signed"]
    expires = parse_utc_timestamp(signed["expires"], "signed.expires")
    if expires <= now:
        raise EndorseError(
            "index-expired",
            f"index version {signed['version']} expired at {signed['expires']}; publish a new version first "
            "(vmcloud.fleet.index_image with renew_before) and sign that",
        )


def sign_document(document: Dict[str, Any], signer: Signer) -> bool:
    """Add ``signer``'s signature over the current content, in place.

    Stale signatures are dropped first. A certificate that already has a valid signature
    is left as it is (ECDSA signatures differ on every run, so this compares by verifying).
    Returns True when a signature was added.
    """
    prune_signatures(document)
    if any(s.valid and s.fingerprint == signer.fingerprint for s in signature_statuses(document)):
        return False
    data = canonical_signed_bytes(document["signed"])
    signature = _sign_bytes(signer.key, data)
    try:
        verify_data_signature(signer.cert, signature, data)
    except (InvalidSignature, UnsupportedAlgorithm) as exc:
        raise EndorseError(
            "signature-algorithm", f"a signature by {signer.subject} would not verify for readers: {exc}"
        ) from exc
    document["signatures"].append(
        {"certificate": signer.certificate_pem, "signature": base64.b64encode(signature).decode("ascii")}
    )
    return True


def describe_signatures(document: Dict[str, Any]) -> List[str]:
    """One line per signature, for diffs: the signer's subject, and whether it verifies."""
    return [
        status.subject if status.valid else f"{status.subject} (does not verify)"
        for status in signature_statuses(document)
    ]


@dataclass
class SignResult:
    """What signing produced: the document to write, and who was added or dropped."""

    before: Dict[str, Any]
    after: Dict[str, Any]
    changed: bool
    added: List[str]
    dropped: List[str]


def sign_index(
    document: Dict[str, Any], signers: Sequence[Signer], now: Optional[datetime.datetime] = None
) -> SignResult:
    """Have every signer sign ``document`` once, without touching the original.

    Refuses an expired index and certificates readers would refuse; drops stale
    signatures; leaves a certificate's still-valid signature as it is.
    """
    if not signers:
        raise EndorseError("signers-missing", "no signer given; list at least one certificate and key")
    moment = (now or utc_now()).astimezone(UTC)
    check_signable(document, moment)
    for signer in signers:
        check_signer_usable(signer, moment)
    working = copy.deepcopy(document)
    working["signatures"] = list(working.get("signatures") or [])
    dropped = prune_signatures(working)
    added = [signer.subject for signer in signers if sign_document(working, signer)]
    return SignResult(before=document, after=working, changed=working != document, added=added, dropped=dropped)


# ---------------------------------------------------------------- files


def _read_file(path: str, rule: str, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise EndorseError(rule, f"cannot read {what} {path}: {exc.strerror}") from exc


def read_document(path: str) -> Optional[Dict[str, Any]]:
    """The index at ``path`` parsed for editing, or None when there is no file yet."""
    if not os.path.lexists(path):
        return None
    return load_document(_read_file(path, "index-unreadable", "the index"), path)


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


def load_signer_files(
    certificate: str,
    private_key: Optional[str] = None,
    private_key_content: Optional[str] = None,
    passphrase: Optional[str] = None,
) -> Signer:
    """A Signer from a certificate file and a key file (or the key's PEM text)."""
    if (private_key is None) == (private_key_content is None):
        raise EndorseError(
            "private-key-missing", f"give exactly one of private_key and private_key_content for {certificate}"
        )
    if private_key is not None:
        key_pem = _read_file(private_key, "private-key-unreadable", "the private key")
        key_origin = f"the private key {private_key}"
    else:
        key_pem = (private_key_content or "").encode("utf-8")
        key_origin = f"the private_key_content given for {certificate}"
    return load_signer(
        _read_file(certificate, "certificate-unreadable", "the certificate"),
        key_pem,
        passphrase,
        certificate_origin=certificate,
        key_origin=key_origin,
    )
