"""The login's state as the faces show it: one of five words, and the facts behind it.

The token manager decides the state (`refresh_timing.token_state`); `status.snapshot` carries it
to the tray, `status` and the dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from broker.common.clock import iso
from broker.common.redact import scrub

# Token states, as `status --json` reports them.
VALID = "valid"
REFRESHING = "refreshing"
EXPIRING = "expiring"  # refresh failing, token still valid
EXPIRED = "expired"
SIGNED_OUT = "signed_out"
TOKEN_STATES = (VALID, REFRESHING, EXPIRING, EXPIRED, SIGNED_OUT)



@dataclass(frozen=True)
class TokenStatus:
    state: str = SIGNED_OUT
    reason: str = "no Claude login found yet"
    source: str | None = None  # e.g. "file:/home/me/.claude/.credentials.json"
    expires_at: float | None = None  # epoch seconds
    last_refresh: float | None = None  # epoch seconds of the last successful refresh
    fingerprint: str | None = None  # short hash of the access token, never the token
    subscription_type: str | None = None  # "max", "pro", ... when the login says
    rate_limit_tier: str | None = None
    next_retry_at: float | None = None  # when a failing refresh is tried again
    mode: str = "own"  # refresh.mode: own | follow | static
    # "the login could not be written back to STORE: REASON; the broker holds the current
    # login", until the store holds the pair the broker refreshed
    writeback_problem: str | None = None

    def __post_init__(self) -> None:
        # Every face (status --json, tray, notifications) reads `reason` from here: a second
        # line behind the errors, which are scrubbed where they are made.
        object.__setattr__(self, "reason", scrub(self.reason))
        if self.writeback_problem is not None:
            object.__setattr__(self, "writeback_problem", scrub(self.writeback_problem))

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "reason": self.reason,
            "source": self.source,
            "expires_at": iso(self.expires_at),
            "last_refresh": iso(self.last_refresh),
            "fingerprint": self.fingerprint,
            "subscription_type": self.subscription_type,
            "rate_limit_tier": self.rate_limit_tier,
            "next_retry_at": iso(self.next_retry_at),
            "writeback_problem": self.writeback_problem,
        }
