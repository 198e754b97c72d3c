"""The token manager: one current login, kept fresh, shared by every request.

Rules (DESIGN.md "Token lifecycle"): refresh ahead of expiry and on an upstream 401; one
refresh in flight however many callers ask, and a lock file so two brokers never refresh at
once; re-read the source first and adopt a token someone else already rotated; after
`invalid_grant` re-read once more before declaring "signed out"; write a rotated pair back to
the store it came from before using it (refresh tokens are single-use: a pair that is not
written back logs the host's Claude Code out); on failure keep serving the still-valid token
and back off with jitter. A refresh token we did not replace is never discarded.
"""

from __future__ import annotations

import asyncio
import logging
import random
from pathlib import Path
from typing import Any, Callable, Protocol

from broker.core import snapshot as snap
from broker.core.clock import Clock, SystemClock
from broker.core.config import RefreshSettings
from broker.core.credentials import OAuthLogin, same_tokens
from broker.core.errors import BrokerError, CredentialsError, NotLoggedIn, RefreshError, SourceUnavailable
from broker.core.policy import Facts, backoff_delay, refresh_due_at, token_state
from broker.core.redact import REGISTRY, fingerprint
from broker.core.source import CredentialSource

log = logging.getLogger(__name__)

# A 401 right after a successful refresh is not the token's fault: don't refresh again for it.
MIN_FORCED_INTERVAL = 30.0


