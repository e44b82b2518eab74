"""A throwaway PKI for tests: CAs, endorser certificates of each algorithm, CRLs.

Works with cryptography 38 (Debian bookworm, the hypervisors' version) and newer.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

UTC = datetime.UTC
BASE_TIME = datetime.datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)


@dataclass
class Identity:
    cert: x509.Certificate
    key: Any


def new_key(key_type: str):
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "rsa1024":
        return rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - refusal tests
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ec384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(key_type)


def _hash_for(key) -> Optional[hashes.HashAlgorithm]:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vmcloud tests"),
    ])


def _window(not_before, not_after):
    start = not_before or BASE_TIME - datetime.timedelta(days=30)
    end = not_after or BASE_TIME + datetime.timedelta(days=365)
    return start, end


# What an end-entity (endorser) certificate carries unless a test says otherwise.
CODE_SIGNING = (ExtendedKeyUsageOID.CODE_SIGNING,)


def _key_usage(ca: bool, digital_signature: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
        encipher_only=False, decipher_only=False,
    )


def _build(subject: x509.Name, issuer: Optional[Identity], key, start, end, ca: bool,
           digital_signature: bool = True, path_length: Optional[int] = None,
           basic_constraints: bool = True, key_usage: bool = True,
           extended_key_usage: Optional[Sequence[x509.ObjectIdentifier]] = None) -> x509.Certificate:
    signing_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
    )
    if basic_constraints:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
    if key_usage:
        builder = builder.add_extension(_key_usage(ca, digital_signature), critical=True)
    if extended_key_usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(extended_key_usage)), critical=False)
    return builder.sign(signing_key, _hash_for(signing_key))


def make_ca(common_name: str, key_type: str = "ec", not_before=None, not_after=None,
            path_length: Optional[int] = None) -> Identity:
    key = new_key(key_type)
    start, end = _window(not_before, not_after)
    return Identity(_build(_name(common_name), None, key, start, end, ca=True, path_length=path_length), key)


def make_intermediate(parent: Identity, common_name: str, key_type: str = "ec",
                      path_length: Optional[int] = None) -> Identity:
    key = new_key(key_type)
    start, end = _window(None, None)
    return Identity(_build(_name(common_name), parent, key, start, end, ca=True, path_length=path_length), key)


def make_endorser(ca: Identity, common_name: str, key_type: str = "rsa", not_before=None, not_after=None,
                  key_usage_digital_signature: bool = True, key=None, ca_flag: bool = False,
                  basic_constraints: bool = True, key_usage: bool = True,
                  extended_key_usage: Optional[Sequence[x509.ObjectIdentifier]] = CODE_SIGNING) -> Identity:
    """An endorser certificate; ``key`` reuses a key (a re-issued certificate: same key, new serial)."""
    key = key or new_key(key_type)
    start, end = _window(not_before, not_after)
    cert = _build(_name(common_name), ca, key, start, end, ca=ca_flag,
                  digital_signature=key_usage_digital_signature, basic_constraints=basic_constraints,
                  key_usage=key_usage, extended_key_usage=extended_key_usage)
    return Identity(cert, key)


def with_duplicated_extension(cert: x509.Certificate, issuer: Identity) -> x509.Certificate:
    """``cert`` with its basicConstraints extension repeated, re-signed by ``issuer``.

    CertificateBuilder refuses duplicates, so an extra extension under a placeholder OID
    (same length as basicConstraints' 2.5.29.19) is added and its OID bytes patched.
    """
    placeholder = x509.ObjectIdentifier("2.5.29.99")
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    builder = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(cert.issuer)
        .public_key(cert.public_key())
        .serial_number(cert.serial_number)
        .not_valid_before(getattr(cert, "not_valid_before_utc", None) or cert.not_valid_before)
        .not_valid_after(getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after)
    )
    for extension in cert.extensions:
        builder = builder.add_extension(extension.value, critical=extension.critical)
    builder = builder.add_extension(
        x509.UnrecognizedExtension(placeholder, constraints.value.public_bytes()), critical=True
    )
    draft = builder.sign(issuer.key, _hash_for(issuer.key))
    old_oid, new_oid = b"\x06\x03\x55\x1d\x63", b"\x06\x03\x55\x1d\x13"
    tbs = draft.tbs_certificate_bytes.replace(old_oid, new_oid)
    der = draft.public_bytes(serialization.Encoding.DER)
    # The TBS keeps its length, so only the signature changes; ECDSA signatures vary in
    # length, so sign until one fits the draft's.
    for _attempt in range(64):
        signature = _sign(issuer.key, tbs)
        if len(signature) == len(draft.signature):
            return x509.load_der_x509_certificate(
                der.replace(draft.tbs_certificate_bytes, tbs).replace(draft.signature, signature)
            )
    raise AssertionError("could not re-sign the certificate with a signature of the same length")


def _sign(key, data: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def make_crl(ca: Identity, revoked_serials: Iterable[int], next_update=None,
             last_update=None, signing_key=None) -> x509.CertificateRevocationList:
    """A CRL in ``ca``'s name, signed by ``ca`` (or by ``signing_key``: a forged CRL)."""
    last = last_update or BASE_TIME - datetime.timedelta(days=1)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(last)
        .next_update(next_update or BASE_TIME + datetime.timedelta(days=30))
    )
    for serial in revoked_serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(last).build()
        )
    signing_key = signing_key or ca.key
    return builder.sign(signing_key, _hash_for(signing_key))


def pem(obj) -> bytes:
    """PEM of a certificate or a CRL."""
    return obj.public_bytes(serialization.Encoding.PEM)


def key_pem(key, passphrase: Optional[bytes] = None) -> bytes:
    encryption = (serialization.BestAvailableEncryption(passphrase) if passphrase
                  else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
