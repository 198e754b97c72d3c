"""Token usage read from Messages responses, so the ledger and tray can show who used what.

The proxy passes bytes through untouched and feeds a copy here; nothing in this module
may raise on odd input, because a parsing slip must never break a sandbox's stream.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

MAX_EVENT_BYTES = 1024 * 1024
PLAN_PREFIX = "anthropic-ratelimit-unified-"
_COUNTERS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)
_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass
class Usage:
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    stop_reason: str | None = None


def _count(value: Any) -> int | None:
    """A token count, or None for anything that is not a non-negative int."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _apply_counts(usage: Usage, counts: Any, *, keep_max: bool) -> None:
    if not isinstance(counts, dict):
        return
    for name in _COUNTERS:
        value = _count(counts.get(name))
        if value is None:
            continue
        if keep_max:
            value = max(value, getattr(usage, name))
        setattr(usage, name, value)


def usage_from_json(body: bytes) -> Usage | None:
    """Usage of a non-streaming Messages response; None if there is none. (A count_tokens
    reply, `{"input_tokens": N}`, says what a request *would* cost: it spends nothing.)"""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(doc, dict) or doc.get("type") == "error":
        return None
    if isinstance(doc.get("usage"), dict):
        usage = Usage(model=_text(doc.get("model")), stop_reason=_text(doc.get("stop_reason")))
        _apply_counts(usage, doc["usage"], keep_max=False)
        return usage
    return None


JSON_USAGE_LIMIT = 4 * 1024 * 1024  # a JSON reply up to this size is kept whole and parsed
EDGE = 64 * 1024  # of a larger one, only its first and last this many bytes are kept
_MODEL = re.compile(rb'"model"[ \t\r\n]*:[ \t\r\n]*"([^"\\]{1,256})"')
_STOP = re.compile(rb'"stop_reason"[ \t\r\n]*:[ \t\r\n]*"([A-Za-z_]{1,64})"')
_USAGE = re.compile(rb'"usage"[ \t\r\n]*:[ \t\r\n]*\{')


def json_usage(body: bytes) -> Usage | None:
    """Usage of a whole non-streaming reply of any size (see `JSONUsageReader`)."""
    if len(body) <= JSON_USAGE_LIMIT:
        return usage_from_json(body)
    return usage_from_edges(body[:EDGE], body[-EDGE:])


