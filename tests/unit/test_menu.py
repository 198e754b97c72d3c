"""The tray menu model, from hand-made snapshots: no display, no pystray."""

from __future__ import annotations

import dataclasses

import pytest

from broker.status.actions import Action
from broker.status.words import token_words
from broker.tray.menu import (
    ERROR,
    ICON_STATES,
    NO_SANDBOXES,
    OK,
    PAUSED,
    REFRESHING_ICON,
    TOOLTIP_MAX,
    WARNING,
    MenuEntry,
    build_menu,
    icon_state,
    status_text,
    tooltip,
)
from broker.status.snapshot import (
    EXPIRED,
    EXPIRING,
    REFRESHING,
    SIGNED_OUT,
    TOKEN_STATES,
    VALID,
    ProxyStatus,
    SandboxInfo,
    Snapshot,
    TokenStatus,
)

NOW = 1_750_000_000.0


def snap(state: str = VALID, *, paused: bool = False, sandboxes: int = 0, autostart: bool = False, **token) -> Snapshot:
    token.setdefault("expires_at", NOW + 5 * 3600 + 12 * 60)
    return Snapshot(
        now=NOW,
        token=TokenStatus(state=state, **token),
        proxy=ProxyStatus(listen=("127.0.0.1:41235", "172.17.0.1:41236"), paused=paused, requests_today=14),
        sandboxes=tuple(
            SandboxInfo(name=f"box{i}", created=NOW - 86400, last_used=NOW - 300 if i else None, requests=i)
            for i in range(sandboxes)
        ),
        autostart=autostart,
    )


def by_action(entries: tuple[MenuEntry, ...]) -> dict[Action, MenuEntry]:
    return {e.action: e for e in entries if e.action is not None}


def labels(entries: tuple[MenuEntry, ...]) -> list[str]:
    return [e.label for e in entries if not e.separator]


@pytest.mark.parametrize(
    ("token", "words"),
    [
        (TokenStatus(VALID, expires_at=NOW + 5 * 3600 + 12 * 60), "Token valid for 5 h 12 min"),
        (TokenStatus(VALID, expires_at=None), "Token valid"),
        (TokenStatus(REFRESHING), "Refreshing…"),
        (TokenStatus(EXPIRING, reason="HTTP 503", next_retry_at=NOW + 40), "Refresh failing: HTTP 503 — retrying in 40 s"),
        (TokenStatus(EXPIRING, reason="rate limited"), "Refresh failing: rate limited"),
        (TokenStatus(EXPIRED, reason="invalid_grant"), "Token expired — run `claude /login`"),
        (TokenStatus(EXPIRED, next_retry_at=NOW + 90), "Token expired — retrying in 1 min"),
        (TokenStatus(SIGNED_OUT), "Signed out — run `claude /login`"),
    ],
)
def test_token_words(token: TokenStatus, words: str) -> None:
    assert token_words(token, NOW) == words


@pytest.mark.parametrize(
    ("snapshot", "state"),
    [
        (snap(VALID), OK),
        (snap(REFRESHING), REFRESHING_ICON),
        (snap(EXPIRING, reason="x"), WARNING),
        (snap(EXPIRED), ERROR),
        (snap(SIGNED_OUT), ERROR),
        (snap(VALID, paused=True), PAUSED),
        (snap(REFRESHING, paused=True), PAUSED),
        (snap(EXPIRING, paused=True), WARNING),  # a failing refresh still needs attention
        (snap(SIGNED_OUT, paused=True), ERROR),
    ],
)
def test_icon_state(snapshot: Snapshot, state: str) -> None:
    assert icon_state(snapshot) == state
    assert state in ICON_STATES


@pytest.mark.parametrize("state", TOKEN_STATES)
def test_every_token_state_makes_a_complete_menu(state: str) -> None:
    menu = build_menu(snap(state, reason="boom"))
    actions = by_action(menu)
    assert set(actions) == {
        Action.REFRESH, Action.PAUSE, Action.REVOKE_ALL, Action.NEW_SANDBOX,
        Action.OPEN_AUDIT_LOG, Action.OPEN_CONFIG, Action.OPEN_DASHBOARD, Action.SET_AUTOSTART, Action.QUIT,
    }
    assert menu[1].label == token_words(snap(state, reason="boom").token, NOW)
    assert not menu[1].enabled  # status lines are information, not buttons
    assert actions[Action.REFRESH].enabled == (state != REFRESHING)
    assert menu[-1].action == Action.QUIT


def test_header_shows_plan_token_and_last_refresh() -> None:
    menu = build_menu(snap(subscription_type="max", last_refresh=NOW - 12 * 60))
    assert labels(menu)[:4] == [
        "Claude Max",
        "Token valid for 5 h 12 min",
        "Last refresh: 12 min ago",
        "Proxy 127.0.0.1:41235, 172.17.0.1:41236 · 0 sandboxes · 14 requests today",
    ]
    assert menu[0].default
    assert build_menu(snap())[0].label == "Claude subscription"
    assert build_menu(snap())[2].label == "Last refresh: never"


def test_a_login_not_yet_written_back_shows_its_own_line_and_a_warning() -> None:
    problem = ("the login could not be written back to file:/h/.claude/.credentials.json: No space left on device; "
               "the broker holds the current login")
    s = snap(writeback_problem=problem)
    assert labels(build_menu(s))[1:3] == ["Token valid for 5 h 12 min", problem]
    assert not build_menu(s)[2].enabled and icon_state(s) == WARNING
    assert problem in status_text(s)


