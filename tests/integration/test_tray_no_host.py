"""A desktop with no system tray (GNOME without the AppIndicator extension, a bare window
manager), with the AppIndicator backend: Xvfb and a session bus with no tray host.

The real `inference-broker run` says "no system tray on this desktop" once, with no traceback
and no false "tray icon shown", and serves headless with the dashboard a command away; when a
tray starts later the icon appears. The StatusNotifier probe is checked against a name really
owned on the bus. (The xorg backend's case is in test_tray_xorg.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.fakes.eventually import eventually
from tests.fakes.processes import stop_process
from tests.fakes.threaded import serve_in_thread
from tests.fakes.token_endpoint import FakeTokenEndpoint
from tests.integration.test_tray_xvfb import ROOT, docked_icon, require_desktop_tools, tray_broker_process
from tests.integration.xdesktop import XDesktop, start_tray, x_desktop

NO_TRAY = "no system tray on this desktop"
OWN_WATCHER = """
from gi.repository import Gio, GLib
loop = GLib.MainLoop()
Gio.bus_own_name(Gio.BusType.SESSION, "org.kde.StatusNotifierWatcher", Gio.BusNameOwnerFlags.NONE,
                 None, lambda *a: print("owned", flush=True), lambda *a: loop.quit())
loop.run()
"""


def test_appindicator_without_a_tray_says_so_once_and_shows_the_icon_when_a_tray_starts(tmp_path: Path) -> None:
    require_desktop_tools()
    endpoint = FakeTokenEndpoint()
    with x_desktop(tmp_path / "desktop", tray=False) as bare, serve_in_thread(endpoint.make_app) as token_url:
        broker = tray_broker_process(bare, tmp_path / "broker", endpoint, token_url)
        trayer = None
        try:
            broker.start("run")
            proc = broker.proc
            eventually(lambda: proc.poll() is not None or NO_TRAY in broker.output_text(), 20, "the no-tray line")
            assert proc.poll() is None, broker.output_text()
            assert broker.status()["token"]["state"] == "valid"  # serving, headless
            assert broker.cli("dashboard", "--print", check=True).stdout.startswith("http://127.0.0.1:")
            said = broker.output_text()
            assert "tray icon shown" not in said and "Traceback" not in said, said
            assert "AppIndicator extension" in said and "`inference-broker dashboard` opens the dashboard" in said
            assert "pipx" not in said  # this Python has PyGObject: the menu is there once a tray is
            trayer = start_tray(bare)
            eventually(lambda: "tray icon shown (appindicator backend)" in broker.output_text(), 20, "the log line")
            eventually(lambda: docked_icon(bare), 20, "the icon in the tray that started later")
            after = broker.output_text()
            assert after.count(NO_TRAY) == 1 and "Traceback" not in after
        finally:
            broker.stop()
            if trayer is not None:
                stop_process(trayer)
            print(broker.output_text()[-3000:])


def probe(desktop: XDesktop, what: str) -> str:
    code = f"from broker.tray import tray_host; print(tray_host.{what}())"
    return subprocess.run([sys.executable, "-c", code], env={**desktop.env, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                          capture_output=True, text=True, timeout=30, check=True).stdout.strip()


def test_the_probes_see_a_status_notifier_watcher_and_an_xembed_tray(tmp_path: Path) -> None:
    require_desktop_tools()
    with x_desktop(tmp_path / "desktop", tray=False) as bare:
        assert probe(bare, "status_notifier_host") == "False" and probe(bare, "xembed_tray") == "False"
        watcher = subprocess.Popen([sys.executable, "-c", OWN_WATCHER], env=bare.env, stdout=subprocess.PIPE,
                                   text=True)
        try:
            assert watcher.stdout is not None and watcher.stdout.readline().strip() == "owned"
            assert probe(bare, "status_notifier_host") == "True"
        finally:
            stop_process(watcher)
        trayer = start_tray(bare)
        try:
            assert probe(bare, "xembed_tray") == "True"
        finally:
            stop_process(trayer)
