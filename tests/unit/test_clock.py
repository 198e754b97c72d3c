"""The system clock waits on the wall clock: a suspended laptop's missed time counts."""

from __future__ import annotations

import asyncio
import time

import pytest

from broker.common import clock as clock_mod
from broker.common.clock import SystemClock


async def test_sleep_until_wakes_when_the_wall_clock_jumps_past_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    # A suspend: the monotonic clock (asyncio's timers) stood still while the wall clock moved
    # an hour. The wait must end within one nap, not an hour of monotonic time later.
    monkeypatch.setattr(clock_mod, "MAX_NAP", 0.02)
    jump = [0.0]
    clock = SystemClock(wall=lambda: time.time() + jump[0])
    waiter = asyncio.create_task(clock.sleep_until(clock.time() + 3600))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    jump[0] = 3600.0
    await asyncio.wait_for(waiter, timeout=2.0)


async def test_sleep_until_a_passed_deadline_returns_at_once() -> None:
    clock = SystemClock()
    await asyncio.wait_for(clock.sleep_until(clock.time() - 5), timeout=0.5)


async def test_sleep_until_waits_for_the_deadline() -> None:
    clock = SystemClock()
    start = time.monotonic()
    await clock.sleep_until(clock.time() + 0.05)
    assert time.monotonic() - start >= 0.04
