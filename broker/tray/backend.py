"""Which pystray backend runs here, and an Icon class that survives a broken desktop.

pystray is imported lazily, because importing it without a display raises. It tries
PYSTRAY_BACKEND if set, else appindicator, then gtk (both give a real menu), then xorg.
"""

from __future__ import annotations

import logging
import os
import queue
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


def x11_title(text: str) -> str:
    """`text` as Xlib can put it in WM_NAME (Latin-1): dashes and ellipses spelled out."""
    for wide, narrow in (("\u2014", "-"), ("\u2013", "-"), ("\u2026", "...")):
        text = text.replace(wide, narrow)
    return text.encode("latin-1", "replace").decode("latin-1")


def icon_class(pystray: ModuleType) -> type:
    """pystray's Icon, made to survive the desktop it finds.

    GTK backends: they reach the notification service over D-Bus while starting and give
    up on the whole icon if that fails (seen: a daemon that crashes on activation); a tray
    without notifications is still a tray. (Relies on pystray 0.19's `_initialize`.)
    xorg (pystray's fallback without PyGObject): Xlib writes the title as Latin-1 and
    raised on our em dash, and the icon's window never asked for clicks; here the title is
    made Latin-1 and a left click runs the menu's default item.
    """
    base = pystray.Icon
    name = backend_name(pystray)
    if name == "xorg":
        return _xorg_icon(base)
    if name not in ("appindicator", "gtk"):
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


XORG_CALL_SECONDS = 5.0


class _PatientQueue(queue.Queue):  # type: ignore[type-arg]
    """pystray's xorg backend runs a change (title, icon, stop) on its X thread and waits on
    this queue for the result; a change sent as that thread ends is never answered, and the
    waiting thread would hang the broker's exit. Give up after a while instead."""

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        try:
            return super().get(block, XORG_CALL_SECONDS if timeout is None else timeout)
        except queue.Empty:
            return True


def _xorg_icon(base: type) -> type:
    import Xlib.X  # noqa: PLC0415 - present whenever pystray's xorg backend is
    import Xlib.display  # noqa: PLC0415
    import Xlib.protocol.event  # noqa: PLC0415

    class Icon(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._queue = _PatientQueue()

        @property
        def title(self) -> str:
            return x11_title(self._title)

        @title.setter
        def title(self, value: str) -> None:
            base.title.fset(self, value)

        def stop(self) -> None:
            super().stop()
            # The X thread may sleep through the stop request (python-xlib can miss a wakeup
            # when another thread flushes); destroying the window from a connection of our
            # own sends it a DestroyNotify, which ends its loop. A window already gone is fine.
            try:
                other = Xlib.display.Display()
                other.set_error_handler(lambda *_: None)
                other.create_resource_object("window", self._window.id).destroy()
                other.flush()
                other.close()
            except Exception:
                log.debug("the xorg tray window was already gone", exc_info=True)

        def docked_or_asked(self) -> bool:
            """True once the icon's window sits in a tray; otherwise ask the tray (if there
            is one yet) to take it, and say False. pystray asks once, at start; a panel that
            starts after the broker (at login), or misses that request, would never show it.
            Uses an X connection of its own, like stop()."""
            try:
                other = Xlib.display.Display()
            except Exception:
                return False
            try:
                other.set_error_handler(lambda *_: None)
                root = other.screen().root
                window = other.create_resource_object("window", self._window.id)
                if window.query_tree().parent.id != root.id:
                    return True
                tray = other.get_selection_owner(other.intern_atom(f"_NET_SYSTEM_TRAY_S{other.get_default_screen()}"))
                if tray == Xlib.X.NONE:
                    return False
                opcode = other.intern_atom("_NET_SYSTEM_TRAY_OPCODE")
                tray.send_event(Xlib.protocol.event.ClientMessage(
                    window=tray, client_type=opcode, data=(32, (Xlib.X.CurrentTime, 0, self._window.id, 0, 0))),
                    event_mask=Xlib.X.NoEventMask)
                other.flush()
                log.info("asked the tray to show the icon again")
                return False
            except Exception:
                log.debug("could not check the xorg tray icon", exc_info=True)
                return False
            finally:
                other.close()

        def _create_window(self) -> Any:
            window = super()._create_window()
            window.change_attributes(event_mask=Xlib.X.ExposureMask | Xlib.X.StructureNotifyMask
                                     | Xlib.X.ButtonPressMask)
            return window

    return Icon
