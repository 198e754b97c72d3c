"""Deciding "no system tray" from the probes, and the words that say what to do about it."""

from __future__ import annotations

import pytest

from broker.tray.tray_host import decide, full_menu_words, no_tray_words


@pytest.mark.parametrize("found, host", [
    ([False], False), ([False, False], False),  # every probe looked and found none
    ([True], True), ([False, True], True),
    ([None], True), ([False, None], True),  # a probe that could not tell never makes "no tray"
    ([], True),
])
def test_decide(found: list[bool | None], host: bool) -> None:
    assert decide(found) is host


def test_the_words_name_the_fixes() -> None:
    gtk = no_tray_words("appindicator", system_gi=True)
    assert gtk.startswith("no system tray on this desktop: the broker runs on without an icon")
    assert "`inference-broker dashboard`" in gtk and "gnome-shell-extension-appindicator" in gtk
    assert "pipx" not in gtk
    xorg = no_tray_words("xorg", system_gi=True)
    assert "`pipx install --system-site-packages .`" in xorg and "apt install python3-gi" not in xorg  # installed
    assert "apt install python3-gi" in full_menu_words(system_gi=False)
