"""Scrub known secrets out of a response body as it streams, across chunk boundaries.

An upstream (or a gateway in `upstream_url`) that echoes request headers would otherwise put
the OAuth token into a sandbox's response body. Each secret is replaced by a mask of the same
length (all `*`: no token alphabet has it, so a mask can never combine with its neighbours into
a secret), so Content-Length stays true and no header has to change. To catch a secret split
between chunks, the scrubber holds back the tail of a chunk only while it could still be the
start of a secret: at most len(longest secret) - 1 bytes, usually none.
"""

from __future__ import annotations

import functools
import re
from typing import Iterable

def mask_for(secret: bytes) -> bytes:
    """A same-length stand-in."""
    return b"*" * len(secret)


@functools.lru_cache(maxsize=32)  # one secret set serves every response until a secret changes
def _plan(secrets: frozenset[str | bytes]) -> tuple[list[bytes], re.Pattern[bytes] | None,
                                                     re.Pattern[bytes] | None, int]:
    """The secrets longest first, one pattern for them all, one for their first bytes, and
    the most a chunk's tail may be held back: built once per secret set, not per response."""
    raw = {s.encode() if isinstance(s, str) else s for s in secrets}
    ordered = sorted((s for s in raw if s), key=len, reverse=True)
    if not ordered:
        return ordered, None, None, 0
    pattern = re.compile(b"|".join(re.escape(s) for s in ordered))
    firsts = re.compile(b"[" + b"".join(re.escape(bytes([b])) for b in sorted({s[0] for s in ordered})) + b"]")
    return ordered, pattern, firsts, max(len(s) for s in ordered) - 1


class StreamScrubber:
    """feed() chunks in order, then flush(); the output never contains a secret."""

    def __init__(self, secrets: Iterable[str | bytes]) -> None:
        self.secrets, self._re, self._firsts, self.max_hold = _plan(frozenset(secrets))
        self._held = b""
        self.found = 0  # secrets replaced so far

    def _sub(self, m: re.Match[bytes]) -> bytes:
        self.found += 1
        return mask_for(m.group(0))

    def _hold_from(self, data: bytes) -> int:
        """Where the longest tail that could begin a secret starts (len(data) if none).
        Only the tail's bytes that some secret starts with are tried (found in C, not by
        a Python loop over every byte of the tail)."""
        assert self._firsts is not None
        m = self._firsts.search(data, max(len(data) - self.max_hold, 0))
        while m is not None:
            i = m.start()
            if any(s.startswith(data[i:]) for s in self.secrets):
                return i
            m = self._firsts.search(data, i + 1)
        return len(data)

    def feed(self, chunk: bytes) -> bytes:
        if self._re is None:
            return chunk
        data = self._held + chunk if self._held else chunk
        data = self._re.sub(self._sub, data)
        cut = self._hold_from(data)
        self._held = data[cut:]
        return data[:cut]

    def whole(self, body: bytes) -> bytes:
        """A whole body at once (nothing to hold back for a next chunk)."""
        if self._re is None:
            return body
        return self._re.sub(self._sub, body)

    def flush(self) -> bytes:
        """The held-back tail at the end of the body (it turned out not to be a secret)."""
        out, self._held = self._held, b""
        return out
