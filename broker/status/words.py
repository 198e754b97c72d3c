"""The broker's state in the words a person reads: the same lines in the tray menu, its
tooltip and the dashboard."""

from __future__ import annotations

from broker.common.wording import LOGIN_HINT, PLAN_LABEL, duration_words
from broker.status.snapshot import EXPIRED, EXPIRING, REFRESHING, SIGNED_OUT, VALID, Snapshot, TokenStatus


def token_words(token: TokenStatus, now: float, login_hint: str = LOGIN_HINT) -> str:
    """The token's state in the words a person reads in the menu; `login_hint` (the provider
    profile's) says how to get a lost login back."""
    state = token.state
    if state == VALID:
        if token.expires_at is None:
            return "Token valid"
        return f"Token valid for {duration_words(token.expires_at - now)}"
    if state == REFRESHING:
        return "Refreshing…"
    if state == EXPIRING:
        words = f"Refresh failing: {token.reason}"
        if token.next_retry_at is not None:
            words += f" — retrying in {duration_words(token.next_retry_at - now)}"
        return words
    if state == EXPIRED:
        if token.next_retry_at is not None:
            return f"Token expired — retrying in {duration_words(token.next_retry_at - now)}"
        return f"Token expired — {login_hint}"
    if state == SIGNED_OUT:
        return f"Signed out — {login_hint}"
    return f"Token {state}"


def plan_words(token: TokenStatus, label: str = PLAN_LABEL) -> str:
    """"Claude Max" from the login; else the provider profile's `label` ("Anthropic API key")."""
    if token.subscription_type:
        return f"Claude {token.subscription_type.capitalize()}"
    return label


def count_words(n: int, one: str, many: str) -> str:
    """"1 sandbox", "3 sandboxes"."""
    return f"{n} {one if n == 1 else many}"


def proxy_words(snap: Snapshot) -> str:
    where = ", ".join(snap.proxy.listen) if snap.proxy.listen else "not listening"
    parts = [
        f"Proxy {where}",
        count_words(snap.active_sandboxes, "sandbox", "sandboxes"),
        count_words(snap.proxy.requests_today, "request", "requests") + " today",
    ]
    line = " · ".join(parts)
    return f"Paused — {line}" if snap.proxy.paused else line
