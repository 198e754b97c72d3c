"""Time as a dependency, so tests move it forward instead of sleeping."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock epoch seconds (token expiries are wall-clock)."""

    async def sleep(self, seconds: float) -> None:
        """Wait; a fake clock returns when a test advances it."""


class SystemClock:
    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
