# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bounded reads of small documents (index, .torrent, CRL) from a path or an http(s) URL.

Private to the collection; not a public API. http.client directly (not urllib, not Ansible's
url helpers: the imgdist CLI on hypervisors uses this too), so that every limit is ours:

- ``timeout`` bounds the whole fetch (connect, TLS, redirects, headers and body), not each
  read: a server that sends one byte a second ends in ``fetch-deadline``;
- redirects stay on the origin (same scheme, host and port), at most ``MAX_REDIRECTS``,
  else ``fetch-redirect``; the URL returned is the one that finally answered, which is what
  the index's ``url`` is compared with;
- a broken response (bad status line, a header line over 64 KiB or more than 100 headers,
  as http.client counts them, a truncated or malformed body) is ``fetch-protocol``;
- at most ``max_size`` bytes are read (``size-cap``), a larger Content-Length is refused first.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse
from typing import Any, Optional, Tuple

from ._errors import VmcloudError
from ._limits import DEFAULT_FETCH_TIMEOUT, MAX_REDIRECTS

CHUNK = 1 << 16
USER_AGENT = "vmcloud-fleet"
_REDIRECTS = (301, 302, 303, 307, 308)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_BAD_URL_CHARS = re.compile(r"[\x00-\x20\x7f]")


def is_url(src: str) -> bool:
    return src.startswith(("http://", "https://"))


def parse_http_url(url: Any, where: str = "the URL") -> urllib.parse.SplitResult:
    """An http(s) URL with a host, a numeric port if any, no credentials and no spaces or controls.

    Raises ``fetch-failed``; the option validator (_options) words the same check as its rule.
    """
    problem = None
    parts = None
    if not isinstance(url, str) or not is_url(url):
        problem = "it must start with http:// or https://"
    elif _BAD_URL_CHARS.search(url):
        problem = "it holds a space or a control character (percent-encode it)"
    else:
        parts = urllib.parse.urlsplit(url)
        try:
            parts.port  # noqa: B018 - raises ValueError on a non-numeric or out-of-range port
        except ValueError:
            problem = "its port is not a number from 1 to 65535"
        else:
            if not parts.hostname:
                problem = "it names no host"
            elif "@" in parts.netloc:
                problem = "it carries credentials (user@host); they are not sent"
            elif parts.port == 0:
                problem = "its port is not a number from 1 to 65535"
    if problem:
        raise VmcloudError("fetch-failed", f"{where} {_short(url)} is not a valid http(s) URL: {problem}")
    return parts


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _origin(parts: urllib.parse.SplitResult) -> tuple:
    return parts.scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS[parts.scheme]


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


class _Deadline:
    """The one deadline of a fetch: when it passes, the open connection is shut down, which ends
    any read blocked in it (a per-read timeout alone lets a slow server hold the fetch forever)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._connection: Optional[http.client.HTTPConnection] = None
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._timer.cancel()
        self.attach(None)

    def remaining(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            self.expired = True
        return left

    @property
    def passed(self) -> bool:
        """Whether the deadline has passed (a failure then is the deadline's, whatever it looks like)."""
        return self.expired or self.remaining() <= 0

    def error(self, src: str, what: str, advice: str) -> VmcloudError:
        """``fetch-deadline`` for ``src``: ``what`` had not arrived in full; ``advice`` says what to do."""
        return VmcloudError("fetch-deadline", f"{src} did not {what} within {self.seconds:g} s; {advice}")

    def attach(self, connection: Optional[http.client.HTTPConnection]) -> None:
        with self._lock:
            previous, self._connection = self._connection, connection
            if connection is not None and self.expired:
                self._shutdown(connection)
        if previous is not None and previous is not connection:
            previous.close()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            if self._connection is not None:
                self._shutdown(self._connection)

    @staticmethod
    def _shutdown(connection: http.client.HTTPConnection) -> None:
        sock = connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _ssl_context(ca_path: Optional[str], validate_certs: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_path if ca_path and os.path.isfile(ca_path) else None,
                                         capath=ca_path if ca_path and os.path.isdir(ca_path) else None)
    if not validate_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _connection(parts: urllib.parse.SplitResult, timeout: float,
                context: Optional[ssl.SSLContext]) -> http.client.HTTPConnection:
    if parts.scheme == "https":
        return http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout, context=context)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)


def _read_body(response: http.client.HTTPResponse, max_size: int, url: str, deadline: _Deadline) -> bytes:
    declared = response.getheader("Content-Length")
    if declared is not None and not response.chunked:
        if not declared.strip().isdigit():
            raise VmcloudError("fetch-protocol", f"{url} sent the Content-Length {_short(declared)}")
        if int(declared) > max_size:
            raise VmcloudError(
                "size-cap", f"{url} declares {int(declared)} bytes, above the cap of {max_size}; raise max_size"
            )
    chunks = []
    total = 0
    while True:
        if deadline.remaining() <= 0:
            raise TimeoutError("deadline")
        chunk = response.read1(CHUNK)
        if not chunk:
            break
        total += len(chunk)
        if total > max_size:
            raise VmcloudError("size-cap", f"{url} is larger than the cap of {max_size} bytes; raise max_size")
        chunks.append(chunk)
    if deadline.expired:  # the deadline shut the connection down: that is not the server's end of body
        raise TimeoutError("deadline")
    if response.length:  # the connection closed before Content-Length bytes came
        raise VmcloudError(
            "fetch-protocol", f"{url} ended the body after {total} of {total + response.length} bytes"
        )
    return b"".join(chunks)


