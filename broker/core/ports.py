"""What the proxy needs from the layers above it, as Protocols it can depend on.

The proxy server is an adapter; the token manager and sandbox access are app-level. The
proxy calls them through these small interfaces, so imports still point downward only.
"""

from __future__ import annotations

from typing import Protocol


class TokenProvider(Protocol):
    """The current upstream credential, refreshed when asked (the token manager)."""

    async def token(self, min_valid: float = 0.0) -> str:
        """A token valid for at least `min_valid` more seconds; raises NotLoggedIn."""
        ...

    async def refresh(self, trigger: str, failed_token: str | None = None) -> None:
        """Refresh now (one at a time); `failed_token` is the one upstream just refused."""
        ...
