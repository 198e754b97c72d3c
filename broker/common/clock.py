"""Time as a dependency, so tests move it forward instead of sleeping."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from typing import Callable, Protocol

# asyncio's timers run on the monotonic clock, which stands still while a laptop is suspended;
# token expiries are wall-clock. A long wait is taken in naps of at most this, each checking
# the wall clock again, so a refresh due during a suspend happens within a nap of waking.
MAX_NAP = 60.0


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock epoch seconds (token expiries are wall-clock)."""

    async def sleep(self, seconds: float) -> None:
        """Wait; a fake clock returns when a test advances it."""

    async def sleep_until(self, deadline: float) -> None:
        """Wait until the wall clock reaches `deadline`. Absolute, so time that passes between
        deciding when to wake and starting to wait is not added to the wait."""


class SystemClock:
    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall

    def time(self) -> float:
        return self._wall()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def sleep_until(self, deadline: float) -> None:
        while (left := deadline - self._wall()) > 0:
            await asyncio.sleep(min(left, MAX_NAP))


def iso(ts: float | None) -> str | None:
    """Epoch seconds to ISO 8601 UTC, or None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="seconds")
