# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The names of the cryptography library the collection uses, imported once. Private to the collection.

Behind the missing-library guard of ``_requirements``: without cryptography each name is a stand-in
that raises ``library-missing`` when used, so the modules that import this still load and can say
which package to install. Debian bookworm's python3-cryptography 38 has every name here.
"""

from __future__ import annotations

from ._requirements import absent

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID
except ImportError:
    x509 = absent("cryptography", "x509")
    InvalidSignature = absent("cryptography", "exceptions.InvalidSignature")
    UnsupportedAlgorithm = absent("cryptography", "exceptions.UnsupportedAlgorithm")
    hashes = absent("cryptography", "hazmat.primitives.hashes")
    serialization = absent("cryptography", "hazmat.primitives.serialization")
    ec = absent("cryptography", "hazmat.primitives.asymmetric.ec")
    ed25519 = absent("cryptography", "hazmat.primitives.asymmetric.ed25519")
    padding = absent("cryptography", "hazmat.primitives.asymmetric.padding")
    rsa = absent("cryptography", "hazmat.primitives.asymmetric.rsa")
    ExtendedKeyUsageOID = absent("cryptography", "x509.oid.ExtendedKeyUsageOID")
    ExtensionOID = absent("cryptography", "x509.oid.ExtensionOID")

__all__ = [
    "ExtendedKeyUsageOID", "ExtensionOID", "InvalidSignature", "UnsupportedAlgorithm",
    "ec", "ed25519", "hashes", "padding", "rsa", "serialization", "x509",
]
