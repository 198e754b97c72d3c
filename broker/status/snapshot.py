"""The broker's state as one immutable value.

The service builds a fresh `Snapshot` whenever something changes and hands it to every face
(tray, `status`, control socket). Faces render it; they never reach into live objects, so
the tray and the CLI always agree and both can be tested from a hand-made snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from broker.usage.plan_limits import PlanLimits

from broker.common.wording import LOGIN_HINT, PLAN_LABEL

from broker.common.redact import scrub

# Token states, as `status --json` reports them.
VALID = "valid"
REFRESHING = "refreshing"
EXPIRING = "expiring"  # refresh failing, token still valid
EXPIRED = "expired"
SIGNED_OUT = "signed_out"
TOKEN_STATES = (VALID, REFRESHING, EXPIRING, EXPIRED, SIGNED_OUT)


def iso(ts: float | None) -> str | None:
    """Epoch seconds to ISO 8601 UTC, or None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="seconds")


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

    def __post_init__(self) -> None:
        # Every face (status --json, tray, notifications) reads `reason` from here: a second
        # line behind the errors, which are scrubbed where they are made.
        object.__setattr__(self, "reason", scrub(self.reason))

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
        }


@dataclass(frozen=True)
class SandboxInfo:
    name: str
    created: float
    last_used: float | None = None
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    budget: str | None = None  # "2M/5h"
    budget_used: int | None = None  # tokens counted against it now (known to a running broker)

    def to_json(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "budget_used": self.budget_used,
            "name": self.name,
            "created": iso(self.created),
            "last_used": iso(self.last_used),
            "requests": self.requests,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
        }


@dataclass(frozen=True)
class ProxyStatus:
    listen: tuple[str, ...] = ()  # "host:port" actually bound
    paused: bool = False
    requests_today: int = 0
    active_streams: int = 0
    # The latest `anthropic-ratelimit-unified-*` response headers, prefix removed
    # (e.g. ("5h-utilization", "0.42")): how much of the plan's window is used.
    plan_limits: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "listen": list(self.listen),
            "paused": self.paused,
            "requests_today": self.requests_today,
            "active_streams": self.active_streams,
            "plan_limits": dict(self.plan_limits),
        }


@dataclass(frozen=True)
class Snapshot:
    now: float  # epoch seconds when the snapshot was taken; faces compute "in 5 h" from it
    token: TokenStatus = field(default_factory=TokenStatus)
    proxy: ProxyStatus = field(default_factory=ProxyStatus)
    sandboxes: tuple[SandboxInfo, ...] = ()
    provider: str = "anthropic-oauth"
    login_hint: str = LOGIN_HINT  # the provider profile's words for getting a login back
    plan_label: str = PLAN_LABEL  # the profile's name for a login that names no plan
    autostart: bool = False
    version: str = ""
    limits: PlanLimits | None = None  # the plan's windows, from headers and the usage poll
    limits_poll: str = "off"  # "on", or "off: why"

    @property
    def active_sandboxes(self) -> int:
        return len(self.sandboxes)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "provider": self.provider,
            "token": self.token.to_json(),
            "refresh": {"mode": self.token.mode},
            "listen": list(self.proxy.listen),
            "proxy": self.proxy.to_json(),
            "sandboxes": [s.to_json() for s in self.sandboxes],
            "autostart": self.autostart,
            "limits": {**(self.limits.to_json() if self.limits else {}), "poll": self.limits_poll},
        }
