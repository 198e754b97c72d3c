"""When the tray interrupts a person: once per lost login or newly failing refresh."""

from __future__ import annotations

import pytest

from broker.tray.notifications import baseline, notification
from broker.status.snapshot import EXPIRED, EXPIRING, REFRESHING, SIGNED_OUT, VALID, ProxyStatus, Snapshot, TokenStatus

NOW = 1_750_000_000.0


def snap(state: str, reason: str = "HTTP 503", paused: bool = False) -> Snapshot:
    return Snapshot(
        now=NOW,
        token=TokenStatus(state=state, reason=reason, expires_at=NOW + 3600, next_retry_at=NOW + 40),
        proxy=ProxyStatus(paused=paused),
    )


@pytest.mark.parametrize(
    ("before", "after", "title"),
    [
        (None, SIGNED_OUT, None),  # at start the icon already says it
        (None, EXPIRING, None),
        (VALID, SIGNED_OUT, "Claude login lost"),
        (EXPIRING, SIGNED_OUT, "Claude login lost"),
        (VALID, EXPIRED, "Claude token expired"),
        (EXPIRING, EXPIRED, "Claude token expired"),
        (EXPIRED, SIGNED_OUT, "Claude login lost"),
        (VALID, EXPIRING, "Token refresh failing"),
        (SIGNED_OUT, EXPIRING, None),  # already told the login was lost
        (SIGNED_OUT, SIGNED_OUT, None),
        (EXPIRING, EXPIRING, None),
        (VALID, REFRESHING, None),
        (EXPIRING, REFRESHING, None),
        (REFRESHING, VALID, None),
        (SIGNED_OUT, VALID, None),
        (EXPIRING, VALID, None),
    ],
)
def test_notification_table(before: str | None, after: str, title: str | None) -> None:
    prev = snap(before) if before else None
    got = notification(prev, snap(after))
    assert (got[0] if got else None) == title


def test_failing_message_says_reason_time_left_and_retry() -> None:
    title, message = notification(snap(VALID), snap(EXPIRING, reason="token endpoint answered 503"))
    assert title == "Token refresh failing"
    assert message == "token endpoint answered 503. The current token still works for 1 h. Retrying in 40 s."


def test_lost_message_says_what_to_do() -> None:
    _, message = notification(snap(VALID), snap(SIGNED_OUT, reason="invalid_grant"))
    assert "claude /login" in message and "invalid_grant" in message


def test_pause_and_reason_changes_are_not_news() -> None:
    assert notification(snap(VALID), snap(VALID, paused=True)) is None
    assert notification(snap(EXPIRING, "a"), snap(EXPIRING, "b")) is None


def test_retry_loop_announces_once() -> None:
    """VALID, then a failing refresh retried three times: one notification."""
    states = [VALID, REFRESHING, EXPIRING, REFRESHING, EXPIRING, REFRESHING, EXPIRING, REFRESHING, VALID]
    prev, shown = None, []
    for state in states:
        new = snap(state)
        if (n := notification(prev, new)) is not None:
            shown.append(n[0])
        prev = baseline(prev, new)
    assert shown == ["Token refresh failing"]
