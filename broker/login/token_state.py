"""What the token manager knows, and every decision it takes on it, as pure functions.

The manager (broker/login/token_manager.py) only does I/O and calls these: when to wake and what to do
then, whether a request waits for a refresh, whether a 401 earns one, what a read of the store
means, and what a failed refresh leads to. Tested with plain numbers (tests/unit/test_tokenstate.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from broker.config.settings import RefreshSettings
from broker.login import pending as pd
from broker.login.credentials import OAuthLogin, same_tokens
from broker.login.refresh_timing import MIN_TOKEN_AGE, Facts, backoff_delay, clamp_margin, refresh_due_at

# A 401 right after a successful refresh is not the token's fault: don't refresh again for it.
MIN_FORCED_INTERVAL = 30.0

REFRESH, SAVE, REPORT = "refresh", "save", "report"  # what a wake-up is for


@dataclass(frozen=True)
class TokenState:
    login: OAuthLogin | None = None
    obtained_at: float | None = None  # when we first held this login
    lifetime: float | None = None  # known when we minted it (refreshed it ourselves)
    last_refresh: float | None = None
    last_forced: float | None = None  # the last refresh an upstream 401 asked for
    last_error: str | None = None  # why the last refresh failed
    load_error: str | None = None  # why the store could not be read (last good login kept)
    signed_out_reason: str | None = None
    next_retry_at: float | None = None
    attempt: int = 0  # failed refreshes in a row
    refreshing: bool = False
    pending: pd.Pending | None = None  # a pair from the token endpoint that no store holds yet
    next_save_at: float | None = None  # when its write-back is tried again
    save_attempt: int = 0  # failed write-backs in a row
    save_error: str | None = None  # why the last write-back failed: "the login could not be ..."

    @property
    def unsaved(self) -> bool:
        return self.pending is not None


@dataclass(frozen=True)
class Wake:
    at: float | None  # None: sleep until something changes
    action: str | None = None  # REFRESH, SAVE or REPORT (re-render a countdown)


def due_at(st: TokenState, settings: RefreshSettings) -> float | None:
    if st.login is None or st.login.expires_at is None:
        return None
    return refresh_due_at(st.login.expires_at, st.obtained_at, settings, st.lifetime)


def next_wake(st: TokenState, mode: str, settings: RefreshSettings, now: float) -> Wake:
    """When the scheduler wakes next, and why."""
    if st.login is None or st.signed_out_reason or mode == "static":
        return Wake(None)
    if mode == "own":
        if st.unsaved:
            return Wake(st.next_save_at, SAVE)
        at = st.next_retry_at if st.next_retry_at is not None else due_at(st, settings)
        return Wake(at, REFRESH if at is not None else None)
    # follow: wake only to report "expiring" and then "expired"
    marks = [t for t in (due_at(st, settings), st.login.expires_at) if t is not None and t > now]
    return Wake(min(marks) if marks else None, REPORT)


def request_refreshes(st: TokenState, mode: str, min_valid: float, now: float) -> bool:
    """Whether a request must first refresh a token that is closer to expiry than it needs.

    Never during a backoff (a failing endpoint must not see one call per request), and never
    in follow mode (the watchers bring the host's new token). The margin is clamped to a share
    of a lifetime we know, and a still-valid token we minted moments ago is never refreshed:
    short-lived tokens must not make every request a refresh.
    """
    login = st.login
    if login is None or login.expires_at is None or mode != "own" or st.signed_out_reason:
        return False
    if st.next_retry_at is not None and now < st.next_retry_at:
        return False
    left = login.expires_at - now
    if st.lifetime is not None and st.obtained_at is not None and left > 0 and now - st.obtained_at < MIN_TOKEN_AGE:
        return False
    return left < clamp_margin(min_valid, st.lifetime)


def forced_refresh_allowed(st: TokenState, failed_token: str, now: float) -> bool:
    """An upstream 401 refreshes only the token still in use, and not moments after the last."""
    if st.login is None or failed_token != st.login.access_token:
        return False
    return st.last_forced is None or now - st.last_forced >= MIN_FORCED_INTERVAL


# -- reading the store
ADOPT, REMOVED, NOTHING, STALE, HELD = "adopt", "removed", "nothing", "stale", "held"


def read_verdict(st: TokenState, read: OAuthLogin | None, problems: list[str]) -> str:
    """What a read of the sources means: a new login, a removed one, or nothing to adopt.

    While a pair is pending, a store still holding a login it replaced is STALE (keep ours,
    write it back: that refresh token is spent), one holding it is HELD (written: done).
    """
    if st.pending is not None:
        seen = pd.verdict(st.pending, read, problems)
        if seen == pd.STALE:
            return STALE
        if seen == pd.HELD:
            return HELD
        if seen == pd.UNKNOWN:
            return NOTHING  # unreadable: keep serving on the pending pair
    if read is None:
        # Gone without a trace of an error: the host signed out (`claude /logout`). Forget it,
        # rather than refresh it and write it back against their wish.
        return REMOVED if st.login is not None and not problems else NOTHING
    return NOTHING if same_tokens(read, st.login) else ADOPT


def rotated_elsewhere(held: OAuthLogin | None, fresh: OAuthLogin | None, pending: pd.Pending | None = None) -> bool:
    """Whether the store holds a newer pair than ours (someone refreshed or logged in)."""
    if fresh is None or held is None or same_tokens(fresh, held):
        return False
    if pending is not None and pending.replaces(fresh):
        return False  # the store is behind us: its refresh token is spent
    return fresh.refresh_token != held.refresh_token or (fresh.expires_at or 0) >= (held.expires_at or 0)


# -- transitions
def adopted(st: TokenState, login: OAuthLogin, now: float, refreshed: bool = False) -> TokenState:
    lifetime = login.expires_at - now if refreshed and login.expires_at is not None else None
    return replace(st, login=login, obtained_at=now, lifetime=lifetime,
                   last_refresh=now if refreshed else st.last_refresh,
                   signed_out_reason=None, last_error=None, next_retry_at=None, attempt=0)


def removed(st: TokenState, where: str) -> TokenState:
    return replace(st, login=None, obtained_at=None, next_retry_at=None,
                   last_error=f"the Claude login was removed from {where} (signed out on the host?)")


def signed_out(st: TokenState, why: str) -> TokenState:
    return replace(st, signed_out_reason=f"the login was refused ({why})", next_retry_at=None)


def failed(st: TokenState, why: str, settings: RefreshSettings, jitter: float, now: float,
           retry_after: float | None = None) -> TokenState:
    """A transient failure: keep the token, back off with jitter (never sooner than Retry-After)."""
    delay = backoff_delay(st.attempt, settings, jitter, retry_after)
    return replace(st, attempt=st.attempt + 1, last_error=why, next_retry_at=now + delay)


def pair_received(st: TokenState, pending: pd.Pending) -> TokenState:
    """The endpoint answered: the pair is pending until a store holds it."""
    return replace(st, pending=pending)


def restored(st: TokenState, pending: pd.Pending, now: float) -> TokenState:
    """A pair saved by a broker that stopped before the store held it: serve on it and write
    it back now."""
    st = adopted(st, pending.login, now) if not same_tokens(st.login, pending.login) else st
    return replace(st, pending=pending, next_save_at=now)


def save_failed(st: TokenState, store: str, why: str, settings: RefreshSettings, jitter: float,
                now: float) -> TokenState:
    """The write-back failed: keep the pair, serve on it, try again with backoff."""
    delay = backoff_delay(st.save_attempt, settings, jitter)
    return replace(st, save_attempt=st.save_attempt + 1, next_save_at=now + delay,
                   save_error=f"the login could not be written back to {store}: {why}; "
                              "the broker holds the current login")


def write_soon(st: TokenState, now: float) -> TokenState:
    """The store was seen behind us: write back now unless a backoff is running."""
    return st if st.next_save_at is not None else replace(st, next_save_at=now)


def saved(st: TokenState) -> TokenState:
    return replace(st, pending=None, next_save_at=None, save_attempt=0, save_error=None)


def facts(st: TokenState, mode: str, settings: RefreshSettings, now: float, login_hint: str) -> Facts:
    login = st.login
    return Facts(now=now, has_login=login is not None, expires_at=login.expires_at if login else None,
                 refreshing=st.refreshing, mode=mode, last_error=st.last_error,
                 signed_out_reason=st.signed_out_reason, due_at=due_at(st, settings),
                 next_retry_at=st.next_retry_at, login_hint=login_hint)
