"""One refresh, step by step, under the broker's lock and Claude Code's.

Each step is named for what it does: take the locks, adopt a pair someone else rotated,
spend the refresh token, save the new pair ahead (write-ahead), compare-and-swap it into the
store, act on a failure. From the endpoint's answer on, no exception drops the pair: it is
served, and its write-back retried with backoff, until a store holds it.
The token manager (broker/login/token_manager.py) runs one `RefreshSteps` per refresh and owns the state.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from broker.common import fault_points as fp
from broker.login.broker_lock import BrokerLock, held
from broker.login import pending as pd
from broker.login import token_state as ts
from broker.login import writeback as wb
from broker.login.credentials import same_tokens
from broker.common.errors import BrokerError, CredentialsError, RefreshError, SourceUnavailable
from broker.common.redact import REGISTRY
from broker.login.sources import CredentialSource

if TYPE_CHECKING:
    from broker.login.token_manager import TokenManager

log = logging.getLogger(__name__)


class RefreshSteps:
    def __init__(self, manager: "TokenManager", trigger: str) -> None:
        self.m, self.trigger = manager, trigger
        self.done = False  # the refresh (or adoption) finished; what fails after it is only logged

    async def run(self, source: CredentialSource) -> None:
        try:
            async with BrokerLock(self.m.lock_path):
                async with held(lambda cancel: source.refresh_lock(cancel=cancel)):
                    fp.reached(fp.LOCKS_TAKEN)
                    if await self.adopt_if_rotated_elsewhere(self.trigger):
                        self.done = True
                        return
                    await self.spend_refresh_token(source)
            fp.reached(fp.LOCKS_RELEASED)
        except RefreshError as exc:  # a lock could not be had
            await self.after_failure(exc)
        except Exception as exc:  # anything else: a failed refresh, never a crash; a pair stays pending
            log.error("token refresh failed unexpectedly: %s", describe(exc))
            if self.m.state.pending is not None:
                await self.m.save_pending(self.m.state.pending)  # it may have failed before its save
                self.save_failed(source, exc)
            elif not self.done:
                await self.after_failure(RefreshError(describe(exc), kind=RefreshError.TRANSIENT))

    async def adopt_if_rotated_elsewhere(self, trigger: str) -> bool:
        """Re-read the store: the host's Claude Code (or another broker) may have rotated it."""
        source = self.m.source
        if source is None:
            return False
        try:
            fresh = await asyncio.to_thread(source.load)
        except (CredentialsError, SourceUnavailable) as exc:
            self.m.state = replace(self.m.state, load_error=exc.message)
            return False
        if fresh is None and self.m.state.login is not None:
            self.m.forget_removed_login(trigger)  # removed on the host: sign out, don't write back
            return True
        if fresh is not None and self.m.state.pending is not None and self.m.state.pending.held_by(fresh):
            await self.m.pending_written()  # a write-back we did not hear finish
            return False
        if fresh is not None and ts.rotated_elsewhere(self.m.state.login, fresh, self.m.state.pending):
            self.m.adopt(fresh, source, "adopted", f"{trigger}, rotated elsewhere")
            return True
        return False

    async def spend_refresh_token(self, source: CredentialSource) -> None:
        """The one call that spends the refresh token; its result is written back before use."""
        current = self.m.state.login
        if current is None or not current.refresh_token:
            self.m.state = replace(self.m.state, last_error="the login has no refresh token" if current else None)
            return
        assert self.m.refresher is not None
        fp.reached(fp.REQUEST_SENT)
        try:
            grant = await self.m.refresher.refresh(current.refresh_token, current.scopes)
        except RefreshError as exc:
            await self.after_failure(exc)
            return
        now = self.m.clock.time()
        expires = now + grant.expires_in if grant.expires_in else None
        new = current.rotated(grant.access_token, grant.refresh_token, expires, grant.scopes or None)
        REGISTRY.add(new.access_token, new.refresh_token)
        # From here on the pair is the only valid login: held in memory at once (no await
        # between the answer and this line), then saved ahead of everything else.
        pending = pd.after_refresh(self.m.state.pending, current, new, source.label, now)
        self.m.state = ts.pair_received(self.m.state, pending)
        fp.reached(fp.ANSWER_RECEIVED)
        await self.m.save_pending(pending)
        fp.reached(fp.PAIR_SAVED)
        self.m.adopt(new, source, "refreshed", self.trigger, refreshed=True)
        await self.write_back(source, pending)

    async def write_back(self, source: CredentialSource, pending: pd.Pending) -> None:
        """Compare-and-swap the pending pair into the store, then act on what the store held.

        Any failure (a refused Keychain, a keyring error, a full disk, no permission, a
        directory or link at the path, a store that cannot be parsed, a lock that cannot be
        had) keeps the pair, serves on it and retries with backoff.
        """
        new = pending.login
        try:
            decision = await asyncio.to_thread(source.write_back, pending, new)
        except Exception as exc:
            self.save_failed(source, exc)
            return
        await self.m.pending_written()
        self.done = True
        if decision.action == wb.GONE:
            self.m.forget_removed_login(self.trigger)
        elif decision.action == wb.KEEP_THEIRS and decision.theirs is not None:
            log.warning("the store holds a newer login than the one refreshed; keeping it")
            self.m.adopt(decision.theirs, source, "adopted", f"{self.trigger}, newer login in the store")
        else:
            if decision.action == wb.RESTORE:
                log.warning("Claude Code had cleared the login; restored it with the new pair")
            if not same_tokens(new, self.m.state.login):
                self.m.adopt(new, source, "written back", self.trigger)
            elif self.trigger == "retry":
                self.m.events.record(self.trigger, "written back", None, new)

    def save_failed(self, source: CredentialSource, exc: BaseException) -> None:
        pending = self.m.state.pending
        if pending is not None and not same_tokens(pending.login, self.m.state.login):
            self.m.adopt(pending.login, source, "refreshed", self.trigger, refreshed=True)  # serve on it
        why = describe(exc)
        self.m.state = ts.save_failed(self.m.state, source.label, why, self.m.settings, self.m.jitter(),
                                      self.m.clock.time())
        log.error("could not write the rotated login back to %s (%s); serving on it and retrying in %.0f s",
                  source.label, why, (self.m.state.next_save_at or 0) - self.m.clock.time())

    async def after_failure(self, exc: RefreshError) -> None:
        if exc.kind == RefreshError.INVALID_GRANT:
            # Maybe the host rotated it a moment ago: its new pair is in the store now.
            if await self.adopt_if_rotated_elsewhere(f"{self.trigger}, after invalid_grant"):
                return
            self.m.state = ts.signed_out(self.m.state, exc.message)
            self.m.events.record(self.trigger, "signed_out", self.m.state.login, None, exc.message)
            log.warning("signed out: %s", exc.message)
            return
        self.m.state = ts.failed(self.m.state, exc.message, self.m.settings, self.m.jitter(),
                                 self.m.clock.time(), exc.retry_after)
        self.m.events.record(self.trigger, "failed", self.m.state.login, None, exc.message)
        log.warning("token refresh failed (%s); retrying in %.0f s", exc.message,
                    (self.m.state.next_retry_at or 0) - self.m.clock.time())


def describe(exc: BaseException) -> str:
    """A failure in words a person can act on, without a secret."""
    if isinstance(exc, BrokerError):
        why = exc.message
    elif isinstance(exc, OSError) and exc.strerror:
        why = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    elif isinstance(exc, RecursionError):
        why = "the store is nested too deeply to read"
    else:
        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return REGISTRY.scrub(why)[:300]
