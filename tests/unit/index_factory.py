"""Builders for signed index documents in tests.

Signs with cryptography directly (not with the collection's endorser library), so the
reader is tested against an independent signer; legacy lists are signed by the real
``openssl dgst`` command, as the 2010 tooling did.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import subprocess
import tempfile
from typing import Any, Dict, Iterable, List

import yaml
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

NOW = "2026-11-24T10:00:00Z"
CREATED = "2026-11-24T09:00:00Z"
EXPIRES = "2026-12-24T10:00:00Z"
INDEX_URL = "http://catalogue/index.yaml"


def sign_bytes(key, data: bytes) -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    raise TypeError(type(key))


def canonical(signed: Dict[str, Any]) -> bytes:
    return json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def image(n: int, **overrides: Any) -> Dict[str, Any]:
    family = overrides.pop("family", f"family{n % 7}")
    version = overrides.pop("version", 1000 + n)
    entry: Dict[str, Any] = {
        "uuid": f"{family}-{version}",
        "name": family,
        "version": version,
        "file": f"{family}_{version}.img.gz",
        "size": 1_000_000 + n,
        "sha256": hashlib.sha256(f"content-{family}-{version}".encode()).hexdigest(),
        "compressed": True,
        "volume_size": 30,
        "torrent": {
            "url": f"http://catalogue/torrents/{family}_{version}.torrent",
            "sha256": hashlib.sha256(f"torrent-{family}-{version}".encode()).hexdigest(),
            "info_hash": hashlib.sha1(f"info-{family}-{version}".encode(), usedforsecurity=False).hexdigest(),
        },
        "web_seeds": [f"http://catalogue/images/{family}_{version}.img.gz"],
        "targets": {"hosts": [], "subclusters": [], "clusters": []},
    }
    entry.update(overrides)
    return entry


def signed_index(images: Iterable[Dict[str, Any]] = (), **overrides: Any) -> Dict[str, Any]:
    signed: Dict[str, Any] = {
        "_type": "vmcloud-image-index",
        "spec_version": 2,
        "version": 1,
        "created": CREATED,
        "expires": EXPIRES,
        "endorser": "lab-endorser",
        "url": INDEX_URL,
        "images": [copy.deepcopy(i) for i in images],
    }
    signed.update(overrides)
    return signed


def pem_of(cert) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def document(signed: Dict[str, Any], signers: Iterable[Any], chains: Iterable[List[Any]] = (),
             syntax: str = "yaml") -> bytes:
    """A v2 document signed by each signer (objects with .cert and .key)."""
    data = canonical(signed)
    chains = list(chains)
    signatures = []
    for position, signer in enumerate(signers):
        extra = chains[position] if position < len(chains) else []
        signatures.append({
            "certificate": pem_of(signer.cert) + "".join(pem_of(c) for c in extra),
            "signature": base64.b64encode(sign_bytes(signer.key, data)).decode("ascii"),
        })
    content = {"signed": signed, "signatures": signatures}
    if syntax == "json":
        return json.dumps(content, indent=1).encode("utf-8")
    return yaml.safe_dump(content, sort_keys=False).encode("utf-8")


def openssl_sign(key, data: bytes) -> bytes:
    """Sign ``data`` with the openssl CLI, as `openssl dgst -sha256 -sign endorser.key` does."""
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with tempfile.TemporaryDirectory() as tmp:
        key_path = os.path.join(tmp, "endorser.key")
        with open(key_path, "wb") as handle:
            handle.write(key_pem)
        result = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", key_path], input=data, capture_output=True, check=True
        )
    return result.stdout


def legacy_document(body: bytes, key, wrap: int = 64) -> bytes:
    """The legacy list: body, then `x509-signature:` with the base64 wrapped and indented."""
    signature = base64.b64encode(openssl_sign(key, body)).decode("ascii")
    lines = [signature[i:i + wrap] for i in range(0, len(signature), wrap)]
    return body + b"x509-signature: " + "\n  ".join(lines).encode("ascii") + b"\n"
