"""What the proxy reads from a request body: is it a JSON object, and which model it names.

Claude Code sends about 76 KB per request with `"model"` as the first key. Parsing all of
it to read one string cost more CPU than the rest of the proxy's work together, so the
top-level keys are scanned in order and the scan stops at `"model"`; only a nested value
met before it (the anthropic Python SDK sends `max_tokens`, `messages`, then `model`) makes
it fall back to a full parse. A body must start with `{` and end with `}`: that refuses
what is plainly not an object (an array, a cut-off body) without reading it all; anything
subtler is for the upstream API to refuse, and its 400 reaches the client as is.

A body with a `Content-Encoding` goes upstream as it came; `decoded` makes a bounded copy
to read it (a small compressed body must not unpack into gigabytes here).
"""

from __future__ import annotations

import json
import re
import zlib

try:  # the decoders aiohttp uses for replies; without them such a body cannot be read
    import brotli
except ImportError:  # pragma: no cover - Brotli is a dependency on CPython
    brotli = None
try:
    from compression import zstd  # Python 3.14
except ImportError:  # pragma: no cover - before 3.14
    try:
        from backports import zstd  # type: ignore[no-redef]
    except ImportError:
        zstd = None  # type: ignore[assignment]

_WS = b" \t\r\n"
# A JSON string token (escapes allowed), a scalar, or a key with its colon; all anchored at pos.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_SCALAR = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null',
                     re.DOTALL)
_KEY = re.compile(rb'[ \t\r\n]*"([^"\\]*)"[ \t\r\n]*:[ \t\r\n]*')
_NEXT = re.compile(rb"[ \t\r\n]*([,}])")


_LEAD = re.compile(rb"[ \t\r\n]*")


def looks_like_object(body: bytes) -> bool:
    """True when the body is shaped like one JSON object: `{` ... `}` around optional space.
    (Looks at its ends only: stripping a copy would copy the whole body, twice.)"""
    start = _LEAD.match(body).end()  # type: ignore[union-attr] # matches the empty string at worst
    end = len(body)
    while end > start and body[end - 1] in _WS:
        end -= 1
    return end - start >= 2 and body[start] == 0x7B and body[end - 1] == 0x7D  # { and }


def request_model(body: bytes) -> tuple[bool, str | None]:
    """(the body is a JSON object, its top-level "model" when that is a string).

    Exact for valid JSON whose top-level keys carry no escapes (any escape falls back to a
    full parse). With "model" given twice, the first counts (a full parse keeps the last).
    """
    if not looks_like_object(body):
        return False, None
    pos = body.index(b"{") + 1
    while True:
        key = _KEY.match(body, pos)
        if key is None:
            break  # an escaped key, an empty object, or not JSON: let the parser decide
        pos = key.end()
        if key.group(1) == b"model":
            value = _STRING.match(body, pos)
            return True, _string(value.group()) if value else None
        value = _SCALAR.match(body, pos)
        if value is None:
            break  # a nested object or array before "model"
        sep = _NEXT.match(body, value.end())
        if sep is None:
            break
        if sep.group(1) == b"}":
            return True, None
        pos = sep.end()
    return _parsed(body)


def _string(token: bytes) -> str | None:
    if b"\\" not in token:
        try:
            return token[1:-1].decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        return json.loads(token)
    except ValueError:
        return None


def _parsed(body: bytes) -> tuple[bool, str | None]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False, None
    if not isinstance(doc, dict):
        return False, None
    model = doc.get("model")
    return True, model if isinstance(model, str) else None


class BodyTooLarge(ValueError):
    """The body, decoded, is larger than the limit."""


def decoded(body: bytes, content_encoding: str, limit: int) -> bytes:
    """The body with its `Content-Encoding` (a list: applied in order, so undone in reverse)
    undone, for reading; BodyTooLarge past `limit` decoded bytes, ValueError for a body that
    is not what its encoding says, or an encoding this cannot undo."""
    out = body
    for coding in reversed([c.strip().lower() for c in content_encoding.split(",") if c.strip()]):
        out = _undo(out, coding, limit)
    return out


def _inflate(data: bytes, wbits: int, limit: int, coding: str) -> bytes:
    d = zlib.decompressobj(wbits)
    out = d.decompress(data, limit + 1)
    if len(out) <= limit and not d.eof:
        raise ValueError(f"the {coding} stream is cut short")
    return out


def _undo(data: bytes, coding: str, limit: int) -> bytes:
    if coding == "identity":
        return data
    try:
        if coding in ("gzip", "x-gzip"):
            out = _inflate(data, 16 + zlib.MAX_WBITS, limit, coding)
        elif coding == "deflate":  # the zlib wrapper as RFC 9110 says, or a raw stream as some send
            try:
                out = _inflate(data, zlib.MAX_WBITS, limit, coding)
            except zlib.error:
                out = _inflate(data, -zlib.MAX_WBITS, limit, coding)
        elif coding == "br" and brotli is not None:
            b = brotli.Decompressor()
            out = b.process(data, output_buffer_limit=limit + 1)
            if len(out) <= limit and not b.is_finished():
                raise ValueError("the br stream is cut short")
        elif coding == "zstd" and zstd is not None:
            z = zstd.ZstdDecompressor()
            out = z.decompress(data, max_length=limit + 1)
            if len(out) <= limit and not z.eof:
                raise ValueError("the zstd stream is cut short")
        else:
            raise ValueError(f"unsupported content encoding {coding[:40]!r}")
    except (zlib.error, EOFError) as exc:
        raise ValueError(f"not valid {coding}: {exc}") from None
    except Exception as exc:  # brotli.error, zstd.ZstdError: the body is not what it claims
        if isinstance(exc, ValueError):
            raise
        raise ValueError(f"not valid {coding}") from None
    if len(out) > limit:
        raise BodyTooLarge(coding)
    return out
