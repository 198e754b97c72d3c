"""A real terminal for interactive programs: a private tmux server, keys in, screen text out.

Each `Terminal` runs its own tmux server on a socket in a temp dir (so the command sees exactly
the environment given here, and nothing is shared with other sessions on the machine). The
pane stays open after the command exits (`; sleep`) so its last words can still be read.
Screens are saved under `test-artifacts/` for people to look at.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from pathlib import Path
from typing import Mapping, Sequence

from tests.e2e.infra.paths import short_tmp

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "test-artifacts" / "interactive"
EXIT_MARK = "[command exited with status "


class Terminal:
    def __init__(self, argv: Sequence[str], env: Mapping[str, str], *, cwd: str = "/",
                 name: str = "term", width: int = 160, height: int = 45) -> None:
        self.dir = short_tmp("ibt-")
        self.socket = str(self.dir / "tmux.sock")
        self.name = name
        self.shots: list[tuple[str, str]] = []
        for old in ARTIFACTS.glob(f"{name}-*.txt"):  # a previous run's screens of this terminal
            old.unlink()
        command = f"{shlex.join(argv)}; echo; echo '{EXIT_MARK}'$?']'; sleep 600"
        self._tmux("new-session", "-d", "-s", "main", "-x", str(width), "-y", str(height), "-c", cwd,
                   "sh", "-c", command, env=dict(env), cwd=cwd)

    def _tmux(self, *args: str, env: dict[str, str] | None = None,
              cwd: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tmux", "-S", self.socket, "-f", "/dev/null", *args], env=env, cwd=cwd,
                              capture_output=True, text=True, timeout=20, check=True)

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "main").stdout

    def send(self, *keys: str) -> None:
        """tmux key names (`Enter`, `Down`, `C-c`) or literal text."""
        self._tmux("send-keys", "-t", "main", *keys)

    def type(self, text: str) -> None:
        """Type `text` literally, then press Enter."""
        self._tmux("send-keys", "-t", "main", "-l", text)
        time.sleep(0.2)  # a TUI debounces a paste-like burst; Enter must arrive on its own
        self._tmux("send-keys", "-t", "main", "Enter")

    def wait_for(self, pattern: str, timeout: float = 60.0, label: str | None = None) -> str:
        """Poll the screen until `pattern` (a regex) shows; save it; fail with the screen if not."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if rx.search(text):
                self.save(label or pattern, text)
                return text
            if time.monotonic() > deadline:
                self.save(f"timeout {label or pattern}", text)
                raise AssertionError(f"{pattern!r} did not appear within {timeout:.0f}s; screen:\n{text}")
            time.sleep(0.1)

    def save(self, label: str, text: str | None = None) -> str:
        text = self.screen() if text is None else text
        self.shots.append((label, text))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{self.name}-{len(self.shots):02d}-{label}").strip("-")[:90]
        (ARTIFACTS / f"{slug}.txt").write_text(text)
        return text

    def seen(self) -> str:
        """Every screen saved so far, joined (to search for what must never show)."""
        return "\n".join(text for _, text in self.shots)

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True, check=False)
        subprocess.run(["rm", "-rf", str(self.dir)], check=False)

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
