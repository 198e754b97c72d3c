"""Writing a rotated pair back: a compare-and-swap against what the store holds now.

Between our read and our write the host's Claude Code may have changed the store. The rules:
- still the pair we refreshed from: write ours (into the document as it is now, so fields it
  added meanwhile survive);
- cleared by Claude Code (after a collision it empties `accessToken`, `refreshToken` and
  `expiresAt`): restore it with ours, the only valid pair left;
- a different pair (a refresh or `claude /login` we did not see): keep theirs and adopt it;
  never overwrite a newer login;
- gone (`claude /logout`): write nothing, sign out;
- unreadable: write ours (a store that cannot be parsed logs the host out anyway, and ours is
  the only valid pair).

"The pair we refreshed from" is a login, or a `Pending` record (after a restart or a failed
write), which knows the digests of every refresh token its pair replaced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from broker.login.credentials import OAUTH_KEY, OAuthLogin, parse_login, serialize_login
from broker.common.errors import CredentialsError
from broker.login.pending import Pending

LOGIN, CLEARED, MISSING, UNREADABLE = "login", "cleared", "missing", "unreadable"
WRITE, RESTORE, KEEP_THEIRS, GONE = "write", "restore", "keep-theirs", "gone"


@dataclass(frozen=True)
class Stored:
    """What a store holds at the moment of a write-back."""

    kind: str  # LOGIN, CLEARED, MISSING or UNREADABLE
    login: OAuthLogin | None = None
    doc: dict[str, Any] | None = None  # the document as it is now (also when cleared)
    problem: str | None = None

    def __repr__(self) -> str:  # the document carries tokens
        return f"Stored({self.kind!r})"


def stored(text: str | bytes | None) -> Stored:
    if text is None:
        return Stored(MISSING)
    try:
        login = parse_login(text)
    except CredentialsError as exc:
        doc = _document(text)
        if doc is not None and is_cleared(doc):
            return Stored(CLEARED, doc=doc)
        return Stored(UNREADABLE, problem=exc.message)
    return Stored(LOGIN, login=login, doc=login.raw)


def is_cleared(doc: dict[str, Any]) -> bool:
    """Claude Code's dead-token clear: the entry is there, its tokens are empty."""
    oauth = doc.get(OAUTH_KEY)
    return isinstance(oauth, dict) and not oauth.get("accessToken") and not oauth.get("refreshToken")


@dataclass(frozen=True)
class WriteBack:
    action: str  # WRITE, RESTORE, KEEP_THEIRS or GONE
    document: str | None = None  # what to write, if anything
    theirs: OAuthLogin | None = None  # the newer login to adopt (KEEP_THEIRS)

    def __repr__(self) -> str:
        return f"WriteBack({self.action!r})"


def decide(now: Stored, base: OAuthLogin | Pending, new: OAuthLogin) -> WriteBack:
    """`base` is the login we refreshed from (or the record of what `new` replaced), `new` the
    pair the endpoint gave for it."""
    if now.kind == MISSING:
        return WriteBack(GONE)
    if now.kind == CLEARED:
        return WriteBack(RESTORE, serialize_login(replace(new, raw=now.doc)))
    if now.kind == UNREADABLE:
        return WriteBack(WRITE, serialize_login(new))
    assert now.login is not None
    if not _from_base(now.login, base):
        return WriteBack(KEEP_THEIRS, theirs=now.login)
    return WriteBack(WRITE, serialize_login(replace(new, raw=now.doc)))


def _from_base(held: OAuthLogin, base: OAuthLogin | Pending) -> bool:
    if isinstance(base, Pending):
        return base.replaces(held) or base.held_by(held)
    if held.refresh_token is None:
        return base.refresh_token is None and held.access_token == base.access_token
    return held.refresh_token == base.refresh_token


def _document(text: str | bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError):  # a document nested past the stack
        return None
    return doc if isinstance(doc, dict) else None
