"""The upstream API client: one `aiohttp.ClientSession`, streaming, no total timeout.

The session's connector keeps connections alive between requests, has no connection cap
(a cap would hold stream 101 back until another stream ended), caches DNS answers and
races IPv6 and IPv4 (Happy Eyeballs). Replies in gzip, deflate, br or zstd arrive decoded
(aiohttp's decoders; br and zstd need the Brotli and backports.zstd packages): the proxy
reads every body it relays, to count usage and mask echoed secrets.

A long stream must not be cut by a total deadline, so only the connect time and the silence
of the upstream (waiting for a reply's headers, or between its chunks) are bounded. A timer
per request, made and cancelled again on every chunk, would cost streams of thousands of
chunks dearly; here one watchdog timer for all requests, running only while some wait,
checks how long each has waited. Time spent writing to the client (who may be slow) is not
the upstream's silence.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import aiohttp
from yarl import URL

Reply = aiohttp.ClientResponse

READ_BUFSIZE = 2**16  # aiohttp's default chunk size; the payload pauses the socket past twice this
# Headers a client did not send are not invented on its behalf (aiohttp would add these).
_NOT_ADDED = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")


class Upstream:
    def __init__(self, base_url: str, connect_timeout: float = 30.0, read_idle_timeout: float = 600.0,
                 tls: ssl.SSLContext | None = None) -> None:
        url = URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"the upstream URL must be http:// or https://, not {base_url!r}")
        self.base = base_url.rstrip("/")  # a base URL's own path goes before the client's
        self.watchdog = _Watchdog(read_idle_timeout)
        self.connect_timeout = connect_timeout
        # An idle pooled connection lasts no longer than the silence allowed in a reply, at most 15 s.
        self.keepalive = min(15.0, read_idle_timeout)
        self.tls = tls
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """Made on first use, inside the running loop (as aiohttp requires)."""
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=0, limit_per_host=0,  # no cap: every concurrent stream gets its connection now
                keepalive_timeout=self.keepalive,
                use_dns_cache=True, ttl_dns_cache=60,
                happy_eyeballs_delay=0.25,  # RFC 8305's recommended delay
                ssl=self.tls if self.tls is not None else True)  # the system's CAs, verified
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False,
                timeout=aiohttp.ClientTimeout(total=None, connect=self.connect_timeout),
                auto_decompress=True, read_bufsize=READ_BUFSIZE, skip_auto_headers=_NOT_ADDED)
        return self._session

    async def send(self, method: str, raw_path_qs: str, headers: list[tuple[str, str]],
                   body: bytes | bytearray) -> Reply:
        """Send a request and wait for the reply's headers (asyncio.TimeoutError if the
        upstream stays silent for `read_idle_timeout` seconds). The headers go out as given,
        in their order and case, after Host: nothing is added for a client that sent none."""
        url = URL(self.base + raw_path_qs, encoded=True)
        with self.watchdog.waiting():
            return await self.session.request(method, url, headers=headers, data=body if body else None,
                                              allow_redirects=False)

    async def body(self, resp: Reply) -> AsyncIterator[bytes]:
        """The reply's body chunk by chunk; asyncio.TimeoutError after `read_idle_timeout`
        seconds without a chunk (the time the consumer takes per chunk does not count)."""
        chunks = resp.content.iter_any()
        waiting = self.watchdog.waiting()
        while True:
            with waiting:
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    return
            yield chunk

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _Watchdog:
    """Cancels a task that has waited on the upstream for `seconds`, which then raises
    asyncio.TimeoutError from `waiting()`. One timer, ticking only while tasks wait, checks
    them all, so each wait costs two dict operations, not a timer of its own."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.tick = max(seconds / 8, 0.01)  # a silent upstream is cut after 1 to 1.125 x seconds
        self._since: dict[asyncio.Task, float] = {}
        self._fired: set[asyncio.Task] = set()
        self._handle: asyncio.TimerHandle | None = None

    def waiting(self) -> "_Waiting":
        return _Waiting(self)

    @property
    def ticking(self) -> bool:
        """True while its timer runs (an idle broker must not wake up for it)."""
        return self._handle is not None

    def _check(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for task, since in list(self._since.items()):
            if now - since >= self.seconds:
                del self._since[task]
                self._fired.add(task)
                task.cancel()
        self._handle = loop.call_later(self.tick, self._check) if self._since else None


class _Waiting:
    __slots__ = ("dog", "task")

    def __init__(self, dog: _Watchdog) -> None:
        self.dog = dog
        task = asyncio.current_task()
        assert task is not None
        self.task = task

    def __enter__(self) -> None:
        dog = self.dog
        loop = asyncio.get_running_loop()
        dog._since[self.task] = loop.time()
        if dog._handle is None:
            dog._handle = loop.call_later(dog.tick, dog._check)

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> None:
        dog, task = self.dog, self.task
        dog._since.pop(task, None)
        if task in dog._fired:
            dog._fired.discard(task)
            if kind is asyncio.CancelledError and task.uncancel() == 0:
                raise asyncio.TimeoutError("the upstream API went silent") from None
