# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""X.509 trust for endorser certificates. Private to the collection; not a public API.

Runs on hypervisors with Debian bookworm's python3-cryptography 38, which has no
``cryptography.x509.verification`` and no ``verify_directly_issued_by``: each link
of a chain is checked here with the issuer's public key over ``tbs_certificate_bytes``.
"""

from __future__ import annotations

import datetime
import glob
import hashlib
import os
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtensionOID

from ._errors import IndexRefused

MAX_CHAIN_DEPTH = 6
UTC = datetime.UTC


def _utc(naive_or_aware: datetime.datetime) -> datetime.datetime:
    if naive_or_aware.tzinfo is None:
        return naive_or_aware.replace(tzinfo=UTC)
    return naive_or_aware


def not_before(cert: x509.Certificate) -> datetime.datetime:
    return getattr(cert, "not_valid_before_utc", None) or _utc(cert.not_valid_before)


def not_after(cert: x509.Certificate) -> datetime.datetime:
    return getattr(cert, "not_valid_after_utc", None) or _utc(cert.not_valid_after)


def _crl_next_update(crl: x509.CertificateRevocationList) -> Optional[datetime.datetime]:
    if hasattr(crl, "next_update_utc"):
        return crl.next_update_utc
    return _utc(crl.next_update) if crl.next_update is not None else None


def fingerprint(cert: x509.Certificate) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding

    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def subject_of(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


def load_pem_certificates(data: bytes, origin: str) -> List[x509.Certificate]:
    """Every certificate in a PEM bundle; refuses a bundle that holds none."""
    marker = b"-----BEGIN CERTIFICATE-----"
    certs = []
    for block in data.split(marker)[1:]:
        try:
            certs.append(x509.load_pem_x509_certificate(marker + block))
        except ValueError as exc:
            raise IndexRefused("certificate-malformed", f"{origin}: cannot parse a certificate ({exc})") from exc
    if not certs:
        raise IndexRefused("certificate-malformed", f"{origin}: no PEM certificate found")
    return certs


def _files_of(path: str) -> List[str]:
    if os.path.isdir(path):
        found: List[str] = []
        for pattern in ("*.pem", "*.crt", "*.crl"):
            found.extend(glob.glob(os.path.join(path, pattern)))
        return sorted(found)
    return [path]


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise IndexRefused(f"{what}-unreadable", f"cannot read {what} {path}: {exc.strerror}") from exc


def load_trust_anchors(paths: Iterable[str]) -> List[x509.Certificate]:
    anchors: List[x509.Certificate] = []
    for path in paths:
        for name in _files_of(path):
            if name.endswith(".crl"):
                continue
            anchors.extend(load_pem_certificates(_read(name, "trust-anchors"), name))
    if not anchors:
        raise IndexRefused("trust-anchors-missing", "no trust anchor certificate configured; set trust_anchors")
    return anchors


def load_crls(paths: Iterable[str]) -> List[x509.CertificateRevocationList]:
    crls = []
    for path in paths:
        for name in _files_of(path):
            data = _read(name, "crl")
            try:
                if b"-----BEGIN X509 CRL-----" in data:
                    crls.append(x509.load_pem_x509_crl(data))
                else:
                    crls.append(x509.load_der_x509_crl(data))
            except ValueError as exc:
                raise IndexRefused("crl-malformed", f"{name}: cannot parse the CRL ({exc})") from exc
    return crls


def _verify_with_key(public_key, signature: bytes, data: bytes, hash_algorithm) -> None:
    """Raise InvalidSignature unless ``signature`` over ``data`` verifies with ``public_key``."""
    if isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(signature, data, padding.PKCS1v15(), hash_algorithm)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, data, ec.ECDSA(hash_algorithm))
    elif isinstance(public_key, ed25519.Ed25519PublicKey):
        public_key.verify(signature, data)
    else:
        raise UnsupportedAlgorithm(f"unsupported key type {type(public_key).__name__}")


def verify_data_signature(cert: x509.Certificate, signature: bytes, data: bytes) -> None:
    """Verify an endorser's signature: RSA PKCS#1 v1.5 / ECDSA P-256 with SHA-256, or Ed25519.

    Raises InvalidSignature (bad signature) or UnsupportedAlgorithm (other key types).
    """
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey) and not isinstance(key.curve, ec.SECP256R1):
        raise UnsupportedAlgorithm(f"ECDSA curve {key.curve.name} is not allowed (P-256 only)")
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
        raise UnsupportedAlgorithm(f"RSA key of {key.key_size} bits is too short (2048 at least)")
    _verify_with_key(key, signature, data, hashes.SHA256())


def _issued_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    if child.issuer != issuer.subject:
        return False
    try:
        _verify_with_key(
            issuer.public_key(), child.signature, child.tbs_certificate_bytes, child.signature_hash_algorithm
        )
    except (InvalidSignature, UnsupportedAlgorithm, TypeError, ValueError):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value
    except x509.ExtensionNotFound:
        return False
    if not constraints.ca:
        return False
    try:
        usage = cert.extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE).value
    except x509.ExtensionNotFound:
        return True
    return bool(usage.key_cert_sign)


def may_sign_data(cert: x509.Certificate) -> bool:
    try:
        usage = cert.extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE).value
    except x509.ExtensionNotFound:
        return True
    return bool(usage.digital_signature)


@dataclass
class TrustStore:
    """Trust anchors, CRLs and pinned endorser subjects, with one reference time."""

    anchors: Sequence[x509.Certificate]
    crls: Sequence[x509.CertificateRevocationList] = ()
    pinned_subjects: Sequence[str] = ()
    now: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(UTC))

    def _check_time(self, cert: x509.Certificate) -> None:
        if self.now < not_before(cert):
            raise IndexRefused(
                "certificate-not-yet-valid",
                f"certificate {subject_of(cert)} is valid from {not_before(cert).isoformat()}, "
                f"after the reference time {self.now.isoformat()}",
            )
        if self.now > not_after(cert):
            raise IndexRefused(
                "certificate-expired",
                f"certificate {subject_of(cert)} expired at {not_after(cert).isoformat()} "
                f"(reference time {self.now.isoformat()}); the endorser must renew it",
            )

    def _check_revocation(self, cert: x509.Certificate, issuer: x509.Certificate) -> None:
        for crl in self.crls:
            if crl.issuer != issuer.subject or not crl.is_signature_valid(issuer.public_key()):
                continue
            next_update = _crl_next_update(crl)
            if next_update is not None and next_update < self.now:
                raise IndexRefused(
                    "crl-stale",
                    f"the CRL of {issuer.subject.rfc4514_string()} was due for renewal at "
                    f"{next_update.isoformat()}; fetch a current CRL",
                )
            if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
                raise IndexRefused(
                    "certificate-revoked",
                    f"certificate {subject_of(cert)} (serial {cert.serial_number:x}) is revoked by "
                    f"the CRL of {issuer.subject.rfc4514_string()}",
                )

    def verify_endorser(self, leaf: x509.Certificate, intermediates: Sequence[x509.Certificate] = ()) -> None:
        """Check that ``leaf`` chains to an anchor, is in validity, unrevoked and pinned."""
        self._check_time(leaf)
        if not may_sign_data(leaf):
            raise IndexRefused(
                "certificate-usage", f"certificate {subject_of(leaf)} does not allow digitalSignature"
            )
        anchor_prints = {fingerprint(a) for a in self.anchors}
        current = leaf
        for _depth in range(MAX_CHAIN_DEPTH):
            if fingerprint(current) in anchor_prints:
                break
            issuer = next((a for a in self.anchors if _issued_by(current, a)), None)
            is_anchor = issuer is not None
            if issuer is None:
                issuer = next((c for c in intermediates if c is not current and _issued_by(current, c)), None)
            if issuer is None:
                raise IndexRefused(
                    "certificate-untrusted",
                    f"certificate {subject_of(current)} (issuer {current.issuer.rfc4514_string()}) does "
                    "not chain to a configured trust anchor",
                )
            if not _is_ca(issuer):
                raise IndexRefused(
                    "certificate-untrusted",
                    f"{subject_of(issuer)} is not a CA (basicConstraints/keyUsage) and cannot issue "
                    f"{subject_of(current)}",
                )
            self._check_time(issuer)
            self._check_revocation(current, issuer)
            current = issuer
            if is_anchor:
                break
        else:
            raise IndexRefused("certificate-untrusted", f"chain of {subject_of(leaf)} is longer than allowed")
        if self.pinned_subjects and subject_of(leaf) not in self.pinned_subjects:
            raise IndexRefused(
                "endorser-not-pinned",
                f"endorser {subject_of(leaf)} is not among the pinned endorsers "
                f"({', '.join(self.pinned_subjects)})",
            )