@pytest.mark.parametrize(("paused", "action", "label"), [(False, Action.PAUSE, "Pause access"), (True, Action.RESUME, "Resume access")])
def test_pause_item_follows_state(paused: bool, action: Action, label: str) -> None:
    menu = build_menu(snap(paused=paused))
    assert by_action(menu)[action].label == label
    assert ({Action.PAUSE, Action.RESUME} - {action}).isdisjoint(by_action(menu))
    assert menu[3].label.startswith("Paused — ") == paused


@pytest.mark.parametrize(("autostart", "arg"), [(False, "on"), (True, "off")])
def test_launch_at_login_checkbox(autostart: bool, arg: str) -> None:
    item = by_action(build_menu(snap(autostart=autostart)))[Action.SET_AUTOSTART]
    assert (item.checked, item.arg, item.label) == (autostart, arg, "Launch at login")


def test_no_sandboxes() -> None:
    menu = build_menu(snap(sandboxes=0))
    sandboxes = next(e for e in menu if e.submenu)
    assert sandboxes.label == "Sandboxes (0)"
    assert [(e.label, e.enabled, e.action) for e in sandboxes.submenu] == [(NO_SANDBOXES, False, None)]
    assert not by_action(menu)[Action.REVOKE_ALL].enabled


def test_several_sandboxes_each_with_last_use_and_revoke() -> None:
    menu = build_menu(snap(sandboxes=3))
    sandboxes = next(e for e in menu if e.submenu)
    assert sandboxes.label == "Sandboxes (3)"
    assert [e.label for e in sandboxes.submenu] == ["box0 — never used", "box1 — used 5 min ago", "box2 — used 5 min ago"]
    for i, entry in enumerate(sandboxes.submenu):
        revoke = entry.submenu[0]  # first, so keyboard navigation lands on it
        assert (revoke.action, revoke.arg, revoke.enabled) == (Action.REVOKE_SANDBOX, f"box{i}", True)
        copy = entry.submenu[1]
        assert (copy.action, copy.arg, copy.enabled) == (Action.COPY_DOCKER_FLAGS, f"box{i}", True)
        assert entry.submenu[2].label.startswith(f"{i} request")
    assert by_action(menu)[Action.REVOKE_ALL].enabled
    assert "3 sandboxes" in menu[3].label
    assert "1 sandbox ·" in build_menu(snap(sandboxes=1))[3].label


def test_separators_are_inert() -> None:
    for entry in build_menu(snap()):
        if entry.separator:
            assert entry.action is None and not entry.enabled


@pytest.mark.parametrize(
    ("snapshot", "text"),
    [
        (snap(), "inference-broker — Token valid for 5 h 12 min"),
        (snap(paused=True), "inference-broker — Token valid for 5 h 12 min · access paused"),
        (snap(SIGNED_OUT), "inference-broker — Signed out — run `claude /login`"),
    ],
)
def test_tooltip(snapshot: Snapshot, text: str) -> None:
    assert tooltip(snapshot) == text


@pytest.mark.parametrize("state", [SIGNED_OUT, EXPIRED])
def test_a_lost_login_is_told_in_the_profiles_words(state: str) -> None:
    hint = "store a key with `inference-broker login --api-key`"
    s = dataclasses.replace(snap(state, expires_at=None), login_hint=hint)
    line = build_menu(s)[1].label
    assert line.endswith(f" — {hint}") and "claude /login" not in line
    assert tooltip(s).endswith(hint)


def test_tooltip_is_bounded() -> None:
    text = tooltip(snap(EXPIRING, reason="x" * 500))
    assert len(text) <= TOOLTIP_MAX and text.endswith("…")


def test_status_text_has_the_menus_words_without_its_actions() -> None:
    from broker.tray.menu import NO_MENU_HINT, status_text

    text = status_text(snap(sandboxes=2, subscription_type="max"))
    lines = text.splitlines()
    assert lines[:2] == ["Claude Max", "Token valid for 5 h 12 min"]
    assert "Sandboxes (2)" in lines and "  box1 — used 5 min ago" in lines
    assert "    1 request · 0 in / 0 out tokens" in lines
    assert not any(w in text for w in ("Revoke", "Pause access", "Quit", "Copy docker", "New sandbox"))
    assert text.endswith(NO_MENU_HINT + "\n")


def test_plan_limits_show_under_the_proxy_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import time as _time

    from broker.usage.plan_limits import PlanLimits, Window

    monkeypatch.setenv("TZ", "UTC")
    _time.tzset()
    try:
        limits = PlanLimits(seen_at=NOW, source="headers", windows=(
            Window("five_hour", 62.0, 1_750_003_200.0), Window("seven_day", 31.4, NOW + 86400)))
        labels = [e.label for e in build_menu(Snapshot(now=NOW, limits=limits))]
    finally:
        monkeypatch.delenv("TZ")
        _time.tzset()
    i = next(i for i, label in enumerate(labels) if label.startswith("Proxy"))
    assert labels[i + 1 : i + 3] == ["5-hour 62% · resets 16:00", "Weekly 31%"]
    assert not any("5-hour" in label for label in (e.label for e in build_menu(snap())))


def test_a_sandbox_budget_shows_in_its_submenu() -> None:
    sb = SandboxInfo("alpha", NOW, requests=2, input_tokens=22, output_tokens=10, budget="20k/5h", budget_used=32)
    entry = next(e for e in build_menu(Snapshot(now=NOW, sandboxes=(sb,))) if e.label.startswith("Sandboxes"))
    assert entry.submenu[0].submenu[2].label == "2 requests · 22 in / 10 out tokens · budget 32 of 20k/5h"
