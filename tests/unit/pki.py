"""A throwaway PKI for tests: CAs, endorser certificates of each algorithm, CRLs.

Works with cryptography 38 (Debian bookworm, the hypervisors' version) and newer.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
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


def _build(subject: x509.Name, issuer: Optional[Identity], key, start, end, ca: bool,
           digital_signature: bool = True) -> x509.Certificate:
    signing_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=digital_signature, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    )
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    return builder.sign(signing_key, _hash_for(signing_key))


def make_ca(common_name: str, key_type: str = "ec", not_before=None, not_after=None) -> Identity:
    key = new_key(key_type)
    start, end = _window(not_before, not_after)
    return Identity(_build(_name(common_name), None, key, start, end, ca=True), key)


def make_intermediate(parent: Identity, common_name: str, key_type: str = "ec") -> Identity:
    key = new_key(key_type)
    start, end = _window(None, None)
    return Identity(_build(_name(common_name), parent, key, start, end, ca=True), key)


def make_endorser(ca: Identity, common_name: str, key_type: str = "rsa", not_before=None, not_after=None,
                  key_usage_digital_signature: bool = True) -> Identity:
    key = new_key(key_type)
    start, end = _window(not_before, not_after)
    cert = _build(_name(common_name), ca, key, start, end, ca=False,
                  digital_signature=key_usage_digital_signature)
    return Identity(cert, key)


def make_crl(ca: Identity, revoked_serials: Iterable[int], next_update=None,
             last_update=None) -> x509.CertificateRevocationList:
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
    return builder.sign(ca.key, _hash_for(ca.key))


def pem(obj) -> bytes:
    """PEM of a certificate or a CRL."""
    return obj.public_bytes(serialization.Encoding.PEM)


def key_pem(key, passphrase: Optional[bytes] = None) -> bytes:
    encryption = (serialization.BestAvailableEncryption(passphrase) if passphrase
                  else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
