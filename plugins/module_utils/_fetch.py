# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bounded reads of small documents (index, .torrent) from a path or an http(s) URL.

Private to the collection; not a public API. Plain urllib rather than Ansible's
url helpers, because the imgdist CLI on hypervisors uses this too.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import urllib.error
import urllib.request
from typing import Optional, Tuple

from ._errors import VmcloudError

CHUNK = 1 << 16


def is_url(src: str) -> bool:
    return src.startswith(("http://", "https://"))


def _read_capped(stream, max_size: int, origin: str) -> bytes:
    chunks = []
    total = 0
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > max_size:
            raise VmcloudError("size-cap", f"{origin} is larger than the cap of {max_size} bytes; raise max_size")
        chunks.append(chunk)


def read_source(
    src: str,
    max_size: int,
    timeout: float = 30.0,
    ca_path: Optional[str] = None,
    validate_certs: bool = True,
) -> Tuple[bytes, Optional[str]]:
    """Return (bytes, fetched URL or None for a local path), reading at most ``max_size`` bytes."""
    if not is_url(src):
        try:
            with open(src, "rb") as handle:
                return _read_capped(handle, max_size, src), None
        except OSError as exc:
            raise VmcloudError("fetch-failed", f"cannot read {src}: {exc.strerror}") from exc
    context = None
    if src.startswith("https://"):
        context = ssl.create_default_context(cafile=ca_path if ca_path and os.path.isfile(ca_path) else None,
                                             capath=ca_path if ca_path and os.path.isdir(ca_path) else None)
        if not validate_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    # is_url() admitted only http(s) above, so no file: or custom scheme reaches urlopen.
    request = urllib.request.Request(src, headers={"User-Agent": "vmcloud-fleet"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
            return _read_capped(response, max_size, src), src
    except urllib.error.HTTPError as exc:
        raise VmcloudError("fetch-failed", f"{src} answered HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise VmcloudError("fetch-failed", f"cannot fetch {src}: {reason}") from exc


def sha256_of_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
