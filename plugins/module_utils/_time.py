# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one timestamp format of the collection. Private to the collection; not a public API.

UTC to the second, RFC 3339 with a ``Z``: what endorsers sign (``created``, ``expires``), what the
records on a host hold (``accepted_at``, ``promoted_at``, last-sync.json) and what messages print.
``_index.parse_utc_timestamp`` reads it back. Plain stdlib, so any module may import it.
"""

from __future__ import annotations

import datetime

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utc_text(moment: datetime.datetime) -> str:
    """An aware ``moment`` in TIMESTAMP_FORMAT, converted to UTC."""
    return moment.astimezone(datetime.UTC).strftime(TIMESTAMP_FORMAT)
