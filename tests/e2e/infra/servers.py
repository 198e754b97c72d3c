"""An aiohttp app served from its own event loop in a thread, so plain sync tests can drive
blocking sandboxes (`docker run`, `ip netns exec`) against it. Build the app per server
(a factory), never share one at module level."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Callable

from aiohttp import web

from broker.core.listen import format_hostport


@dataclass
class Seen:
    method: str
    path: str
    host: str
    headers: dict[str, str]


@dataclass
class ThreadedServer:
    app_factory: Callable[[], web.Application]
    host: str
    port: int = 0
    seen: list[Seen] = field(default_factory=list)  # every request, in order
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{format_hostport(self.host, self.port)}"

    def start(self, timeout: float = 10.0) -> ThreadedServer:
        ready = threading.Event()
        failure: list[BaseException] = []
        self._loop = asyncio.new_event_loop()

        async def serve() -> None:
            app = self.app_factory()
            app.middlewares.append(self._record)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.host, self.port)
            await site.start()
            self.port = self._runner.addresses[0][1]

        def main() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(serve())
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=main, name=f"server-{self.host}", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError(f"server on {self.host} did not start")
        if failure:
            raise failure[0]
        return self

    @web.middleware
    async def _record(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        self.seen.append(Seen(request.method, request.path_qs, request.host, dict(request.headers)))
        return await handler(request)

    def stop(self) -> None:
        if not self._loop or not self._thread:
            return
        loop = self._loop
        if self._runner:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = self._runner = None

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def text_app(text: str) -> Callable[[], web.Application]:
    """A factory for an app answering every GET/HEAD with `text`: a marker a sandbox fetches."""

    def factory() -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            return web.Response(text=text)

        app = web.Application()
        app.router.add_get("/{tail:.*}", handle)  # HEAD too
        return app

    return factory
