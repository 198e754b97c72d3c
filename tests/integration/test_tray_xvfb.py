"""The real tray under a virtual X display, driven with real clicks.

Xvfb, a private session bus and a tray host (trayer) stand in for a desktop. The first test
runs the tray glue (`broker.tray.run_tray`) over a small in-test service on a real asyncio
loop thread, exactly as `broker.runtime.runner` runs it, so every menu click can be checked against
the action it sends. The second runs the real `inference-broker run` and proves the clicks
change the broker's state through its own CLI.

Run as a script (`python test_tray_xvfb.py stand-in`), this module is that stand-in
service's process: it prints each action it receives and takes state changes on stdin.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))

from broker.status.actions import Action  # noqa: E402
from broker.tray.menu import MenuEntry, build_menu  # noqa: E402
from broker.status.snapshot import VALID, ProxyStatus, SandboxInfo, Snapshot, TokenStatus  # noqa: E402

ARTIFACTS = ROOT / "test-artifacts"
APP_CLASS = "inference-broker"  # the icon window's WM_CLASS: pystray's icon name


def selectable_from_bottom(entries: tuple[MenuEntry, ...], action: Action | None = None, label: str | None = None) -> int:
    """How many Up presses from a fresh menu select the entry: keyboard navigation skips
    separators and disabled lines, and the first Up lands on the last item."""
    selectable = [e for e in entries if not e.separator and e.enabled]
    for n, entry in enumerate(reversed(selectable), start=1):
        if (action is not None and entry.action == action) or (label is not None and entry.label.startswith(label)):
            return n
    raise LookupError(action or label)


def shape(*, sandboxes: int = 1, paused: bool = False, autostart: bool = False) -> tuple[MenuEntry, ...]:
    """A menu with the same enabled items as the one on screen (the words don't matter)."""
    return build_menu(
        Snapshot(
            now=0,
            token=TokenStatus(state=VALID),
            proxy=ProxyStatus(paused=paused),
            sandboxes=tuple(SandboxInfo(name=f"s{i}", created=0) for i in range(sandboxes)),
            autostart=autostart,
        )
    )


# -- the stand-in service (runs in its own process, under the test's display) ------------


@dataclasses.dataclass
class StandInPaths:
    config_file: Path
    audit_log: Path
    state_dir: Path


class StandInService:
    """The Service interface `run_tray` uses, with state that follows the actions it gets."""

    def __init__(self, loop: asyncio.AbstractEventLoop, state_dir: Path) -> None:
        self.loop = loop
        now = time.time()
        self.paths = StandInPaths(state_dir / "config.yaml", state_dir / "audit.log", state_dir)
        self._subscribers: list[Callable[[Snapshot], None]] = []
        self._snap = Snapshot(
            now=now,
            token=TokenStatus(state=VALID, reason="", expires_at=now + 5 * 3600 + 12 * 60 + 30,
                              last_refresh=now - 600, subscription_type="max"),
            proxy=ProxyStatus(listen=("127.0.0.1:41235", "172.17.0.1:41236"), requests_today=7),
            sandboxes=(SandboxInfo("alpha", now - 86400, now - 300, 5), SandboxInfo("beta", now - 3600, None, 0)),
        )

    def snapshot(self) -> Snapshot:
        return dataclasses.replace(self._snap, now=time.time())

    def subscribe(self, callback: Callable[[Snapshot], None]) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def docker_run_flags(self, name: str) -> str:
        return f"--add-host inference.local:host-gateway -e ANTHROPIC_BASE_URL=http://inference.local:41236 --mount src={name}"

    async def new_sandbox(self) -> str:
        return "gamma"

    def change(self, **kw) -> None:  # on the loop thread
        if "token_state" in kw:
            kw["token"] = dataclasses.replace(self._snap.token, state=kw.pop("token_state"), reason="stand-in says so")
        self._snap = dataclasses.replace(self._snap, **kw)
        for callback in list(self._subscribers):
            callback(self.snapshot())

    async def perform(self, action: Action, arg: str | None = None) -> None:
        print(f"perform {action.value} {arg or '-'}", flush=True)
        if action == Action.PAUSE:
            self.change(proxy=dataclasses.replace(self._snap.proxy, paused=True))
        elif action == Action.RESUME:
            self.change(proxy=dataclasses.replace(self._snap.proxy, paused=False))
        elif action == Action.REVOKE_SANDBOX:
            self.change(sandboxes=tuple(s for s in self._snap.sandboxes if s.name != arg))
        elif action == Action.REVOKE_ALL:
            self.change(sandboxes=())
        elif action == Action.SET_AUTOSTART:
            self.change(autostart=arg == "on")
        elif action == Action.REFRESH:
            self.change(token=dataclasses.replace(self._snap.token, last_refresh=time.time()))


def stand_in_main(state_dir: Path) -> int:
    """Run the tray over a stand-in service the way broker.runtime.runner does: loop in a worker thread,
    tray on the main thread. stdin lines `token STATE` / `paused 0|1` change the state."""
    import logging

    from broker.tray import display_available, run_tray

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    ok, why = display_available()
    print(f"display {ok} {why}", flush=True)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    service = StandInService(loop, state_dir)

    def read_stdin() -> None:
        for line in sys.stdin:
            what, _, value = line.strip().partition(" ")
            if what == "token":
                loop.call_soon_threadsafe(lambda v=value: service.change(token_state=v))
            elif what == "paused":
                loop.call_soon_threadsafe(
                    lambda v=value: service.change(proxy=dataclasses.replace(service._snap.proxy, paused=v == "1")))

    threading.Thread(target=read_stdin, daemon=True).start()

    def shutdown() -> None:
        print("shutdown", flush=True)
        loop.call_soon_threadsafe(loop.stop)

    print("ready", flush=True)
    run_tray(service, loop, shutdown)
    print("tray returned", flush=True)
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["stand-in"]:
    raise SystemExit(stand_in_main(Path(sys.argv[2])))


# -- tests --------------------------------------------------------------------------------

from tests.fakes.broker_process import BrokerProcess  # noqa: E402
from tests.fakes.eventually import eventually  # noqa: E402
from tests.fakes.login import write_login  # noqa: E402
from tests.integration.xdesktop import IMPORT, TOOLS, MenuDriver, Window, XDesktop, x_desktop  # noqa: E402
from tests.support import require, require_tools  # noqa: E402


def _gtk_tray_importable() -> bool:
    probe = "import gi; gi.require_version('Gtk', '3.0'); gi.require_version('AyatanaAppIndicator3', '0.1')"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


def require_desktop_tools() -> None:
    require_tools(*TOOLS)
    require(os.path.exists(IMPORT), f"imagemagick's {IMPORT} is missing")
    require(_gtk_tray_importable(), "python3-gi with Gtk 3 and AyatanaAppIndicator3 (venv needs system site packages)")


@pytest.fixture
def desktop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XDesktop]:
    require_desktop_tools()
    with x_desktop(tmp_path_factory.mktemp("desktop")) as d:
        yield d


