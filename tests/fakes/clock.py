"""A clock tests move by hand: `advance(3600)` is an hour, taken in microseconds."""

from __future__ import annotations

import asyncio


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self.now + seconds)

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self.now:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((deadline, fut))
        await fut

    async def advance(self, seconds: float) -> None:
        """Move time forward, wake every sleeper now due, and let them run."""
        self.now += seconds
        due = [(t, f) for t, f in self._sleepers if t <= self.now]
        self._sleepers = [(t, f) for t, f in self._sleepers if t > self.now]
        for _, fut in due:
            if not fut.done():
                fut.set_result(None)
        for _ in range(20):
            await asyncio.sleep(0)
