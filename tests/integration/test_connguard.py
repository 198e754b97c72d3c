"""The out-of-file-descriptors log limiter: one line a minute, no traceback, a count."""

from __future__ import annotations

import errno
import logging

import pytest

from broker.proxy.connection_guard import StormFilter

pytestmark = pytest.mark.integration


def record(exc: BaseException | None, msg: str = "Error handling request") -> logging.LogRecord:
    return logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, msg, None,
                             (type(exc), exc, None) if exc else None)


def test_an_fd_storm_is_one_line_a_minute_with_a_count():
    now = [0.0]
    f = StormFilter(every=60.0, clock=lambda: now[0])
    emfile = OSError(errno.EMFILE, "Too many open files")
    passed = [f.filter(record(emfile)) for _ in range(6360)]  # what the attack wrote in 8 s
    assert passed.count(True) == 1
    now[0] = 61.0
    r = record(emfile)
    assert f.filter(r) and "[6359 similar messages suppressed]" in r.getMessage()
    assert r.exc_info is None and "out of file descriptors" in r.getMessage()
    accept = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "socket.accept() out of system resource",
                               None, None)
    assert not f.filter(accept)  # same storm, same minute


def test_other_errors_pass_untouched():
    f = StormFilter()
    r = record(ValueError("boom"))
    assert all(f.filter(r) for _ in range(10)) and r.exc_info is not None


async def test_the_idle_sweep_sleeps_while_no_connection_is_open():
    """An idle broker must not wake up once a second for connections it does not have."""
    import asyncio

    from aiohttp import web

    from broker.proxy.connection_guard import ConnectionGuard
    from broker.proxy.connection_limits import ConnectionTable

    guard = ConnectionGuard(ConnectionTable(8, header_timeout=0.2, idle_timeout=0.2))
    sweeps = []
    expired = guard.table.expired
    guard.table.expired = lambda now: sweeps.append(now) or expired(now)  # type: ignore[method-assign]

    async def hello(request: web.BaseRequest) -> web.Response:
        return web.Response(text="hi")

    runner = web.ServerRunner(web.Server(guard.guard(hello)))
    await runner.setup()
    assert runner.server is not None
    guard.install(runner.server)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        await asyncio.sleep(0.5)
        assert sweeps == []  # ten sweep intervals, no connection: no sweep
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.readuntil(b"hi")
        # no key (unauthenticated): closed after the answer; an idle one is swept after 0.2 s
        await asyncio.sleep(0.5)
        assert sweeps, "the sweep did not run while a connection was open"
        writer.close()
        count = len(sweeps)
        await asyncio.sleep(0.3)
        assert len(sweeps) <= count + 1  # asleep again once the table is empty
    finally:
        await guard.close()
        await runner.cleanup()
