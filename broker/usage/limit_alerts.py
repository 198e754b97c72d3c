"""Plan-limit words for the menu and when to interrupt a person about them.

A window is announced when it crosses 80% and 95% on the way up, and when it resets after
one of those warnings: a person who was warned learns they can work again, while a window
that resets quietly every five hours at 3% is not worth a notification.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from broker.usage.plan_limits import PlanLimits, Window

THRESHOLDS = (80.0, 95.0)
MENU_WINDOWS = ("five_hour", "seven_day")


def clock_words(ts: float, localtime: Callable[[float], time.struct_time] = time.localtime) -> str:
    return time.strftime("%H:%M", localtime(ts))


def window_words(w: Window, *, with_reset: bool = True,
                 localtime: Callable[[float], time.struct_time] = time.localtime) -> str:
    """"5-hour 62% · resets 14:20" (local time), or "Weekly 31%"."""
    pct = "?" if w.percent is None else f"{w.percent:.0f}%"
    words = f"{w.label} {pct}"
    if with_reset and w.resets_at is not None:
        words += f" · resets {clock_words(w.resets_at, localtime)}"
    return words


def menu_lines(limits: PlanLimits | None,
               localtime: Callable[[float], time.struct_time] = time.localtime) -> tuple[str, ...]:
    """The limit lines of the tray menu: the 5-hour window with its reset, then weekly."""
    if limits is None:
        return ()
    lines = []
    for name in MENU_WINDOWS:
        w = limits.window(name)
        if w is not None and w.percent is not None:
            lines.append(window_words(w, with_reset=name == "five_hour", localtime=localtime))
    return tuple(lines)


def _crossed(before: float | None, after: float | None) -> float | None:
    """The highest threshold passed going from `before` to `after`, if any."""
    if after is None:
        return None
    low = -1.0 if before is None else before
    passed = [t for t in THRESHOLDS if low < t <= after]
    return passed[-1] if passed else None


def alerts(prev: PlanLimits | None, new: PlanLimits | None,
           localtime: Callable[[float], time.struct_time] = time.localtime) -> list[tuple[str, str]]:
    """(title, message) pairs for the change from `prev` to `new`.

    `prev` None means a face has just started: nothing is news yet.
    """
    if prev is None or new is None or new is prev:
        return []
    out = []
    for w in new.windows:
        old = prev.window(w.name)
        if old is None:
            continue
        reset = (old.resets_at is not None and w.resets_at is not None and w.resets_at > old.resets_at + 60
                 and new.seen_at >= old.resets_at)
        if reset:
            if old.percent is not None and old.percent >= THRESHOLDS[0]:
                out.append((f"{w.label} limit reset", f"{window_words(w, localtime=localtime)}: sandboxes "
                            "can use the full window again."))
            continue
        passed = _crossed(old.percent, w.percent)
        if passed is not None:
            message = f"{window_words(w, localtime=localtime)}."
            if passed >= THRESHOLDS[-1]:
                message += " Sandboxes will be refused when it is used up."
            out.append((f"{w.label} limit at {passed:.0f}%", message))
    return out
