"""Desktop chores for the tray's own actions: the clipboard, opening a file.

Both touch the disk or start a program, so the tray calls them through `asyncio.to_thread`.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from broker.dashboard.launch_page import write_launch_page

log = logging.getLogger(__name__)

# (command, args, the display it needs) for tools that read the clipboard's new text on stdin.
CLIPBOARD_TOOLS = (
    ("wl-copy", (), "WAYLAND_DISPLAY"),
    ("xclip", ("-selection", "clipboard"), "DISPLAY"),
    ("xsel", ("--clipboard", "--input"), "DISPLAY"),
    ("pbcopy", (), None),
    ("clip", (), None),
)


def copy_to_clipboard(text: str, which: Callable[[str], str | None] = shutil.which) -> str | None:
    """Put `text` on the clipboard with the first tool found; returns its name or None."""
    for tool, args, display in CLIPBOARD_TOOLS:
        path = which(tool)
        if not path or (display and not os.environ.get(display)):
            continue
        # Output to DEVNULL: xclip stays in the background serving the selection, and would
        # hold a captured pipe open forever.
        result = subprocess.run(
            [path, *args], input=text.encode(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10
        )
        if result.returncode == 0:
            return tool
        log.warning("%s could not set the clipboard (exit %s)", tool, result.returncode)
    return None


def open_path(path: Path) -> None:
    """Open a file with the desktop's default application (blocks: run it in a thread)."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist yet")
    open_with_desktop(str(path))


def open_link_privately(state_dir: Path, url: str) -> None:
    """Open a secret link (the dashboard's one-time login) through a private page that
    forwards to it: on xdg-open's command line, any local user could read and redeem it."""
    open_with_desktop(str(write_launch_page(state_dir, url)))


def open_with_desktop(target: str) -> None:
    """Open a file or URL as the desktop would on a double click: the person's own default
    application or browser (Python's `webbrowser` prefers whatever browser it finds first)."""
    if sys.platform == "win32":
        os.startfile(target)  # type: ignore[attr-defined]  # noqa: S606
        return
    opener = "open" if sys.platform == "darwin" else "xdg-open"
    # Not waited for: xdg-open can run the application in the foreground, and a timeout
    # would kill the editor the person just opened.
    subprocess.Popen([opener, target], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)
