"""Unauthenticated noise: what anyone who can connect may send without a key must cost one log
line at most, never a traceback or a 500; a key that is not even UTF-8 is a wrong key."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from tests.integration.conftest import Broker

SMUGGLE = (b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")


async def raw(b: Broker, request: bytes) -> tuple[int, bytes]:
    """One request written byte for byte on its own connection; the status and all of the reply."""
    host, port = b.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return int(data.split(b" ", 2)[1]), data


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info or "Error handling request" in r.getMessage()]


async def test_malformed_requests_are_one_line_each_and_rate_limited(make_broker, caplog):
    caplog.set_level(logging.INFO)
    b = await make_broker()
    statuses = [(await raw(b, SMUGGLE))[0] for _ in range(40)]
    assert statuses == [400] * 40
    assert _tracebacks(caplog) == []
    lines = [r for r in caplog.records if "malformed request" in r.getMessage()]
    assert 1 <= len(lines) <= 10  # per minute, like wrong keys
    assert all(r.levelno == logging.WARNING and "\n" not in r.getMessage() for r in lines)
    assert "127.0.0.1" in lines[0].getMessage()
    assert b.fake.requests == []


async def test_a_key_that_is_not_utf8_is_a_wrong_key_and_is_throttled(make_broker, caplog):
    b = await make_broker(proxy={"auth_failures_per_minute": 3})
    await b.add_sandbox("real")
    body = b'{"model": "claude-haiku-4-5", "max_tokens": 8, "messages": []}'
    heads = [b"x-api-key: sk-ib-guess\xe9", b"Authorization: Bearer \xff\xfe"]
    replies = []
    for i in range(5):
        request = (b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n" + heads[i % 2] + b"\r\n"
                   b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        replies.append(await raw(b, request))
    assert [status for status, _ in replies] == [401, 401, 401, 429, 429]
    for _, data in replies:
        doc = json.loads(data.partition(b"\r\n\r\n")[2])
        assert doc["type"] == "error" and doc["error"]["type"] in ("authentication_error", "rate_limit_error")
    assert _tracebacks(caplog) == []
    assert b.fake.requests == []