class Lines:
    """A child's stdout, line by line, readable with a timeout."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.q: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(proc,), daemon=True).start()

    def _pump(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.q.put(line.rstrip("\n"))

    def expect(self, text: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {text!r} within {timeout} s; saw {self.seen}") from None
            self.seen.append(line)
            if text in line:
                return line


def docked_icon(d: XDesktop) -> Window | None:
    """The broker's icon window, if it sits inside trayer's panel."""
    tree = d.tree()
    for line in tree.splitlines():
        if f'"{APP_CLASS}"' in line.split(":", 1)[-1][:80] and "(" in line:
            wid = line.split()[0]
            for w in d.windows():
                if w.id == wid:
                    panel = next(p for p in d.windows() if p.name == "panel")
                    inside = panel.x <= w.x < panel.x + panel.w and panel.y <= w.y < panel.y + panel.h
                    return w if inside and w.depth > 1 else None
    return None


def icon_colour(d: XDesktop, icon: Window) -> tuple[int, int, int]:
    """The badge's colour, sampled beside the glyph."""
    return d.grab().getpixel((icon.x + icon.w // 2 - icon.h // 3 + 1, icon.y + icon.h // 2))


def dominant(rgb: tuple[int, int, int]) -> str:
    r, g, b = rgb
    if max(rgb) - min(rgb) < 40:
        return "grey"
    if r > 180 and g < 100:
        return "red"
    if g > r and g > b:
        return "green"
    if b > r and b > g:
        return "blue"
    if r > 180 and g > 120:
        return "amber"
    return "grey"


def start_stand_in(desktop: XDesktop, state_dir: Path, **popen) -> tuple[subprocess.Popen, Lines]:
    env = {**desktop.env, "PYTHONPATH": str(ROOT)}
    env.pop("PYSTRAY_BACKEND", None)
    proc = subprocess.Popen(
        [sys.executable, __file__, "stand-in", str(state_dir)],
        env=env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, **popen,
    )
    return proc, Lines(proc)


def test_tray_glue_over_a_stand_in_service(desktop: XDesktop, tmp_path: Path) -> None:
    proc, out = start_stand_in(desktop, tmp_path)
    try:
        assert "display True tray backend: appindicator" in out.expect("display")
        out.expect("ready")
        icon = eventually(lambda: docked_icon(desktop), 10, "the icon to dock in the tray")
        eventually(lambda: dominant(icon_colour(desktop, icon)) == "green", 5, "the healthy (green) icon")
        menus = MenuDriver(desktop, icon)

        menu = menus.open()
        shot = desktop.screenshot(ARTIFACTS / "tray-stand-in-menu.png")
        print(f"\nscreenshot: {shot}")
        entries = shape(sandboxes=2)

        # Pause access -> the service gets PAUSE, and the icon turns grey within a second.
        band = menus.select(menu, "Up", selectable_from_bottom(entries, Action.PAUSE))
        menus.click_selected(menu, band)
        assert out.expect("perform") == "perform pause -"
        eventually(lambda: dominant(icon_colour(desktop, icon)) == "grey", 5, "the paused (grey) icon")

        # The rebuilt menu now offers Resume where Pause was.
        menu = menus.open()
        band = menus.select(menu, "Up", selectable_from_bottom(shape(sandboxes=2, paused=True), Action.RESUME))
        menus.click_selected(menu, band)
        assert out.expect("perform") == "perform resume -"

        # Sandboxes > alpha > Revoke alpha.
        menu = menus.open()
        band = menus.select(menu, "Up", selectable_from_bottom(entries, label="Sandboxes"))
        sandboxes = menus.open_submenu(menu, band)
        band = menus.select(sandboxes, "Right", 1)
        alpha = menus.open_submenu(sandboxes, band)
        band = menus.select(alpha, "Right", 1)
        desktop.screenshot(ARTIFACTS / "tray-stand-in-revoke.png")
        menus.click_selected(alpha, band)
        assert out.expect("perform") == "perform revoke_sandbox alpha"

        # Refresh token now, and the Launch at login checkbox.
        entries = shape(sandboxes=1)
        for action, expected in [(Action.REFRESH, "perform refresh -"), (Action.SET_AUTOSTART, "perform set_autostart on")]:
            menu = menus.open()
            band = menus.select(menu, "Up", selectable_from_bottom(entries, action))
            menus.click_selected(menu, band)
            assert out.expect("perform") == expected
        entries = shape(sandboxes=1, autostart=True)
        menu = menus.open()
        band = menus.select(menu, "Up", selectable_from_bottom(entries, Action.SET_AUTOSTART))
        menus.click_selected(menu, band)
        assert out.expect("perform") == "perform set_autostart off"

        # State pushed by the service shows within a second: the login is lost -> red.
        proc.stdin.write("token signed_out\n")
        proc.stdin.flush()
        eventually(lambda: dominant(icon_colour(desktop, icon)) == "red", 5, "the signed-out (red) icon")
        menu = menus.open()
        desktop.screenshot(ARTIFACTS / "tray-stand-in-signed-out.png")
        menus.close()

        # Quit ends the tray and calls shutdown.
        menu = menus.open()
        band = menus.select(menu, "Up", 1)
        menus.click_selected(menu, band)
        out.expect("shutdown")
        out.expect("tray returned")
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- no display: the broker must fall back to headless, with one reason -------------------


@pytest.mark.parametrize(
    ("env", "platform", "ok"),
    [({}, "linux", False), ({"DISPLAY": ""}, "linux", False), ({"WAYLAND_DISPLAY": ""}, "freebsd13", False)],
)
def test_no_display_means_no_tray(env: dict[str, str], platform: str, ok: bool) -> None:
    from broker.tray import display_available

    assert display_available(env, platform) == (ok, "no DISPLAY or WAYLAND_DISPLAY, so no tray")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "False no DISPLAY or WAYLAND_DISPLAY, so no tray"),
        ({"DISPLAY": ":9", "PYSTRAY_BACKEND": "dummy"}, "False the dummy tray backend shows no icon"),
        ({"DISPLAY": ":9", "PYSTRAY_BACKEND": "nosuch"}, "False no tray backend could start (ImportError: unknown backend: 'nosuch')"),
    ],
)
def test_importing_the_tray_needs_no_display(env: dict[str, str], expected: str) -> None:
    clean = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "PYSTRAY_BACKEND")}
    code = "from broker.tray import display_available; ok, why = display_available(); print(ok, why)"
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected


