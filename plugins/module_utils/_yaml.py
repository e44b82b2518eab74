# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bounded loading of untrusted YAML and JSON documents. Private to the collection; not a public API.

One reader for the index, the kept index and the configuration files, with the same rules on
both syntaxes (JSON is YAML, so a document must read the same whichever parser gets it):

- the bytes are UTF-8 (a leading byte order mark is dropped, then the same for both parsers);
  anything else, or a lone surrogate from an escape, is ``text-invalid``;
- a key appears once per mapping (``json-invalid`` / ``yaml-invalid``), so a decoy second
  ``signed`` cannot hide behind a leading comment or a BOM that sends JSON to the YAML parser;
- no aliases (``yaml-alias``: "billion laughs"), no merge keys, only the safe scalar tags;
- nesting depth, node count and the length of numbers are bounded (``_limits``) before or
  while parsing: ``index-too-deep``, ``index-too-complex``. Work is bounded before the limit
  is found, and neither parser recurses past it (libyaml's composer recursed in C: SIGSEGV).

YAML is read from libyaml's event stream (its parser keeps an explicit stack) and built here
without recursion; JSON, which the endorser tools write for large indexes, is read by the
json module after a scan of its structure bytes (depth, node count), with numbers bounded as
they are read. See docs/performance.md for the figures.
"""

from __future__ import annotations

import codecs
import itertools
import json
import re
from typing import Any, List, Tuple

from ._errors import VmcloudError
from ._limits import MAX_DEPTH, MAX_NODES, MAX_NUMBER_CHARS
from ._requirements import absent

try:
    import yaml
    from yaml.events import (
        AliasEvent,
        DocumentStartEvent,
        MappingEndEvent,
        MappingStartEvent,
        ScalarEvent,
        SequenceEndEvent,
        SequenceStartEvent,
        StreamEndEvent,
    )
    from yaml.nodes import ScalarNode
except ImportError:
    yaml = absent("yaml")
    AliasEvent = absent("yaml", "events.AliasEvent")
    DocumentStartEvent = absent("yaml", "events.DocumentStartEvent")
    MappingEndEvent = absent("yaml", "events.MappingEndEvent")
    MappingStartEvent = absent("yaml", "events.MappingStartEvent")
    ScalarEvent = absent("yaml", "events.ScalarEvent")
    SequenceEndEvent = absent("yaml", "events.SequenceEndEvent")
    SequenceStartEvent = absent("yaml", "events.SequenceStartEvent")
    StreamEndEvent = absent("yaml", "events.StreamEndEvent")
    ScalarNode = absent("yaml", "nodes.ScalarNode")

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _MERGE = _TAG + "str", _TAG + "int", _TAG + "float", _TAG + "merge"
_SCALAR_TAGS = frozenset(_TAG + kind for kind in ("null", "bool", "int", "float", "binary", "timestamp", "str"))
_SEQUENCE_TAGS = (None, "!", _TAG + "seq")
_MAPPING_TAGS = (None, "!", _TAG + "map")

_JSON_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_NOT_STRUCTURE = bytes(c for c in range(256) if c not in b'[]{}",:')
_JSON_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_BRACKET_DELTA = [0] * 256
_BRACKET_DELTA[ord("[")] = _BRACKET_DELTA[ord("{")] = 1
_BRACKET_DELTA[ord("]")] = _BRACKET_DELTA[ord("}")] = -1
_FIRST_NON_SPACE = re.compile(rb"[^ \t\r\n]")
_NO_KEY = object()


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _too_deep(origin: str, where: str) -> VmcloudError:
    return VmcloudError(
        "index-too-deep", f"{origin} nests collections more than {MAX_DEPTH} levels deep{where}; flatten it"
    )


def _too_many_nodes(origin: str, where: str) -> VmcloudError:
    return VmcloudError(
        "index-too-complex", f"{origin} holds more than {MAX_NODES} values{where}; split or shrink the document"
    )


def _too_long_number(origin: str, where: str) -> VmcloudError:
    return VmcloudError(
        "index-too-complex",
        f"{origin} holds a number longer than {MAX_NUMBER_CHARS} characters{where}; quote it if it is text",
    )


def _lone_surrogate(origin: str, value: str, where: str) -> VmcloudError:
    return VmcloudError(
        "text-invalid", f"{origin} holds a lone surrogate escape in {_short(value)}{where}; it is not Unicode text"
    )


def _decode(data: bytes, origin: str) -> bytes:
    """The document's bytes without a UTF-8 byte order mark, checked to be UTF-8."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise VmcloudError(
            "text-invalid", f"{origin} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8"
        ) from exc
    return data


def load_untrusted_yaml(data: bytes, origin: str) -> Any:
    """Parse one YAML document (or JSON, a subset): safe tags, no aliases, unique keys, bounded."""
    data = _decode(data, origin)
    first = _FIRST_NON_SPACE.search(data)
    if first is not None and data[first.start():first.start() + 1] == b"{":
        return _load_json(data, origin)
    return _load_yaml(data, origin)


# --------------------------------------------------------------------------- JSON


def _refuse_duplicate_keys(pairs: List[Tuple[str, Any]]) -> dict:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set = set()
        duplicate = next(key for key, _unused in pairs if key in seen or seen.add(key))
        raise VmcloudError("json-invalid", f"key {_short(duplicate)} appears twice in one object")
    return result


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _scan_json(data: bytes, origin: str) -> None:
    """Depth and node count from the structure bytes, before json parses anything.

    Without escape pairs, every '"' opens or closes a string, so the structure outside the
    strings is every other piece between quotes; the scan is a few C passes over the bytes.
    """
    if b"\\" in data:
        data = _JSON_ESCAPE.sub(b"", data)
    outside = b"".join(data.translate(None, _NOT_STRUCTURE).split(b'"')[::2])
    brackets = outside.translate(None, _NOT_BRACKETS)
    if max(itertools.accumulate(map(_BRACKET_DELTA.__getitem__, brackets)), default=0) > MAX_DEPTH:
        raise _too_deep(origin, "")
    if outside.count(b":") + outside.count(b",") + len(brackets) // 2 + 1 > MAX_NODES:
        raise _too_many_nodes(origin, "")


