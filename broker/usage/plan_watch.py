"""Keeps the plan's limits current: from every response's headers, and from the usage poll.

The poll runs only where the login carries the `user:profile` scope (a `setup-token` login has
only `user:inference`, and the endpoint refuses it). It also runs in follow mode: it only
reads with the current access token and never refreshes or rotates it, so it cannot disturb
the refresh chain Claude Code owns there. A 401 from the endpoint never forces a refresh: the
next poll tries again with whatever token is current by then.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from broker.usage.usage_poll import UsageClient, UsagePollError
from broker.common.errors import NotLoggedIn
from broker.usage.plan_limits import PlanLimits, combine, from_headers, from_usage
from broker.common.redact import fingerprint

log = logging.getLogger(__name__)

PROFILE_SCOPE = "user:profile"
MIN_ON_DEMAND_SECONDS = 30.0  # on-demand polls closer together than this reuse the last answer


class PlanWatch:
    def __init__(self, tokens: Any, client: UsageClient | None, interval: float,
                 on_change: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.time) -> None:
        self.tokens, self.client, self.interval = tokens, client, interval
        self.on_change, self.clock = on_change, clock
        self.limits: PlanLimits | None = None
        self.poll_error: str | None = None
        self.refused = False  # the endpoint refused this login's scope: stop until the login changes
        self._refused_for: str | None = None
        self._last_poll: float | None = None
        self._wake = asyncio.Event()

    # -- from responses (the proxy calls this on the loop, per response: keep it cheap)
    def saw_headers(self, headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> None:
        new = from_headers(headers, self.clock())
        if new is not None:
            self.limits = combine(self.limits, new)

    # -- the poll
    def poll_state(self) -> str:
        """"on", or "off: why" in words `status` shows."""
        if self.client is None:
            return "off: the provider profile names no usage endpoint"
        login = self.tokens.login
        if login is None:
            return "off: no login"
        if PROFILE_SCOPE not in login.scopes:
            return f"off: the login lacks the {PROFILE_SCOPE} scope (a setup-token login has only user:inference)"
        if self.refused and self._refused_for == _identity(login):
            return f"off: the usage endpoint refused this login ({self.poll_error})"
        return "on"

    async def poll_now(self, *, on_demand: bool = False) -> bool:
        """Ask the endpoint once; True when new limits arrived."""
        if self.poll_state() != "on":
            return False
        now = self.clock()
        if on_demand and self._last_poll is not None and now - self._last_poll < MIN_ON_DEMAND_SECONDS:
            return False
        self._last_poll = now
        try:
            token = await self.tokens.token()
            doc = await self.client.fetch(token)  # type: ignore[union-attr]
        except NotLoggedIn as exc:
            self.poll_error = exc.message
            return False
        except UsagePollError as exc:
            self.poll_error = exc.message
            if exc.status == 403:
                self.refused, self._refused_for = True, _identity(self.tokens.login)
            log.warning("plan usage poll: %s", exc.message)
            self.on_change()
            return False
        new = from_usage(doc, self.clock())
        if new is None:
            self.poll_error = "the usage endpoint's answer had no windows"
            return False
        self.poll_error, self.refused = None, False
        self.limits = combine(self.limits, new)
        self.on_change()
        return True

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Poll at start, then every `interval` seconds, or sooner when woken."""
        while True:
            try:
                await self.poll_now()
            except Exception as exc:  # the poll is a convenience: never let it die
                log.error("plan usage poll failed: %s", exc)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except TimeoutError:
                pass


def _identity(login: Any) -> str | None:
    """Which login was refused (a new `claude /login` gets a new refresh token): a hash only."""
    return fingerprint(login.refresh_token or login.access_token) if login is not None else None