# -- the real broker ----------------------------------------------------------------------


def sandbox_names(broker: BrokerProcess) -> list[str]:
    return [s["name"] for s in json.loads(broker.cli("sandbox", "list", "--json", check=True).stdout)]


def tray_broker_process(desktop: XDesktop, root: Path, endpoint: Any, token_url: str, **kw: Any) -> BrokerProcess:
    """The real broker's files for `inference-broker run` on `desktop`: a config, a private HOME
    and a Claude login good for 6 hours, refreshed at `token_url`."""
    desktop_env = {k: desktop.env[k] for k in ("DISPLAY", "DBUS_SESSION_BUS_ADDRESS", "NO_AT_BRIDGE", "GDK_BACKEND")}
    broker = BrokerProcess(root, {
        "provider": "anthropic-oauth", "upstream_url": "http://127.0.0.1:9",
        "token_url": f"{token_url}/v1/oauth/token", "refresh": {"mode": "own"},
    }, env_extra=desktop_env, config_flag=True, **kw)
    write_login(broker.creds, *endpoint.issue(), time.time() + 6 * 3600)
    return broker


@contextmanager
def tray_broker(desktop: XDesktop, broker: BrokerProcess) -> Iterator[Window]:
    """`inference-broker run` with its tray: its docked icon; stopped with SIGTERM after, and
    its output checked for secrets."""
    try:
        broker.start("run")
        icon = eventually(lambda: broker.proc.poll() is not None or docked_icon(desktop), 20,
                          "the broker's icon in the tray")
        assert broker.proc.poll() is None, broker.output_text()
        yield icon
    finally:
        broker.stop()
        log = broker.output_text()
        print(log[-3000:])
        assert "sk-ant-" not in log and "sk-ib-" not in log


