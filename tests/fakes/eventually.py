"""Wait for a condition with a deadline, never a fixed sleep.

`eventually` blocks (for tests that drive processes or threads); `eventually_async` yields to
the event loop between looks (for tests whose servers run on that loop). Both return the
predicate's first truthy value and fail with `what` when the deadline passes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class _Deadline:
    def __init__(self, timeout: float, what: str) -> None:
        self.timeout, self.what = timeout, what
        self.at = time.monotonic() + timeout

    def check(self) -> None:
        if time.monotonic() > self.at:
            raise AssertionError(f"{self.what} not met within {self.timeout} s")


def eventually(predicate: Callable[[], T], timeout: float = 10.0, what: str = "condition",
               interval: float = 0.05) -> T:
    deadline = _Deadline(timeout, what)
    while not (value := predicate()):
        deadline.check()
        time.sleep(interval)
    return value


async def eventually_async(predicate: Callable[[], T], timeout: float = 5.0, what: str = "condition",
                           interval: float = 0.01) -> T:
    deadline = _Deadline(timeout, what)
    while not (value := predicate()):
        deadline.check()
        await asyncio.sleep(interval)
    return value
