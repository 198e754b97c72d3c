"""Request-body bytes held in memory at once: per sandbox and in total.

The proxy holds a request body until it is sent upstream (a 401 from upstream is retried
with the same body). Unbounded, 40 connections of one sandbox each sending 30 MiB took RSS
from 57 MiB to 1.4 GiB. Each chunk is reserved before it is kept; a sandbox over its share
gets 429, everyone together over the total gets 503, both in Anthropic's error shape.
"""

from __future__ import annotations

from collections import defaultdict


class InflightBytes:
    def __init__(self, per_sandbox: int, total: int) -> None:
        if per_sandbox < 1 or total < 1:
            raise ValueError("limits must be positive")
        self.per_sandbox, self.total = per_sandbox, total
        self._held: defaultdict[str, int] = defaultdict(int)
        self.held = 0

    def reserve(self, sandbox: str, n: int) -> int | None:
        """Hold `n` more bytes for `sandbox`, or return the status to refuse with (429/503)."""
        if self._held[sandbox] + n > self.per_sandbox:
            return 429
        if self.held + n > self.total:
            return 503
        self._held[sandbox] += n
        self.held += n
        return None

    def release(self, sandbox: str, n: int) -> None:
        left = self._held[sandbox] - n
        if left > 0:
            self._held[sandbox] = left
        else:
            self._held.pop(sandbox, None)
        self.held = max(self.held - n, 0)

    def of(self, sandbox: str) -> int:
        return self._held.get(sandbox, 0)
