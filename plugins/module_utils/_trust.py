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
from typing import Any, Iterable, List, Optional, Sequence

from ._cryptography import (
    ExtendedKeyUsageOID,
    ExtensionOID,
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
from ._errors import IndexRefused, VmcloudError

Encoding = serialization.Encoding
PublicFormat = serialization.PublicFormat

MAX_CHAIN_DEPTH = 6
UTC = datetime.UTC
# Extended key usages that let an end-entity certificate sign an index.
SIGNING_USAGES = frozenset({ExtendedKeyUsageOID.CODE_SIGNING, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE})
# Refusals about the site's own trust configuration rather than one signature: they end
# the verification instead of only making that signature not count.
SITE_TRUST_RULES = frozenset({"crl-signature-invalid"})


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
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def public_key_digest(cert: x509.Certificate) -> str:
    """SHA-256 of the SubjectPublicKeyInfo DER: one endorser key, whatever certificates carry it."""
    return hashlib.sha256(cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def subject_of(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


def load_pem_certificates(data: bytes, origin: str) -> List[x509.Certificate]:
    """Every certificate in a PEM bundle; refuses a bundle that holds none."""
    marker = b"-----BEGIN CERTIFICATE-----"
    certs = []
    for block in data.split(marker)[1:]:
        try:
            cert = x509.load_pem_x509_certificate(marker + block)
            # cryptography parses extensions lazily: read them now, so a duplicated or
            # malformed extension is refused here and cannot escape from a later check.
            cert.extensions  # noqa: B018
        except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
            detail = " ".join(str(exc).split()) or type(exc).__name__
            raise IndexRefused("certificate-malformed", f"{origin}: cannot parse a certificate ({detail})") from exc
        certs.append(cert)
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


def _extension(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> Any:
    try:
        return cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None


def _is_ca(cert: x509.Certificate) -> bool:
    constraints = _extension(cert, ExtensionOID.BASIC_CONSTRAINTS)
    if constraints is None or not constraints.ca:
        return False
    usage = _extension(cert, ExtensionOID.KEY_USAGE)
    return usage is None or bool(usage.key_cert_sign)


def end_entity_problem(cert: x509.Certificate) -> Optional[str]:
    """Why ``cert`` is not an end-entity certificate fit for signing an index, or None.

    Both basicConstraints (CA:FALSE) and keyUsage (digitalSignature) must be present,
    as the IGTF certificate profile requires: an endorser certificate says what it is for.
    """
    constraints = _extension(cert, ExtensionOID.BASIC_CONSTRAINTS)
    if constraints is None:
        return "has no basicConstraints extension; an endorser certificate must say CA:FALSE"
    if constraints.ca:
        return "is a CA certificate (basicConstraints CA:TRUE); sign with an end-entity certificate"
    usage = _extension(cert, ExtensionOID.KEY_USAGE)
    if usage is None or not usage.digital_signature:
        return "does not allow digitalSignature (keyUsage)"
    extended = _extension(cert, ExtensionOID.EXTENDED_KEY_USAGE)
    if extended is not None and not SIGNING_USAGES & set(extended):
        allowed = ", ".join(getattr(oid, "_name", oid.dotted_string) for oid in extended)
        return f"has extendedKeyUsage {allowed} without codeSigning (or anyExtendedKeyUsage)"
    return None


def _is_self_issued(cert: x509.Certificate) -> bool:
    return cert.subject == cert.issuer


def _check_path_length(issuer: x509.Certificate, cas_below: int, leaf: x509.Certificate) -> None:
    """RFC 5280 6.1.4 (l, m): at most pathLenConstraint non-self-issued CAs below ``issuer``."""
    constraints = _extension(issuer, ExtensionOID.BASIC_CONSTRAINTS)
    limit = constraints.path_length if constraints is not None else None
    if limit is not None and cas_below > limit:
        raise IndexRefused(
            "certificate-path-length",
            f"{subject_of(issuer)} has pathLenConstraint {limit} but the chain of {subject_of(leaf)} has "
            f"{cas_below} intermediate CA(s) below it",
        )


def _signature_valid(crl: x509.CertificateRevocationList, cert: x509.Certificate) -> bool:
    """Whether ``cert``'s key signed ``crl``; checked like a chain link, because cryptography
    38's ``is_signature_valid`` raises TypeError for Ed25519 keys."""
    try:
        _verify_with_key(cert.public_key(), crl.signature, crl.tbs_certlist_bytes, crl.signature_hash_algorithm)
    except (InvalidSignature, UnsupportedAlgorithm, TypeError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class EndorserPin:
    """A pinned endorser: its subject and, recommended, the CA that issued its certificate."""

    subject: x509.Name
    issuer: Optional[x509.Name] = None

    def describe(self) -> str:
        text = self.subject.rfc4514_string()
        return f"{text} issued by {self.issuer.rfc4514_string()}" if self.issuer is not None else text


_PIN_KEYS = ("subject", "issuer")


def _pin_name(pin: dict, key: str, where: str) -> x509.Name:
    text = pin.get(key)
    if not isinstance(text, str) or not text.strip():
        raise VmcloudError("option-invalid", f"{where}: {key!r} is required (an RFC 4514 name, e.g. CN=cern-it,O=CERN)")
    try:
        name = x509.Name.from_rfc4514_string(text)
    except ValueError as exc:
        raise VmcloudError(
            "option-invalid", f"{where}.{key}: {text!r} is not an RFC 4514 name (e.g. CN=cern-it,O=CERN)"
        ) from exc
    if not list(name):
        raise VmcloudError("option-invalid", f"{where}.{key}: {text!r} names nothing")
    return name


def parse_pins(items: Iterable[Any], option: str = "endorser_pins") -> tuple:
    """EndorserPins from the option's list of {subject, issuer} mappings; refuses anything else."""
    pins = []
    for position, pin in enumerate(items):
        where = f"{option}[{position}]"
        if not isinstance(pin, dict):
            raise VmcloudError("option-invalid", f"{where}: expected a mapping with subject and issuer, got {pin!r}")
        unknown = sorted(str(key) for key in pin if key not in _PIN_KEYS)
        if unknown:
            raise VmcloudError("option-invalid", f"{where}: unknown key {unknown[0]!r} (a pin has subject and issuer)")
        pins.append(EndorserPin(_pin_name(pin, "subject", where), _pin_name(pin, "issuer", where)))
    return tuple(pins)


@dataclass
class TrustStore:
    """Trust anchors, CRLs and pinned endorsers, with one reference time.

    ``pinned_subjects`` are subject-only pins (RFC 4514 strings, compared as such);
    ``pins`` also name the issuing CA. A signer must match one of either when any is set.
    """

    anchors: Sequence[x509.Certificate]
    crls: Sequence[x509.CertificateRevocationList] = ()
    pinned_subjects: Sequence[str] = ()
    now: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(UTC))
    pins: Sequence[EndorserPin] = ()

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

    def _crls_of(self, issuer: x509.Certificate) -> List[x509.CertificateRevocationList]:
        """The configured CRLs that ``issuer`` signed.

        A CRL in the issuer's name that its key did not sign is refused (a forged or damaged
        CRL must not silently revoke nothing), unless another configured anchor of that name
        signed it: a re-keyed CA, whose old CRL covers the old key's certificates.
        A CRL of a CA outside the chain does not concern it and is not looked at.
        """
        signed = []
        for crl in self.crls:
            if crl.issuer != issuer.subject:
                continue
            if _signature_valid(crl, issuer):
                signed.append(crl)
                continue
            namesakes = (a for a in self.anchors if a.subject == issuer.subject and a is not issuer)
            if any(_signature_valid(crl, anchor) for anchor in namesakes):
                continue
            raise IndexRefused(
                "crl-signature-invalid",
                f"a configured CRL of {issuer.subject.rfc4514_string()} does not verify with that CA's key; "
                "replace it with the CA's published CRL",
            )
        return signed

    def _check_revocation(self, cert: x509.Certificate, issuer: x509.Certificate) -> None:
        for crl in self._crls_of(issuer):
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

    def _chain_of(self, leaf: x509.Certificate, intermediates: Sequence[x509.Certificate]) -> List[x509.Certificate]:
        """[leaf, issuer, ..., anchor]: each certificate verified with the next one's key."""
        chain = [leaf]
        for _depth in range(MAX_CHAIN_DEPTH):
            current = chain[-1]
            issuer = next((a for a in self.anchors if _issued_by(current, a)), None)
            if issuer is not None:
                chain.append(issuer)
                return chain
            issuer = next((c for c in intermediates if c is not current and _issued_by(current, c)), None)
            if issuer is None:
                raise IndexRefused(
                    "certificate-untrusted",
                    f"certificate {subject_of(current)} (issuer {current.issuer.rfc4514_string()}) does "
                    "not chain to a configured trust anchor",
                )
            chain.append(issuer)
        raise IndexRefused("certificate-untrusted", f"chain of {subject_of(leaf)} is longer than allowed")

    def _check_usage(self, leaf: x509.Certificate) -> None:
        problem = end_entity_problem(leaf)
        if problem is None and fingerprint(leaf) in {fingerprint(a) for a in self.anchors}:
            problem = "is a trust anchor; an endorser certificate must be issued by one"
        if problem is not None:
            raise IndexRefused("certificate-usage", f"certificate {subject_of(leaf)} {problem}")

    def verify_endorser(self, leaf: x509.Certificate, intermediates: Sequence[x509.Certificate] = ()) -> None:
        """Check that ``leaf`` is an end-entity signing certificate that chains to an anchor
        within every pathLenConstraint, is in validity, unrevoked and pinned."""
        self._check_time(leaf)
        self._check_usage(leaf)
        chain = self._chain_of(leaf, intermediates)
        for position in range(1, len(chain)):
            child, issuer = chain[position - 1], chain[position]
            if not _is_ca(issuer):
                raise IndexRefused(
                    "certificate-untrusted",
                    f"{subject_of(issuer)} is not a CA (basicConstraints/keyUsage) and cannot issue "
                    f"{subject_of(child)}",
                )
            _check_path_length(issuer, sum(1 for ca in chain[1:position] if not _is_self_issued(ca)), leaf)
            self._check_time(issuer)
            self._check_revocation(child, issuer)
        self._check_pinned(leaf, chain[1])

    def _pin_problem(self, pin: EndorserPin, leaf: x509.Certificate, issuer: x509.Certificate) -> Optional[str]:
        if leaf.subject != pin.subject:
            return "other subject"
        if pin.issuer is None:
            return None
        if issuer.subject != pin.issuer:
            return f"issued by {subject_of(issuer)}"
        # Any CA of the bundle can mint an intermediate with an anchor's name: when the pinned
        # issuer is a configured anchor, the issuing key must be that anchor's.
        namesakes = [a for a in self.anchors if a.subject == pin.issuer]
        if namesakes and public_key_digest(issuer) not in {public_key_digest(a) for a in namesakes}:
            return f"issued by a CA named {subject_of(issuer)} that is not the configured trust anchor of that name"
        return None

    def _check_pinned(self, leaf: x509.Certificate, issuer: x509.Certificate) -> None:
        if not self.pinned_subjects and not self.pins:
            return
        if subject_of(leaf) in self.pinned_subjects:
            return
        problems = [self._pin_problem(pin, leaf, issuer) for pin in self.pins]
        if None in problems:
            return
        near = [problem for problem in problems if problem != "other subject"]
        detail = f"; same subject, but {near[0]}" if near else ""
        pinned = list(self.pinned_subjects) + [pin.describe() for pin in self.pins]
        raise IndexRefused(
            "endorser-not-pinned",
            f"endorser {subject_of(leaf)} (issuer {leaf.issuer.rfc4514_string()}) is not among the pinned "
            f"endorsers ({'; '.join(pinned)}){detail}",
        )
