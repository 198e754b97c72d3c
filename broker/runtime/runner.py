"""The runner: logging, threads and the loop around one Service.

Headless, the loop runs on the main thread. With a tray, pystray must own the main thread
(macOS requires it), so the asyncio loop and the service live on a worker thread and the
tray reaches them only through thread-safe submits. Logging is quiet by default, goes to
stderr and a private rotating file, and is scrubbed of secrets.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Callable

from broker.runtime.malloc_tuning import pin_malloc_thresholds
from broker.common.private_files import PrivateRotatingHandler
from broker.config.settings import Config
from broker.common.redact import RedactingFilter
from broker.runtime.service import Service

log = logging.getLogger(__name__)

def tune_process() -> None:
    """Process-wide settings, made once, at start, before any thread: the only place the broker
    changes something for the whole process (see `malloc_tuning`)."""
    pin_malloc_thresholds()


def setup_logging(level: str = "info", log_file: Path | None = None) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        handlers.append(PrivateRotatingHandler(log_file, 5 * 1024 * 1024, 3))  # 0600, after rotation too
    for h in handlers:
        h.setFormatter(fmt)
        h.addFilter(RedactingFilter())  # on the handler: covers records from every library
        root.addHandler(h)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for noisy in ("aiohttp.access", "watchdog", "asyncio", "filelock", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


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
    if threading.current_thread() is threading.main_thread():
        on_stop_signals(asyncio.get_running_loop(), service.stopped.set)
    if ready is not None and not ready.done():
        ready.set_result(service)
    try:
        await service.stopped.wait()
    finally:
        log.info("stopping")
        await service.stop()


def on_stop_signals(loop: asyncio.AbstractEventLoop, stop: Callable[[], None]) -> None:
    """SIGTERM and SIGINT call `stop` on the loop. Windows' loops have no `add_signal_handler`:
    there a plain handler hands the call to the loop instead."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop)
        except NotImplementedError:
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop))


def run_headless(config: Config) -> int:
    tune_process()
    asyncio.run(serve(config))
    return 0


def run_with_tray(config: Config) -> int:
    tune_process()
    from broker import tray  # noqa: PLC0415 - pystray only when a tray runs

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