def _bounded_number(kind: type, origin: str) -> Any:
    def parse(text: str) -> Any:
        if len(text) > MAX_NUMBER_CHARS:
            raise _too_long_number(origin, "")
        return kind(text)
    return parse


def _check_strings(value: Any, origin: str) -> None:
    """Refuse a lone surrogate anywhere in a parsed JSON value (iteratively; depth is bounded)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str) and not item.isascii():
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise _lone_surrogate(origin, item, "") from exc


def _load_json(data: bytes, origin: str) -> Any:
    _scan_json(data, origin)
    try:
        value = json.loads(data, object_pairs_hook=_refuse_duplicate_keys, parse_constant=_refuse_constant,
                           parse_int=_bounded_number(int, origin), parse_float=_bounded_number(float, origin))
    except RecursionError as exc:  # not reached below MAX_DEPTH; kept so no parser error escapes
        raise _too_deep(origin, "") from exc
    except ValueError as exc:
        raise VmcloudError("json-invalid", f"{origin} is not valid JSON: {exc}") from exc
    if _JSON_SURROGATE_ESCAPE.search(data):
        _check_strings(value, origin)
    return value


# --------------------------------------------------------------------------- YAML


def _yaml_error(origin: str, message: str, mark: Any = None) -> VmcloudError:
    where = f" (line {mark.line + 1})" if mark is not None else ""
    return VmcloudError("yaml-invalid", f"{origin} is not valid YAML: {message}{where}")


def _load_yaml(data: bytes, origin: str) -> Any:
    loader = _Loader(data)
    try:
        return _build(loader, origin)
    except yaml.YAMLError as exc:
        raise VmcloudError("yaml-invalid", f"{origin} is not valid YAML: {' '.join(str(exc).split())}") from exc
    finally:
        loader.dispose()


def _scalar(loader: Any, event: ScalarEvent, origin: str) -> Any:
    tag = event.tag
    if tag is None or tag == "!":
        tag = loader.resolve(ScalarNode, event.value, event.implicit)
    if tag == _STR:
        value = event.value
        if event.style == '"' and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise _lone_surrogate(origin, value, f" (line {event.start_mark.line + 1})") from exc
        return value
    if tag == _MERGE:
        raise _yaml_error(origin, "merge keys (<<) are not allowed; write the keys out", event.start_mark)
    if tag not in _SCALAR_TAGS:
        raise _yaml_error(origin, f"the tag {_short(tag)} is not allowed", event.start_mark)
    if tag in (_INT, _FLOAT) and len(event.value) > MAX_NUMBER_CHARS:
        raise _too_long_number(origin, f" (line {event.start_mark.line + 1})")
    node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
    try:
        return loader.yaml_constructors[tag](loader, node)
    except ValueError as exc:  # e.g. a timestamp with month 13
        raise _yaml_error(origin, f"{_short(event.value)} is not a valid {tag[len(_TAG):]}",
                          event.start_mark) from exc


def _build(loader: Any, origin: str) -> Any:
    """The document from the event stream, without recursion, checking every limit on the way."""
    stack: List[list] = []  # frames: [container, is_mapping, pending key, start mark]
    root: Any = None
    nodes = 0
    documents = 0
    get_event = loader.get_event
    while True:
        event = get_event()
        kind = type(event)
        if kind is ScalarEvent:
            value = _scalar(loader, event, origin)
            mark = event.start_mark
        elif kind is MappingStartEvent or kind is SequenceStartEvent:
            mapping = kind is MappingStartEvent
            if event.tag not in (_MAPPING_TAGS if mapping else _SEQUENCE_TAGS):
                raise _yaml_error(origin, f"the tag {_short(event.tag)} is not allowed", event.start_mark)
            nodes += 1
            if len(stack) >= MAX_DEPTH:
                raise _too_deep(origin, f" (line {event.start_mark.line + 1})")
            stack.append([{} if mapping else [], mapping, _NO_KEY, event.start_mark])
            continue
        elif kind is MappingEndEvent or kind is SequenceEndEvent:
            value, _unused, _unused, mark = stack.pop()
        elif kind is AliasEvent:
            raise VmcloudError(
                "yaml-alias",
                f"YAML aliases are not allowed (line {event.start_mark.line + 1}); write the value out",
            )
        elif kind is DocumentStartEvent:
            documents += 1
            if documents > 1:
                raise _yaml_error(origin, "expected a single document", event.start_mark)
            continue
        elif kind is StreamEndEvent:
            return root
        else:  # stream start, document end
            continue
        nodes += kind is ScalarEvent
        if nodes > MAX_NODES:
            raise _too_many_nodes(origin, f" (line {mark.line + 1})")
        if not stack:
            root = value
            continue
        frame = stack[-1]
        if not frame[1]:
            frame[0].append(value)
        elif frame[2] is _NO_KEY:
            if isinstance(value, (dict, list)):
                raise _yaml_error(origin, "a mapping key must be a scalar", mark)
            if value in frame[0]:
                raise _yaml_error(origin, f"key {_short(value)} appears twice in one mapping", mark)
            frame[2] = value
        else:
            frame[0][frame[2]] = value
            frame[2] = _NO_KEY
