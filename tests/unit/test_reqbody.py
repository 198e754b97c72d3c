"""Reading a request body's model without parsing all of it, and refusing non-objects."""

from __future__ import annotations

import json

import pytest

from broker.proxy import request_body
from broker.proxy.request_body import looks_like_object, request_model

TOOLS = [{"name": f"t{i}", "description": "line\nnext \u2014 \"quoted\"", "input_schema": {"type": "object"}}
         for i in range(50)]


@pytest.mark.parametrize(
    "doc",
    [
        {"model": "claude-opus-4-8", "messages": [{"role": "user", "content": "hi"}], "tools": TOOLS},
        {"max_tokens": 5, "stream": True, "temperature": -1.5e-3, "stop": None, "model": "claude-haiku-4-5"},
        {"max_tokens": 5, "messages": [{"role": "user", "content": "hi", "model": "nested"}], "model": "sdk-order"},
        {"metadata": {"model": "nested"}, "model": "after-nested"},
        {"messages": [], "tools": TOOLS},
        {"model": 5, "messages": []},
        {"model": None},
        {"model": "caf\u00e9 \u2014 \"quoted\" \\ slash"},
        {"sys\u0074em": "x", "model": "after-escaped-key"},
        {},
    ],
)
@pytest.mark.parametrize("indent", [None, 2])
def test_same_answer_as_a_full_parse(doc: dict, indent: int | None) -> None:
    for ensure_ascii in (True, False):
        body = json.dumps(doc, indent=indent, ensure_ascii=ensure_ascii).encode()
        want = doc.get("model") if isinstance(doc.get("model"), str) else None
        assert request_model(body) == (True, want)
        assert request_model(b" \r\n\t" + body + b"\n") == (True, want)


def test_model_first_is_read_without_parsing_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    parses: list[bytes] = []
    monkeypatch.setattr(request_body, "_parsed", lambda body: parses.append(body) or (True, None))
    body = json.dumps({"model": "claude-opus-4-8", "messages": [], "tools": TOOLS}).encode()
    assert request_model(body) == (True, "claude-opus-4-8")
    assert request_model(b'{"max_tokens": 1, "stream": false, "model": "m"}') == (True, "m")
    assert parses == []
    request_model(b'{"messages": [], "model": "m"}')  # a nested value first: parsed in full
    assert len(parses) == 1


@pytest.mark.parametrize(
    "body",
    [b"[1, 2]", b'{"model": "claude-haiku-4-5", ', b'"model"', b"null", b"", b"   ", b"not json", b"{", b"}",
     b'{"model": "x"} trailing', b"\xff\xfe{}"],
)
def test_not_an_object(body: bytes) -> None:
    assert request_model(body) == (False, None)


def test_looks_like_object_needs_both_braces() -> None:
    assert looks_like_object(b' {"a": 1} ')
    assert not looks_like_object(b'{"a": 1')
    assert not looks_like_object(b'"a": 1}')


def test_bad_json_after_the_model_is_left_to_upstream() -> None:
    # Cheap shape check only: the upstream API answers 400 for the rest, and the proxy relays it.
    assert request_model(b'{"model": "m", "messages": [oops]}') == (True, "m")
    assert request_model(b'{"messages": [oops], "model": "m"}') == (False, None)


def test_invalid_utf8_model_is_none() -> None:
    assert request_model(b'{"model": "\xff\xfe", "x": 1}') == (True, None)


def test_escaped_keys_fall_back_to_a_full_parse() -> None:
    assert request_model(b'{"sys\\u0074em": "x", "model": "m"}') == (True, "m")
    assert request_model(b'{"mod\\u0065l": "escaped", "x": 1}') == (True, "escaped")


# -- a compressed body, read from a bounded copy ----------------------------------------------


def _encoded(data: bytes, coding: str) -> bytes:
    import gzip
    import zlib

    import brotli

    from broker.proxy.request_body import zstd

    return {"gzip": gzip.compress, "deflate": zlib.compress, "raw-deflate": lambda d: zlib.compress(d)[2:-4],
            "br": brotli.compress, "zstd": zstd.compress}[coding](data)


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate", "br", "zstd"])
def test_a_compressed_body_is_decoded_for_reading(coding):
    body = b'{"model": "claude-haiku-4-5", "messages": []}'
    header = "deflate" if coding == "raw-deflate" else coding
    assert request_body.decoded(_encoded(body, coding), header, 1000) == body
    with pytest.raises(request_body.BodyTooLarge):  # a bomb stops at the limit
        request_body.decoded(_encoded(b" " * 100_000, coding), header, 1000)


def test_layered_identity_and_unreadable_encodings():
    import gzip

    import brotli

    body = b'{"model": "m"}'
    assert request_body.decoded(brotli.compress(gzip.compress(body)), "gzip, br", 100) == body
    assert request_body.decoded(body, "identity", 100) == body
    for data, coding in [(b"not gzip at all", "gzip"), (gzip.compress(body)[:-6], "gzip"), (b"x", "compress"),
                         (b"not br", "br"), (b"not zstd", "zstd")]:
        with pytest.raises(ValueError):
            request_body.decoded(data, coding, 100)
