"""Which pystray backend runs here, and an Icon class that survives a broken desktop.

pystray is imported lazily, because importing it without a display raises. It tries
PYSTRAY_BACKEND if set, else appindicator, then gtk (both give a real menu), then xorg.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

MENU_BACKENDS = ("appindicator", "gtk", "darwin", "win32")  # xorg draws an icon with no menu


def _import_pystray() -> ModuleType:
    import pystray  # noqa: PLC0415 - lazy: raises without a display

    return pystray


def backend_name(pystray: ModuleType) -> str:
    return pystray.Icon.__module__.rsplit(".", 1)[-1].lstrip("_")


def display_available(env: Mapping[str, str] | None = None, platform: str | None = None) -> tuple[bool, str]:
    """Whether a tray icon can be shown here, and why not when it can't.

    pystray tries PYSTRAY_BACKEND if set, else appindicator, then gtk (both give a real
    menu), then xorg; we report which one it found.
    """
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if platform not in ("darwin", "win32") and not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
        return False, "no DISPLAY or WAYLAND_DISPLAY, so no tray"
    try:
        pystray = _import_pystray()
    except Exception as exc:  # pystray raises Xlib, ImportError, ValueError, ...
        return False, f"no tray backend could start ({type(exc).__name__}: {exc})"
    name = backend_name(pystray)
    if name in ("dummy", "base"):  # the dummy backend's Icon is the abstract base class
        return False, "the dummy tray backend shows no icon"
    return True, f"tray backend: {name}"


class _NoNotifier:
    def notify(self, *args: Any) -> None:
        pass

    def hide(self) -> None:
        pass


def icon_class(pystray: ModuleType) -> type:
    """pystray's Icon, made to survive a desktop whose notification service is broken.

    The GTK backends reach the notification service over D-Bus while starting and give up
    on the whole icon if that fails (seen: a daemon that crashes on activation). A tray
    without notifications is still a tray. (Relies on pystray 0.19's `_initialize`.)
    """
    base = pystray.Icon
    if backend_name(pystray) not in ("appindicator", "gtk"):
        return base

    class Icon(base):  # type: ignore[misc, valid-type]
        def _initialize(self) -> None:
            try:
                super()._initialize()
            except Exception as exc:
                log.warning("desktop notifications unavailable: %s", exc)
                self._notifier = _NoNotifier()
                self.HAS_NOTIFICATION = False
                self._mark_ready()

    return Icon
