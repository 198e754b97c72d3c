"""The token manager: one current login, kept fresh, shared by every request.

Rules (DESIGN.md "Token lifecycle"): refresh ahead of expiry and on an upstream 401; one
refresh in flight however many callers ask; a refresh runs under the broker's own lock (two
brokers) and under Claude Code's locks (the host's Claude Code waits, then adopts our pair
instead of spending the same single-use refresh token); inside them re-read the store and
adopt a pair someone else already rotated; save the new pair in the broker's own state the
moment the endpoint answers (write-ahead, `pending_file`), then write it back with a
compare-and-swap; a store still holding a refresh token we spent is never believed; after
`invalid_grant` re-read once more before declaring "signed out"; on failure keep serving the
still-valid token and back off with jitter.

The decisions live in broker/login/token_state.py; this module does the I/O around them.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Protocol

from broker.login import pending as pd
from broker.login import token_status as snap
from broker.login import token_state as ts
from broker.login.pending_file import PendingFile
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
        pending_path: Path | None = None,
        record: Callable[[dict[str, Any]], None] = lambda event: None,
        on_change: Callable[[], None] = lambda: None,
        login_hint: str = "run `claude /login` on the host",
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.sources, self.refresher, self.settings = sources, refresher, settings
        self.clock = clock or SystemClock()
        self.lock_path, self.on_change, self.login_hint, self.jitter = lock_path, on_change, login_hint, jitter
        self.state = ts.TokenState()
        self.pending_file = PendingFile(pending_path) if pending_path is not None else None
        self._record_settled = False  # a store read settled the record; `_drop_settled_record` removes it
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
        await self._restore_pending()
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
        if self.state.pending is not None:  # not written back yet: the next start finds it on disk
            await self.save_pending(self.state.pending)

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
            await self._drop_settled_record()

    def load_now(self) -> None:
        """Read the sources once, synchronously (for `status`/`doctor` with no broker running)."""
        pending = self.pending_file.load() if self.pending_file is not None else None
        if pending is not None:
            self._restore(pending, offline=True)
        self._take_in(*self._read_sources(), "offline")

    # -- the write-ahead record
    async def _restore_pending(self) -> None:
        if self.pending_file is None:
            return
        pending = await asyncio.to_thread(self.pending_file.load)
        if pending is not None:
            self._restore(pending)

    def _restore(self, pending: pd.Pending, offline: bool = False) -> None:
        """A pair a broker saved and no store was known to hold: serve on it, write it back."""
        REGISTRY.add(pending.login.access_token, pending.login.refresh_token)
        self.source = next((s for s in self.sources if s.label == pending.source), None) or next(
            (s for s in self.sources if s.refreshable and s.unavailable() is None), self.source)
        self.state = ts.restored(self.state, pending, self.clock.time())
        if offline:  # `status` with no broker running: say so, touch nothing
            self.state = replace(self.state, save_error=(
                f"the login could not be written back to {pending.source or 'its store'}: the broker stopped "
                "first; the broker holds the current login and writes it back when it starts"))
            return
        self.events.record("start", "restored", None, pending.login)
        log.warning("found a login saved by the broker before the store held it; writing it back to %s",
                    self.source.label if self.source else "its store")

    async def save_pending(self, pending: pd.Pending) -> None:
        """The write-ahead: durable before anything else happens. A failure is logged, not raised
        (the pair is held in memory, and the write-back goes on)."""
        if self.pending_file is None:
            return
        try:
            await asyncio.to_thread(self.pending_file.save, pending)
        except Exception as exc:
            log.error("could not save the new login in %s (%s); keeping it in memory",
                      self.pending_file.path, REGISTRY.scrub(str(exc)))

    async def pending_written(self) -> None:
        """A store holds the pending pair: forget it, here and on disk."""
        self.state = ts.saved(self.state)
        if self.pending_file is not None:
            try:
                await asyncio.to_thread(self.pending_file.clear)
            except OSError as exc:
                log.error("could not remove %s: %s", self.pending_file.path, exc)
        self._changed()

    def _take_in(self, login: OAuthLogin | None, source: CredentialSource | None, problems: list[str],
                 trigger: str) -> None:
        """Act on one read of the sources: adopt, sign out after a removal, or note a problem."""
        before = self.state
        load_error = "; ".join(problems) or None
        verdict = ts.read_verdict(self.state, login, problems)
        if verdict == ts.STALE:  # the store is behind us: never its spent refresh token
            self.state = ts.write_soon(self.state, self.clock.time())
        elif verdict == ts.HELD:  # it holds the pending pair: written back after all
            self.state = ts.saved(self.state)
            self._record_settled = True
        elif verdict == ts.ADOPT and login is not None:
            if self.state.pending is not None:  # a new login replaced ours: theirs wins
                self.state = ts.saved(self.state)
                self._record_settled = True
            self.adopt(login, source, "adopted", trigger)
        elif verdict == ts.REMOVED:
            if self.state.pending is not None:
                self.state = ts.saved(self.state)
                self._record_settled = True
            self.forget_removed_login(trigger)
        elif self.state.login is None:
            self.state = replace(self.state, last_error=load_error)
        if load_error != self.state.load_error:
            self.state = replace(self.state, load_error=load_error)
            if load_error:
                log.warning("credentials unreadable, keeping the last good token: %s", load_error)
        if self.state != before:
            self._changed()

    async def _drop_settled_record(self) -> None:
        """Remove the record a read of the store settled (held, or replaced by a new login).
        Runs under the manager's lock, as every save does, so it never removes a newer one."""
        if self._record_settled:
            self._record_settled = False
            if self.pending_file is not None:
                try:
                    await asyncio.to_thread(self.pending_file.clear)
                except OSError as exc:
                    log.error("could not remove %s: %s", self.pending_file.path, exc)

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
                    await self._drop_settled_record()
                    return
                await RefreshSteps(self, trigger).run(self.source)
            finally:
                self._set_refreshing(False)

    def _set_refreshing(self, on: bool) -> None:
        self.state = replace(self.state, refreshing=on)
        self._changed()

    async def _retry_unsaved_write(self) -> None:
        async with self._lock:
            pending, source = self.state.pending, self.source
            if pending is None:
                return
            if source is None:
                self.state = ts.save_failed(self.state, "its store", "no store to write it to is available",
                                            self.settings, self.jitter(), self.clock.time())
                return
            await self.save_pending(pending)  # again, in case the first save failed
            await RefreshSteps(self, "retry").write_back(source, pending)

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
        if st.save_error:
            reason += f" ({st.save_error})"
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
            writeback_problem=st.save_error,
        )