def _fetch_once(url: str, parts: urllib.parse.SplitResult, max_size: int, timeout: float,
                context: Optional[ssl.SSLContext], deadline: _Deadline) -> Tuple[Optional[str], bytes]:
    """(redirect target or None, body) of one request."""
    connection = _connection(parts, min(timeout, max(deadline.remaining(), 0.001)), context)
    deadline.attach(connection)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    connection.request("GET", target, headers={
        "User-Agent": USER_AGENT, "Accept-Encoding": "identity", "Connection": "close",
    })
    response = connection.getresponse()
    if response.status in _REDIRECTS:
        return _location(url, response), b""
    if response.status != 200:
        raise VmcloudError("fetch-failed", f"{url} answered HTTP {response.status} {_short(response.reason)[1:-1]}")
    return None, _read_body(response, max_size, url, deadline)


def read_source(
    src: str,
    max_size: int,
    timeout: float = DEFAULT_FETCH_TIMEOUT,
    ca_path: Optional[str] = None,
    validate_certs: bool = True,
) -> Tuple[bytes, Optional[str]]:
    """(bytes, the URL that answered, or None for a local path), at most ``max_size`` bytes,
    all of it within ``timeout`` seconds."""
    if not is_url(src):
        try:
            with open(src, "rb") as handle:
                return _read_capped(handle, max_size, src), None
        except OSError as exc:
            raise VmcloudError("fetch-failed", f"cannot read {src}: {exc.strerror}") from exc
    url = src
    parts = parse_http_url(url)
    start = _origin(parts)
    context = _ssl_context(ca_path, validate_certs) if parts.scheme == "https" else None
    with _Deadline(timeout) as deadline:
        for _hop in range(MAX_REDIRECTS + 1):
            try:
                location, body = _fetch_once(url, parts, max_size, timeout, context, deadline)
            except VmcloudError:
                raise
            except (OSError, http.client.HTTPException, ValueError) as exc:
                if deadline.passed:
                    raise deadline.error(src, f"answer in full (while reading {url})",
                                         "check the server or raise timeout") from exc
                raise _failure(url, exc) from exc
            if location is None:
                return body, url
            url, parts = _same_origin(url, location, start)
    raise VmcloudError("fetch-redirect", f"{src} redirects more than {MAX_REDIRECTS} times; fix the server")


def _failure(url: str, exc: BaseException) -> VmcloudError:
    """One rule for what went wrong: the server broke HTTP (fetch-protocol) or could not be reached."""
    if isinstance(exc, http.client.RemoteDisconnected):
        problem = "closed the connection without a status line"
    elif isinstance(exc, http.client.BadStatusLine):
        problem = f"sent a bad status line {_short(str(exc))}"
    elif isinstance(exc, http.client.LineTooLong):
        problem = f"sent an over-long {exc} (more than 65536 bytes)"
    elif isinstance(exc, http.client.IncompleteRead):
        problem = "sent a broken or truncated body"
    elif isinstance(exc, http.client.HTTPException):
        problem = f"sent bad headers ({_short(str(exc))})"
    elif isinstance(exc, ValueError):
        problem = f"sent a broken body ({_short(str(exc))})"
    else:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        return VmcloudError("fetch-failed", f"cannot fetch {url}: {' '.join(str(reason).split())}")
    return VmcloudError("fetch-protocol", f"{url} {problem}; not an HTTP server that vmcloud can read")


# --------------------------------------------------------------------------- large files


def _range_request(url: str, parts: urllib.parse.SplitResult, offset: int, timeout: float,
                   context: Optional[ssl.SSLContext], deadline: _Deadline) -> http.client.HTTPResponse:
    connection = _connection(parts, min(timeout, max(deadline.remaining(), 0.001)), context)
    deadline.attach(connection)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", "Connection": "close"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    connection.request("GET", target, headers=headers)
    return connection.getresponse()


