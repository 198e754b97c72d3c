"""The wrong-key throttle: a per-peer limiter for failed sandbox-key checks.

Guessing keys is slow and noisy. (Not the plan's rate limits: those are `core.usage`.)

Time is injected (`now`) so tests need no sleeping and the policy stays pure. Memory is
bounded: stale peers are forgotten and at most `max_peers` are tracked, evicting the peer
whose last failure is oldest.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque

logger = logging.getLogger(__name__)


class FailureLimiter:
    """Blocks a peer after `max_failures` failures within a sliding `window` of seconds."""

    def __init__(self, max_failures: int = 10, window: float = 60.0, max_peers: int = 4096) -> None:
        if max_failures < 1 or window <= 0 or max_peers < 1:
            raise ValueError("max_failures, window and max_peers must be positive")
        self.max_failures = max_failures
        self.window = window
        self.max_peers = max_peers
        # peer -> failure times (newest last); ordered by most recent failure, oldest first.
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def _recent(self, peer: str, now: float) -> deque[float] | None:
        times = self._failures.get(peer)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[peer]
            return None
        return times

    def retry_after(self, peer: str, now: float) -> float | None:
        """Seconds until `peer` may try again, or None if it is not blocked."""
        times = self._recent(peer, now)
        if times is None or len(times) < self.max_failures:
            return None
        return max(times[0] + self.window - now, 0.0) or None

    def record_failure(self, peer: str, now: float) -> None:
        times = self._recent(peer, now)
        if times is None:
            times = deque(maxlen=self.max_failures)
            self._failures[peer] = times
        was = len(times)
        times.append(now)
        self._failures.move_to_end(peer)
        if was == self.max_failures - 1:
            logger.warning("peer %s blocked after %d failed key checks", peer, len(times))
        self._prune(now)

    def record_success(self, peer: str) -> None:
        """A valid key clears the peer's record: failures were typos, not guessing."""
        self._failures.pop(peer, None)

    def _prune(self, now: float) -> None:
        # Oldest-first order means stale peers sit at the front.
        while self._failures:
            peer, times = next(iter(self._failures.items()))
            if len(self._failures) > self.max_peers or times[-1] <= now - self.window:
                del self._failures[peer]
            else:
                break