def usage_from_edges(head: bytes, tail: bytes) -> Usage | None:
    """Usage of a reply too large to keep, from its first and last bytes: a Messages reply
    names its model near the start and ends with `stop_reason` and `usage`. Inside a JSON
    string a quote is escaped, so `"usage": {` there can only be a key; the last one in the
    tail is the top-level one, which comes after the content."""
    starts = list(_USAGE.finditer(tail))
    if not starts:
        return None
    try:
        counts, _ = json.JSONDecoder().raw_decode(tail[starts[-1].end() - 1:].decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(counts, dict):
        return None
    model, stops = _MODEL.search(head), list(_STOP.finditer(tail))
    usage = Usage(model=model.group(1).decode("utf-8", "replace") if model else None,
                  stop_reason=stops[-1].group(1).decode() if stops else None)
    _apply_counts(usage, counts, keep_max=False)
    return usage


class JSONUsageReader:
    """The usage of a non-streaming reply fed chunk by chunk, in bounded memory: the whole
    reply while it is under `JSON_USAGE_LIMIT`, past that only its first and last `EDGE`
    bytes (a reply of any size is counted; one over the limit used to count as nothing)."""

    __slots__ = ("_chunks", "_size", "_head", "_tail")

    def __init__(self) -> None:
        self._chunks: list[bytes] | None = []
        self._size = 0
        self._head = b""
        self._tail = bytearray()

    def feed(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._chunks is not None:
            self._chunks.append(chunk)
            if self._size <= JSON_USAGE_LIMIT:
                return
            whole, self._chunks = b"".join(self._chunks), None
            self._head, self._tail = whole[:EDGE], bytearray(whole[-EDGE:])
            return
        self._tail += chunk
        if len(self._tail) > EDGE:
            del self._tail[:-EDGE]

    def result(self) -> Usage | None:
        if self._chunks is not None:
            return usage_from_json(b"".join(self._chunks))
        return usage_from_edges(self._head, bytes(self._tail))


# Usage travels only in these events; an event naming neither (in its `event:` line or its
# data) is not parsed, and a chunk of whole events naming neither is not even split in lines.
_USAGE_EVENTS = (b"message_start", b"message_delta")


def _names_usage(data: bytes) -> bool:
    return _USAGE_EVENTS[0] in data or _USAGE_EVENTS[1] in data


def _skip_events(buf: bytearray, pos: int, start: int) -> int:
    """Past the whole `\\n`-separated events from `pos` on that name no usage event.

    `pos` is at the start of a line between events; the first `\\n\\n` at or after `start`
    ends the next event. An event with a `\\r` or a usage name is left to the line reader.
    """
    while (end := buf.find(b"\n\n", start)) >= 0:
        if (buf.find(b"\r", pos, end) >= 0 or buf.find(_USAGE_EVENTS[0], pos, end) >= 0
                or buf.find(_USAGE_EVENTS[1], pos, end) >= 0):
            break
        pos = start = end + 2
    return pos


class SSEUsageTracker:
    """Incremental SSE reader that keeps only what usage accounting needs.

    Chunks may split events, lines and even `\\r\\n` pairs anywhere. Output tokens in
    `message_delta` are cumulative (the last one wins); input and cache counts there may
    repeat or refine `message_start`'s, so the largest wins. Most of a stream is text deltas:
    a chunk that starts and ends on event boundaries and names no usage event is skipped
    whole, so a stream costs two JSON parses, not one per event.
    """

    def __init__(self) -> None:
        self._usage = Usage()
        self._buf = bytearray()
        self._skip_lf = False  # last line ended in a lone \r that may be half of \r\n
        self._discard_line = False  # inside an oversized line: drop bytes until its end
        self._data: list[bytes] = []
        self._size = 0
        self._oversized = False
        self._event = b""
        self.skipped = 0

    def feed(self, chunk: bytes) -> None:
        if (chunk.endswith(b"\n\n") and not self._buf and not self._skip_lf and not self._event and not self._data
                and not self._oversized and not self._discard_line and not _names_usage(chunk)):
            return
        try:
            self._feed(chunk)
        except Exception:  # noqa: BLE001 - accounting must never break the stream
            logger.debug("SSE usage parsing failed; resetting", exc_info=True)
            self._buf.clear()
            self._reset_event()

    def result(self) -> Usage:
        return Usage(**vars(self._usage))

    def _feed(self, chunk: bytes) -> None:
        buf = self._buf
        scan = len(buf)  # bytes already held contain no line end: don't rescan them
        buf += chunk
        pos = 0
        if self._skip_lf and buf[:1] == b"\n":
            pos = scan = 1
        self._skip_lf = False
        while True:
            if not (self._data or self._event or self._oversized or self._discard_line):
                pos = _skip_events(buf, pos, max(pos, scan))
            m = _LINE_END.search(buf, max(pos, scan))
            if m is None:
                break
            line = bytes(buf[pos : m.start()])
            pos = m.end()
            if m.group() == b"\r" and pos == len(buf):
                self._skip_lf = True
            if self._discard_line:
                self._discard_line = False
                continue
            self._line(line)
        if pos == len(buf):
            buf.clear()  # frees the buffer; deleting a prefix would keep it allocated
        else:
            del buf[:pos]
        if len(buf) > MAX_EVENT_BYTES:
            buf.clear()
            self._discard_line = True
            self._oversized = True
            self._data.clear()

    def _line(self, line: bytes) -> None:
        if not line:
            self._dispatch()
            return
        if line.startswith(b":"):
            return
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            self._size += len(value) + 1
            if self._size > MAX_EVENT_BYTES:
                self._oversized = True
                self._data.clear()
            elif not self._oversized:
                self._data.append(value)
        elif field == b"event":
            self._event = value

    def _reset_event(self) -> None:
        self._data = []
        self._size = 0
        self._oversized = False
        self._event = b""

    def _dispatch(self) -> None:
        data, event, oversized = self._data, self._event, self._oversized
        self._reset_event()
        if oversized:
            self.skipped += 1
            return
        if not data:
            return
        joined = b"\n".join(data)
        if not _names_usage(event) and not _names_usage(joined):
            return
        try:
            doc = json.loads(joined)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return
        if isinstance(doc, dict):
            kind = doc.get("type") if isinstance(doc.get("type"), str) else event.decode("utf-8", "replace")
            self._apply(kind, doc)

    def _apply(self, kind: str, doc: dict) -> None:
        usage = self._usage
        if kind == "message_start":
            message = doc.get("message")
            if isinstance(message, dict):
                usage.model = _text(message.get("model")) or usage.model
                _apply_counts(usage, message.get("usage"), keep_max=True)
        elif kind == "message_delta":
            counts = doc.get("usage")
            if isinstance(counts, dict):
                output = _count(counts.get("output_tokens"))
                _apply_counts(usage, counts, keep_max=True)
                if output is not None:
                    usage.output_tokens = output
            delta = doc.get("delta")
            if isinstance(delta, dict):
                usage.stop_reason = _text(delta.get("stop_reason")) or usage.stop_reason


def plan_limits(headers: Mapping[str, str]) -> dict[str, str]:
    """The subscription's plan-limit headers, e.g. {"5h-utilization": "0.42", "status": ...}."""
    out: dict[str, str] = {}
    size = len(PLAN_PREFIX)
    for name, value in headers.items():
        if len(name) > size and name[:size].lower() == PLAN_PREFIX:  # most names are shorter
            out[name[size:].lower()] = value
    return out