def _append_body(response: http.client.HTTPResponse, handle, offset: int, size: int, url: str,
                 deadline: _Deadline) -> int:
    """Append what the server sends to ``handle`` (at ``offset``), never beyond ``size``; return the new offset."""
    if response.status == 206:
        answered = response.getheader("Content-Range") or ""
        match = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", answered)
        if not match or int(match.group(1)) != offset or (match.group(3) != "*" and int(match.group(3)) != size):
            raise VmcloudError("fetch-protocol", f"{url} answered the range from {offset} with Content-Range "
                               f"{_short(answered)}; not the range asked for")
    elif response.status == 200:
        offset = 0  # no range support: start over
        handle.seek(0)
        handle.truncate()
    else:
        raise VmcloudError("fetch-failed", f"{url} answered HTTP {response.status} {_short(response.reason)[1:-1]}")
    declared = response.getheader("Content-Length")
    if declared is not None and not response.chunked:
        if not declared.strip().isdigit():
            raise VmcloudError("fetch-protocol", f"{url} sent the Content-Length {_short(declared)}")
        if offset + int(declared) > size:
            raise VmcloudError("size-cap", f"{url} declares {offset + int(declared)} bytes, the index says {size}; "
                               "fix the catalogue")
    while True:
        if deadline.remaining() <= 0:
            raise TimeoutError("deadline")
        chunk = response.read1(1 << 20)
        if not chunk:
            break
        if offset + len(chunk) > size:
            raise VmcloudError("size-cap", f"{url} sends more than the {size} bytes the index declares; "
                               "fix the catalogue")
        handle.write(chunk)
        offset += len(chunk)
    return offset


def _location(url: str, response: http.client.HTTPResponse) -> str:
    """The absolute URL a redirect answer points to (``fetch-protocol`` without a Location)."""
    location = response.getheader("Location")
    if not location:
        raise VmcloudError("fetch-protocol", f"{url} answered HTTP {response.status} without a Location")
    return urllib.parse.urljoin(url, location.strip())


def _redirect_target(url: str, response: http.client.HTTPResponse, start: tuple) -> tuple:
    """(url, parts) a redirect answer points to, on the same origin (``fetch-redirect`` otherwise)."""
    return _same_origin(url, _location(url, response), start)


def _same_origin(url: str, location: str, start: tuple) -> tuple:
    """(location, parts) when ``location`` is on the origin ``start``; ``fetch-redirect`` otherwise."""
    try:
        parts = parse_http_url(location, "the redirect target")
    except VmcloudError as exc:
        raise VmcloudError("fetch-redirect", f"{url} redirects to {_short(location)}: {exc.message}") from exc
    if _origin(parts) != start:
        raise VmcloudError("fetch-redirect", f"{url} redirects to {location}, another origin (scheme, host or "
                           "port); publish at the final address or fix the server")
    return location, parts


def download_file(
    src: str,
    dest: str,
    size: int,
    timeout: float = DEFAULT_FETCH_TIMEOUT,
    ca_path: Optional[str] = None,
    validate_certs: bool = True,
    retries: int = 5,
) -> dict:
    """Download ``src`` (exactly ``size`` bytes) to ``dest``, resuming with a Range request.

    What ``dest`` already holds (at most ``size`` bytes) is kept and the download goes on from there;
    a connection that ends before the whole file came (the server closed mid-body, a reset) is
    resumed up to ``retries`` times. ``timeout`` bounds the whole download (``fetch-deadline``), the
    redirect rules of ``read_source`` apply (``fetch-redirect``), a larger answer is ``size-cap``.
    The caller verifies the content (``ImageStore.promote``). Returns {"url", "resumed", "bytes"}.
    """
    url = src
    parts = parse_http_url(url)
    start = _origin(parts)
    context = _ssl_context(ca_path, validate_certs) if parts.scheme == "https" else None
    resumed = 0
    attempts = 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(dest, flags, 0o600)
    with os.fdopen(fd, "r+b") as handle, _Deadline(timeout) as deadline:
        offset = os.fstat(handle.fileno()).st_size
        if offset > size:
            handle.truncate(0)
            offset = 0
        handle.seek(offset)
        hops = 0
        while offset < size or (size == 0 and attempts == 0):
            try:
                response = _range_request(url, parts, offset, timeout, context, deadline)
                if response.status in _REDIRECTS:
                    hops += 1
                    if hops > MAX_REDIRECTS:
                        raise VmcloudError("fetch-redirect", f"{src} redirects more than {MAX_REDIRECTS} times; "
                                           "fix the server")
                    url, parts = _redirect_target(url, response, start)
                    continue
                before = offset
                offset = _append_body(response, handle, offset, size, url, deadline)
                if deadline.expired:
                    raise TimeoutError("deadline")
                attempts += 1
                if offset < size:
                    if offset == before or attempts > retries:
                        raise VmcloudError("fetch-protocol", f"{url} ended the body at byte {offset} of {size}; "
                                           f"gave up after {attempts} attempts")
                    resumed += 1
            except VmcloudError:
                handle.flush()
                raise
            except (OSError, http.client.HTTPException, ValueError) as exc:
                handle.flush()
                if deadline.passed:
                    raise deadline.error(src, f"arrive in full ({offset} of {size} bytes)",
                                         "a later run resumes; check the server or raise the timeout") from exc
                attempts += 1
                if attempts > retries:
                    raise _failure(url, exc) from exc
                resumed += 1
                offset = handle.tell()
        handle.flush()
        os.fsync(handle.fileno())
    return {"url": url, "resumed": resumed, "bytes": offset}
