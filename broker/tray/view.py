"""The tray icon: a thin pystray view over the service.

Threads: pystray owns the main thread (macOS requires it); the service lives on an asyncio
loop in a worker thread. Menu callbacks only schedule work on that loop; the service calls
back on its loop thread with each new snapshot, and the tray redraws icon, tooltip and menu
from the pure model in `broker.tray.menu`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from broker.status.actions import Action
from broker.usage.limit_alerts import alerts
from broker.common.atomic_files import write_private
from broker.tray.menu import MenuEntry, build_menu, icon_state, status_text, tooltip
from broker.tray.notifications import baseline, notification
from broker.status.snapshot import Snapshot
from broker.tray.backend import MENU_BACKENDS, _import_pystray, backend_name, icon_class
from broker.tray.desktop import copy_to_clipboard, open_link_privately, open_path
from broker.tray.tray_host import full_menu_words, has_tray_host, no_tray_words, system_gi_installed

log = logging.getLogger(__name__)

# Without a menu (xorg) a left click runs the one default item: the dashboard shows everything
# the menu would; the status text stands in when the dashboard could not start.
CLICK_FOR_DASHBOARD = MenuEntry("Open dashboard", Action.OPEN_DASHBOARD, default=True)
CLICK_FOR_STATUS = MenuEntry("Show status", Action.SHOW_STATUS, default=True)

APP_NAME = "inference-broker"
RERENDER_SECONDS = 30.0  # "valid for 5 h 12 min" stays true to the minute between state changes
POLL_SECONDS = 0.5  # how soon the tray notices that the service's loop has stopped
DOCK_CHECKS = 120  # xorg: polls (a minute) to check that a tray took the icon
HOST_CHECK_POLLS = 4  # with no tray yet: look for one every 4 polls (2 s)
FACE_LOCAL = {Action.COPY_DOCKER_FLAGS, Action.NEW_SANDBOX, Action.OPEN_AUDIT_LOG, Action.OPEN_CONFIG,
              Action.SHOW_STATUS, Action.OPEN_DASHBOARD}
STATUS_FILE = "tray-status.txt"  # in the state dir: what a menu-less tray opens on a click


class Tray:
    """One tray icon bound to one service. Build it on the main thread, then `run()`."""

    def __init__(self, service: Any, loop: asyncio.AbstractEventLoop, shutdown: Callable[[], None], pystray: ModuleType,
                 host: bool = True) -> None:
        self.service = service
        self.loop = loop
        self.shutdown = shutdown
        self.pystray = pystray
        self._lock = threading.Lock()
        self._entries: tuple[MenuEntry, ...] | None = None
        self._state: str | None = None
        self._settled: Snapshot | None = None
        self._limits: Any = None  # the plan limits last rendered, for crossing alerts
        self._stopped = threading.Event()
        self._fresh = threading.Event()  # a snapshot waits in _latest for the tray's thread
        self._latest: Snapshot | None = None
        self._shown = False
        self._host = host  # a tray to show the icon in (else it waits for one, quietly)
        self.has_menu = backend_name(pystray) in MENU_BACKENDS
        snap = self._call_on_loop(service.snapshot)
        self.icon = icon_class(pystray)(APP_NAME, title=tooltip(snap))
        self.render(snap)

    # Service -> tray (called on the loop thread) ---------------------------------------

    def render(self, snap: Snapshot) -> None:
        """Bring icon, tooltip and menu up to date with `snap`; notify if it's news."""
        from broker.tray.icons import icon_image  # noqa: PLC0415 - pillow only when a tray runs

        with self._lock:
            state = icon_state(snap)
            if state != self._state:
                self.icon.icon = icon_image(state)
                self._state = state
            self.icon.title = tooltip(snap)
            entries = build_menu(snap) if self.has_menu else (self._click_entry(),)
            if entries != self._entries:
                self._entries = entries
                self.icon.menu = self._menu(entries)  # the setter calls update_menu()
            news = notification(self._settled, snap)
            said = alerts(self._limits, snap.limits) if self._settled is not None else []
            self._limits = snap.limits or self._limits
            self._settled = baseline(self._settled, snap)
        for title, message in ([news] if news else []) + said:
            if not self.icon.HAS_NOTIFICATION:
                break
            try:
                self.icon.notify(message, title)
            except Exception:  # no notification daemon: the icon already says it
                log.debug("notification not shown", exc_info=True)

    def _click_entry(self) -> MenuEntry:
        return CLICK_FOR_DASHBOARD if self.service.dashboard is not None else CLICK_FOR_STATUS

    # Tray -> service (called on the tray's thread) -------------------------------------

    def _menu(self, entries: tuple[MenuEntry, ...]) -> Any:
        pystray = self.pystray
        items = []
        for entry in entries:
            if entry.separator:
                items.append(pystray.Menu.SEPARATOR)
            elif entry.submenu:
                items.append(pystray.MenuItem(entry.label, self._menu(entry.submenu), enabled=entry.enabled))
            else:
                checked = None if entry.checked is None else (lambda _item, c=entry.checked: c)
                items.append(
                    pystray.MenuItem(
                        entry.label,
                        self._callback(entry) if entry.action else None,
                        checked=checked,
                        enabled=entry.enabled and entry.action is not None,
                        default=entry.default,
                    )
                )
        return pystray.Menu(*items)

    def _callback(self, entry: MenuEntry) -> Callable[[], None]:
        action, arg = entry.action, entry.arg

        def clicked() -> None:
            log.debug("menu: %s %s", action.value, arg or "")
            if action == Action.QUIT:
                self.stop()
            elif action in FACE_LOCAL:
                self._submit(self._face_local(action, arg))
            else:
                self._submit(self.service.perform(action, arg))

        return clicked

    def _submit(self, coro: Any) -> None:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        future.add_done_callback(self._report)

    def _report(self, future: Any) -> None:
        exc = future.exception()
        if exc is None:
            return
        title = getattr(exc, "title", "inference-broker")
        log.warning("%s: %s", title, exc)
        if self.icon.HAS_NOTIFICATION:
            try:
                self.icon.notify(str(exc), title)
            except Exception:
                log.debug("notification not shown", exc_info=True)

    async def _face_local(self, action: Action, arg: str | None = None) -> None:
        """Desktop chores: read what's needed on the loop, do the blocking part in a thread."""
        if action in (Action.COPY_DOCKER_FLAGS, Action.NEW_SANDBOX):
            name = arg if action == Action.COPY_DOCKER_FLAGS else await self.service.new_sandbox()
            flags = await asyncio.to_thread(self.service.docker_run_flags, name)  # runs `ip`
            tool = await asyncio.to_thread(copy_to_clipboard, flags)
            if tool:
                log.info("docker run flags for sandbox %s copied to the clipboard (%s)", name, tool)
            else:
                log.info("no clipboard tool; docker run flags for sandbox %s: %s", name, flags)
            if self.icon.HAS_NOTIFICATION:
                made = f"Sandbox {name} created. " if action == Action.NEW_SANDBOX else ""
                self.icon.notify(f"{made}Its flags are on the clipboard: docker run --rm -it FLAGS IMAGE claude"
                                 if tool else flags, f"docker run flags for {name}")
            return
        if action == Action.OPEN_DASHBOARD:
            if self.service.dashboard is None:
                raise RuntimeError(self.service.dashboard_error)
            await asyncio.to_thread(open_link_privately, self.service.config.state_dir,
                                    self.service.dashboard.login_url())
            return
        paths = self.service.paths
        if action == Action.SHOW_STATUS:
            status = Path(paths.state_dir) / STATUS_FILE
            await asyncio.to_thread(write_private, status, status_text(self.service.snapshot()).encode())
            await asyncio.to_thread(open_path, status)
            return
        path = Path(paths.audit_log if action == Action.OPEN_AUDIT_LOG else paths.config_file)
        await asyncio.to_thread(open_path, path)

    # Lifecycle -------------------------------------------------------------------------

    def _call_on_loop(self, fn: Callable[[], Any]) -> Any:
        async def call() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout=30)

    def _on_snapshot(self, snap: Snapshot) -> None:
        """On the loop thread: hand the snapshot to the tray's thread, never wait for it
        (pystray's xorg backend blocks a drawing thread until its X thread has drawn)."""
        self._latest = snap
        self._fresh.set()

    def _draw_latest(self) -> None:
        self._fresh.clear()
        if self._latest is None or self._stopped.is_set():
            return
        try:
            self.render(self._latest)
        except Exception:
            log.exception("tray could not show the new state")

    def _keep_sigint(self, handler: Any) -> None:
        """pystray's GTK backends reset SIGINT to the default (die at once) when their loop
        starts; put the app's handler back, from the main thread, so Ctrl-C shuts down cleanly."""
        if backend_name(self.pystray) not in ("appindicator", "gtk") or not callable(handler):
            return
        from gi.repository import GLib  # noqa: PLC0415 - present whenever those backends are

        def restore() -> bool:
            signal.signal(signal.SIGINT, handler)
            return False

        GLib.idle_add(restore)

    def _watch(self, icon: Any) -> None:
        """pystray's setup thread: show the icon, draw each new snapshot, keep the words
        fresh, and notice when the service's loop has gone (the broker was stopped some
        other way)."""
        self._keep_sigint(self._sigint)
        backend = backend_name(self.pystray)
        if self._host:
            self._show(icon)
        elif backend != "xorg":  # GTK's backends take a tray that starts later on their own, quietly
            icon.visible = True
        waited = 0.0
        docked = getattr(icon, "docked_or_asked", lambda: True)  # xorg: ask the tray again if need be
        checks_left = DOCK_CHECKS
        polls = 0
        while not self._stopped.is_set():
            if self._fresh.wait(POLL_SECONDS):
                self._draw_latest()
                continue
            polls += 1
            if not self._host and polls % HOST_CHECK_POLLS == 0 and has_tray_host(backend):
                self._host = True  # a panel started after the broker (at login, say)
                self._show(icon)
            if checks_left and self._host:
                checks_left = 0 if docked() else checks_left - 1
            if not self.loop.is_running():
                log.info("service loop ended; closing the tray")
                self.stop()
                return
            waited += POLL_SECONDS
            if waited >= RERENDER_SECONDS:
                waited = 0.0
                try:
                    self.loop.call_soon_threadsafe(lambda: self._on_snapshot(self.service.snapshot()))
                except RuntimeError:  # the loop closed between the check and the call
                    pass

    def _show(self, icon: Any) -> None:
        """Put the icon in the tray (pystray's xorg backend logs a traceback each time it tries
        with no tray there, hence only now)."""
        icon.visible = True
        self._shown = True
        log.info("tray icon shown (%s backend)", backend_name(self.pystray))

    def stop(self) -> None:
        self._stopped.set()
        self.icon.stop()

    def run(self) -> None:
        """Block on the main thread until Quit (or the service ends), then shut down."""
        unsubscribe = self._call_on_loop(lambda: self.service.subscribe(self._on_snapshot))
        self._sigint = signal.getsignal(signal.SIGINT)
        try:
            self.icon.run(setup=self._watch)
        except Exception as exc:
            # The gtk backends clear notifications on exit over D-Bus, which fails on a
            # desktop without a notification daemon: after a Quit that is harmless.
            if self._stopped.is_set() and self._shown:
                log.debug("tray loop ended with an error", exc_info=True)
            else:
                log.error("the tray stopped: %s: %s", type(exc).__name__, exc)
        finally:
            self._stopped.set()
            if self.loop.is_running():
                self.loop.call_soon_threadsafe(unsubscribe)
            self.shutdown()


def run_tray(service: Any, loop: asyncio.AbstractEventLoop, shutdown: Callable[[], None]) -> None:
    """Show the tray for `service` (whose loop runs in another thread) until the user quits."""
    pystray = _import_pystray()
    backend = backend_name(pystray)
    host = has_tray_host(backend)
    if not host:
        log.warning("%s", no_tray_words(backend, system_gi_installed()))
    elif backend not in MENU_BACKENDS:
        log.warning("tray backend %s has no menu: a left click on the icon opens the dashboard (the status "
                    "when the dashboard is off). %s", backend, full_menu_words(system_gi_installed()))
    Tray(service, loop, shutdown, pystray, host).run()
