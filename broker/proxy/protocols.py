"""What the proxy needs from the layers above it, as Protocols it can depend on.

The proxy server is an adapter; the token manager and sandbox access (`broker.sandboxes.access`) are
app-level; the proxy calls them through these small interfaces, so imports still point
downward only.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from broker.common.api_errors import Refusal
from broker.usage.reply_usage import Usage


class TokenProvider(Protocol):
    """The current upstream credential, refreshed when asked (the token manager)."""

    async def token(self, min_valid: float = 0.0) -> str:
        """A token valid for at least `min_valid` more seconds; raises NotLoggedIn."""
        ...

    async def refresh(self, trigger: str, failed_token: str | None = None) -> None:
        """Refresh now (one at a time); `failed_token` is the one upstream just refused."""
        ...


class SandboxGate(Protocol):
    """Who may use the proxy now, and what they are doing (sandbox access)."""

    @property
    def paused(self) -> bool: ...

    def sandbox_for(self, key: str) -> str | None:
        """The sandbox a key belongs to (constant-time compare), or None."""
        ...

    def streaming(self, name: str) -> AbstractContextManager[None]:
        """Hold the current request as one of sandbox `name`'s, so a revoke can end it."""
        ...

    def admit(self, name: str, now: float) -> tuple[Refusal, float] | None:
        """None to forward; else the 429 over a budget and the seconds to retry after."""
        ...

    def record_use(self, name: str, when: float, usage: Usage | None) -> None: ...
