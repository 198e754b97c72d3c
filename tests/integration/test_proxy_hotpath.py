"""What the proxy's cheap paths must still get right: model scan, pool size, User-Agent."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from tests.fakes.eventually import eventually_async as eventually
from tests.integration.conftest import read_jsonl

MODEL = "claude-haiku-4-5"


async def raw_post(url: str, headers: list[tuple[str, str]], body: bytes) -> tuple[int, bytes]:
    """A request with exactly these headers (no client library adding its own)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    head = [f"POST /v1/messages HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}",
            "Connection: close", *(f"{k}: {v}" for k, v in headers)]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return int(data.split(b" ", 2)[1]), data


async def test_no_user_agent_from_the_client_means_none_upstream(make_broker):
    b = await make_broker()
    key = await b.add_sandbox("quiet")
    body = json.dumps({"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}).encode()
    status, data = await raw_post(b.url, [("x-api-key", key), ("anthropic-version", "2023-06-01")], body)
    assert status == 200, data
    (rec,) = b.fake.requests
    assert rec.header("user-agent") == []
    assert b.fake.problems == []


async def test_model_is_read_from_either_end_and_bad_json_after_it_goes_to_upstream(make_broker):
    b = await make_broker()
    key = await b.add_sandbox("models")
    messages = [{"role": "user", "content": "hi", "model": "not-this-one"}]
    sdk_order = json.dumps({"max_tokens": 5, "messages": messages, "model": MODEL}).encode()
    status, data = await raw_post(b.url, [("x-api-key", key)], sdk_order)
    assert status == 200, data
    broken_after_model = b'{"model": "claude-sonnet-4-6", "messages": [oops]}'
    status, data = await raw_post(b.url, [("x-api-key", key)], broken_after_model)
    assert status == 400 and b"not valid JSON" in data  # the upstream's own 400, relayed
    path = b.service.config.audit_log
    await eventually(lambda: path.exists() and len(read_jsonl(path)) == 2, what="2 audit lines")
    assert [(a["model"], a["status"]) for a in read_jsonl(path)] == [(MODEL, 200), ("claude-sonnet-4-6", 400)]


async def test_more_than_a_hundred_streams_are_all_live_at_once(make_broker):
    b = await make_broker(gate=asyncio.Event())  # the fake holds each stream after its first delta
    key = await b.add_sandbox("many")
    count = 120
    body = {"model": MODEL, "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one() -> bytes:
            async with session.post(b.url + "/v1/messages", headers={"x-api-key": key}, json=body) as resp:
                assert resp.status == 200
                first = await resp.content.readuntil(b"content_block_delta")
                live.append(first)
                return first + await resp.read()

        live: list[bytes] = []
        tasks = [asyncio.create_task(one()) for _ in range(count)]
        await eventually(lambda: len(live) == count, timeout=20, what=f"{count} streams live")
        assert b.fake.streams_open == count
        b.fake.gate.set()
        replies = await asyncio.gather(*tasks)
    assert all(r.rstrip().endswith(b'{"type": "message_stop"}') for r in replies)
    assert b.fake.streams_completed == count and b.fake.problems == []
