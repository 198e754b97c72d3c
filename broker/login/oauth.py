"""The OAuth token endpoint: the refresh-token grant, as Claude Code sends it.

Every failure becomes a RefreshError whose `kind` the token manager acts on. Response bodies
are never logged or echoed whole: they may carry tokens.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from broker.common.errors import RefreshError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Grant:
    access_token: str
    refresh_token: str | None
    expires_in: float | None
    scopes: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"Grant(expires_in={self.expires_in!r})"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds (a number or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    import time

    return max(0.0, when - (now if now is not None else time.time()))


def _error_code(body: bytes) -> tuple[str | None, str | None]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(doc, dict):
        return None, None
    err = doc.get("error")
    if isinstance(err, dict):  # Anthropic's API-style error shape
        return str(err.get("type") or "") or None, str(err.get("message") or "")[:200] or None
    desc = doc.get("error_description")
    return (str(err) if err else None), (str(desc)[:200] if desc else None)


def scope_string(defaults: tuple[str, ...], stored: tuple[str, ...]) -> str:
    """Claude Code's `scope`: its defaults, then the login's own scopes, each once."""
    return " ".join(dict.fromkeys((*defaults, *stored)))


class OAuthRefresher:
    """The refresh grant as Claude Code sends it; the values come from the provider profile."""

    def __init__(self, token_url: str, client_id: str, timeout: float = 30.0,
                 user_agent: str = "inference-broker", scopes: tuple[str, ...] = ()) -> None:
        self.token_url, self.client_id, self.timeout, self.user_agent = token_url, client_id, timeout, user_agent
        self.scopes = tuple(scopes)

    def body(self, refresh_token: str, stored_scopes: tuple[str, ...] = (), defaults: bool = True) -> dict[str, str]:
        body = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": self.client_id}
        scope = scope_string(self.scopes if defaults else (), tuple(stored_scopes))
        if scope:
            body["scope"] = scope
        return body

    async def refresh(self, refresh_token: str, scopes: tuple[str, ...] = ()) -> Grant:
        try:
            return await self._post(self.body(refresh_token, scopes))
        except RefreshError as exc:
            # A login granted fewer scopes than today's defaults: ask again for what it has
            # (Claude Code falls back the same way). The token was not spent by a 400.
            if exc.kind != RefreshError.REJECTED or "invalid_scope" not in exc.message or not scopes:
                raise
            return await self._post(self.body(refresh_token, scopes, defaults=False))

    async def _post(self, body: dict[str, str]) -> Grant:
        timeout = aiohttp.ClientTimeout(total=self.timeout, connect=min(10.0, self.timeout))
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.post(self.token_url, json=body,
                                        headers={"User-Agent": self.user_agent, "Accept": "application/json"}) as resp:
                    raw = await resp.content.read(1024 * 1024)
                    return self._interpret(resp.status, resp.headers.get("Retry-After"), raw)
        except RefreshError:
            raise
        except asyncio.TimeoutError:
            raise RefreshError("the token endpoint did not answer in time", kind=RefreshError.TRANSIENT) from None
        except aiohttp.ClientError as exc:
            raise RefreshError(f"cannot reach the token endpoint ({type(exc).__name__})",
                               kind=RefreshError.TRANSIENT) from None

    def _interpret(self, status: int, retry_after: str | None, raw: bytes) -> Grant:
        if status == 200:
            return _grant(raw)
        code, desc = _error_code(raw)
        detail = f"{status} {code or ''}".strip() + (f": {desc}" if desc else "")
        if status == 429:
            raise RefreshError(f"the token endpoint is rate limiting ({detail})", kind=RefreshError.RATE_LIMITED,
                               retry_after=parse_retry_after(retry_after))
        if status >= 500:
            raise RefreshError(f"the token endpoint failed ({detail})", kind=RefreshError.TRANSIENT,
                               retry_after=parse_retry_after(retry_after))
        if code == "invalid_grant" or status in (401, 404):
            why = "the refresh token was refused" if status != 404 else "the token endpoint answered 404 (a spent refresh token, or a wrong token_url)"
            raise RefreshError(f"{why} ({detail})", kind=RefreshError.INVALID_GRANT)
        raise RefreshError(f"the token endpoint refused the request ({detail})", kind=RefreshError.REJECTED)


def _grant(raw: bytes) -> Grant:
    try:
        doc: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise RefreshError("the token endpoint answered 200 with a body that is not JSON", kind=RefreshError.TRANSIENT) from None
    access = doc.get("access_token") if isinstance(doc, dict) else None
    if not isinstance(access, str) or not access:
        raise RefreshError("the token endpoint answered 200 without an access_token", kind=RefreshError.TRANSIENT)
    refresh = doc.get("refresh_token")
    expires_in = doc.get("expires_in")
    scope = doc.get("scope")
    return Grant(
        access_token=access,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        expires_in=float(expires_in) if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool) else None,
        scopes=tuple(scope.split()) if isinstance(scope, str) else (),
    )
