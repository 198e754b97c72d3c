"""Usage extraction from JSON bodies and SSE streams cut at every possible byte."""

from __future__ import annotations

import json

import pytest

from broker.usage.reply_usage import MAX_EVENT_BYTES, SSEUsageTracker, Usage, plan_limits, usage_from_json


def sse(kind: str, data: dict, sep: str = "\n") -> bytes:
    return f"event: {kind}{sep}data: {json.dumps(data)}{sep}{sep}".encode()


START = {
    "type": "message_start",
    "message": {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [],
        "usage": {
            "input_tokens": 11,
            "output_tokens": 1,
            "cache_creation_input_tokens": 5,
            "cache_read_input_tokens": 7,
        },
    },
}
DELTA_TEXT = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}
MSG_DELTA = {
    "type": "message_delta",
    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
    "usage": {"output_tokens": 42},
}
EXPECTED = Usage(
    model="claude-sonnet-4-5",
    input_tokens=11,
    output_tokens=42,
    cache_creation_input_tokens=5,
    cache_read_input_tokens=7,
    stop_reason="end_turn",
)


def stream(sep: str = "\n") -> bytes:
    return b"".join(
        [
            sse("message_start", START, sep),
            sse("content_block_start", {"type": "content_block_start", "index": 0}, sep),
            f": a comment{sep}".encode(),
            sse("ping", {"type": "ping"}, sep),
            sse("content_block_delta", DELTA_TEXT, sep),
            sse("content_block_stop", {"type": "content_block_stop", "index": 0}, sep),
            sse("message_delta", MSG_DELTA, sep),
            sse("message_stop", {"type": "message_stop"}, sep),
        ]
    )


def track(*chunks: bytes) -> Usage:
    t = SSEUsageTracker()
    for c in chunks:
        t.feed(c)
    return t.result()


@pytest.mark.parametrize("sep", ["\n", "\r\n", "\r"])
def test_whole_stream(sep):
    assert track(stream(sep)) == EXPECTED


@pytest.mark.parametrize("sep", ["\n", "\r\n"])
def test_split_at_every_byte(sep):
    body = stream(sep)
    for cut in range(1, len(body)):
        assert track(body[:cut], body[cut:]) == EXPECTED, cut


@pytest.mark.parametrize("sep", ["\n", "\r\n", "\r"])
def test_one_byte_chunks(sep):
    body = stream(sep)
    assert track(*(body[i : i + 1] for i in range(len(body)))) == EXPECTED


def test_multiline_data_is_joined_with_newline():
    doc = json.dumps(MSG_DELTA, indent=2).splitlines()
    event = b"event: message_delta\n" + b"".join(b"data: " + line.encode() + b"\n" for line in doc) + b"\n"
    assert track(sse("message_start", START), event) == EXPECTED


def test_data_without_space_and_type_from_event_name():
    no_type = {k: v for k, v in MSG_DELTA.items() if k != "type"}
    body = b"event:message_delta\ndata:" + json.dumps(no_type).encode() + b"\n\n"
    assert track(sse("message_start", START), body) == EXPECTED


@pytest.mark.parametrize(
    "deltas, expected_out, expected_in",
    [
        ([{"output_tokens": 5}, {"output_tokens": 42}], 42, 11),
        ([{"output_tokens": 42}, {"output_tokens": 3}], 3, 11),  # last wins, not max
        ([{"output_tokens": 9, "input_tokens": 20}], 9, 20),  # newer APIs: max of input
        ([{"output_tokens": 9, "input_tokens": 2}], 9, 11),
        ([{"output_tokens": "many"}], 1, 11),
        ([{"output_tokens": True}], 1, 11),
        ([{"output_tokens": -4}], 1, 11),
    ],
)
def test_message_delta_counts(deltas, expected_out, expected_in):
    body = sse("message_start", START) + b"".join(
        sse("message_delta", {"type": "message_delta", "delta": {}, "usage": u}) for u in deltas
    )
    got = track(body)
    assert (got.output_tokens, got.input_tokens) == (expected_out, expected_in)


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\xff\xfe garbage \n\n",
        b"data: {not json\n\n",
        b"data: [1,2,3]\n\n",
        b"data: null\n\n",
        b'data: {"type": "message_start", "message": "oops"}\n\n',
        b'data: {"type": "message_delta", "usage": [1], "delta": 7}\n\n',
        b'data: {"type": 5}\n\n',
        b"data: " + b"[" * 100_000 + b"\n\n",
        b"\n\n\n\n",
        b"retry: 10\nid: 5\n\n",
    ],
)
def test_garbage_never_raises_and_is_ignored(garbage):
    assert track(sse("message_start", START), garbage, sse("message_delta", MSG_DELTA)) == EXPECTED


