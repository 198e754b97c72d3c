"""In-memory stand-ins for a credential store and the token endpoint, for socket-free tests.

`MemoryStore` is a real `CredentialSource` whose document lives in a string (so the write-back
compare-and-swap runs as it does on a file); `MemoryRefresher` keeps the endpoint's one rule
that matters here: a refresh token works once.
"""

from __future__ import annotations

import itertools
import json
from typing import Callable

from broker.login.oauth import Grant
from broker.login.credentials import OAuthLogin, parse_login
from broker.common.errors import RefreshError, SourceUnavailable
from broker.login.sources import CredentialSource, Unwatch
from tests.fakes.login import claude_login_doc


class MemoryStore(CredentialSource):
    kind = "memory"

    def __init__(self, text: str | None = None) -> None:
        self.text = text
        self.writes = 0
        self.fail_writes = 0  # the next N writes raise (a locked keychain, a full disk)
        self.error: BaseException = SourceUnavailable("the store refused the write")  # what they raise
        self.fail_reads = 0  # the next N reads raise `error` too
        self.on_write: Callable[[str], None] | None = None  # sees each document before it is stored

    @property
    def label(self) -> str:
        return "memory"

    def put(self, access: str, refresh: str | None, expires_at: float) -> None:
        self.text = json.dumps(claude_login_doc(access, refresh, int(expires_at * 1000)))

    def load(self) -> OAuthLogin | None:
        return None if self.text is None else parse_login(self.text)

    def read_text(self) -> str | None:
        if self.fail_reads:
            self.fail_reads -= 1
            raise self.error
        return self.text

    def write_text(self, text: str) -> None:
        if self.fail_writes:
            self.fail_writes -= 1
            raise self.error
        if self.on_write is not None:
            self.on_write(text)
        self.text, self.writes = text, self.writes + 1

    def save(self, login: OAuthLogin) -> None:
        raise AssertionError("the manager writes back through write_back, never save")

    def watch(self, on_change: Callable[[], None]) -> Unwatch:
        return lambda: None

    def doc(self) -> dict:
        return json.loads(self.text or "null")


class MemoryRefresher:
    def __init__(self, live: set[str], expires_in: float = 8 * 3600) -> None:
        self.live, self.spent, self.expires_in = live, set(), expires_in
        self.calls, self.reused = 0, 0
        self.scopes_seen: list[tuple[str, ...]] = []
        self.failures: list[RefreshError] = []
        self.during: Callable[[], None] | None = None  # runs while the request is "in flight"
        self._ids = itertools.count(1)

    async def refresh(self, refresh_token: str, scopes: tuple[str, ...] = ()) -> Grant:
        self.calls += 1
        self.scopes_seen.append(tuple(scopes))
        if self.during is not None:
            self.during()
        if self.failures:
            raise self.failures.pop(0)
        if refresh_token in self.spent:
            self.reused += 1
        if refresh_token not in self.live:
            raise RefreshError("invalid_grant", kind=RefreshError.INVALID_GRANT)
        self.live.discard(refresh_token)
        self.spent.add(refresh_token)
        n = next(self._ids)
        self.live.add(f"r-new-{n}")
        return Grant(access_token=f"a-new-{n}", refresh_token=f"r-new-{n}", expires_in=self.expires_in)
