"""The locks a refresh runs under, usable from the event loop.

`BrokerLock` is a lock file shared by every broker of this user (two never refresh at once);
`held` holds a blocking lock (Claude Code's, which waits and retries) from a worker thread so
the loop stays free, and gives it back even when the waiting task is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path
from typing import AsyncIterator, Callable, ContextManager

from broker.common.errors import RefreshError


class BrokerLock:
    def __init__(self, path: Path | None, timeout: float = 120.0) -> None:
        self.path, self.timeout, self._lock = path, timeout, None

    async def __aenter__(self) -> None:
        if self.path is None:
            return
        from filelock import FileLock, Timeout

        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = FileLock(str(self.path), thread_local=False, mode=0o600)
        try:
            await asyncio.to_thread(self._lock.acquire, timeout=self.timeout)
        except Timeout:
            self._lock = None
            raise RefreshError("another broker holds the refresh lock", kind=RefreshError.TRANSIENT) from None

    async def __aexit__(self, *exc: object) -> None:
        if self._lock is not None:
            await asyncio.to_thread(self._lock.release)


@contextlib.asynccontextmanager
async def held(make: Callable[[threading.Event], ContextManager[None]]) -> AsyncIterator[None]:
    """Enter `make(cancel)` in a thread; exit it in a thread. Cancelling stops the wait."""
    cancel = threading.Event()
    cm = make(cancel)
    loop = asyncio.get_running_loop()
    entering = loop.run_in_executor(None, cm.__enter__)
    try:
        await asyncio.shield(entering)
    except asyncio.CancelledError:
        cancel.set()  # the thread stops retrying; if it got the lock already, give it back

        def give_back(fut: asyncio.Future[None]) -> None:
            if not fut.cancelled() and fut.exception() is None:
                loop.run_in_executor(None, cm.__exit__, None, None, None)

        entering.add_done_callback(give_back)
        raise
    try:
        yield
    finally:
        await asyncio.to_thread(cm.__exit__, None, None, None)
