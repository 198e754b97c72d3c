"""Run the broker: headless on the main thread, or with the tray owning the main thread.

pystray must own the main thread (macOS requires it), so with a tray the asyncio loop and
the service live on a worker thread and the tray reaches them only through thread-safe
submits.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading

from broker.core.config import Config
from broker.service import Service

log = logging.getLogger(__name__)


async def serve(config: Config, ready: "asyncio.Future[Service] | None" = None) -> None:
    """Start the service and run until it is told to stop (QUIT, SIGTERM, SIGINT)."""
    service = Service(config)
    try:
        await service.start()
    except BaseException as exc:
        if ready is not None and not ready.done():
            ready.set_exception(exc)
        await service.stop()
        raise
    loop = asyncio.get_running_loop()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, service.stopped.set)
    if ready is not None and not ready.done():
        ready.set_result(service)
    try:
        await service.stopped.wait()
    finally:
        log.info("stopping")
        await service.stop()


def run_headless(config: Config) -> int:
    asyncio.run(serve(config))
    return 0


def run_with_tray(config: Config) -> int:
    from broker import tray

    loop = asyncio.new_event_loop()
    ready: asyncio.Future[Service] = loop.create_future()
    failed: list[BaseException] = []

    def worker() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(serve(config, ready))
        except BaseException as exc:  # reported on the main thread
            failed.append(exc)
        finally:
            loop.close()

    thread = threading.Thread(target=worker, name="broker-loop", daemon=True)
    thread.start()
    service = asyncio.run_coroutine_threadsafe(_wait(ready), loop).result()

    def shutdown() -> None:
        if not loop.is_closed():
            loop.call_soon_threadsafe(service.stopped.set)

    # Ctrl-C in a terminal still quits cleanly while the tray owns the main thread.
    signal.signal(signal.SIGTERM, lambda *_: shutdown())
    signal.signal(signal.SIGINT, lambda *_: shutdown())
    try:
        tray.run_tray(service, loop, shutdown)
    finally:
        shutdown()
        thread.join(timeout=15)
    if failed:
        raise failed[0]
    return 0


async def _wait(fut: "asyncio.Future[Service]") -> Service:
    return await fut

