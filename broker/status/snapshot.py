"""The broker's state as one immutable value.

The service builds a fresh `Snapshot` whenever something changes and hands it to every face
(tray, `status`, control socket). Faces render it; they never reach into live objects, so
the tray and the CLI always agree and both can be tested from a hand-made snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from broker.usage.plan_limits import PlanLimits

from broker.common.wording import LOGIN_HINT, PLAN_LABEL
# The token states are re-exported: a face reads them beside the snapshot that carries them.
from broker.login.token_status import (  # noqa: F401
    EXPIRED, EXPIRING, REFRESHING, SIGNED_OUT, TOKEN_STATES, VALID, TokenStatus,
)
from broker.sandboxes.info import SandboxInfo


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
