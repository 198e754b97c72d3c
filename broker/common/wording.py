"""Words shown to people in more than one place: countdowns and how to log in again.

`status`, the tray menu, notifications and `doctor` say these the same way because they
come from here.
"""

from __future__ import annotations

PLAN_LABEL = "Claude subscription"  # the menu's first line when a login names no plan
# What fixes a lost Claude login, for a profile that names no hint of its own.
CLAUDE_LOGIN_HINT = "run `claude /login` on the host"
# The same, short enough for a menu line.
LOGIN_HINT = "run `claude /login`"


def login_hint(profile_hint: str = "") -> str:
    """The profile's own hint (an API-key profile says where the key goes), else Claude's."""
    return profile_hint or CLAUDE_LOGIN_HINT


def duration_words(seconds: float) -> str:
    """'40 s', '12 min', '5 h 12 min', '2 d 3 h' — how people read a countdown (status, tray)."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    minutes = s // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def ago_words(then: float | None, now: float) -> str:
    """'never', 'just now', '5 min ago'."""
    if then is None:
        return "never"
    if now - then < 60:
        return "just now"
    return f"{duration_words(now - then)} ago"
