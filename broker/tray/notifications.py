"""When the tray should interrupt a person, and with which words.

Only two things deserve a desktop notification: the Claude login is gone (sandboxes stop
working until someone runs `claude /login`), or refreshing has started to fail (they will
stop working when the current token expires). Each is said once per change of state.

A failing refresh is retried, and each retry passes through REFRESHING; comparing against
the previous *settled* snapshot (see `baseline`) keeps a retry loop from repeating itself.
"""

from __future__ import annotations

from broker.status.snapshot import EXPIRED, EXPIRING, REFRESHING, SIGNED_OUT, Snapshot
from broker.common.wording import duration_words

LOST = (SIGNED_OUT, EXPIRED)


def notification(prev: Snapshot | None, new: Snapshot) -> tuple[str, str] | None:
    """(title, message) to show for the change from `prev` to `new`, or None.

    `prev` None means the face has just started: its icon already shows the state, so
    nothing is announced.
    """
    if prev is None:
        return None
    state, before = new.token.state, prev.token.state
    if state == before or state == REFRESHING:
        return None
    token = new.token
    if state == SIGNED_OUT:
        return ("Claude login lost", f"Sandboxes can't use your subscription — {new.login_hint}. ({token.reason})")
    if state == EXPIRED:
        return ("Claude token expired", f"Sandboxes can't use your subscription — {new.login_hint}. ({token.reason})")
    if state == EXPIRING and before not in LOST:
        message = f"{token.reason}."
        if token.expires_at is not None:
            message += f" The current token still works for {duration_words(token.expires_at - new.now)}."
        if token.next_retry_at is not None:
            message += f" Retrying in {duration_words(token.next_retry_at - new.now)}."
        return ("Token refresh failing", message)
    return None


def baseline(prev: Snapshot | None, new: Snapshot) -> Snapshot | None:
    """The snapshot to compare the next one against: REFRESHING is a passage, not a state."""
    return prev if new.token.state == REFRESHING else new
