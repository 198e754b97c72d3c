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
# The document is about 1 KB; whatever answers at that URL must not make the broker hold more
# (a 300 MB reply once kept 218 MiB resident for the life of the process).
MAX_REPLY_BYTES = 64 * 1024


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
                    body = await _read_bounded(resp, MAX_REPLY_BYTES)
                    if resp.status != 200:
                        raise UsagePollError(f"the usage endpoint answered {resp.status}{_reason(body)}",
                                             resp.status)
        except aiohttp.ClientError as exc:
            raise UsagePollError(f"cannot reach the usage endpoint ({type(exc).__name__})") from None
        except TimeoutError:
            raise UsagePollError("the usage endpoint did not answer in time") from None
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise UsagePollError("the usage endpoint answered something that is not JSON", 200) from None


async def _read_bounded(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The reply's body, refused (unread) past `limit` bytes, whether it says its length or not."""
    too_big = UsagePollError(f"the usage endpoint answered more than {limit:,} bytes; not reading it",
                             resp.status)
    if resp.content_length is not None and resp.content_length > limit:
        raise too_big
    body = await resp.content.read(limit + 1)
    while len(body) <= limit and not resp.content.at_eof():
        more = await resp.content.read(limit + 1 - len(body))
        if not more:
            break
        body += more
    if len(body) > limit:
        raise too_big
    return body


def _reason(body: bytes) -> str:
    """The API error's message, short (it never carries the token: we sent it, it isn't echoed)."""
    try:
        err = json.loads(body).get("error", {})
        message = err.get("message") if isinstance(err, dict) else None
    except (ValueError, UnicodeDecodeError, AttributeError, RecursionError):
        return ""
    return f": {message[:160]}" if isinstance(message, str) and message else ""
