"""Anthropic's OAuth usage endpoint (`GET /api/oauth/usage`): the plan's windows on request.

It answers with the same windows the unified rate-limit headers carry, but without spending a
request, so the limits show before any sandbox has called the API. Only the broker calls it,
with the real token; the proxy's path allowlist keeps sandboxes away from `/api/oauth/*`.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from broker.common.errors import BrokerError

OAUTH_BETA = "oauth-2025-04-20"


class UsagePollError(BrokerError):
    title = "Plan usage"

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class UsageClient:
    def __init__(self, base_url: str, path: str, timeout: float = 15.0, beta: str = OAUTH_BETA) -> None:
        self.url = base_url.rstrip("/") + path
        self.beta = beta
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def fetch(self, token: str) -> Any:
        """The endpoint's JSON document; UsagePollError (with the status) on any failure."""
        headers = {"Authorization": f"Bearer {token}", "anthropic-beta": self.beta,
                   "Accept": "application/json", "User-Agent": "inference-broker"}
        try:
            async with aiohttp.ClientSession(timeout=self.timeout) as session:
                async with session.get(self.url, headers=headers, allow_redirects=False) as resp:
                    body = await resp.read()
                    if resp.status != 200:
                        raise UsagePollError(f"the usage endpoint answered {resp.status}{_reason(body)}",
                                             resp.status)
        except aiohttp.ClientError as exc:
            raise UsagePollError(f"cannot reach the usage endpoint ({type(exc).__name__})") from None
        except TimeoutError:
            raise UsagePollError("the usage endpoint did not answer in time") from None
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise UsagePollError("the usage endpoint answered something that is not JSON", 200) from None


def _reason(body: bytes) -> str:
    """The API error's message, short (it never carries the token: we sent it, it isn't echoed)."""
    try:
        err = json.loads(body).get("error", {})
        message = err.get("message") if isinstance(err, dict) else None
    except (ValueError, UnicodeDecodeError, AttributeError):
        return ""
    return f": {message[:160]}" if isinstance(message, str) and message else ""
