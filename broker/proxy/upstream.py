"""The upstream API client: one keep-alive pool (`proxy.http1`), streaming, no total timeout.

A long stream must not be cut by a total deadline, so only the connect time and the silence
of the upstream (waiting for a reply's headers, or between its chunks) are bounded. A timer
per request, made and cancelled again on every chunk, would cost streams of thousands of
chunks dearly; here one watchdog timer for all requests, running only while some wait,
checks how long each has waited. Time spent writing to the client (who may be slow) is not
the upstream's silence.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from broker.proxy.http1 import Client, Reply


class Upstream:
    def __init__(self, base_url: str, connect_timeout: float = 30.0, read_idle_timeout: float = 600.0) -> None:
        self.base = base_url.rstrip("/")
        self.watchdog = _Watchdog(read_idle_timeout)
        # Bodies arrive decoded (the proxy relays a decoded body and drops Content-Encoding).
        # No pool limit: a cap would hold the next concurrent stream back until another one
        # ended. An idle pooled connection lasts no longer than the silence allowed in a
        # reply, at most 15 s.
        self.client = Client(self.base, keepalive=min(15.0, read_idle_timeout), connect_timeout=connect_timeout)

    async def send(self, method: str, raw_path_qs: str, headers: list[tuple[str, str]], body: bytes) -> Reply:
        """Send a request and wait for the reply's headers (asyncio.TimeoutError if the
        upstream stays silent for `read_idle_timeout` seconds). The headers go out as given:
        no User-Agent or Accept is added for a client that sent none."""
        with self.watchdog.waiting():
            return await self.client.request(method, raw_path_qs, headers, body)

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
        self.client.close()


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
