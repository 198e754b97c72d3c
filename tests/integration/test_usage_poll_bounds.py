"""The broker's own usage poll reads a bounded reply: an endpoint (or something posing as it)
that answers 300 MB must not keep that much in the broker for the life of the process."""

from __future__ import annotations

import json

import pytest
from aiohttp import web

from broker.usage.usage_poll import MAX_REPLY_BYTES, UsageClient, UsagePollError

DOC = {"five_hour": {"utilization": 12.0, "resets_at": "2030-01-01T00:00:00Z"}}


def _app(size: int, chunked: bool) -> web.Application:
    async def usage(request: web.Request) -> web.StreamResponse:
        body = json.dumps({**DOC, "pad": "x" * size}).encode()
        if not chunked:
            return web.Response(body=body, content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(body), 65536):
            await resp.write(body[i:i + 65536])
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/api/oauth/usage", usage)
    return app


@pytest.mark.parametrize("chunked", [False, True])
async def test_an_oversized_usage_reply_is_refused(aiohttp_server, chunked: bool) -> None:
    server = await aiohttp_server(_app(4 * MAX_REPLY_BYTES, chunked))
    client = UsageClient(str(server.make_url("")), "/api/oauth/usage")
    with pytest.raises(UsagePollError, match="more than"):
        await client.fetch("sk-ant-oat01-test")


async def test_a_usage_reply_of_normal_size_is_read(aiohttp_server) -> None:
    server = await aiohttp_server(_app(1000, True))
    doc = await UsageClient(str(server.make_url("")), "/api/oauth/usage").fetch("sk-ant-oat01-test")
    assert doc["five_hour"] == DOC["five_hour"]


async def test_a_deeply_nested_usage_reply_is_an_error_not_a_crash(aiohttp_server) -> None:
    async def usage(request: web.Request) -> web.Response:
        return web.Response(body=b"[" * 30_000 + b"]" * 30_000, content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/oauth/usage", usage)
    server = await aiohttp_server(app)
    with pytest.raises(UsagePollError, match="not JSON"):
        await UsageClient(str(server.make_url("")), "/api/oauth/usage").fetch("sk-ant-oat01-test")