def test_oversized_event_is_skipped_not_accumulated():
    t = SSEUsageTracker()
    t.feed(sse("message_start", START))
    big = b"data: " + b"x" * 4096 + b"\n"
    for _ in range(MAX_EVENT_BYTES // 4096 + 10):
        t.feed(big)
        assert len(t._buf) < 8192
        assert sum(map(len, t._data)) <= MAX_EVENT_BYTES
    t.feed(b"\n")
    t.feed(sse("message_delta", MSG_DELTA))
    assert t.result() == EXPECTED
    assert t.skipped == 1


def test_oversized_single_line_is_discarded():
    t = SSEUsageTracker()
    t.feed(sse("message_start", START))
    t.feed(b'data: {"type": "message_delta", "usage": {"output_tokens": 999}, "x": "')
    for _ in range(MAX_EVENT_BYTES // 65536 + 4):
        t.feed(b"y" * 65536)
        assert len(t._buf) <= MAX_EVENT_BYTES + 65536
    t.feed(b'"}\n\n')
    t.feed(sse("message_delta", MSG_DELTA))
    assert t.result() == EXPECTED
    assert t.skipped == 1


def test_result_is_a_copy_and_empty_stream_is_zero():
    t = SSEUsageTracker()
    assert t.result() == Usage()
    t.result().input_tokens = 5
    assert t.result() == Usage()


def test_incomplete_trailing_event_is_not_counted():
    assert track(sse("message_start", START)[:-1]).model is None


@pytest.mark.parametrize(
    "body, expected",
    [
        (
            json.dumps(
                {
                    "id": "msg_1",
                    "type": "message",
                    "model": "claude-haiku-4-5",
                    "stop_reason": "max_tokens",
                    "content": [{"type": "text", "text": "hi"}],
                    "usage": {"input_tokens": 3, "output_tokens": 4, "cache_read_input_tokens": 2},
                }
            ).encode(),
            Usage("claude-haiku-4-5", 3, 4, 0, 2, "max_tokens"),
        ),
        (b'{"input_tokens": 11}', None),  # count_tokens: what a request would cost, not spending
        (b'{"type": "message", "usage": {"input_tokens": "x"}}', Usage()),
        (b'{"type": "error", "error": {"type": "api_error", "message": "x"}}', None),
        (b'{"data": []}', None),
        (b"not json", None),
        (b"", None),
        (b"\xff\xfe", None),
        (b"[1, 2]", None),
        (b"[" * 100_000, None),
    ],
)
def test_usage_from_json(body, expected):
    assert usage_from_json(body) == expected


def test_plan_limits():
    headers = {
        "anthropic-ratelimit-unified-status": "allowed",
        "Anthropic-Ratelimit-Unified-5h-Utilization": "0.42",
        "anthropic-ratelimit-unified-5h-reset": "1760000000",
        "anthropic-ratelimit-unified-7d-utilization": "0.1",
        "anthropic-ratelimit-unified-7d-reset": "1760500000",
        "anthropic-ratelimit-unified-": "ignored",
        "anthropic-ratelimit-requests-limit": "50",
        "request-id": "req_1",
    }
    assert plan_limits(headers) == {
        "status": "allowed",
        "5h-utilization": "0.42",
        "5h-reset": "1760000000",
        "7d-utilization": "0.1",
        "7d-reset": "1760500000",
    }


def test_only_usage_events_are_parsed(monkeypatch):
    import broker.usage.reply_usage as usage_mod

    parsed: list[bytes] = []
    real = usage_mod.json.loads
    monkeypatch.setattr(usage_mod.json, "loads", lambda s, *a, **k: parsed.append(s) or real(s, *a, **k))
    deltas = [sse("content_block_delta", DELTA_TEXT) for _ in range(40)]
    assert track(sse("message_start", START), *deltas, b"".join(deltas), sse("message_delta", MSG_DELTA)) == EXPECTED
    assert len(parsed) == 2 and all(b"message_" in p for p in parsed)


def test_usage_event_named_only_in_its_event_line_across_chunks():
    no_type = {k: v for k, v in MSG_DELTA.items() if k != "type"}
    assert track(sse("message_start", START), b"event: message_delta\n",
                 b"data: " + json.dumps(no_type).encode() + b"\n\n") == EXPECTED


def test_usage_named_only_in_data_under_another_event_name():
    assert track(sse("message_start", START), sse("content_block_delta", MSG_DELTA)) == EXPECTED


@pytest.mark.parametrize("sep", ["\n", "\r\n"])
def test_a_whole_stream_in_one_chunk_parses_two_events(monkeypatch, sep):
    import broker.usage.reply_usage as usage_mod

    parsed: list[bytes] = []
    real = usage_mod.json.loads
    monkeypatch.setattr(usage_mod.json, "loads", lambda s, *a, **k: parsed.append(s) or real(s, *a, **k))
    deltas = b"".join(sse("content_block_delta", DELTA_TEXT, sep) for _ in range(40))
    assert track(stream(sep)[:-10] + deltas[:7], deltas[7:] + stream(sep)) == EXPECTED
    assert len(parsed) == 4  # message_start and message_delta, in each of the two streams
