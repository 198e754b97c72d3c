"""A private X desktop for tray tests: Xvfb, a session D-Bus, a tray host, and xdotool.

Everything runs on a display number Xvfb picks itself (`-displayfd`) and a bus of its own,
so tests never touch a real desktop and can run side by side. Processes are stopped by
their own pids.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from tests.fakes.eventually import eventually
from tests.fakes.processes import stop_process

TOOLS = ("Xvfb", "trayer", "xdotool", "xwininfo", "dbus-daemon")
IMPORT = "/usr/bin/import"  # imagemagick's, not a stub earlier on PATH
SCREEN = (1024, 768)
TRAY_HEIGHT = 32


@dataclass(frozen=True)
class Window:
    id: str
    name: str
    x: int
    y: int
    w: int
    h: int
    depth: int  # nesting in the tree: 1 = child of the root

    @property
    def centre(self) -> tuple[int, int]:
        return self.x + self.w // 2, self.y + self.h // 2


# `     0x400007 "panel": ("trayer" "trayer")  200x32+824+0  +824+0`
_TREE_LINE = re.compile(r"^(\s*)(0x[0-9a-f]+) (\(has no name\)|\"(.*?)\")?.*?(\d+)x(\d+)\+-?\d+\+-?\d+\s+\+(-?\d+)\+(-?\d+)")


class XDesktop:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env  # DISPLAY, DBUS_SESSION_BUS_ADDRESS, NO_AT_BRIDGE

    @property
    def display(self) -> str:
        return self.env["DISPLAY"]

    def run(self, *argv: str, timeout: float = 10) -> str:
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, check=True, timeout=timeout).stdout

    def windows(self) -> list[Window]:
        out = self.tree()
        found = []
        for line in out.splitlines():
            m = _TREE_LINE.match(line)
            if m:
                indent, wid, _, name, w, h, x, y = m.groups()
                found.append(Window(wid, name or "", int(x), int(y), int(w), int(h), (len(indent) - 5) // 3 + 1))
        return found

    def tree(self, attempts: int = 10) -> str:
        """The window tree. A walk that meets a window destroyed under it fails with "Bad
        Drawable"/"BadWindow" (GTK makes and drops windows while a tray starts): walk again."""
        for attempt in range(attempts):
            done = subprocess.run(("xwininfo", "-root", "-tree"), env=self.env, capture_output=True, text=True,
                                  timeout=10)
            if done.returncode == 0:
                return done.stdout
            if "Bad" not in done.stderr or attempt == attempts - 1:
                raise RuntimeError(f"xwininfo -root -tree failed ({done.returncode}): {done.stderr.strip()}")
            time.sleep(0.05)
        raise AssertionError("unreachable")

    def xdotool(self, *args: str) -> str:
        return self.run("xdotool", *args)

    def pointer(self) -> tuple[int, int]:
        fields = dict(kv.split(":") for kv in self.xdotool("getmouselocation").split()[:2])
        return int(fields["x"]), int(fields["y"])

    def click(self, x: int, y: int, button: int = 1) -> None:
        # Not `mousemove --sync`: it waits forever when the pointer is already there.
        self.xdotool("mousemove", str(x), str(y))
        eventually(lambda: self.pointer() == (x, y), 5, f"the pointer at {x},{y}")
        time.sleep(0.05)  # let the toolkit see the pointer arrive before the press
        self.xdotool("click", str(button))

    def screenshot(self, path: Path, window: str = "root") -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.run(IMPORT, "-window", window, str(path), timeout=20)
        return path

    def grab(self) -> Image.Image:
        """The screen as an RGB image, in memory."""
        png = subprocess.run(
            [IMPORT, "-window", "root", "png:-"], env=self.env, capture_output=True, check=True, timeout=20
        ).stdout
        from io import BytesIO

        return Image.open(BytesIO(png)).convert("RGB")


def _start_xvfb() -> tuple[subprocess.Popen, str]:
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()  # written once the server accepts connections
    if not number:
        proc.kill()
        raise RuntimeError("Xvfb did not start")
    return proc, f":{number}"


BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:tmpdir={tmp}</listen>
  <auth>EXTERNAL</auth>
  <servicedir>{services}</servicedir>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def _start_dbus(workdir: Path, services: dict[str, str], env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """A session bus whose only activatable services are `services` (name -> command), so
    what happens does not depend on which daemons the machine has installed."""
    service_dir = workdir / "dbus-services"
    service_dir.mkdir(parents=True, exist_ok=True)
    for name, command in services.items():
        (service_dir / f"{name}.service").write_text(f"[D-BUS Service]\nName={name}\nExec={command}\n")
    config = workdir / "bus.conf"
    config.write_text(BUS_CONFIG.format(tmp=workdir, services=service_dir))
    proc = subprocess.Popen(
        ["dbus-daemon", f"--config-file={config}", "--nofork", "--nopidfile", "--print-address=1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,  # activated services see the display, as on a real desktop
    )
    address = proc.stdout.readline().strip()
    if not address:
        proc.kill()
        raise RuntimeError("dbus-daemon did not start")
    return proc, address


def start_tray(desktop: XDesktop, attempts: int = 3) -> subprocess.Popen:
    """trayer docked at the top right of `desktop`, once its panel is up.

    Under load, trayer sometimes exits at once with "cannot open display" although the display
    answers a moment later: such a start is tried again, up to `attempts` times."""
    for attempt in range(1, attempts + 1):
        errors = tempfile.TemporaryFile()  # what trayer says, for the failure message
        trayer = subprocess.Popen(
            ["trayer", "--edge", "top", "--align", "right", "--widthtype", "pixel", "--width", "160",
             "--heighttype", "pixel", "--height", str(TRAY_HEIGHT), "--SetDockType", "true",
             "--transparent", "false", "--tint", "0x303030", "--expand", "false"],
            env=desktop.env,
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
        try:
            eventually(lambda: trayer.poll() is not None or any(w.name == "panel" for w in desktop.windows()), 10,
                       "trayer's panel window")
            if trayer.poll() is None:
                return trayer
            errors.seek(0)
            said = errors.read().decode(errors="replace")[-2000:]
            if attempt == attempts or "cannot open display" not in said:
                raise AssertionError(f"trayer exited ({trayer.returncode}) and said: {said!r}")
        except BaseException:
            stop_process(trayer)
            raise
        finally:
            errors.close()
    raise AssertionError("unreachable")


@contextmanager
def x_desktop(workdir: Path, services: dict[str, str] | None = None, tray: bool = True) -> Iterator[XDesktop]:
    """Xvfb + session bus + (unless `tray` is False) trayer, torn down in reverse."""
    procs: list[subprocess.Popen] = []
    try:
        xvfb, display = _start_xvfb()
        procs.append(xvfb)
        env = {**os.environ, "DISPLAY": display, "NO_AT_BRIDGE": "1", "GDK_BACKEND": "x11"}  # NO_AT_BRIDGE: no accessibility bus
        env.pop("WAYLAND_DISPLAY", None)
        env.pop("DBUS_SESSION_BUS_ADDRESS", None)
        bus, address = _start_dbus(workdir, services or {}, env)
        procs.append(bus)
        env["DBUS_SESSION_BUS_ADDRESS"] = address
        desktop = XDesktop(env)
        if tray:
            procs.append(start_tray(desktop))
        yield desktop
    finally:
        for proc in reversed(procs):
            stop_process(proc)


# -- driving a GTK menu ------------------------------------------------------------------


def is_highlight(rgb: tuple[int, int, int]) -> bool:
    """The theme's selection colour (Adwaita blue) behind the selected menu item."""
    r, g, b = rgb
    return b > 170 and r < 120 and b - r > 100


def highlighted_band(image: Image.Image, win: Window) -> tuple[int, int] | None:
    """Screen rows (top, bottom) of the selected item in menu `win`, read from pixels at its
    right edge, where no label or check mark is drawn."""
    x = win.x + win.w - 4
    rows = [y for y in range(max(win.y, 0), min(win.y + win.h, image.height)) if is_highlight(image.getpixel((x, y)))]
    return (rows[0], rows[-1]) if rows else None


class MenuDriver:
    """Opens the tray menu with a real right click and clicks its items with the mouse.

    GTK gives no way to ask where an item is, so the driver selects it with the keyboard
    (Up from the bottom skips separators and disabled lines, as a person's arrow keys do),
    finds the highlighted row on screen, and clicks in its middle.
    """

    def __init__(self, desktop: XDesktop, icon: Window) -> None:
        self.d = desktop
        self.icon = icon

    def _popups(self) -> list[Window]:
        """Top-level windows that are on screen now (GTK keeps closed menus' windows)."""
        candidates = [w for w in self.d.windows() if w.depth == 1 and w.w > 40 and w.h > 20 and w.name != "panel"]
        return [w for w in candidates if "IsViewable" in self.d.run("xwininfo", "-id", w.id)]

    def _new_popup(self, before: set[str], what: str) -> Window:
        return eventually(lambda: next((w for w in self._popups() if w.id not in before), None), 5, what)

    def open(self) -> Window:
        """Right-click the icon; returns the menu's window."""
        before = {w.id for w in self._popups()}
        self.d.click(*self.icon.centre, button=3)
        return self._new_popup(before, "the tray menu to open")

    def select(self, menu: Window, key: str, times: int) -> tuple[int, int]:
        for _ in range(times):
            self.d.xdotool("key", key)
        return eventually(lambda: highlighted_band(self.d.grab(), menu), 5, f"an item selected after {times} x {key}")

    def click_selected(self, menu: Window, band: tuple[int, int]) -> None:
        self.d.click(menu.x + menu.w // 2, (band[0] + band[1]) // 2)

    def open_submenu(self, menu: Window, band: tuple[int, int]) -> Window:
        """Click a selected item that has a submenu; returns the submenu's window."""
        before = {w.id for w in self._popups()}
        self.click_selected(menu, band)
        return self._new_popup(before, "a submenu to open")

    def close(self) -> None:
        self.d.xdotool("key", "Escape")
