# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Value checks of options, shared by the modules (rule ``option-invalid``) and imgdist's
configuration file (rule ``config-invalid``). Private to the collection; not a public API.

The argument specs (_argspec) and imgdist's CONFIG_KEYS check types; this checks ranges and
forms: no negative or endless timeouts, a clock skew of minutes not years, URLs without
spaces and with a numeric port. The checks are keyed by the library's option names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from ._errors import VmcloudError
from ._fetch import is_url, parse_http_url
from ._limits import MAX_FETCH_TIMEOUT, MAX_SIGNATURES

DAY = 86400


@dataclass(frozen=True)
class Range:
    """A number from ``low`` to ``high``; ``integer`` refuses fractions; ``low_open`` refuses ``low``."""

    low: float
    high: float
    integer: bool = False
    low_open: bool = False
    unit: str = ""

    def problem(self, value: Any) -> Optional[str]:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            self.integer and not isinstance(value, int)
        ):
            return f"must be {'an integer' if self.integer else 'a number'}, got {_short(value)}"
        if not math.isfinite(value) or value < self.low or (self.low_open and value == self.low) or \
                value > self.high:
            low = f"more than {self.low:g}" if self.low_open else f"at least {self.low:g}"
            return f"must be {low} and at most {self.high:g}{self.unit}, got {_short(value)}"
        return None


class Address:
    """An http(s) URL (``parse_http_url``) or, when ``paths`` is true, a local path."""

    def __init__(self, paths: bool) -> None:
        self.paths = paths

    def problem(self, value: Any) -> Optional[str]:
        if not isinstance(value, str) or not value:
            return f"must be a non-empty string, got {_short(value)}"
        if not is_url(value) and (not self.paths or "://" in value):
            return f"must be an http(s) URL{' or a path' if self.paths else ''}, got {_short(value)}"
        if is_url(value):
            try:
                parse_http_url(value)
            except VmcloudError as exc:
                return exc.message.replace("the URL ", "", 1)
        return None


FETCH_TIMEOUT = Range(0, MAX_FETCH_TIMEOUT, low_open=True, unit=" s")
WAIT_TIMEOUT = Range(0, 7 * DAY, unit=" s")  # 0: look once, do not wait
POLL_INTERVAL = Range(0, 3600, low_open=True, unit=" s")
RPC_TIMEOUT = Range(0, 3600, low_open=True, unit=" s")
CLOCK_SKEW = Range(0, DAY, integer=True, unit=" s")
DOCUMENT_SIZE = Range(1, 1 << 30, integer=True, unit=" bytes")
THRESHOLD = Range(1, MAX_SIGNATURES, integer=True)

# What image_index, image_sync and the desired_images filter take (_argspec INDEX_TRUST + FETCH).
INDEX_CHECKS = {
    "src": Address(paths=True),
    "timeout": FETCH_TIMEOUT,
    "clock_skew": CLOCK_SKEW,
    "max_size": DOCUMENT_SIZE,
    "threshold": THRESHOLD,
}
# What the pull path adds (_argspec SYNC_ARGSPEC).
SYNC_CHECKS = {
    "download_timeout": WAIT_TIMEOUT,
    "poll_interval": POLL_INTERVAL,
    "rpc_timeout": RPC_TIMEOUT,
    "torrent_max_size": DOCUMENT_SIZE,
}
# torrent_download: its own timeout is the wait for completion.
TORRENT_DOWNLOAD_CHECKS = {"timeout": WAIT_TIMEOUT, "poll_interval": POLL_INTERVAL, "rpc_timeout": RPC_TIMEOUT}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_options(options: Mapping[str, Any], checks: Mapping[str, Any], rule: str = "option-invalid",
                  name_of: Callable[[str], str] = lambda option: f"option '{option}'") -> None:
    """Raise ``rule`` naming the first option (as ``name_of`` words it) whose value is out of range.

    Options that are absent or None are left to their defaults.
    """
    for option, check in checks.items():
        value = options.get(option)
        if value is None:
            continue
        problem = check.problem(value)
        if problem:
            raise VmcloudError(rule, f"{name_of(option)} {problem}")
