"""Upstream.body: silence in the upstream is an error after the idle timeout, a slow consumer is not."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from broker.proxy.upstream import Upstream


def paced_app(pauses: list[float]) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for i, pause in enumerate(pauses):
            await asyncio.sleep(pause)
            await resp.write(f"chunk{i};".encode())
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/", handle)
    return app


@pytest.fixture
async def upstream_of(aiohttp_server):
    """`await upstream_of(app)`: an Upstream (idle timeout 0.2 s) for a server running `app`."""
    made: list[Upstream] = []

    async def make(app: web.Application) -> tuple[Upstream, str]:
        server = await aiohttp_server(app)
        made.append(Upstream(str(server.make_url("")), read_idle_timeout=0.2))
        return made[-1], str(server.make_url("/"))

    yield make
    for upstream in made:
        await upstream.close()


async def read_all(upstream: Upstream, url: str, per_chunk: float = 0.0) -> bytes:
    resp = await upstream.send("GET", "/", [], b"")
    try:
        out = b""
        async for chunk in upstream.body(resp):
            out += chunk
            await asyncio.sleep(per_chunk)  # a consumer slower than the idle timeout
        return out
    finally:
        resp.release()


async def test_a_slow_consumer_is_not_upstream_silence(upstream_of) -> None:
    upstream, url = await upstream_of(paced_app([0, 0.05, 0.05]))
    assert await read_all(upstream, url, per_chunk=0.35) == b"chunk0;chunk1;chunk2;"


async def test_upstream_silence_raises_timeout(upstream_of) -> None:
    upstream, url = await upstream_of(paced_app([0, 0.05, 1.0, 0]))
    with pytest.raises(asyncio.TimeoutError):
        await read_all(upstream, url)


async def test_a_cancel_from_outside_stays_a_cancel(upstream_of) -> None:
    upstream, url = await upstream_of(paced_app([0, 5.0]))
    task = asyncio.create_task(read_all(upstream, url))
    await asyncio.sleep(0.1)
    task.cancel()  # a revoke ending the stream, say, before the idle timer fires
    with pytest.raises(asyncio.CancelledError):
        await task


def slow_headers_app(delay: float) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        await asyncio.sleep(delay)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/", handle)
    return app


async def test_silence_before_the_headers_raises_timeout(upstream_of) -> None:
    upstream, url = await upstream_of(slow_headers_app(2.0))
    with pytest.raises(asyncio.TimeoutError):
        await upstream.send("GET", "/", [], b"")


async def test_the_watchdog_stops_ticking_when_nothing_waits(upstream_of) -> None:
    upstream, url = await upstream_of(paced_app([0, 0.05]))
    assert not upstream.watchdog.ticking
    assert await read_all(upstream, url) == b"chunk0;chunk1;"
    for _ in range(50):
        if not upstream.watchdog.ticking:
            break
        await asyncio.sleep(0.02)
    assert not upstream.watchdog.ticking
