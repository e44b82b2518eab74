# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""BitTorrent v1 metainfo: parse, verify and create .torrent files.

Private to the collection; not a public API.

Runs on hypervisors with Debian bookworm's Python 3.11 and python3-fastbencode
0.2, so it imports nothing from ansible. The bencode codec is fastbencode; no
bencode is written by hand here.

Info-hash caveat: the v1 info-hash is the SHA-1 of the ``info`` dictionary
*exactly as it appears in the file*. We compute it by re-encoding the decoded
dictionary, which gives those exact bytes only when the input is canonical
bencode (sorted keys, no leading zeros, ...). ``parse_torrent`` therefore checks
that decoding and re-encoding the whole file gives back the original bytes, and
refuses the file (rule ``torrent-not-canonical``) when it does not, rather than
report an info-hash that another client would not compute.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Sequence

from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._io import write_atomic
from ansible_collections.vmcloud.fleet.plugins.module_utils._requirements import load

# A single-file torrent of a 1 TiB image with 1 MiB pieces is about 20 MiB of piece
# hashes; with the automatic piece size (16 MiB above 12.5 GiB) it is far less.
MAX_TORRENT_BYTES = 32 * 1024 * 1024
MIN_PIECE_LENGTH = 16 * 1024  # BEP 52's floor, and what every client accepts
MAX_PIECE_LENGTH = 256 * 1024 * 1024  # mktorrent's ceiling (-l 28)

SHA1_LEN = 20
CREATED_BY = "vmcloud.fleet"
URL_SCHEMES_ANNOUNCE = ("http://", "https://", "udp://")
URL_SCHEMES_WEB_SEED = ("http://", "https://")


# fastbencode is imported where a torrent is encoded or decoded, not with this file, so that what
# only verifies an index (image_index) does not need it.
def bdecode(data: bytes) -> Any:
    """fastbencode's strict decoder; rule library-missing without python3-fastbencode."""
    return load("fastbencode").bdecode(data)


def bencode(value: Any) -> bytes:
    """fastbencode's encoder; rule library-missing without python3-fastbencode."""
    return load("fastbencode").bencode(value)


_HEX40 = re.compile(r"[0-9a-fA-F]{40}")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")

# mktorrent (upstream, after 1.1) picks the piece length from the total size:
# the smallest 2^n, n in 15..23, whose limit (in MiB) is not below the size, else 2^24.
# Debian bookworm's mktorrent 1.1 still uses a fixed 2^18 unless -l is given.
_MIB = 1024 * 1024
_AUTO_PIECE_LIMITS = (
    (15, 50 * _MIB),
    (16, 100 * _MIB),
    (17, 200 * _MIB),
    (18, 400 * _MIB),
    (19, 800 * _MIB),
    (20, 1600 * _MIB),
    (21, 3200 * _MIB),
    (22, 6400 * _MIB),
    (23, 12800 * _MIB),
)
_AUTO_PIECE_MAX_EXPONENT = 24


class TorrentError(VmcloudError):
    """A .torrent file is malformed, or does not match what was expected of it."""


@dataclass(frozen=True)
class TorrentInfo:
    """What a .torrent file says, in plain Python types."""

    info_hash: str  # 40 lowercase hex characters (v1)
    name: str
    length: int  # total content bytes
    piece_length: int
    pieces_count: int
    single_file: bool
    announce: Optional[str] = None
    announce_list: list = field(default_factory=list)  # tiers: list[list[str]]
    web_seeds: list = field(default_factory=list)
    private: bool = False
    creation_date: Optional[int] = None
    created_by: Optional[str] = None
    comment: Optional[str] = None

    @property
    def trackers(self) -> list[str]:
        """Every announce URL, primary first, tiers in order, without repeats."""
        urls = [self.announce] if self.announce else []
        for tier in self.announce_list:
            urls.extend(tier)
        return list(dict.fromkeys(urls))

    def to_dict(self) -> dict[str, Any]:
        result = asdict(self)
        result["trackers"] = self.trackers
        return result


@dataclass(frozen=True)
class CreatedTorrent:
    """A .torrent made by ``create_torrent``, with the digests the image index records."""

    data: bytes
    info: TorrentInfo
    content_sha256: str
    torrent_sha256: str


