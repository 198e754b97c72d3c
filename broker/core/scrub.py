"""Scrub known secrets out of a response body as it streams, across chunk boundaries.

An upstream (or a gateway in `upstream_url`) that echoes request headers would otherwise put
the OAuth token into a sandbox's response body. Each secret is replaced by a mask of the same
length (all `*`: no token alphabet has it, so a mask can never combine with its neighbours into
a secret), so Content-Length stays true and no header has to change. To catch a secret split
between chunks, the scrubber holds back the tail of a chunk only while it could still be the
start of a secret: at most len(longest secret) - 1 bytes, usually none.
"""

from __future__ import annotations

import re
from typing import Iterable

def mask_for(secret: bytes) -> bytes:
    """A same-length stand-in."""
    return b"*" * len(secret)


class StreamScrubber:
    """feed() chunks in order, then flush(); the output never contains a secret."""

    def __init__(self, secrets: Iterable[str | bytes]) -> None:
        raw = {s.encode() if isinstance(s, str) else s for s in secrets}
        self.secrets = sorted((s for s in raw if s), key=len, reverse=True)
        self._re = re.compile(b"|".join(re.escape(s) for s in self.secrets)) if self.secrets else None
        self._firsts = frozenset(s[0] for s in self.secrets)
        self.max_hold = max((len(s) for s in self.secrets), default=1) - 1
        self._held = b""
        self.found = 0  # secrets replaced so far

    def _sub(self, m: re.Match[bytes]) -> bytes:
        self.found += 1
        return mask_for(m.group(0))

    def _hold_from(self, data: bytes) -> int:
        """Where the longest tail that could begin a secret starts (len(data) if none)."""
        for i in range(max(len(data) - self.max_hold, 0), len(data)):
            if data[i] in self._firsts and any(s.startswith(data[i:]) for s in self.secrets):
                return i
        return len(data)

    def feed(self, chunk: bytes) -> bytes:
        if self._re is None:
            return chunk
        data = self._held + chunk if self._held else chunk
        data = self._re.sub(self._sub, data)
        cut = self._hold_from(data)
        self._held = data[cut:]
        return data[:cut]

    def flush(self) -> bytes:
        """The held-back tail at the end of the body (it turned out not to be a secret)."""
        out, self._held = self._held, b""
        return out
