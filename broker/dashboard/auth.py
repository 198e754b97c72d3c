"""Who may use the local dashboard: one-time login links, session cookies, CSRF tokens, and
the Host and Origin checks that keep other web pages (and DNS rebinding) out.

The broker hands out a link with a one-time token (`inference-broker dashboard`, the tray);
the first visit trades it for a session cookie (`HttpOnly; SameSite=Strict`) and the token is
spent. Every state-changing request must also carry the session's CSRF token from the page:
a cookie alone is not enough, because any page served from 127.0.0.1 on another port is the
same *site* for SameSite purposes. Only hashes of tokens and session ids are kept.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

LINK_TTL = 120.0  # seconds a login link stays usable
SESSION_TTL = 12 * 3600.0  # idle time before a session ends
MAX_SESSIONS = 16
COOKIE = "ib_dashboard"


def _h(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass
class Session:
    csrf: str
    expires_at: float


class DashboardAuth:
    def __init__(self, ttl: float = LINK_TTL, session_ttl: float = SESSION_TTL) -> None:
        self.ttl, self.session_ttl = ttl, session_ttl
        self._links: dict[str, float] = {}  # hash(token) -> expiry
        self._spent: dict[str, float] = {}  # hash(token) -> when it was used (to say "already used")
        self._sessions: dict[str, Session] = {}  # hash(session id) -> session

    def new_link_token(self, now: float) -> str:
        self._expire(now)
        token = secrets.token_urlsafe(32)
        self._links[_h(token)] = now + self.ttl
        return token

    def redeem(self, token: str | None, now: float) -> tuple[str, Session] | str:
        """(session id, session) for a fresh token, else why not, in words for the page."""
        self._expire(now)
        key = _h(token or "")
        if key in self._spent:
            return "this dashboard link was already used; run `inference-broker dashboard` for a new one"
        if not token or key not in self._links:
            return "this dashboard link is not valid (or has expired); run `inference-broker dashboard` for a new one"
        del self._links[key]
        self._spent[key] = now
        sid = secrets.token_urlsafe(32)
        session = Session(csrf=secrets.token_urlsafe(24), expires_at=now + self.session_ttl)
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[min(self._sessions, key=lambda k: self._sessions[k].expires_at)]
        self._sessions[_h(sid)] = session
        return sid, session

    def session(self, sid: str | None, now: float) -> Session | None:
        if not sid:
            return None
        session = self._sessions.get(_h(sid))
        if session is None or session.expires_at <= now:
            return None
        session.expires_at = now + self.session_ttl
        return session

    def _expire(self, now: float) -> None:
        self._links = {k: t for k, t in self._links.items() if t > now}
        self._spent = {k: t for k, t in self._spent.items() if t > now - 86400}
        self._sessions = {k: s for k, s in self._sessions.items() if s.expires_at > now}


def csrf_ok(session: Session, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(session.csrf.encode(), (sent or "").encode())


def own_hosts(port: int) -> frozenset[str]:
    """Host values the dashboard answers to: loopback names with its own port, nothing else."""
    return frozenset(f"{h}:{port}" for h in ("127.0.0.1", "localhost"))


def host_ok(host: str | None, port: int) -> bool:
    return (host or "").strip().lower() in own_hosts(port)


def origin_ok(origin: str | None, port: int, *, required: bool) -> bool:
    """A browser's Origin must be the dashboard itself; a POST without one is refused."""
    if origin is None:
        return not required
    return origin.strip().lower() in {f"http://{h}" for h in own_hosts(port)}