def normalize_info_hash(value: Any) -> str:
    """Return ``value`` as 40 lowercase hex characters, or refuse it."""
    if not isinstance(value, str) or not _HEX40.fullmatch(value):
        raise TorrentError(
            "info-hash-malformed",
            f"{value!r} is not a v1 info-hash; expected 40 hexadecimal characters",
        )
    return value.lower()


def normalize_sha256(value: Any) -> str:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise TorrentError("sha256-malformed", f"{value!r} is not a SHA-256; expected 64 hexadecimal characters")
    return value.lower()


def auto_piece_length(size: int) -> int:
    """The piece length upstream mktorrent picks for ``size`` content bytes."""
    for exponent, limit in _AUTO_PIECE_LIMITS:
        if size <= limit:
            return 1 << exponent
    return 1 << _AUTO_PIECE_MAX_EXPONENT


def pieces_for(length: int, piece_length: int) -> int:
    return (length + piece_length - 1) // piece_length


def read_torrent_file(path: str, max_bytes: int = MAX_TORRENT_BYTES) -> bytes:
    """Read a .torrent file, refusing one larger than ``max_bytes``."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise TorrentError("torrent-unreadable", f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > max_bytes:
        raise TorrentError("torrent-too-large", f"{path} is larger than {max_bytes} bytes; refusing to parse it")
    return data


# --------------------------------------------------------------------------- parsing


def _malformed(message: str) -> TorrentError:
    return TorrentError("torrent-malformed", message)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, bytes):
        raise _malformed(f"{what} is not a byte string")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _malformed(f"{what} is not UTF-8") from exc


def _optional_text(top: dict, key: bytes) -> Optional[str]:
    value = top.get(key)
    if value is None:
        return None
    if not isinstance(value, bytes):
        raise _malformed(f"'{key.decode()}' is not a byte string")
    return value.decode("utf-8", errors="replace")


def _int(value: Any, what: str, minimum: int = 0) -> int:
    # bdecode yields int for bencoded integers; bool never appears in decoded data.
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise _malformed(f"{what} is not an integer >= {minimum}")
    return value


def _path_component(value: Any, what: str) -> str:
    text = _text(value, what)
    if text in ("", ".", "..") or "/" in text or "\0" in text:
        raise _malformed(f"{what} {text!r} is not a safe file name")
    return text


def _url_list(value: Any, what: str) -> list[str]:
    if isinstance(value, bytes):
        return [_text(value, what)] if value else []
    if not isinstance(value, list):
        raise _malformed(f"{what} is neither a string nor a list")
    return [_text(item, what) for item in value]


def _announce_tiers(value: Any) -> list[list[str]]:
    if not isinstance(value, list):
        raise _malformed("'announce-list' is not a list of tiers")
    tiers = []
    for tier in value:
        if not isinstance(tier, list):
            raise _malformed("an 'announce-list' tier is not a list")
        urls = [_text(url, "an 'announce-list' URL") for url in tier]
        if urls:
            tiers.append(urls)
    return tiers


def _content(info: dict) -> tuple[str, int, bool]:
    """Return (name, total length, single_file) of an info dictionary."""
    name = _path_component(info.get(b"name"), "'info.name'")
    if b"length" in info:
        if b"files" in info:
            raise _malformed("'info' has both 'length' and 'files'")
        return name, _int(info[b"length"], "'info.length'"), True
    files = info.get(b"files")
    if not isinstance(files, list) or not files:
        raise _malformed("'info' has neither 'length' nor a non-empty 'files' list")
    total = 0
    for entry in files:
        if not isinstance(entry, dict):
            raise _malformed("an 'info.files' entry is not a dictionary")
        total += _int(entry.get(b"length"), "an 'info.files' length")
        path = entry.get(b"path")
        if not isinstance(path, list) or not path:
            raise _malformed("an 'info.files' path is not a non-empty list")
        for component in path:
            _path_component(component, "an 'info.files' path component")
    return name, total, False


def _decode(data: bytes) -> dict:
    try:
        decoded = bdecode(data)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError) as exc:
        raise _malformed(f"not valid bencode ({exc or type(exc).__name__})") from exc
    if not isinstance(decoded, dict):
        raise _malformed("the top level is not a dictionary")
    # The info-hash below is computed over the re-encoded 'info'; that equals the
    # file's own bytes only if the whole document round-trips unchanged.
    if bencode(decoded) != data:
        raise TorrentError(
            "torrent-not-canonical",
            "the file is not canonical bencode (re-encoding changes it), so its info-hash is ambiguous; "
            "recreate the .torrent with a conforming tool",
        )
    return decoded


def parse_torrent(data: bytes, max_bytes: int = MAX_TORRENT_BYTES) -> TorrentInfo:
    """Parse .torrent bytes into a ``TorrentInfo`` (v1 info-hash), or refuse them."""
    if not isinstance(data, (bytes, bytearray)):
        raise _malformed(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_bytes:
        raise TorrentError("torrent-too-large", f"{len(data)} bytes is more than the {max_bytes} allowed")
    top = _decode(data)
    info = top.get(b"info")
    if not isinstance(info, dict):
        raise _malformed("there is no 'info' dictionary")
    name, length, single_file = _content(info)
    if length == 0:
        raise _malformed("the torrent has no content (length 0)")
    piece_length = _int(info.get(b"piece length"), "'info.piece length'", minimum=1)
    if piece_length & (piece_length - 1) or not MIN_PIECE_LENGTH <= piece_length <= MAX_PIECE_LENGTH:
        raise _malformed(
            f"piece length {piece_length} is not a power of two between {MIN_PIECE_LENGTH} and {MAX_PIECE_LENGTH}"
        )
    pieces = info.get(b"pieces")
    if not isinstance(pieces, bytes) or len(pieces) % SHA1_LEN:
        raise _malformed("'info.pieces' is not a string of 20-byte SHA-1 digests")
    pieces_count = len(pieces) // SHA1_LEN
    if pieces_count != pieces_for(length, piece_length):
        raise _malformed(
            f"{pieces_count} piece hashes for {length} bytes in pieces of {piece_length}; "
            f"expected {pieces_for(length, piece_length)}"
        )
    private = _int(info.get(b"private", 0), "'info.private'")
    if private not in (0, 1):
        raise _malformed("'info.private' is neither 0 nor 1")
    announce = top.get(b"announce")
    creation_date = top.get(b"creation date")
    return TorrentInfo(
        info_hash=hashlib.sha1(bencode(info)).hexdigest(),  # noqa: S324 - BitTorrent v1 is defined on SHA-1
        name=name,
        length=length,
        piece_length=piece_length,
        pieces_count=pieces_count,
        single_file=single_file,
        announce=_text(announce, "'announce'") if announce is not None else None,
        announce_list=_announce_tiers(top[b"announce-list"]) if b"announce-list" in top else [],
        web_seeds=_url_list(top[b"url-list"], "'url-list'") if b"url-list" in top else [],
        private=bool(private),
        creation_date=_int(creation_date, "'creation date'") if creation_date is not None else None,
        created_by=_optional_text(top, b"created by"),
        comment=_optional_text(top, b"comment"),
    )


def info_hash_of(data: bytes) -> str:
    return parse_torrent(data).info_hash


# --------------------------------------------------------------------------- verification


def check_info_hash(info: TorrentInfo, expected: str) -> None:
    expected = normalize_info_hash(expected)
    if info.info_hash != expected:
        raise TorrentError(
            "torrent-info-hash-mismatch",
            f"the .torrent's info-hash is {info.info_hash}, expected {expected}; "
            "refusing it (wrong or tampered .torrent)",
        )


def verify_torrent(
    data: bytes,
    *,
    sha256: str,
    info_hash: str,
    name: str,
    size: int,
    max_bytes: int = MAX_TORRENT_BYTES,
) -> TorrentInfo:
    """Check .torrent bytes against what the image index says of them.

    The SHA-256 of the file is checked first, before the bytes are parsed; then
    that it is a single-file torrent, its info-hash, content name and size.
    Returns the parsed ``TorrentInfo`` when every check passes.
    """
    expected_sha256 = normalize_sha256(sha256)
    if not isinstance(data, (bytes, bytearray)):
        raise _malformed(f"expected bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise TorrentError("torrent-too-large", f"{len(data)} bytes is more than the {max_bytes} allowed")
    actual_sha256 = hashlib.sha256(data).hexdigest()
    if actual_sha256 != expected_sha256:
        raise TorrentError(
            "torrent-sha256-mismatch",
            f"the .torrent's SHA-256 is {actual_sha256}, the index says {expected_sha256}; refusing it",
        )
    info = parse_torrent(data, max_bytes=max_bytes)
    if not info.single_file:
        raise TorrentError(
            "torrent-not-single-file",
            f"{info.name!r} is a multi-file torrent; images are distributed as single-file torrents only",
        )
    check_info_hash(info, info_hash)
    if info.name != name:
        raise TorrentError(
            "torrent-name-mismatch", f"the .torrent names its file {info.name!r}, the index says {name!r}"
        )
    if not isinstance(size, int) or isinstance(size, bool) or info.length != size:
        raise TorrentError(
            "torrent-size-mismatch", f"the .torrent's content is {info.length} bytes, the index says {size!r}"
        )
    return info


# --------------------------------------------------------------------------- creation


def _check_urls(urls: Sequence[str], schemes: tuple[str, ...], what: str) -> list[str]:
    checked = []
    for url in urls:
        if not isinstance(url, str) or not url.startswith(schemes) or any(c.isspace() for c in url):
            raise TorrentError(
                f"torrent-{what}-invalid",
                f"{url!r} is not a usable {what} URL (expected one of {', '.join(schemes)})",
            )
        checked.append(url)
    return checked


def _check_piece_length(piece_length: int) -> int:
    if (
        not isinstance(piece_length, int)
        or isinstance(piece_length, bool)
        or piece_length & (piece_length - 1)
        or not MIN_PIECE_LENGTH <= piece_length <= MAX_PIECE_LENGTH
    ):
        raise TorrentError(
            "torrent-piece-size-invalid",
            f"piece size {piece_length!r} is not a power of two between {MIN_PIECE_LENGTH} and {MAX_PIECE_LENGTH}",
        )
    return piece_length


def _read_full(handle: Any, buffer: bytearray) -> int:
    """Fill ``buffer`` from ``handle``; return the bytes read (short only at end of file)."""
    view = memoryview(buffer)
    filled = 0
    while filled < len(buffer):
        count = handle.readinto(view[filled:])
        if not count:
            break
        filled += count
    return filled


def hash_content(path: str, piece_length: int) -> tuple[bytes, int, str]:
    """Stream ``path`` once: return (concatenated piece SHA-1s, size, SHA-256 hex)."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the with below; open errors get their own rule
    except OSError as exc:
        raise TorrentError("image-unreadable", f"cannot open {path}: {exc.strerror or exc}") from exc
    with handle:
        before = os.fstat(handle.fileno())
        if not stat.S_ISREG(before.st_mode):
            raise TorrentError("image-not-regular-file", f"{path} is not a regular file")
        digests = []
        content = hashlib.sha256()
        size = 0
        buffer = bytearray(piece_length)
        while True:
            count = _read_full(handle, buffer)
            if not count:
                break
            piece = memoryview(buffer)[:count]
            digests.append(hashlib.sha1(piece).digest())  # noqa: S324 - v1 piece hashes are SHA-1
            content.update(piece)
            size += count
            if count < piece_length:
                break
        after = os.fstat(handle.fileno())
    if size != before.st_size or (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        raise TorrentError(
            "image-changed-during-hashing",
            f"{path} changed while it was being hashed; make the torrent from a finished, unchanging image",
        )
    return b"".join(digests), size, content.hexdigest()


def file_mtime(path: str) -> int:
    """The file's modification time in whole seconds: the default, stable creation date."""
    try:
        return int(os.stat(path).st_mtime)
    except OSError as exc:
        raise TorrentError("image-unreadable", f"cannot stat {path}: {exc.strerror or exc}") from exc


def create_torrent(
    path: str,
    *,
    announce: Sequence[str],
    web_seeds: Sequence[str] = (),
    piece_length: Optional[int] = None,
    creation_date: Optional[int] = None,
    comment: Optional[str] = None,
    created_by: Optional[str] = CREATED_BY,
    name: Optional[str] = None,
    private: bool = False,
) -> CreatedTorrent:
    """Make a single-file v1 torrent of the file at ``path``.

    The result depends only on the inputs and the file's bytes: ``creation_date``
    is written as given (omitted when None), keys are in bencode order. ``private``
    sets the BEP 27 flag ``info.private = 1`` (part of the info-hash): clients then find
    peers only through the torrent's trackers, never through DHT or PEX; unset (the
    default), DHT and PEX may find peers. The first
    ``announce`` URL is the primary tracker; with more than one, each is also a
    tier of ``announce-list`` (as mktorrent does with repeated ``-a``).
    ``piece_length`` defaults to what upstream mktorrent would pick for the size.
    """
    trackers = _check_urls(list(announce), URL_SCHEMES_ANNOUNCE, "announce")
    seeds = _check_urls(list(web_seeds), URL_SCHEMES_WEB_SEED, "web-seed")
    content_name = _path_component((name or os.path.basename(path)).encode("utf-8"), "the content name")
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise TorrentError("image-unreadable", f"cannot stat {path}: {exc.strerror or exc}") from exc
    if size == 0:
        raise TorrentError("image-empty", f"{path} is empty; there is nothing to distribute")
    piece_length = _check_piece_length(piece_length if piece_length is not None else auto_piece_length(size))
    pieces, size, content_sha256 = hash_content(path, piece_length)
    if size == 0:
        raise TorrentError("image-empty", f"{path} is empty; there is nothing to distribute")

    info: dict[bytes, Any] = {
        b"length": size,
        b"name": content_name.encode("utf-8"),
        b"piece length": piece_length,
        b"pieces": pieces,
    }
    if private:
        info[b"private"] = 1
    top: dict[bytes, Any] = {b"info": info}
    if trackers:
        top[b"announce"] = trackers[0].encode("utf-8")
    if len(trackers) > 1:
        top[b"announce-list"] = [[url.encode("utf-8")] for url in trackers]
    if seeds:
        top[b"url-list"] = [url.encode("utf-8") for url in seeds]
    if comment:
        top[b"comment"] = comment.encode("utf-8")
    if created_by:
        top[b"created by"] = created_by.encode("utf-8")
    if creation_date is not None:
        if not isinstance(creation_date, int) or isinstance(creation_date, bool) or creation_date < 0:
            raise TorrentError("torrent-creation-date-invalid", f"{creation_date!r} is not a Unix time")
        top[b"creation date"] = creation_date
    data = bencode(top)
    return CreatedTorrent(
        data=data,
        info=parse_torrent(data),
        content_sha256=content_sha256,
        torrent_sha256=hashlib.sha256(data).hexdigest(),
    )


def describe_torrent_file(path: str) -> dict[str, Optional[str]]:
    """The info-hash and SHA-256 of the .torrent at ``path`` (None for what is missing or unparsable)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_TORRENT_BYTES + 1)
    except FileNotFoundError:
        return {"info_hash": None, "torrent_sha256": None}
    except OSError as exc:
        raise TorrentError("torrent-unreadable", f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        info_hash: Optional[str] = parse_torrent(data).info_hash
    except TorrentError:
        info_hash = None
    return {"info_hash": info_hash, "torrent_sha256": hashlib.sha256(data).hexdigest()}


def ensure_torrent_file(
    dest: str, created: CreatedTorrent, check_mode: bool = False, mode: int = 0o644
) -> tuple[bool, dict[str, Optional[str]]]:
    """Write ``created`` to ``dest`` atomically unless it already holds those bytes.

    Returns (changed, before) where ``before`` describes what ``dest`` held.
    """
    before = describe_torrent_file(dest)
    changed = before["torrent_sha256"] != created.torrent_sha256
    if changed and not check_mode:
        write_atomic(dest, created.data, mode=mode)
    return changed, before
