"""Which client connections to keep: a cap, and short patience for unauthenticated ones.

Any local user can open connections to the proxy without a key. Held open, 1,100 of them
exhausted a 1,024-fd limit and every request failed. So: at most `cap` connections; a
connection that has not presented a valid key gets `header_timeout` seconds of idleness (a
slow or silent client is closed); one that has gets `idle_timeout` between requests. At the
cap, the oldest idle unauthenticated connection makes room for the newcomer (a held-open
flood evicts itself, never a sandbox that has authenticated); if every connection is a busy
or authenticated one, the newcomer is turned away. Pure: the caller owns sockets and time.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Hashable


@dataclass
class Conn:
    last_active: float
    authenticated: bool = False
    busy: int = 0  # requests being handled on it now


class ConnectionTable:
    def __init__(self, cap: int, header_timeout: float, idle_timeout: float) -> None:
        if cap < 1 or header_timeout <= 0 or idle_timeout <= 0:
            raise ValueError("cap and timeouts must be positive")
        self.cap, self.header_timeout, self.idle_timeout = cap, header_timeout, idle_timeout
        self._conns: OrderedDict[Hashable, Conn] = OrderedDict()  # oldest first
        self.evicted = 0
        self.refused = 0

    def __len__(self) -> int:
        return len(self._conns)

    def opened(self, cid: Hashable, now: float) -> Hashable | None:
        """Admit `cid`; returns the connection to close to make room (maybe `cid` itself)."""
        victim = None
        if len(self._conns) >= self.cap:
            victim = next((c for c, s in self._conns.items() if not s.authenticated and not s.busy), None)
            if victim is None:
                self.refused += 1
                return cid
            self.evicted += 1
            del self._conns[victim]
        self._conns[cid] = Conn(now)
        return victim

    def closed(self, cid: Hashable) -> None:
        self._conns.pop(cid, None)

    def started(self, cid: Hashable, now: float) -> None:
        conn = self._conns.get(cid)
        if conn is not None:
            conn.busy += 1
            conn.last_active = now

    def finished(self, cid: Hashable, now: float) -> None:
        conn = self._conns.get(cid)
        if conn is not None:
            conn.busy = max(conn.busy - 1, 0)
            conn.last_active = now

    def authenticated(self, cid: Hashable) -> None:
        conn = self._conns.get(cid)
        if conn is not None:
            conn.authenticated = True

    def is_authenticated(self, cid: Hashable) -> bool:
        conn = self._conns.get(cid)
        return conn is not None and conn.authenticated

    def expired(self, now: float) -> list[Hashable]:
        """Idle connections past their patience (the caller closes them, then calls closed())."""
        return [cid for cid, c in self._conns.items()
                if not c.busy and now - c.last_active > (self.idle_timeout if c.authenticated else self.header_timeout)]