@dataclasses.dataclass
class Running:
    broker: BrokerProcess
    endpoint: object  # FakeTokenEndpoint
    icon: Window

    @property
    def proc(self) -> subprocess.Popen:
        assert self.broker.proc is not None
        return self.broker.proc


@pytest.fixture
def real_broker(desktop: XDesktop, tmp_path: Path) -> Iterator[Running]:
    """`inference-broker run` with the tray, against a fake token endpoint and a private HOME,
    with two sandboxes; yields once its icon is docked."""
    from tests.fakes.threaded import serve_in_thread
    from tests.fakes.token_endpoint import FakeTokenEndpoint

    endpoint = FakeTokenEndpoint()
    with serve_in_thread(endpoint.make_app) as token_url:
        broker = tray_broker_process(desktop, tmp_path / "broker", endpoint, token_url)
        broker.cli("sandbox", "add", "alpha", check=True)
        broker.cli("sandbox", "add", "beta", check=True)
        with tray_broker(desktop, broker) as icon:
            yield Running(broker, endpoint, icon)


def test_real_broker_tray_clicks_change_its_state(desktop: XDesktop, real_broker: Running) -> None:
    require_tools("xclip")
    broker, endpoint, home = real_broker.broker, real_broker.endpoint, real_broker.broker.home
    icon = real_broker.icon
    assert broker.status()["proxy"]["paused"] is False
    menus = MenuDriver(desktop, icon)

    menu = menus.open()
    shot = desktop.screenshot(ARTIFACTS / "tray-real-broker-menu.png")
    print(f"\nscreenshot: {shot}")

    # Pause access -> status says paused, and the icon turns grey.
    band = menus.select(menu, "Up", selectable_from_bottom(shape(sandboxes=2), Action.PAUSE))
    menus.click_selected(menu, band)
    eventually(lambda: broker.status()["proxy"]["paused"], 5, "status to say paused")
    eventually(lambda: dominant(icon_colour(desktop, icon)) == "grey", 5, "the paused (grey) icon")

    # Resume, from the rebuilt menu.
    menu = menus.open()
    band = menus.select(menu, "Up", selectable_from_bottom(shape(sandboxes=2, paused=True), Action.RESUME))
    menus.click_selected(menu, band)
    eventually(lambda: not broker.status()["proxy"]["paused"], 5, "status to say resumed")
    eventually(lambda: dominant(icon_colour(desktop, icon)) == "green", 5, "the healthy (green) icon")

    # Sandboxes > alpha > Revoke alpha -> gone from `sandbox list`.
    menu = menus.open()
    band = menus.select(menu, "Up", selectable_from_bottom(shape(sandboxes=2), label="Sandboxes"))
    sandboxes = menus.open_submenu(menu, band)
    alpha = menus.open_submenu(sandboxes, menus.select(sandboxes, "Right", 1))
    band = menus.select(alpha, "Right", 1)
    desktop.screenshot(ARTIFACTS / "tray-real-broker-revoke.png")
    menus.click_selected(alpha, band)
    eventually(lambda: sandbox_names(broker) == ["beta"], 5, "alpha to be revoked")

    # Refresh token now -> the token endpoint is called and last_refresh moves.
    before = broker.status()["token"]["last_refresh"]
    calls = endpoint.calls
    menu = menus.open()
    band = menus.select(menu, "Up", selectable_from_bottom(shape(sandboxes=1), Action.REFRESH))
    menus.click_selected(menu, band)
    eventually(lambda: endpoint.calls > calls, 10, "a call to the token endpoint")
    eventually(lambda: broker.status()["token"]["last_refresh"] not in (None, before), 10, "last_refresh to change")
    assert endpoint.problems == []

    # New sandbox -> `sandbox-1` exists with its Claude Code dir, and the clipboard holds the
    # same flags `docker-args sandbox-1` prints (they mount that dir; no key in them).
    menu = menus.open()
    band = menus.select(menu, "Up", selectable_from_bottom(shape(sandboxes=1), Action.NEW_SANDBOX))
    menus.click_selected(menu, band)
    eventually(lambda: sandbox_names(broker) == ["beta", "sandbox-1"], 5, "the new sandbox")
    assert (broker.state_dir / "sandboxes" / "sandbox-1" / ".credentials.json").is_file()
    flags = broker.cli("docker-args", "sandbox-1", check=True).stdout.strip()
    eventually(lambda: clipboard(desktop) == flags, 5, "the new sandbox's flags on the clipboard")
    assert "sk-ib-" not in flags

    # Launch at login -> an XDG autostart entry in the private HOME.
    menu = menus.open()
    band = menus.select(menu, "Up", selectable_from_bottom(shape(sandboxes=2), Action.SET_AUTOSTART))
    menus.click_selected(menu, band)
    entry = home / ".config" / "autostart" / "inference-broker.desktop"
    eventually(entry.exists, 5, "the autostart entry")
    eventually(lambda: broker.status()["autostart"] is True, 5, "status to say autostart on")

    menu = menus.open()
    shot = desktop.screenshot(ARTIFACTS / "tray-real-broker-after.png")
    print(f"screenshot: {shot}")
    menus.close()

    # Quit -> the broker exits cleanly.
    menu = menus.open()
    menus.click_selected(menu, menus.select(menu, "Up", 1))
    assert real_broker.proc.wait(timeout=15) == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_real_broker_with_tray_stops_cleanly_on_signals(desktop: XDesktop, real_broker: Running, sig: int) -> None:
    """Ctrl-C in a terminal and a service manager's SIGTERM both shut down, not kill."""
    sock = real_broker.broker.state_dir / "broker.sock"
    assert sock.exists()
    real_broker.proc.send_signal(sig)
    assert real_broker.proc.wait(timeout=15) == 0
    assert "stopping" in real_broker.broker.output_text()
    assert not sock.exists()  # cleaned up: it was a shutdown, not a kill


