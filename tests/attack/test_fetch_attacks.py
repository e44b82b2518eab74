# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Attacks on the fetch of the index: redirects, endless and trickling bodies, HTTP protocol abuse.

The real image_index module (through ``ansible`` where a run could hang: the subprocess has a
timeout) and the real ``imgdist sync``; the host's state must not move. A fetch failure is exit 5
for imgdist (as an unreachable index), a verification refusal exit 2.
"""

from __future__ import annotations

from tests.attack.conftest import EXIT_ERROR, Forever, Raw, Redirect, Stall
from tests.integration.conftest import free_port

FETCH_TIMEOUT = 3  # seconds: the fetch's timeout option, which must bound the whole fetch
HANG = 45  # seconds before a run that does not end fails the test


def test_redirect_to_another_address_is_refused(trusted):
    # The other address answers a validly signed, newer index for the URL that was asked for.
    mirror = trusted.site.serve("index.yaml", trusted.publisher.document(6, trusted.images), twin_only=True)
    assert mirror.startswith("http://127.0.0.2:")
    trusted.serve(Redirect(mirror))
    trusted.refused_everywhere("fetch-redirect", cli=True, code=EXIT_ERROR)


def test_redirect_to_another_scheme_is_refused(trusted):
    trusted.serve(Redirect(f"ftp://127.0.0.1:{free_port()}/index.yaml"))
    trusted.refused_everywhere("fetch-redirect", code=EXIT_ERROR)


def test_server_that_sends_forever_is_cut_at_the_size_cap(trusted):
    trusted.serve(Forever())
    trusted.refused_everywhere("size-cap", code=EXIT_ERROR)


def test_server_that_stalls_is_cut_off_by_the_fetch_deadline(trusted):
    # One byte a second: each read returns well inside the timeout, so only an overall deadline ends it.
    trusted.serve(Stall(trusted.publisher.document(6, trusted.images)))
    trusted.refused_everywhere("fetch-deadline", cli=True, code=EXIT_ERROR, timeout=HANG,
                               module_args={"timeout": FETCH_TIMEOUT})


def test_bad_http_status_line_is_refused(trusted):
    trusted.serve(Raw(b"HTTP/1.1 two hundred OK\r\nContent-Length: 2\r\n\r\nok"))
    trusted.refused_everywhere("fetch-protocol", code=EXIT_ERROR)


def test_truncated_chunked_body_is_refused(trusted):
    body = trusted.publisher.document(6, trusted.images)
    trusted.serve(Raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      + b"%x\r\n" % (len(body) + 100) + body))
    trusted.refused_everywhere("fetch-protocol", code=EXIT_ERROR)


def test_endless_headers_are_refused(trusted):
    headers = b"".join(b"X-Filler-%d: %s\r\n" % (n, b"y" * 100) for n in range(500))
    trusted.serve(Raw(b"HTTP/1.1 200 OK\r\n" + headers + b"\r\n"))
    trusted.refused_everywhere("fetch-protocol", code=EXIT_ERROR)
