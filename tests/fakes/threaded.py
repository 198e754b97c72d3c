"""Serve an aiohttp app from a daemon thread, for tests whose clients block or are processes.

A synchronous SDK client or a subprocess (the broker, Claude Code) cannot share the test's
event loop, so the server gets its own loop in its own thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

from aiohttp import web

logger = logging.getLogger(__name__)


class ServerURL(str):
    """The base URL ("http://127.0.0.1:PORT"), carrying the server's loop and port.

    Being a `str`, it drops straight into `base_url=`; `url.loop` lets a test reach into the
    server thread, e.g. `url.loop.call_soon_threadsafe(gate.set)`.
    """

    loop: asyncio.AbstractEventLoop
    host: str
    port: int

    def call(self, fn: Callable[..., object], *args: object) -> None:
        """Run `fn(*args)` on the server's loop (thread-safe)."""
        self.loop.call_soon_threadsafe(fn, *args)

    def run(self, coro, timeout: float = 10.0):
        """Run a coroutine on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


@contextlib.contextmanager
def serve_in_thread(
    app_factory: Callable[[], web.Application],
    host: str = "127.0.0.1",
    port: int = 0,
    shutdown_timeout: float = 0.5,
) -> Iterator[ServerURL]:
    """Run `app_factory()` on a TCPSite in a daemon thread; yield its base URL; stop on exit.

    The app is built inside the server thread so anything it binds to a loop binds to the
    right one. `shutdown_timeout` bounds how long exit waits for handlers still running
    (a stream paused on a gate, say) before cancelling them.
    """
    started: concurrent.futures.Future[tuple[asyncio.AbstractEventLoop, int]] = concurrent.futures.Future()
    loop = asyncio.new_event_loop()

    def run() -> None:
        asyncio.set_event_loop(loop)
        runner: web.AppRunner | None = None
        try:
            runner = web.AppRunner(app_factory(), shutdown_timeout=shutdown_timeout)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, host, port)
            loop.run_until_complete(site.start())
            bound = runner.addresses[0][1]
            started.set_result((loop, bound))
        except BaseException as exc:  # report startup failures to the caller
            started.set_exception(exc)
        else:
            loop.run_forever()
        finally:
            try:
                if runner is not None:
                    loop.run_until_complete(runner.cleanup())
            finally:
                loop.close()

    thread = threading.Thread(target=run, name=f"serve-{host}", daemon=True)
    thread.start()
    try:
        _, bound_port = started.result(timeout=10)
    except BaseException:
        thread.join(timeout=5)
        raise
    shown = f"[{host}]" if ":" in host else host
    url = ServerURL(f"http://{shown}:{bound_port}")
    url.loop, url.host, url.port = loop, host, bound_port
    try:
        yield url
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=shutdown_timeout + 10)
        if thread.is_alive():
            logger.warning("server thread for %s did not stop", url)