# -- desktop chores: notifications and the clipboard --------------------------------------


def clipboard(desktop: XDesktop) -> str:
    return subprocess.run(["xclip", "-selection", "clipboard", "-o"], env=desktop.env, capture_output=True,
                          text=True).stdout


def _displayed(desktop: XDesktop) -> int:
    return int(desktop.run("dunstctl", "count", "displayed").strip() or 0)


def _notification_titles(desktop: XDesktop) -> list[str]:
    """Every notification dunst has shown and closed, oldest first."""
    history = json.loads(desktop.run("dunstctl", "history"))["data"][0]
    return [n["summary"]["data"] for n in reversed(history)]


def _next_notification(desktop: XDesktop) -> None:
    """Wait for one to show, then close it (pystray replaces its last one instead of stacking)."""
    eventually(lambda: _displayed(desktop) >= 1, 5, "a notification")
    desktop.run("dunstctl", "close-all")
    eventually(lambda: _displayed(desktop) == 0, 5, "the notification to close")


def test_tray_notifies_once_per_change_and_copies_docker_flags(desktop: XDesktop, tmp_path: Path) -> None:
    require_tools("dunst", "dunstctl", "xclip")
    dunst_conf = tmp_path / "dunstrc"
    dunst_conf.write_text("[global]\n    timeout = 0\n")  # keep them until closed, so none is missed
    dunst = subprocess.Popen(["dunst", "-config", str(dunst_conf)], env=desktop.env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc, out = start_stand_in(desktop, tmp_path)

    def send(line: str) -> None:
        proc.stdin.write(line + "\n")
        proc.stdin.flush()

    try:
        eventually(lambda: subprocess.run(["dunstctl", "is-paused"], env=desktop.env, capture_output=True).returncode == 0,
                 10, "dunst on the session bus")
        out.expect("ready")
        icon = eventually(lambda: docked_icon(desktop), 10, "the icon to dock in the tray")
        menus = MenuDriver(desktop, icon)

        # New sandbox -> the real X clipboard holds the new sandbox's docker run flags.
        menu = menus.open()
        menus.click_selected(menu, menus.select(menu, "Up", selectable_from_bottom(shape(sandboxes=2), Action.NEW_SANDBOX)))
        flags = StandInService.docker_run_flags(None, "gamma")  # type: ignore[arg-type]
        eventually(lambda: clipboard(desktop) == flags, 5, "the flags on the clipboard")

        # Refresh starts failing -> one notification; the retry loop's passes don't repeat it.
        for state in ("expiring", "refreshing", "expiring", "refreshing", "expiring"):
            send(f"token {state}")
        eventually(lambda: dominant(icon_colour(desktop, icon)) == "amber", 5, "the warning (amber) icon")
        eventually(lambda: _displayed(desktop) >= 1, 5, "a notification")
        shot = desktop.screenshot(ARTIFACTS / "tray-notification.png")
        print(f"\nscreenshot: {shot}")
        _next_notification(desktop)
        # The login is lost -> a second one. Pausing is not news.
        send("paused 1")
        send("token signed_out")
        eventually(lambda: dominant(icon_colour(desktop, icon)) == "red", 5, "the signed-out (red) icon")
        _next_notification(desktop)
        send("token signed_out")
        send("paused 0")
        time.sleep(0.5)  # give a wrong third notification the chance to show up
        assert _displayed(desktop) == 0
        assert _notification_titles(desktop) == ["Token refresh failing", "Claude login lost"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        dunst.terminate()
        dunst.wait(timeout=5)


def test_tray_survives_a_broken_notification_service(tmp_path: Path) -> None:
    """Seen: a notification daemon that crashes when D-Bus starts it took pystray's whole
    GTK icon down. The tray must come up anyway, just without notifications."""
    require_desktop_tools()
    with x_desktop(tmp_path / "desktop", services={"org.freedesktop.Notifications": "/bin/false"}) as desktop:
        log = tmp_path / "stand-in.log"
        with log.open("w") as err:
            proc, out = start_stand_in(desktop, tmp_path, stderr=err)
        try:
            out.expect("ready")
            icon = eventually(lambda: docked_icon(desktop), 10, "the icon to dock in the tray")
            assert "desktop notifications unavailable" in log.read_text()
            proc.stdin.write("token signed_out\n")  # would notify; must not break anything
            proc.stdin.flush()
            eventually(lambda: dominant(icon_colour(desktop, icon)) == "red", 5, "the signed-out (red) icon")
            menus = MenuDriver(desktop, icon)
            menu = menus.open()
            menus.click_selected(menu, menus.select(menu, "Up", 1))  # Quit
            out.expect("tray returned")
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
