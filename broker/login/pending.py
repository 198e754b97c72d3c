"""A pair the token endpoint returned that no store holds yet: the write-ahead record.

Refresh tokens are single-use. From the moment the token endpoint answers, the new pair is
the only valid login there is, until the store the host's Claude Code reads holds it. The
broker keeps it in memory and in its own state (`pending-login.json`, see `pending_file`)
with digests of the refresh tokens it replaced, never those tokens, so a read of a store
still holding one of them is known to be stale: its refresh token is spent and is never
sent again. Pure: the format and the decisions; `pending_file` does the I/O.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from broker.common.errors import CredentialsError
from broker.login.credentials import OAuthLogin, epoch_seconds, same_tokens

FORMAT = "inference-broker/pending-login"
VERSION = 1
MAX_REPLACED = 8  # the chain of unsaved pairs is short; keep the latest few digests
MAX_BYTES = 64 * 1024

# What a read of the store means while a pair is pending.
STALE, HELD, MOVED_ON, UNKNOWN, GONE = "stale", "held", "moved-on", "unknown", "gone"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True)
class Pending:
    login: OAuthLogin  # the newest pair; the only valid one
    replaced: tuple[str, ...]  # digests of the refresh tokens it replaced, newest last
    source: str | None = None  # the label of the store it belongs in
    saved_at: float = 0.0

    def __repr__(self) -> str:
        return f"Pending(source={self.source!r}, saved_at={self.saved_at!r})"

    def replaces(self, login: OAuthLogin | None) -> bool:
        """Whether `login` is one this pair replaced: its refresh token is spent."""
        return login is not None and login.refresh_token is not None and digest(login.refresh_token) in self.replaced

    def held_by(self, login: OAuthLogin | None) -> bool:
        return same_tokens(login, self.login)


def after_refresh(previous: Pending | None, base: OAuthLogin, new: OAuthLogin, source: str | None,
                  now: float) -> Pending:
    """The record for `new`, refreshed from `base`. A pair refreshed from a pair that was itself
    never written back also replaces everything that one replaced: the store may hold any."""
    earlier = previous.replaced if previous is not None and previous.held_by(base) else ()
    spent = (digest(base.refresh_token),) if base.refresh_token else ()
    chain = tuple(dict.fromkeys((*earlier, *spent)))[-MAX_REPLACED:]
    return Pending(new, chain, source, now)


def verdict(pending: Pending, read: OAuthLogin | None, problems: list[str]) -> str:
    """What a read of the store means for the pending pair."""
    if read is None:
        return UNKNOWN if problems else GONE
    if pending.held_by(read):
        return HELD
    if pending.replaces(read):
        return STALE
    return MOVED_ON  # a new `claude /login`: theirs wins, as in the write-back


def to_bytes(p: Pending) -> bytes:
    login = p.login
    doc: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "saved_at": p.saved_at, "source": p.source,
        "replaced_sha256": list(p.replaced),
        "login": {"accessToken": login.access_token, "refreshToken": login.refresh_token,
                  "expiresAt": None if login.expires_at is None else int(round(login.expires_at * 1000)),
                  "scopes": list(login.scopes), "subscriptionType": login.subscription_type,
                  "rateLimitTier": login.rate_limit_tier},
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def from_bytes(data: bytes) -> Pending:
    """Parse a saved record; CredentialsError says why one cannot be used."""
    if len(data) > MAX_BYTES:
        raise CredentialsError(f"{len(data):,} bytes, more than a saved login can be")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise CredentialsError("not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CredentialsError("not a saved login of this broker")
    if doc.get("version") != VERSION:
        raise CredentialsError(f"format version {doc.get('version')!r}, this broker reads {VERSION}")
    login, replaced = doc.get("login"), doc.get("replaced_sha256")
    if not isinstance(login, dict) or not isinstance(replaced, list) or not all(isinstance(d, str) for d in replaced):
        raise CredentialsError("the saved login is incomplete")
    access, refresh, scopes = login.get("accessToken"), login.get("refreshToken"), login.get("scopes") or []
    if not isinstance(access, str) or not access or not isinstance(refresh, (str, type(None))):
        raise CredentialsError("the saved login has no usable token")
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise CredentialsError("the saved login's scopes are not a list of strings")
    sub, tier, source, saved_at = (login.get("subscriptionType"), login.get("rateLimitTier"), doc.get("source"),
                                   doc.get("saved_at"))
    return Pending(
        OAuthLogin(access_token=access, refresh_token=refresh or None,
                   expires_at=epoch_seconds(login.get("expiresAt"), "expiresAt"), scopes=tuple(scopes),
                   subscription_type=sub if isinstance(sub, str) else None,
                   rate_limit_tier=tier if isinstance(tier, str) else None),
        tuple(replaced[-MAX_REPLACED:]),
        source if isinstance(source, str) else None,
        float(saved_at) if isinstance(saved_at, (int, float)) and not isinstance(saved_at, bool) else 0.0,
    )
