"""The token manager: one current login, kept fresh, shared by every request.

Rules (DESIGN.md "Token lifecycle"): refresh ahead of expiry and on an upstream 401; one
refresh in flight however many callers ask; a refresh runs under the broker's own lock (two
brokers) and under Claude Code's locks (the host's Claude Code waits, then adopts our pair
instead of spending the same single-use refresh token); inside them re-read the store and
adopt a pair someone else already rotated; write the new pair back with a compare-and-swap
before using it; after `invalid_grant` re-read once more before declaring "signed out"; on
failure keep serving the still-valid token and back off with jitter.

The decisions live in broker/login/token_state.py; this module does the I/O around them.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Protocol

from broker.login import token_status as snap
from broker.login import token_state as ts
from broker.common.clock import Clock, SystemClock, iso
from broker.config.settings import RefreshSettings
from broker.login.credentials import OAuthLogin
from broker.common.errors import CredentialsError, NotLoggedIn, SourceUnavailable
from broker.login.refresh_timing import token_state
from broker.common.redact import REGISTRY, fingerprint
from broker.login.sources import CredentialSource
from broker.login.refresh_steps import RefreshSteps
from broker.login.token_events import TokenEvents

log = logging.getLogger(__name__)

MIN_FORCED_INTERVAL = ts.MIN_FORCED_INTERVAL


class Refresher(Protocol):
    async def refresh(self, refresh_token: str, scopes: tuple[str, ...] = ()) -> Any: ...


class TokenManager:
    def __init__(
        self,
        sources: list[CredentialSource],
        refresher: Refresher | None,
        settings: RefreshSettings,
        *,
        clock: Clock | None = None,
        lock_path: Path | None = None,
        record: Callable[[dict[str, Any]], None] = lambda event: None,
        on_change: Callable[[], None] = lambda: None,
        login_hint: str = "run `claude /login` on the host",
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.sources, self.refresher, self.settings = sources, refresher, settings
        self.clock = clock or SystemClock()
        self.lock_path, self.on_change, self.login_hint, self.jitter = lock_path, on_change, login_hint, jitter
        self.state = ts.TokenState()
        self.source: CredentialSource | None = None
        self.events = TokenEvents(record, self.clock, lambda: self.source)
        self._lock = asyncio.Lock()  # one reload or refresh at a time
        self._inflight: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._unwatch: list[Callable[[], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def login(self) -> OAuthLogin | None:
        return self.state.login

    @property
    def refreshing(self) -> bool:
        return self.state.refreshing

    @property
    def mode(self) -> str:
        if self.source is not None and not self.source.refreshable:
            return "static"
        return self.settings.mode

    # -- lifecycle
    async def start(self, watch: bool = True) -> None:
        self._loop = asyncio.get_running_loop()
        await self.reload("start")
        if watch:
            for source in self.sources:
                if source.unavailable() is None:
                    self._unwatch.append(source.watch(self._changed_from_thread))
        self._task = asyncio.create_task(self._schedule(), name="token-scheduler")

    async def stop(self) -> None:
        for unwatch in self._unwatch:
            unwatch()
        self._unwatch.clear()
        for task in (self._task, self._inflight):
            if task is not None:
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass

    def _changed_from_thread(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self.reload("watch")))

    # -- what callers use
    async def token(self, min_valid: float = 0.0) -> str:
        """An access token valid for at least `min_valid` seconds if at all possible.

        Refreshes first when the current one is closer to expiry (unless a failed refresh is
        backing off); if that fails, returns the current one while it is still valid. Raises
        NotLoggedIn when there is nothing usable.
        """
        if ts.request_refreshes(self.state, self.mode, min_valid, self.clock.time()):
            await self.refresh("request")
        login, now = self.state.login, self.clock.time()
        if login is None or self.state.signed_out_reason or (login.expires_at is not None and login.expires_at <= now):
            raise NotLoggedIn(self.status().reason)
        return login.access_token

    async def refresh(self, trigger: str, failed_token: str | None = None) -> None:
        """Refresh now, or join the refresh already in flight.

        `failed_token` (an upstream 401): skip if that token was already replaced, or if we
        refreshed moments ago.
        """
        if self._inflight is None:
            if failed_token is not None:
                now = self.clock.time()
                if not ts.forced_refresh_allowed(self.state, failed_token, now):
                    return
                self.state = replace(self.state, last_forced=now)
            self._inflight = asyncio.create_task(self._refresh(trigger), name="token-refresh")
            self._inflight.add_done_callback(self._refresh_done)
        await asyncio.shield(self._inflight)

    def _refresh_done(self, task: asyncio.Task[None]) -> None:
        self._inflight = None
        if not task.cancelled() and task.exception() is not None:
            log.error("token refresh crashed: %s", task.exception())

    # -- reading the sources
    def _read_sources(self) -> tuple[OAuthLogin | None, CredentialSource | None, list[str]]:
        problems: list[str] = []
        for source in self.sources:
            if source.unavailable() is not None:
                continue
            try:
                login = source.load()
            except (CredentialsError, SourceUnavailable) as exc:
                problems.append(exc.message)
                continue
            if login is not None:
                return login, source, problems
        return None, None, problems

    async def reload(self, trigger: str) -> None:
        """Re-read the sources and adopt a login that changed (a new `claude /login`)."""
        async with self._lock:
            self._take_in(*await asyncio.to_thread(self._read_sources), trigger)

    def load_now(self) -> None:
        """Read the sources once, synchronously (for `status`/`doctor` with no broker running)."""
        self._take_in(*self._read_sources(), "offline")

    def _take_in(self, login: OAuthLogin | None, source: CredentialSource | None, problems: list[str],
                 trigger: str) -> None:
        """Act on one read of the sources: adopt, sign out after a removal, or note a problem."""
        before = self.state
        load_error = "; ".join(problems) or None
        verdict = ts.read_verdict(self.state, login, problems)
        if verdict == ts.ADOPT and login is not None:
            self.adopt(login, source, "adopted", trigger)
        elif verdict == ts.REMOVED:
            self.forget_removed_login(trigger)
        elif self.state.login is None:
            self.state = replace(self.state, last_error=load_error)
        if load_error != self.state.load_error:
            self.state = replace(self.state, load_error=load_error)
            if load_error:
                log.warning("credentials unreadable, keeping the last good token: %s", load_error)
        if self.state != before:
            self._changed()

    def forget_removed_login(self, trigger: str) -> None:
        where = self.source.label if self.source else "its store"
        self.events.record(trigger, "removed", self.state.login, None)
        self.state = ts.removed(self.state, where)
        self.source = None
        log.warning("%s", self.state.last_error)

    def adopt(self, login: OAuthLogin, source: CredentialSource | None, outcome: str, trigger: str,
               refreshed: bool = False) -> None:
        old = self.state.login
        REGISTRY.add(login.access_token, login.refresh_token)
        self.source = source or self.source
        self.state = ts.adopted(self.state, login, self.clock.time(), refreshed)
        self.events.record(trigger, outcome, old, login)
        log.info("token %s (%s): %s, expires %s", outcome, trigger, fingerprint(login.access_token),
                 iso(login.expires_at) or "never")

    # -- refreshing
    async def _refresh(self, trigger: str) -> None:
        async with self._lock:
            self._set_refreshing(True)
            try:
                if self.mode != "own" or self.refresher is None or self.source is None:
                    self._take_in(*await asyncio.to_thread(self._read_sources), trigger)
                    return
                await RefreshSteps(self, trigger).run(self.source)
            finally:
                self._set_refreshing(False)

    def _set_refreshing(self, on: bool) -> None:
        self.state = replace(self.state, refreshing=on)
        self._changed()

    async def _retry_unsaved_write(self) -> None:
        base, login, source = self.state.unsaved_base, self.state.login, self.source
        if base is None or login is None or source is None:
            self.state = ts.saved(self.state)
            return
        async with self._lock:
            await RefreshSteps(self, "retry").write_back(source, base, login, outcome="written back")

    # -- scheduling
    async def _schedule(self) -> None:
        while True:
            self._wake.clear()
            now = self.clock.time()
            wake = ts.next_wake(self.state, self.mode, self.settings, now)
            if wake.at is not None and wake.at <= now and wake.action in (ts.REFRESH, ts.SAVE):
                try:
                    await (self.refresh("scheduled") if wake.action == ts.REFRESH else self._retry_unsaved_write())
                except Exception as exc:  # never let the scheduler die
                    log.error("scheduled %s crashed: %s", wake.action, exc)
                    await self.clock.sleep(self.settings.backoff_initial_seconds)
                continue
            await self._sleep_until(wake.at)
            self._changed(wake=False)  # a countdown passed a mark: let faces re-render

    async def _sleep_until(self, when: float | None) -> None:
        """Until `when` (None: no deadline) or until something changes (`_wake`)."""
        sleeper = asyncio.ensure_future(self.clock.sleep_until(when)) if when is not None else None
        waiter = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({t for t in (sleeper, waiter) if t is not None}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (sleeper, waiter):
                if t is not None:
                    t.cancel()

    # -- reporting
    def _changed(self, wake: bool = True) -> None:
        if wake:
            self._wake.set()
        try:
            self.on_change()
        except Exception as exc:  # a face must not break the manager
            log.error("state listener failed: %s", exc)

    def status(self) -> snap.TokenStatus:
        st, now = self.state, self.clock.time()
        login = st.login
        state, reason = token_state(ts.facts(st, self.mode, self.settings, now, self.login_hint))
        if st.load_error and login is not None:
            reason += f" (keeping the last good token: {st.load_error})"
        if st.unsaved:
            reason += " (the rotated token could not be written back yet)"
        return snap.TokenStatus(
            state=state,
            reason=reason,
            source=self.source.label if self.source else None,
            expires_at=login.expires_at if login else None,
            last_refresh=st.last_refresh,
            fingerprint=fingerprint(login.access_token) if login else None,
            subscription_type=login.subscription_type if login else None,
            rate_limit_tier=login.rate_limit_tier if login else None,
            next_retry_at=st.next_retry_at,
            mode=self.mode,
        )
