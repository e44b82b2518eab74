# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The limits on untrusted input, in one place. Private to the collection; not a public API.

Every limit is checked before or while the input is parsed, so that a crafted document costs
bounded time and memory before it is refused (docs/trust.md, "Limits"). The figures leave
headroom for the largest index the default ``max_size`` (16 MiB) can hold: a 10,000-image
index is about 6.8 MB of JSON, nesting depth 7, about 363,000 nodes.
"""

from __future__ import annotations

# --- documents (index, config, kept index): JSON and YAML alike (_yaml)
MAX_DEPTH = 64  # nested collections; an index needs 7
MAX_NODES = 1_000_000  # scalars + collections, keys included; 10,000 images take about 363,000
MAX_NUMBER_CHARS = 128  # characters of one number (Python itself refuses int() over 4,300 digits)

# --- image entries (_index): a file name must fit one directory entry (NAME_MAX on Linux)
MAX_FILE_NAME_BYTES = 255  # in UTF-8

# --- signatures (_index): counted before any is verified
MAX_SIGNATURES = 32

# --- fetches (_fetch)
DEFAULT_FETCH_TIMEOUT = 30  # seconds; per read, and the default overall deadline
MAX_FETCH_TIMEOUT = 3600  # seconds
MAX_REDIRECTS = 5
# A status or header line is at most 65,536 bytes and a response has at most 100 headers:
# http.client's own limits (LineTooLong, "got more than 100 headers"), reported as fetch-protocol.
