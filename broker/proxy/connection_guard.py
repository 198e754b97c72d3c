"""The proxy's connection guard on aiohttp: cap, timeouts, and quiet logs under a storm.

aiohttp's server keeps an idle connection for about an hour and accepts without limit. This
hooks its `Server` (connection made/lost), marks requests by wrapping the handler, sweeps idle
connections once a second by the rules in proxy.connection_limits, and closes unauthenticated
connections after their answer. When the process runs out of file descriptors, asyncio and
aiohttp log a traceback per failed accept or request (6,360 in 8 s were seen): a filter lets
one such line through per minute, with a count of what it held back. A request aiohttp cannot
parse (36,360 in 24 s, without a key) is logged as one line, at most `MalformedRequestLog.per_window`
a minute, like wrong keys: the server logs to `REQUEST_LOG`, which carries that filter.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from typing import Any, Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from broker.proxy.connection_limits import ConnectionTable

log = logging.getLogger(__name__)
# What the proxy's aiohttp server logs (given to it as its `logger`): requests it could not
# handle. Only this server's records: the dashboard's keep aiohttp's own logger.
REQUEST_LOG = logging.getLogger("broker.proxy.requests")

_FD_ERRNOS = (errno.EMFILE, errno.ENFILE)
STORM_LOGGERS = ("asyncio", "aiohttp.server", "aiohttp.web", "broker.proxy.server", "broker.proxy.forward",
                 "broker.proxy.audit", REQUEST_LOG.name)


def fd_cap(wanted: int) -> int:
    """At most half the process's fd limit: the rest is for upstream sockets, files, SQLite."""
    try:
        import resource  # POSIX only; Windows has no per-process fd limit to halve
    except ImportError:
        return wanted
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, min(wanted, soft // 2)) if soft > 0 else wanted


class StormFilter(logging.Filter):
    """Let one out-of-file-descriptors record through per `every` seconds."""

    def __init__(self, every: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every, self.clock = every, clock
        self._next = 0.0
        self.suppressed = 0

    @staticmethod
    def _is_fd_storm(record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, OSError) and exc.errno in _FD_ERRNOS:
            return True
        text = record.getMessage() if not exc else f"{record.getMessage()} {exc}"
        return "Too many open files" in text or "out of system resource" in text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._is_fd_storm(record):
            return True
        now = self.clock()
        if now < self._next:
            self.suppressed += 1
            return False
        self._next = now + self.every
        record.msg = f"out of file descriptors (more connections than the limit allows): {record.getMessage()}" + (
            f" [{self.suppressed} similar messages suppressed]" if self.suppressed else "")
        record.args, record.exc_info, record.exc_text = None, None, None  # one line, no traceback
        self.suppressed = 0
        return True


class MalformedRequestLog(logging.Filter):
    """aiohttp logs a request it cannot parse (Content-Length with Transfer-Encoding, a line
    too long, a bad header...) as "Error handling request" with a traceback; it has already
    answered 400 and closed the connection. This turns each such record into one warning line,
    at most `per_window` in `window` seconds; the next line let through says how many were
    held back. Nothing the client sent reaches the log unescaped or unbounded."""

    def __init__(self, per_window: int = 10, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.per_window, self.window, self.clock = per_window, window, clock
        self._window_end = float("-inf")
        self._logged = 0
        self.held_back = 0  # since the last line let through
        self.total = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        self.total += 1
        now = self.clock()
        if now >= self._window_end:
            self._window_end, self._logged = now + self.window, 0
        if self._logged >= self.per_window:
            self.held_back += 1
            return False
        self._logged += 1
        peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        reason = (exc.message or type(exc).__name__).splitlines()[0][:120]
        record.msg = "refused a malformed request from %s: %s (%s)%s"
        record.args = (ascii(str(peer))[1:-1][:64], ascii(reason)[1:-1], type(exc).__name__,
                       f" [{self.held_back} more held back]" if self.held_back else "")
        if record.levelno > logging.WARNING:  # aiohttp says ERROR; a stranger's bad bytes are not one
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text, record.stack_info = None, None, None  # one line, no traceback
        self.held_back = 0
        return True


class ConnectionGuard:
    def __init__(self, table: ConnectionTable, clock: Callable[[], float] = time.monotonic) -> None:
        self.table, self.clock = table, clock
        self.storm = StormFilter()
        self.malformed = MalformedRequestLog()
        self._transports: dict[Any, asyncio.Transport] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()  # set when a connection opens

    def install(self, server: web.Server) -> None:
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler: Any, transport: asyncio.Transport) -> None:
            made(handler, transport)
            self._transports[handler] = transport
            self._wake.set()
            victim = self.table.opened(handler, self.clock())
            if victim is not None:
                self._close(victim)

        def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
            self.table.closed(handler)
            self._transports.pop(handler, None)
            lost(handler, exc)

        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign]
        for name in STORM_LOGGERS:
            logging.getLogger(name).addFilter(self.storm)
        REQUEST_LOG.addFilter(self.malformed)
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    def _close(self, handler: Any) -> None:
        self.table.closed(handler)
        transport = self._transports.pop(handler, None)
        if transport is not None:
            transport.abort()

    async def _sweep(self) -> None:
        """Once a second while connections are open; asleep while there are none (an idle
        broker does not wake up for it)."""
        while True:
            if not len(self.table):
                self._wake.clear()
                await self._wake.wait()
            await asyncio.sleep(min(1.0, self.table.header_timeout / 4))
            for handler in self.table.expired(self.clock()):
                self._close(handler)

    def authenticated(self, request: web.BaseRequest) -> None:
        self.table.authenticated(request.protocol)

    def guard(self, handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
              ) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
        """`handler` with each request marked busy in the table while it runs, and the
        connection closed after the answer unless the request was authenticated. (A plain
        wrapper: an aiohttp middleware costs a `functools.update_wrapper` per request.)"""
        table, clock = self.table, self.clock

        async def guarded(request: web.BaseRequest) -> web.StreamResponse:
            proto = request.protocol
            table.started(proto, clock())
            try:
                resp = await handler(request)
                if not table.is_authenticated(proto):
                    resp.force_close()  # no key, no keep-alive: refused clients do not hold a slot
                return resp
            finally:
                table.finished(proto, clock())

        return guarded

    async def close(self) -> None:
        for name in STORM_LOGGERS:
            logging.getLogger(name).removeFilter(self.storm)
        REQUEST_LOG.removeFilter(self.malformed)
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
