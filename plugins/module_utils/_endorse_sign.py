# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The endorser side of the v2 image index, signing: signers, signatures, co-signing.

Private to the collection; not a public API.

Every signature made here is checked with the reader's own verifier (``_trust``) before it is
kept; a signature that no longer verifies over the content is dropped, a still-valid one is kept,
so several endorsers can co-sign one version (threshold). The serialisation is in
``_endorse_document``, the edits in ``_endorse_edit``.
"""

from __future__ import annotations

import base64
import copy
import datetime
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

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
from ._endorse_document import EndorseError, format_timestamp, read_file, utc_now
from ._errors import VmcloudError
from ._index import canonical_signed_bytes, decode_signature, parse_utc_timestamp
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
        key_pem = read_file(private_key, "private-key-unreadable", "the private key")
        key_origin = f"the private key {private_key}"
    else:
        key_pem = (private_key_content or "").encode("utf-8")
        key_origin = f"the private_key_content given for {certificate}"
    return load_signer(
        read_file(certificate, "certificate-unreadable", "the certificate"),
        key_pem,
        passphrase,
        certificate_origin=certificate,
        key_origin=key_origin,
    )
