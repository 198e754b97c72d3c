"""The tray menu as a pure function of a `Snapshot`.

Every face that shows a menu (pystray today, something else tomorrow) renders these
entries; the words, the enabled/checked flags and the action ids are decided here, where a
table-driven test can check them without a display. Faces act on `MenuEntry.action`, never
on a label's text.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.common.wording import ago_words
from broker.status.actions import Action
from broker.status.snapshot import EXPIRED, EXPIRING, REFRESHING, SIGNED_OUT, SandboxInfo, Snapshot
from broker.status.words import count_words, plan_words, proxy_words, token_words
from broker.usage.limit_alerts import menu_lines

# Icon states, in the order a person should care about them.
OK = "ok"
REFRESHING_ICON = "refreshing"
WARNING = "warning"
ERROR = "error"
PAUSED = "paused"
ICON_STATES = (OK, REFRESHING_ICON, WARNING, ERROR, PAUSED)

NO_MENU_HINT = ("This desktop's tray shows no menu. Act with `inference-broker pause|resume|revoke|refresh`, "
                "or get the full menu: install python3-gi and AyatanaAppIndicator3 (Debian: apt install "
                "python3-gi gir1.2-ayatanaappindicator3-0.1) and run the broker from a Python that sees them.")
NO_SANDBOXES = "No sandboxes yet — run `inference-broker sandbox add NAME`"
TOOLTIP_MAX = 120  # Windows truncates tooltips at 127 characters


@dataclass(frozen=True)
class MenuEntry:
    label: str
    action: Action | None = None
    arg: str | None = None
    enabled: bool = True
    checked: bool | None = None  # None: not a checkbox
    submenu: tuple[MenuEntry, ...] = ()
    separator: bool = False
    default: bool = False  # shown in bold where the backend can


SEPARATOR = MenuEntry(label="", separator=True, enabled=False)


def icon_state(snap: Snapshot) -> str:
    """Lost login beats failing refresh beats paused beats refreshing."""
    state = snap.token.state
    if state in (SIGNED_OUT, EXPIRED):
        return ERROR
    if state == EXPIRING or snap.token.writeback_problem:
        return WARNING
    if snap.proxy.paused:
        return PAUSED
    if state == REFRESHING:
        return REFRESHING_ICON
    return OK


def tooltip(snap: Snapshot) -> str:
    text = f"inference-broker — {token_words(snap.token, snap.now, snap.login_hint)}"
    if snap.proxy.paused:
        text += " · access paused"
    return text if len(text) <= TOOLTIP_MAX else text[: TOOLTIP_MAX - 1] + "…"


def _sandbox_entry(sb: SandboxInfo, now: float) -> MenuEntry:
    used = "never used" if sb.last_used is None else f"used {ago_words(sb.last_used, now)}"
    words = f"{count_words(sb.requests, 'request', 'requests')} · {sb.input_tokens} in / {sb.output_tokens} out tokens"
    if sb.budget:
        words += f" · budget {sb.budget_used or 0} of {sb.budget}"
    details = MenuEntry(words, enabled=False)
    # Revoke comes first so keyboard navigation lands on it.
    return MenuEntry(
        f"{sb.name} — {used}",
        submenu=(MenuEntry(f"Revoke {sb.name}", Action.REVOKE_SANDBOX, arg=sb.name),
                 MenuEntry("Copy docker run flags", Action.COPY_DOCKER_FLAGS, arg=sb.name), details),
    )


def sandboxes_menu(snap: Snapshot) -> MenuEntry:
    if not snap.sandboxes:
        items: tuple[MenuEntry, ...] = (MenuEntry(NO_SANDBOXES, enabled=False),)
    else:
        items = tuple(_sandbox_entry(sb, snap.now) for sb in snap.sandboxes)
    return MenuEntry(f"Sandboxes ({snap.active_sandboxes})", submenu=items)


def build_menu(snap: Snapshot) -> tuple[MenuEntry, ...]:
    token = snap.token
    paused = snap.proxy.paused
    return (
        MenuEntry(plan_words(token, snap.plan_label), enabled=False, default=True),
        MenuEntry(token_words(token, snap.now, snap.login_hint), enabled=False),
        *((MenuEntry(token.writeback_problem, enabled=False),) if token.writeback_problem else ()),
        MenuEntry(f"Last refresh: {ago_words(token.last_refresh, snap.now)}", enabled=False),
        MenuEntry(proxy_words(snap), enabled=False),
        *(MenuEntry(line, enabled=False) for line in menu_lines(snap.limits)),
        SEPARATOR,
        sandboxes_menu(snap),
        MenuEntry("Refresh token now", Action.REFRESH, enabled=token.state != REFRESHING),
        MenuEntry("Resume access", Action.RESUME) if paused else MenuEntry("Pause access", Action.PAUSE),
        MenuEntry("Revoke all sandbox access", Action.REVOKE_ALL, enabled=bool(snap.sandboxes)),
        SEPARATOR,
        MenuEntry("Open dashboard", Action.OPEN_DASHBOARD),
        MenuEntry("New sandbox (copy its docker run flags)", Action.NEW_SANDBOX),
        MenuEntry("Open audit log", Action.OPEN_AUDIT_LOG),
        MenuEntry("Open config", Action.OPEN_CONFIG),
        SEPARATOR,
        MenuEntry(
            "Launch at login",
            Action.SET_AUTOSTART,
            arg="off" if snap.autostart else "on",
            checked=snap.autostart,
        ),
        SEPARATOR,
        MenuEntry("Quit", Action.QUIT),
    )


def status_text(snap: Snapshot) -> str:
    """The menu's information lines as plain text (indented like the menu), for a tray that
    cannot show a menu; the actions are left out, with a hint on how to take them."""
    def lines(entries: tuple[MenuEntry, ...], depth: int) -> list[str]:
        out: list[str] = []
        for e in entries:
            if e.separator or (e.action is not None and not e.submenu):
                continue
            out.append("  " * depth + e.label)
            out += lines(e.submenu, depth + 1)
        return out

    return "\n".join([*lines(build_menu(snap), 0), "", NO_MENU_HINT]) + "\n"
