# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Installing CRLs on a host: what the trust_store role copies and what the agent's timer fetches.

Private to the collection; not a public API. One rule for both paths: a CRL is installed only
when it parses, is not past its ``nextUpdate`` (``crl-stale``: installing it would make every
verification fail, and would hide that the issuer's fresh CRL did not arrive), is signed by the
trust anchor that issued it when that anchor is configured (``crl-signature-invalid``), and is not
older than the CRL already installed at that path for the same issuer (``crl-rollback``: an old
CRL may predate a revocation). Writes are atomic; a refusal leaves the installed CRL in place.
"""

from __future__ import annotations

import datetime
import os
import urllib.parse
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from ._cryptography import x509
from ._errors import VmcloudError
from ._fetch import read_source
from ._io import write_atomic
from ._time import TIMESTAMP_FORMAT
from ._trust import load_trust_anchors

MAX_CRL_BYTES = 16 * 1024 * 1024
UTC = datetime.UTC


def _utc(moment: Optional[datetime.datetime]) -> Optional[datetime.datetime]:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _text(moment: datetime.datetime) -> str:
    return moment.strftime(TIMESTAMP_FORMAT)


def parse_crl(data: bytes, origin: str) -> x509.CertificateRevocationList:
    """A CRL from PEM or DER bytes; ``crl-malformed`` otherwise."""
    try:
        if b"-----BEGIN X509 CRL-----" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as exc:
        raise VmcloudError("crl-malformed", f"{origin}: cannot parse the CRL ({exc})") from exc


def this_update(crl: x509.CertificateRevocationList) -> datetime.datetime:
    return getattr(crl, "last_update_utc", None) or _utc(crl.last_update)


def next_update(crl: x509.CertificateRevocationList) -> Optional[datetime.datetime]:
    if hasattr(crl, "next_update_utc"):
        return crl.next_update_utc
    return _utc(crl.next_update)


@dataclass(frozen=True)
class CrlInfo:
    issuer: str
    this_update: str
    next_update: Optional[str]
    stale: bool
    revoked: int

    def to_dict(self) -> Dict[str, Any]:
        return dict(self.__dict__)


def describe(crl: x509.CertificateRevocationList, now: datetime.datetime) -> CrlInfo:
    due = next_update(crl)
    return CrlInfo(issuer=crl.issuer.rfc4514_string(), this_update=_text(this_update(crl)),
                   next_update=_text(due) if due else None, stale=due is not None and due < now,
                   revoked=len(list(crl)))


def check_fresh(crl: x509.CertificateRevocationList, origin: str, now: datetime.datetime) -> None:
    due = next_update(crl)
    if due is not None and due < now:
        raise VmcloudError(
            "crl-stale",
            f"{origin}: the CRL of {crl.issuer.rfc4514_string()} was due for renewal at {_text(due)} "
            f"(now {_text(now)}); refusing to install it: fetch a current CRL from its issuer",
        )


def check_signed_by_anchor(crl: x509.CertificateRevocationList, anchors: Sequence[x509.Certificate],
                           origin: str) -> None:
    """When a configured anchor issued the CRL, its signature must verify with that anchor's key.

    A CRL of an intermediate CA (not an anchor) is checked where it is used, against the chain.
    """
    issuers = [anchor for anchor in anchors if anchor.subject == crl.issuer]
    if issuers and not any(crl.is_signature_valid(anchor.public_key()) for anchor in issuers):
        raise VmcloudError(
            "crl-signature-invalid",
            f"{origin}: the CRL names {crl.issuer.rfc4514_string()} as issuer but its signature does not "
            "verify with that trust anchor; refusing to install it",
        )


def check_not_older(crl: x509.CertificateRevocationList, dest: str, origin: str) -> None:
    try:
        with open(dest, "rb") as handle:
            installed = parse_crl(handle.read(MAX_CRL_BYTES + 1), dest)
    except (FileNotFoundError, VmcloudError):
        return  # nothing (usable) installed yet
    if installed.issuer == crl.issuer and this_update(crl) < this_update(installed):
        raise VmcloudError(
            "crl-rollback",
            f"{origin}: this CRL of {crl.issuer.rfc4514_string()} was issued at {_text(this_update(crl))}, "
            f"before the one installed at {dest} ({_text(this_update(installed))}); keeping the installed one",
        )


def check_installable(data: bytes, origin: str, dest: Optional[str], anchors: Sequence[x509.Certificate],
                      now: datetime.datetime) -> x509.CertificateRevocationList:
    crl = parse_crl(data, origin)
    check_fresh(crl, origin, now)
    check_signed_by_anchor(crl, anchors, origin)
    if dest is not None:
        check_not_older(crl, dest, origin)
    return crl


def install(data: bytes, origin: str, dest: str, anchors: Sequence[x509.Certificate],
            now: Optional[datetime.datetime] = None) -> bool:
    """Check ``data`` and write it to ``dest`` atomically; return whether ``dest`` changed."""
    check_installable(data, origin, dest, anchors, now or datetime.datetime.now(UTC))
    try:
        with open(dest, "rb") as handle:
            if handle.read(MAX_CRL_BYTES + 1) == data:
                return False
    except FileNotFoundError:
        pass
    write_atomic(dest, data, mode=0o644)
    return True


# --------------------------------------------------------------------------- sources (imgdist.yml)


def check_sources(value: Any, crl_paths: Sequence[str], where: str) -> List[Dict[str, str]]:
    """``crl_sources``: a list of ``{url: http(s) URL, path: absolute file}`` whose paths are files the
    verifier reads (in a directory of ``crl`` or named there), so that a fetched CRL is used."""
    if not isinstance(value, list):
        raise VmcloudError("config-invalid", f"{where} must be a list of {{url, path}}, got {value!r}")
    sources = []
    for position, entry in enumerate(value):
        here = f"{where}[{position}]"
        if not isinstance(entry, dict) or set(entry) != {"url", "path"}:
            raise VmcloudError("config-invalid", f"{here} must be a mapping with the keys url and path, got {entry!r}")
        url, path = entry["url"], entry["path"]
        parsed = urllib.parse.urlsplit(url) if isinstance(url, str) else None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname or " " in url:
            raise VmcloudError("config-invalid", f"{here}.url must be an http(s) URL, got {url!r}")
        if not isinstance(path, str) or not os.path.isabs(path) or not path.endswith((".crl", ".pem")):
            raise VmcloudError("config-invalid", f"{here}.path must be an absolute path ending in .crl or .pem, "
                                                 f"got {path!r}")
        if not any(path == known or os.path.dirname(path) == known.rstrip("/") for known in crl_paths):
            raise VmcloudError("config-invalid", f"{here}.path {path} is not read by the verifier: put it in a "
                                                 f"directory of crl ({', '.join(crl_paths) or 'none'})")
        sources.append({"url": url, "path": path})
    return sources


def refresh(sources: Sequence[Dict[str, str]], anchor_paths: Sequence[str], timeout: float,
            now: Optional[datetime.datetime] = None, **fetch_options: Any) -> List[Dict[str, Any]]:
    """Fetch and install each source's CRL; one failure does not stop the others.

    Returns one record per source: ``url``, ``path``, ``changed`` and, on failure, ``rule`` and
    ``message`` (the installed CRL is then left as it was).
    """
    now = now or datetime.datetime.now(UTC)
    anchors = load_trust_anchors(anchor_paths)
    results = []
    for source in sources:
        record: Dict[str, Any] = {"url": source["url"], "path": source["path"], "changed": False,
                                  "rule": None, "message": None}
        try:
            data, _unused = read_source(source["url"], max_size=MAX_CRL_BYTES, timeout=timeout, **fetch_options)
            record["changed"] = install(data, source["url"], source["path"], anchors, now)
        except VmcloudError as exc:
            record.update(rule=exc.rule, message=exc.message)
        except OSError as exc:
            record.update(rule="io-error", message=f"cannot write {source['path']}: {exc.strerror or exc}")
        results.append(record)
    return results