class Refresher(Protocol):
    async def refresh(self, refresh_token: str) -> Any: ...


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
        self.sources = sources
        self.refresher = refresher
        self.settings = settings
        self.clock = clock or SystemClock()
        self.lock_path = lock_path
        self.record = record
        self.on_change = on_change
        self.login_hint = login_hint
        self.jitter = jitter

        self.login: OAuthLogin | None = None
        self.source: CredentialSource | None = None
        self.obtained_at: float | None = None
        self.last_refresh: float | None = None
        self.last_forced: float | None = None
        self.last_error: str | None = None  # why the last refresh failed
        self.load_error: str | None = None  # why the source could not be read (last good kept)
        self.signed_out_reason: str | None = None
        self.next_retry_at: float | None = None
        self.attempt = 0
        self.refreshing = False
        self.unsaved = False  # a rotated pair we hold but could not write back yet
        self.next_save_at: float | None = None

        self._lock = asyncio.Lock()  # one reload or refresh at a time
        self._inflight: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._unwatch: list[Callable[[], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

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

    @property
    def mode(self) -> str:
        if self.source is not None and not self.source.refreshable:
            return "static"
        return self.settings.mode

    # -- what callers use
    async def token(self, min_valid: float = 0.0) -> str:
        """An access token valid for at least `min_valid` seconds if at all possible.

        Refreshes first when the current one is closer to expiry (unless a failed refresh is
        backing off); if that fails, returns the current one while it is still valid. Raises
        NotLoggedIn when there is nothing usable.
        """
        now = self.clock.time()
        login = self.login
        if (login is not None and login.expires_at is not None and login.expires_at - now < min_valid
                and self.mode == "own" and not self.signed_out_reason
                and (self.next_retry_at is None or now >= self.next_retry_at)):
            # Outside a backoff only: a failing endpoint must not see one call per request.
            # (follow mode waits for the watchers to bring the host's new token.)
            await self.refresh("request")
        login, now = self.login, self.clock.time()
        if login is None or self.signed_out_reason:
            raise NotLoggedIn(self.status().reason)
        if login.expires_at is not None and login.expires_at <= now:
            raise NotLoggedIn(self.status().reason)
        return login.access_token

    async def refresh(self, trigger: str, failed_token: str | None = None) -> None:
        """Refresh now, or join the refresh already in flight.

        `failed_token` (an upstream 401): skip if that token was already replaced, or if we
        refreshed moments ago.
        """
        if self._inflight is None:
            if failed_token is not None:
                if self.login is None or failed_token != self.login.access_token:
                    return
                if self.last_forced is not None and self.clock.time() - self.last_forced < MIN_FORCED_INTERVAL:
                    return
                self.last_forced = self.clock.time()
            self._inflight = asyncio.create_task(self._refresh(trigger), name="token-refresh")
            self._inflight.add_done_callback(self._refresh_done)
        await asyncio.shield(self._inflight)

    def _refresh_done(self, task: asyncio.Task[None]) -> None:
        self._inflight = None
        if not task.cancelled() and task.exception() is not None:
            log.error("token refresh crashed: %s", task.exception())

    # -- reading the sources
    def _read_all(self) -> tuple[OAuthLogin | None, CredentialSource | None, list[str]]:
        problems: list[str] = []
        for source in self.sources:
            why = source.unavailable()
            if why is not None:
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
            await self._read_and_adopt(trigger)

    async def _read_and_adopt(self, trigger: str) -> None:
        """Read every source off the loop and adopt what changed (the caller holds the lock)."""
        login, source, problems = await asyncio.to_thread(self._read_all)
        self._adopt_read(login, source, problems, trigger)

    def load_now(self) -> None:
        """Read the sources once, synchronously (for `status`/`doctor` with no broker running)."""
        login, source, problems = self._read_all()
        self._adopt_read(login, source, problems, "offline")

    def _adopt_read(self, login: OAuthLogin | None, source: CredentialSource | None,
                    problems: list[str], trigger: str) -> None:
        changed = False
        load_error = "; ".join(problems) or None
        if login is None:
            if self.login is not None and not problems:
                # Gone without a trace of an error: the host signed out (`claude /logout`).
                # Forget it, rather than refresh it and write it back against their wish.
                where = self.source.label if self.source else "its store"
                self._event(trigger, "removed", self.login, None)
                self.login = self.source = self.obtained_at = self.next_retry_at = None
                self.last_error = f"the Claude login was removed from {where} (signed out on the host?)"
                log.warning("%s", self.last_error)
                changed = True
            elif self.login is None:
                changed = self.last_error != load_error
                self.last_error = load_error
            elif load_error != self.load_error:
                changed = True  # keep the last good token, say why the source is unusable
        elif not same_tokens(login, self.login):
            self._adopt(login, source, "adopted", trigger)
            changed = True
        if load_error != self.load_error:
            self.load_error, changed = load_error, True
            if load_error:
                log.warning("credentials unreadable, keeping the last good token: %s", load_error)
        if changed:
            self._changed()

    def _adopt(self, login: OAuthLogin, source: CredentialSource | None, outcome: str, trigger: str,
               refreshed: bool = False) -> None:
        old = self.login
        REGISTRY.add(login.access_token, login.refresh_token)
        self.login, self.source = login, source or self.source
        now = self.clock.time()
        self.obtained_at = now
        if refreshed:
            self.last_refresh = now
        self.signed_out_reason = self.last_error = self.next_retry_at = None
        self.attempt = 0
        self._event(trigger, outcome, old, login)
        log.info("token %s (%s): %s, expires %s", outcome, trigger, fingerprint(login.access_token),
                 snap.iso(login.expires_at) or "never")

    # -- refreshing
    async def _refresh(self, trigger: str) -> None:
        async with self._lock:
            self.refreshing = True
            self._changed()
            try:
                await self._refresh_locked(trigger)
            finally:
                self.refreshing = False
                self._changed()

    async def _refresh_locked(self, trigger: str) -> None:
        if self.mode != "own" or self.refresher is None:
            await self._read_and_adopt(trigger)
            return
        try:
            async with _ProcessLock(self.lock_path):
                await self._refresh_exclusive(trigger)
        except RefreshError as exc:  # the lock could not be had
            await self._refresh_failed(trigger, exc)

    async def _refresh_exclusive(self, trigger: str) -> None:
        # Someone (the host's Claude Code, another broker) may have rotated it already.
        if await self._adopt_if_rotated(trigger):
            return
        current = self.login
        if current is None or not current.refresh_token:
            self.last_error = "the login has no refresh token" if current else None
            return
        try:
            grant = await self.refresher.refresh(current.refresh_token)
        except RefreshError as exc:
            await self._refresh_failed(trigger, exc)
            return
        now = self.clock.time()
        expires = now + grant.expires_in if grant.expires_in else None
        new = current.rotated(grant.access_token, grant.refresh_token, expires, grant.scopes or None)
        REGISTRY.add(new.access_token, new.refresh_token)
        # Write back before use: the old refresh token is spent, the host needs the new one.
        await self._save(new)
        self._adopt(new, self.source, "refreshed", trigger, refreshed=True)

    async def _save(self, new: OAuthLogin) -> None:
        source = self.source
        try:
            if source is None:
                raise SourceUnavailable("no source to write to")
            await asyncio.to_thread(source.save, new)
            self.unsaved, self.next_save_at = False, None
        except (BrokerError, OSError) as exc:
            # Keep the pair in memory (it is the only valid one now) and retry the write.
            self.unsaved = True
            self.next_save_at = self.clock.time() + self.settings.backoff_initial_seconds
            log.error("could not write the rotated token back to %s (%s); the host's Claude Code may need "
                      "`claude /login`; will retry", source.label if source else "?", exc)

    async def _adopt_if_rotated(self, trigger: str) -> bool:
        if self.source is None:
            return False
        try:
            fresh = await asyncio.to_thread(self.source.load)
        except (CredentialsError, SourceUnavailable) as exc:
            self.load_error = exc.message
            return False
        if fresh is None and self.login is not None:
            self._adopt_read(None, None, [], trigger)  # removed on the host: sign out, don't write back
            return True
        if fresh is not None and self.login is not None and not same_tokens(fresh, self.login):
            if fresh.refresh_token != self.login.refresh_token or (fresh.expires_at or 0) >= (self.login.expires_at or 0):
                self._adopt(fresh, self.source, "adopted", f"{trigger}, rotated elsewhere")
                return True
        return False

    async def _refresh_failed(self, trigger: str, exc: RefreshError) -> None:
        if exc.kind == RefreshError.INVALID_GRANT:
            # Maybe the host rotated it a moment ago: its new pair is on disk now.
            if await self._adopt_if_rotated(f"{trigger}, after invalid_grant"):
                return
            self.signed_out_reason = f"the login was refused ({exc.message})"
            self.next_retry_at = None
            self._event(trigger, "signed_out", self.login, None, exc.message)
            log.warning("signed out: %s", exc.message)
            return
        self.attempt += 1
        delay = backoff_delay(self.attempt - 1, self.settings, self.jitter(), exc.retry_after)
        self.last_error = exc.message
        self.next_retry_at = self.clock.time() + delay
        self._event(trigger, "failed", self.login, None, exc.message)
        log.warning("token refresh failed (%s); retrying in %.0f s", exc.message, delay)

    # -- scheduling
    def _due_at(self) -> float | None:
        login = self.login
        if login is None or login.expires_at is None:
            return None
        return refresh_due_at(login.expires_at, self.obtained_at, self.settings)

    def _next_wake(self, now: float) -> tuple[float | None, bool]:
        """(when to wake, whether to refresh then)."""
        if self.login is None or self.signed_out_reason or self.mode == "static":
            return None, False
        if self.mode == "own":
            if self.unsaved:
                return self.next_save_at, False
            due = self.next_retry_at if self.next_retry_at is not None else self._due_at()
            return due, due is not None
        # follow: wake only to report "expiring" and then "expired"
        marks = [t for t in (self._due_at(), self.login.expires_at) if t is not None and t > now]
        return (min(marks) if marks else None), False

    async def _schedule(self) -> None:
        while True:
            self._wake.clear()
            now = self.clock.time()
            when, do_refresh = self._next_wake(now)
            if when is not None and when <= now:
                if do_refresh:
                    try:
                        await self.refresh("scheduled")
                    except Exception as exc:  # never let the scheduler die
                        log.error("scheduled refresh crashed: %s", exc)
                        await self.clock.sleep(self.settings.backoff_initial_seconds)
                elif self.unsaved and self.login is not None:
                    await self._save(self.login)
                continue
            sleeper = asyncio.ensure_future(self.clock.sleep(when - now)) if when is not None else None
            waiter = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({t for t in (sleeper, waiter) if t is not None}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (sleeper, waiter):
                    if t is not None:
                        t.cancel()
            self._changed(wake=False)  # a countdown passed a mark: let faces re-render

    # -- reporting
    def _changed(self, wake: bool = True) -> None:
        if wake:
            self._wake.set()
        try:
            self.on_change()
        except Exception as exc:  # a face must not break the manager
            log.error("state listener failed: %s", exc)

    def _event(self, trigger: str, outcome: str, old: OAuthLogin | None, new: OAuthLogin | None,
               detail: str | None = None) -> None:
        event = {
            "time": snap.iso(self.clock.time()),
            "trigger": trigger,
            "outcome": outcome,
            "old": fingerprint(old.access_token) if old else None,
            "new": fingerprint(new.access_token) if new else None,
            "source": self.source.label if self.source else None,
        }
        if detail:
            event["detail"] = REGISTRY.scrub(detail)
        try:
            self.record(event)
        except Exception as exc:
            log.error("cannot record refresh event: %s", exc)

    def status(self) -> snap.TokenStatus:
        now = self.clock.time()
        login = self.login
        facts = Facts(
            now=now,
            has_login=login is not None,
            expires_at=login.expires_at if login else None,
            refreshing=self.refreshing,
            mode=self.mode,
            last_error=self.last_error,
            signed_out_reason=self.signed_out_reason,
            due_at=self._due_at(),
            next_retry_at=self.next_retry_at,
            login_hint=self.login_hint,
        )
        state, reason = token_state(facts)
        if self.load_error and login is not None:
            reason += f" (keeping the last good token: {self.load_error})"
        if self.unsaved:
            reason += " (the rotated token could not be written back yet)"
        return snap.TokenStatus(
            state=state,
            reason=reason,
            source=self.source.label if self.source else None,
            expires_at=login.expires_at if login else None,
            last_refresh=self.last_refresh,
            fingerprint=fingerprint(login.access_token) if login else None,
            subscription_type=login.subscription_type if login else None,
            rate_limit_tier=login.rate_limit_tier if login else None,
            next_retry_at=self.next_retry_at,
            mode=self.mode,
        )


class _ProcessLock:
    """A lock file shared by every broker of this user: two never refresh at once."""

    def __init__(self, path: Path | None, timeout: float = 120.0) -> None:
        self.path, self.timeout, self._lock = path, timeout, None

    async def __aenter__(self) -> None:
        if self.path is None:
            return
        from filelock import FileLock, Timeout

        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = FileLock(str(self.path), thread_local=False, mode=0o600)
        try:
            await asyncio.to_thread(self._lock.acquire, timeout=self.timeout)
        except Timeout:
            self._lock = None
            raise RefreshError("another broker holds the refresh lock", kind=RefreshError.TRANSIENT) from None

    async def __aexit__(self, *exc: object) -> None:
        if self._lock is not None:
            await asyncio.to_thread(self._lock.release)
