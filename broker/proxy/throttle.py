"""Throttle for failed sandbox-key checks: failures only, per peer and in total.

The proxy checks the key first; only a *failed* check reaches this module, so a sandbox with
a valid key is never refused because someone behind the same address (every container on
Docker Desktop shares one) keeps guessing. Limits that mean something against many source
addresses:

- per peer: at most `per_peer` failures in a sliding `window`; a success does not reset it
  (one valid request every few guesses must not buy more guesses);
- in total: at most `total` failures per `window` across all peers, so 200 addresses in
  127.0.0.0/8 share one budget, and evicting a peer's record (memory is bounded by
  `max_peers`) cannot un-block anyone while the total budget is spent.

Over either limit a failure is answered 429 (Retry-After) instead of 401, and logged once
per window instead of once per attempt. Keys carry 256 bits: this bounds log noise, CPU and
memory, it is not what keeps a key from being guessed. Time is injected; nothing here sleeps.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """What to answer a failed key check: `retry_after` None means a plain 401."""

    retry_after: float | None
    log: bool  # whether this failure is worth a log line (the first of a storm is)
    why: str = ""


class FailureThrottle:
    def __init__(self, per_peer: int = 10, total: int = 100, window: float = 60.0, max_peers: int = 1024) -> None:
        if min(per_peer, total, max_peers) < 1 or window <= 0:
            raise ValueError("per_peer, total, max_peers and window must be positive")
        self.per_peer, self.total, self.window, self.max_peers = per_peer, total, window, max_peers
        self._peers: OrderedDict[str, deque[float]] = OrderedDict()  # least recently failed first
        self._all: deque[float] = deque(maxlen=total)
        self._quiet_until = 0.0  # no more "throttled" log lines before this time
        self.refused = 0  # failures answered 429 since start

    def __len__(self) -> int:
        return len(self._peers)

    def _expire(self, times: deque[float], now: float) -> None:
        while times and times[0] <= now - self.window:
            times.popleft()

    def failure(self, peer: str, now: float) -> Verdict:
        """Record one failed key check from `peer` and say how to answer it.

        Refused failures count too: a guesser that keeps going stays refused.
        """
        times = self._peers.pop(peer, None) or deque(maxlen=self.per_peer)
        self._expire(times, now)
        self._expire(self._all, now)
        over_peer = len(times) >= self.per_peer
        over_total = len(self._all) >= self.total
        times.append(now)
        self._all.append(now)  # maxlen keeps memory bounded: only the newest entries decide
        self._peers[peer] = times  # most recently failed last
        self._prune(now)
        if not (over_peer or over_total):
            return Verdict(None, log=True)
        self.refused += 1
        first = now >= self._quiet_until
        if first:
            self._quiet_until = now + self.window
        oldest = times[0] if over_peer else self._all[0]
        why = "from this address" if over_peer else "from all addresses together"
        return Verdict(max(oldest + self.window - now, 1.0), log=first, why=why)

    def _prune(self, now: float) -> None:
        while self._peers:
            peer, times = next(iter(self._peers.items()))
            if len(self._peers) > self.max_peers or times[-1] <= now - self.window:
                del self._peers[peer]
            else:
                break
