"""A lean HTTP/1.1 client for one upstream: a keep-alive pool over aiohttp's own response parser.

`aiohttp.ClientSession` builds a request object, a response object, cookie, tracing and
timeout machinery and a connection key for every request: about a quarter of a bare
proxy's CPU per request. The proxy needs none of it (one fixed upstream, headers already
final, its own watchdog for silence), so it writes the request head itself and reads the
reply with `aiohttp.client_proto.ResponseHandler`, the protocol `ClientSession` uses: the
same C parser, decompression, flow control and payload errors, without the layers above.
`tests/integration/test_http1.py` pins the behaviour this relies on, should aiohttp change.
"""

from __future__ import annotations

import asyncio
import ssl
import time

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.http_parser import RawResponseMessage
from aiohttp.streams import StreamReader
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

READ_BUFSIZE = 2**16  # aiohttp's default chunk size; the payload pauses the socket past twice this
# What aiohttp's client retries once on a fresh connection when a pooled one turns out closed.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


_NO_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())


class Reply:
    """One upstream reply: status line, headers, body stream. `release()` returns the
    connection to the pool when the body was read to its end, and closes it otherwise."""

    __slots__ = ("status", "reason", "headers", "content_length", "content_type", "content", "_proto", "_pool")

    def __init__(self, message: RawResponseMessage, payload: StreamReader, proto: ResponseHandler,
                 pool: Pool) -> None:
        self.status: int = message.code
        self.reason: str = message.reason
        headers = self.headers = message.headers
        length = headers.get("Content-Length")
        self.content_length = int(length) if length is not None and length.isdigit() else None
        self.content_type = headers.get("Content-Type", "application/octet-stream").partition(";")[0].strip().lower()
        self.content = payload
        self._proto: ResponseHandler | None = proto
        self._pool = pool

    def drop_headers(self) -> None:
        """Let the headers go (a stream can last minutes; its reply's headers are long used)."""
        self.headers = _NO_HEADERS

    def release(self) -> None:
        proto, self._proto = self._proto, None
        if proto is not None:
            self._pool.put(proto, reusable=self.content.is_eof())


class Pool:
    """Idle keep-alive connections to one host, newest first; one expires `keepalive`
    seconds after its last use. A timer runs only while some are idle."""

    def __init__(self, url: URL, keepalive: float, connect_timeout: float,
                 tls: ssl.SSLContext | None = None) -> None:
        self.host, self.port = url.host or "localhost", url.port  # yarl gives http(s)'s default port
        self.ssl: ssl.SSLContext | None = None  # the system's CAs, verified, for https
        if url.scheme == "https":
            self.ssl = tls or ssl.create_default_context()
        self.keepalive, self.connect_timeout = keepalive, connect_timeout
        self._idle: list[tuple[ResponseHandler, float]] = []
        self._busy: set[ResponseHandler] = set()
        self._timer: asyncio.TimerHandle | None = None

    async def get(self) -> tuple[ResponseHandler, bool]:
        """A connection, and whether it was reused (so may turn out closed by the upstream)."""
        now = time.monotonic()
        while self._idle:
            proto, since = self._idle.pop()
            if self._fresh(proto, since, now):
                self._busy.add(proto)
                return proto, True
            proto.close()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, proto = await loop.create_connection(lambda: ResponseHandler(loop), self.host, self.port,
                                                        ssl=self.ssl, server_hostname=self.host if self.ssl else None)
        except TimeoutError:
            raise aiohttp.ServerTimeoutError(f"connecting to {self.host}:{self.port} timed out") from None
        except OSError as exc:
            raise aiohttp.ClientOSError(exc.errno, f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}") \
                from None
        self._busy.add(proto)
        return proto, False

    def put(self, proto: ResponseHandler, reusable: bool) -> None:
        """Back to the pool if the exchange ended cleanly: the whole reply read, nothing of the
        request left unsent (an upstream that answers before reading all of a body must not
        get its rest as the start of the next request)."""
        self._busy.discard(proto)
        transport = proto.transport
        if (reusable and not proto.should_close and proto.is_connected() and transport is not None
                and not transport.get_write_buffer_size()):
            self._idle.append((proto, time.monotonic()))
            if self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(self.keepalive, self._expire)
        else:
            proto.close()

    def _expire(self) -> None:
        now = time.monotonic()
        kept = []
        for proto, since in self._idle:
            if self._fresh(proto, since, now):
                kept.append((proto, since))
            else:
                proto.close()
        self._idle = kept
        self._timer = asyncio.get_running_loop().call_later(self.keepalive / 2, self._expire) if kept else None

    def _fresh(self, proto: ResponseHandler, since: float, now: float) -> bool:
        """An idle connection still fit to carry a request: open, clean, not past keep-alive."""
        return proto.is_connected() and not proto.should_close and now - since < self.keepalive

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for proto, _ in self._idle:
            proto.close()
        for proto in self._busy:
            proto.close()
        self._idle, self._busy = [], set()


class Client:
    """Requests to one base URL over `Pool`. Headers go out as given, plus Host, the body's
    length and the encodings the parser decodes: the proxy's header policy already decided."""

    def __init__(self, base_url: str, keepalive: float = 15.0, connect_timeout: float = 30.0,
                 tls: ssl.SSLContext | None = None) -> None:
        url = URL(base_url)
        if url.scheme not in ("http", "https"):
            raise ValueError(f"the upstream URL must be http:// or https://, not {base_url!r}")
        self.pool = Pool(url, keepalive, connect_timeout, tls)
        host = url.raw_host or "localhost"
        host = f"[{host}]" if ":" in host else host
        authority = host if url.is_default_port() else f"{host}:{url.port}"
        self._fixed = f"Host: {authority}\r\nAccept-Encoding: gzip, deflate\r\n"
        self._prefix = url.raw_path.rstrip("/")  # a base URL's own path goes before the client's

    async def request(self, method: str, raw_path_qs: str, headers: list[tuple[str, str]],
                      body: bytes | bytearray) -> Reply:
        lines = [f"{method} {self._prefix}{raw_path_qs} HTTP/1.1\r\n", self._fixed]
        lines += [f"{name}: {value}\r\n" for name, value in headers]
        if body or method not in ("GET", "HEAD"):
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1")
        retry = method in IDEMPOTENT
        while True:
            proto, reused = await self.pool.get()
            try:
                return await self._exchange(proto, method, head, body)
            except aiohttp.ServerDisconnectedError:
                self.pool.put(proto, reusable=False)
                if not (reused and retry):
                    raise
                retry = False  # a pooled connection the upstream had closed: once more, on a new one
            except BaseException:
                self.pool.put(proto, reusable=False)
                raise

    async def _exchange(self, proto: ResponseHandler, method: str, head: bytes, body: bytes | bytearray) -> Reply:
        proto.set_response_params(skip_payload=method == "HEAD", read_until_eof=True, auto_decompress=True,
                                  read_bufsize=READ_BUFSIZE)
        transport = proto.transport
        if transport is None:
            raise aiohttp.ServerDisconnectedError()
        if len(body) <= 16384:
            transport.write(head + body)  # one segment for a small request
        else:  # no joined copy of a large body (asyncio's writelines would make one)
            transport.write(head)
            transport.write(body)
        while True:
            message, payload = await proto.read()
            if not 100 <= message.code <= 199 or message.code == 101:  # informational replies are skipped
                return Reply(message, payload, proto, self.pool)

    def close(self) -> None:
        self.pool.close()
