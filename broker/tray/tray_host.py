"""Is there a system tray on this desktop to put an icon in?

pystray cannot tell: with no tray host its xorg backend logs "Failed to dock icon" tracebacks
and the AppIndicator one shows nothing, and both carry on as if the icon were shown (GNOME
without the AppIndicator extension, a bare window manager). Two kinds of host exist: an XEmbed
tray (the `_NET_SYSTEM_TRAY_S<screen>` selection has an owner: trayer, xfce4-panel, ...) and a
StatusNotifier host (`org.kde.StatusNotifierWatcher` on the session bus: KDE, GNOME with the
extension). The xorg and gtk backends need the first; AppIndicator uses either.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

log = logging.getLogger(__name__)

SNI_WATCHER = "org.kde.StatusNotifierWatcher"
SYSTEM_GI = "/usr/lib/python3/dist-packages/gi"  # Debian's PyGObject, which pipx venvs do not see


def decide(found: Iterable[bool | None]) -> bool:
    """A host is there if any probe found one, or if one could not tell (never claim "no tray"
    on a guess); absent only when every probe looked and found none."""
    seen = list(found)
    return any(v is None or v for v in seen) if seen else True


def xembed_tray() -> bool | None:
    """Whether the X screen's tray selection has an owner; None when X cannot be asked."""
    if not os.environ.get("DISPLAY"):
        return False
    try:
        import Xlib.X  # noqa: PLC0415 - only on X desktops
        import Xlib.display  # noqa: PLC0415
    except ImportError:
        return None
    try:
        display = Xlib.display.Display()
    except Exception:
        log.debug("cannot open the X display to look for a tray", exc_info=True)
        return None
    try:
        atom = display.intern_atom(f"_NET_SYSTEM_TRAY_S{display.get_default_screen()}")
        return display.get_selection_owner(atom) != Xlib.X.NONE
    except Exception:
        log.debug("cannot ask X for the tray", exc_info=True)
        return None
    finally:
        display.close()


def status_notifier_host() -> bool | None:
    """Whether a StatusNotifier watcher is on the session bus; None when it cannot be asked."""
    try:
        from gi.repository import Gio, GLib  # noqa: PLC0415 - present with the AppIndicator backend
    except Exception:
        return None
    try:
        bus = Gio.bus_get_sync(Gio.BusType.SESSION, None)
        reply = bus.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                              "NameHasOwner", GLib.Variant("(s)", (SNI_WATCHER,)), GLib.VariantType("(b)"),
                              Gio.DBusCallFlags.NONE, 2000, None)
        return bool(reply.unpack()[0])
    except Exception:
        log.debug("cannot ask the session bus for a StatusNotifier host", exc_info=True)
        return None


def has_tray_host(backend: str) -> bool:
    """Whether pystray's `backend` has somewhere to show its icon here."""
    if backend in ("xorg", "gtk"):
        return decide([xembed_tray()])
    if backend == "appindicator":  # libayatana falls back to an XEmbed tray without a watcher
        return decide([status_notifier_host(), xembed_tray()])
    return True  # macOS and Windows always have one


def no_tray_words(backend: str, system_gi: bool) -> str:
    """What to say, once, when there is no tray: what happened, where the broker's face is now,
    and how to get an icon."""
    words = ("no system tray on this desktop: the broker runs on without an icon (it appears if a tray "
             "starts later); `inference-broker dashboard` opens the dashboard, `inference-broker status` shows "
             "its state. On GNOME, the AppIndicator extension gives it a place (Debian: apt install "
             "gnome-shell-extension-appindicator, then log in again).")
    return words + (" " + full_menu_words(system_gi) if backend == "xorg" else "")


def full_menu_words(system_gi: bool) -> str:
    """How to get the menu when pystray fell back to xorg (no PyGObject where the broker runs)."""
    if system_gi:
        return ("For the full menu: PyGObject is installed here but this Python cannot import it; reinstall "
                "with `pipx install --system-site-packages .` so it can.")
    return ("For the full menu: install PyGObject and AyatanaAppIndicator3 (Debian: apt install python3-gi "
            "gir1.2-ayatanaappindicator3-0.1), then reinstall with `pipx install --system-site-packages .`.")


def system_gi_installed() -> bool:
    return os.path.isdir(SYSTEM_GI)
