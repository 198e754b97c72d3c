"""When to refresh, how long to back off, and what state to report. Pure functions.

The token manager asks these questions; keeping the answers here means the timing rules in
DESIGN.md ("10% of lifetime or 5 minutes, whichever is larger"; jittered backoff; honour
Retry-After) are tested with plain numbers instead of clocks and sockets.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.login import token_status as s
from broker.config.settings import RefreshSettings
from broker.common.wording import CLAUDE_LOGIN_HINT, duration_words  # noqa: F401 - duration_words re-exported


# A token's lifetime bounds how early it is refreshed: with tokens shorter than the margins
# (an endpoint issuing 300-second tokens against a 5-minute `ahead_min_seconds` or a 10-minute
# `proxy_margin_seconds`), every request and every wake-up would refresh again at once.
MAX_AHEAD_SHARE = 0.5  # never refresh with more than this share of a known lifetime left
MIN_TOKEN_AGE = 60.0  # and never a token we minted less than this many seconds ago


def refresh_due_at(expires_at: float, obtained_at: float | None, settings: RefreshSettings,
                   minted_lifetime: float | None = None) -> float:
    """The moment to start refreshing a token that expires at `expires_at`.

    The lifetime is known for tokens we refreshed ourselves (`minted_lifetime`); for one we
    adopted, the time we first saw it gives a lower bound, which errs towards refreshing a
    little late rather than refreshing a token the host just rotated.
    """
    lifetime = expires_at - obtained_at if obtained_at is not None else 0.0
    ahead = max(settings.ahead_min_seconds, settings.ahead_fraction * max(lifetime, 0.0))
    if minted_lifetime is None or obtained_at is None:
        return expires_at - ahead
    due = expires_at - clamp_margin(ahead, minted_lifetime)
    return min(max(due, obtained_at + MIN_TOKEN_AGE), expires_at)


def clamp_margin(margin: float, lifetime: float | None) -> float:
    """A margin (how much validity is wanted) no larger than a share of a known lifetime."""
    return margin if lifetime is None else min(margin, MAX_AHEAD_SHARE * max(lifetime, 0.0))


def backoff_delay(attempt: int, settings: RefreshSettings, jitter: float,
                  retry_after: float | None = None) -> float:
    """Exponential backoff with jitter (jitter in [0, 1)), never sooner than Retry-After.

    "Equal jitter": half the step is fixed, half random, so brokers that failed together
    do not retry together, yet none retries immediately.
    """
    step = min(settings.backoff_max_seconds, settings.backoff_initial_seconds * (2 ** max(attempt, 0)))
    delay = step / 2 + (step / 2) * jitter
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


@dataclass(frozen=True)
class Facts:
    """What the token manager knows at one moment, for `token_state`."""

    now: float
    has_login: bool
    expires_at: float | None
    refreshing: bool = False
    mode: str = "own"  # own | follow | static
    last_error: str | None = None  # the reason the last refresh failed, if it did
    signed_out_reason: str | None = None  # set when the refresh token was rejected
    due_at: float | None = None  # when a refresh is (or was) due
    next_retry_at: float | None = None
    login_hint: str = CLAUDE_LOGIN_HINT


def token_state(f: Facts) -> tuple[str, str]:
    """(state, human reason) for the status line, tray and `status --json`."""
    if f.signed_out_reason:
        return s.SIGNED_OUT, f"{f.signed_out_reason} — {f.login_hint}"
    if not f.has_login:
        return s.SIGNED_OUT, f.last_error or f"no Claude login found — {f.login_hint}"
    left = None if f.expires_at is None else f.expires_at - f.now
    if f.refreshing:
        return s.REFRESHING, "refreshing the token"
    if left is not None and left <= 0:
        if f.mode == "follow":
            return s.EXPIRED, "token expired; waiting for Claude Code on the host to refresh it (follow mode)"
        why = f"refresh failing: {f.last_error}" if f.last_error else "token expired"
        return s.EXPIRED, why + _retry(f)
    if f.last_error:
        return s.EXPIRING, f"refresh failing: {f.last_error}{_retry(f)}; token still valid for {duration_words(left or 0)}"
    if f.mode == "follow" and f.due_at is not None and left is not None and f.now >= f.due_at:
        return s.EXPIRING, (f"token expires in {duration_words(left)}; follow mode waits for Claude Code "
                            "on the host to refresh it (run `claude` there once)")
    if left is None:
        return s.VALID, "long-lived token (no expiry recorded)"
    return s.VALID, f"token valid for {duration_words(left)}"


def _retry(f: Facts) -> str:
    if f.next_retry_at is None:
        return ""
    return f" — retrying in {duration_words(f.next_retry_at - f.now)}"
