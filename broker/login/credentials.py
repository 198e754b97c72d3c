"""Claude Code's login JSON: parse it, rotate tokens in it, write it back losslessly.

The same JSON lives in `~/.claude/.credentials.json` and in the Keychain item, so both sources
share this module. Claude Code owns the format: every key we do not know (top level or inside
`claudeAiOauth`) is carried through a write untouched.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any

from broker.common.errors import CredentialsError

OAUTH_KEY = "claudeAiOauth"
MAX_LOGIN_BYTES = 1024 * 1024  # Claude Code's login is under 10 KB
_MS_THRESHOLD = 100_000_000_000  # below this an epoch value is in seconds (year 5138 in s)


_MAX_EPOCH_MS = 10**16  # about the year 318,000: anything larger is not a time


def epoch_seconds(value: Any, field: str) -> float | None:
    """Accept epoch milliseconds (Claude Code) or seconds (hand-made files); return seconds."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CredentialsError(f"{OAUTH_KEY}.{field} must be a number (epoch milliseconds), got {type(value).__name__}")
    if not math.isfinite(value) or abs(value) > _MAX_EPOCH_MS:  # JSON's 1e999 parses as infinity
        raise CredentialsError(f"{OAUTH_KEY}.{field} is not a usable time (epoch milliseconds): {value!r:.40}")
    return value / 1000.0 if value >= _MS_THRESHOLD else float(value)


@dataclass(frozen=True)
class OAuthLogin:
    """The fields of a Claude login the broker uses. `raw` is the whole document as read."""

    access_token: str
    refresh_token: str | None = None
    expires_at: float | None = None  # epoch seconds; None = no expiry known (setup-token)
    refresh_token_expires_at: float | None = None
    scopes: tuple[str, ...] = ()
    subscription_type: str | None = None
    rate_limit_tier: str | None = None
    raw: dict[str, Any] | None = None

    def __repr__(self) -> str:  # never let a token reach a log through repr()
        return f"OAuthLogin(expires_at={self.expires_at!r}, subscription_type={self.subscription_type!r})"

    def rotated(self, access_token: str, refresh_token: str | None, expires_at: float | None,
                scopes: tuple[str, ...] | None = None) -> "OAuthLogin":
        """A copy with a new token pair. A missing new refresh token keeps the old one."""
        return replace(
            self,
            access_token=access_token,
            refresh_token=refresh_token or self.refresh_token,
            expires_at=expires_at,
            scopes=scopes if scopes else self.scopes,
        )


def parse_login(text: str | bytes) -> OAuthLogin:
    """Parse Claude Code's credentials JSON. Raises CredentialsError saying what is wrong.

    Whatever the input (a Keychain value, a file), nothing but CredentialsError escapes: the
    caller keeps its last good token and shows the reason.
    """
    if len(text) > MAX_LOGIN_BYTES:
        raise CredentialsError(f"{len(text):,} bytes, more than the {MAX_LOGIN_BYTES:,} a login can be")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CredentialsError(f"not UTF-8 text ({exc.reason})") from None
    if not text.strip():
        raise CredentialsError("the credentials are empty (half-written?)")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CredentialsError(f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise CredentialsError("JSON nested too deeply to be a login") from None
    if not isinstance(doc, dict):
        raise CredentialsError("the top level must be a JSON object")
    oauth = doc.get(OAUTH_KEY)
    if oauth is None:
        raise CredentialsError(f"no `{OAUTH_KEY}` entry: not logged in to a Claude subscription (run `claude /login`)")
    if not isinstance(oauth, dict):
        raise CredentialsError(f"`{OAUTH_KEY}` must be an object")
    access = oauth.get("accessToken")
    if not isinstance(access, str) or not access:
        raise CredentialsError(f"`{OAUTH_KEY}.accessToken` is missing or empty")
    refresh = oauth.get("refreshToken")
    if refresh is not None and not isinstance(refresh, str):
        raise CredentialsError(f"`{OAUTH_KEY}.refreshToken` must be a string")
    scopes = oauth.get("scopes") or []
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise CredentialsError(f"`{OAUTH_KEY}.scopes` must be a list of strings")
    sub = oauth.get("subscriptionType")
    tier = oauth.get("rateLimitTier")
    return OAuthLogin(
        access_token=access,
        refresh_token=refresh or None,
        expires_at=epoch_seconds(oauth.get("expiresAt"), "expiresAt"),
        refresh_token_expires_at=epoch_seconds(oauth.get("refreshTokenExpiresAt"), "refreshTokenExpiresAt"),
        scopes=tuple(scopes),
        subscription_type=sub if isinstance(sub, str) else None,
        rate_limit_tier=tier if isinstance(tier, str) else None,
        raw=doc,
    )


def serialize_login(login: OAuthLogin) -> str:
    """The document to write back: the original with the token fields replaced.

    Expiry goes back in epoch milliseconds, as Claude Code writes it, whatever unit we read.
    """
    doc: dict[str, Any] = json.loads(json.dumps(login.raw)) if login.raw else {}
    oauth = doc.get(OAUTH_KEY)
    if not isinstance(oauth, dict):
        oauth = {}
    oauth["accessToken"] = login.access_token
    if login.refresh_token is not None:
        oauth["refreshToken"] = login.refresh_token
    if login.expires_at is not None:
        oauth["expiresAt"] = int(round(login.expires_at * 1000))
    if login.scopes:
        oauth["scopes"] = list(login.scopes)
    doc[OAUTH_KEY] = oauth
    return json.dumps(doc, indent=2) + "\n"


def same_tokens(a: OAuthLogin | None, b: OAuthLogin | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.access_token == b.access_token and a.refresh_token == b.refresh_token
