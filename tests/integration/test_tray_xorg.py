"""The tray where pystray falls back to its `xorg` backend: an install without PyGObject.

The real `inference-broker run` under Xvfb and a tray host, from a Python that cannot import
`gi` (as after `pipx install`). That backend used to crash on start (Xlib wrote the em dash
in the title as Latin-1) and ignored clicks; now the icon docks, a left click opens the
dashboard (the status as text when the dashboard could not start), and the log says how to get
the full menu. The desktop's opener is the only stand-in: an `xdg-open` on PATH that keeps what
it was asked to open (a file's text, or a URL).
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fakes.threaded import serve_in_thread
from tests.fakes.token_endpoint import FakeTokenEndpoint
from tests.fakes.eventually import eventually
from tests.integration.test_tray_xvfb import (  # noqa: F401 - desktop is a fixture
    desktop,
    docked_icon,
    require_desktop_tools,
    tray_broker,
    tray_broker_process,
)
from tests.integration.xdesktop import XDesktop, start_tray, x_desktop

NO_GI = "raise ModuleNotFoundError(\"No module named 'gi'\", name='gi')\n"
OPENER = """#!/bin/sh
if [ -f "$1" ]; then cp "$1" "$XDG_OPEN_RECORD.tmp"; else printf '%s' "$1" > "$XDG_OPEN_RECORD.tmp"; fi
mv "$XDG_OPEN_RECORD.tmp" "$XDG_OPEN_RECORD"
"""


def python_without_gi(where: Path) -> Path:
    """A venv on this interpreter's base Python that sees this test run's packages but no `gi`.

    Made without pip in a second: its site dir lists this run's package dirs, behind a `gi`
    that is not installed (Debian puts PyGObject in the same system dir as PyYAML).
    """
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=60)
    site = next(where.glob("lib/python3*/site-packages"))
    blocker = site / "no-gi"
    (blocker / "gi").mkdir(parents=True)
    (blocker / "gi" / "__init__.py").write_text(NO_GI)
    dirs = [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and os.path.isdir(p)]
    (site / "test-run-packages.pth").write_text("\n".join([str(blocker), *dirs]) + "\n")
    python = where / "bin" / "python"
    probe = subprocess.run([str(python), "-c", "import yaml, aiohttp, Xlib, PIL; import gi"],
                           capture_output=True, text=True, env={}, timeout=60)
    assert "No module named 'gi'" in probe.stderr, probe.stderr
    return python


@pytest.fixture
def opener(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "xdg-open"
    script.write_text(OPENER)
    script.chmod(0o755)
    yield bin_dir, tmp_path / "opened.txt"


def click_xorg_icon(desktop: XDesktop, tmp_path: Path, opener: tuple[Path, Path], check: Callable[[str], None],  # noqa: F811
                    **settings: object) -> None:
    """Run the broker on the xorg backend, left-click its icon, and `check` what it opened
    while the broker still runs."""
    python = python_without_gi(tmp_path / "venv")
    bin_dir, opened = opener
    endpoint = FakeTokenEndpoint()
    with serve_in_thread(endpoint.make_app) as token_url:
        broker = tray_broker_process(desktop, tmp_path / "broker", endpoint, token_url, executable=str(python))
        broker.settings.update(settings)
        broker.env_extra.update(PATH=f"{bin_dir}:{os.environ['PATH']}", XDG_OPEN_RECORD=str(opened))
        broker.cli("sandbox", "add", "alpha", check=True)
        with tray_broker(desktop, broker) as icon:
            proc = broker.proc
            eventually(lambda: proc.poll() is not None or "tray icon shown" in broker.output_text(), 5, "the log line")
            text = broker.output_text()
            assert proc.poll() is None, text
            assert "tray icon shown (xorg backend)" in text
            assert "has no menu: a left click on the icon opens the dashboard" in text
            assert "For the full menu" in text and "`pipx install --system-site-packages .`" in text
            assert "no system tray" not in text and "Failed to dock" not in text

            desktop.click(*icon.centre)
            eventually(opened.exists, 10, "what the click opened")
            assert proc.poll() is None
            check(opened.read_text())
    # tray_broker stopped it with SIGTERM within 15 s: the X thread ended, so the process did.
    assert "Traceback" not in broker.output_text()


def test_xorg_tray_starts_and_a_click_opens_the_dashboard(desktop: XDesktop, tmp_path: Path,  # noqa: F811
                                                          opener: tuple[Path, Path]) -> None:
    def dashboard_opened(page: str) -> None:
        # xdg-open was given a private page (the one-time link on its command line would be
        # anyone's), which forwards the browser to the link.
        assert page.startswith("<!doctype html>"), page
        url = re.search(r'content="0;url=(http://127\.0\.0\.1:\d+/login\?t=[^"]+)"', page).group(1)
        # The browser got a working one-time login link: it leads to the dashboard's page.
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        with browser.open(url, timeout=10) as page:
            html = page.read().decode()
        assert page.status == 200 and "alpha" in html and "sk-ant-" not in html

    click_xorg_icon(desktop, tmp_path, opener, dashboard_opened)


def test_xorg_click_opens_the_status_when_the_dashboard_is_off(desktop: XDesktop, tmp_path: Path,  # noqa: F811
                                                               opener: tuple[Path, Path]) -> None:
    with socket.socket() as taken:  # the dashboard's port is held by another program
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        click_xorg_icon(desktop, tmp_path, opener, status_opened, dashboard_port=taken.getsockname()[1])


def status_opened(status: str) -> None:
    assert status.startswith("Claude Max\nToken valid for 5 h") and "alpha — never used" in status
    assert "full menu" in status


NO_TRAY = "no system tray on this desktop"


def test_xorg_without_a_tray_says_so_once_runs_on_and_shows_the_icon_when_a_panel_starts(
        tmp_path: Path, opener: tuple[Path, Path]) -> None:
    """At login the broker may start before the desktop's panel, or on a desktop with no tray
    at all (a pipx install has no PyGObject, so pystray falls back to xorg): it says so once,
    with no traceback and no false "shown", serves headless, and docks once a tray starts."""
    require_desktop_tools()
    python = python_without_gi(tmp_path / "venv")
    endpoint = FakeTokenEndpoint()
    with x_desktop(tmp_path / "desktop", tray=False) as bare, serve_in_thread(endpoint.make_app) as token_url:
        broker = tray_broker_process(bare, tmp_path / "broker", endpoint, token_url, executable=str(python))
        trayer = None
        try:
            broker.start("run")
            proc = broker.proc
            eventually(lambda: proc.poll() is not None or NO_TRAY in broker.output_text(), 20, "the no-tray line")
            assert proc.poll() is None, broker.output_text()
            assert broker.status()["token"]["state"] == "valid"  # the broker serves without its icon
            assert broker.cli("dashboard", "--print", check=True).stdout.startswith("http://127.0.0.1:")
            before = broker.output_text()
            assert "tray icon shown" not in before and "Traceback" not in before and "Failed to dock" not in before
            assert "`inference-broker dashboard` opens the dashboard" in before
            assert "AppIndicator extension" in before and "`pipx install --system-site-packages .`" in before
            assert "has no menu" not in before  # no words about clicking an icon that is not there
            trayer = start_tray(bare)
            eventually(lambda: docked_icon(bare), 20, "the icon in the panel that started later")
            eventually(lambda: "tray icon shown (xorg backend)" in broker.output_text(), 10, "the log line")
            after = broker.output_text()
            assert after.count(NO_TRAY) == 1 and "Traceback" not in after and "Failed to dock" not in after
        finally:
            broker.stop()
            if trayer is not None:
                trayer.terminate()
                trayer.wait(timeout=5)
            print(broker.output_text()[-3000:])
