"""Claude Code's credentials file as a credential source, watched with watchdog.

`claude /login` replaces the file by rename; watchdog reports that as a move whose
`dest_path` is our file, so moves, creations, changes and deletions all count.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Callable, Mapping

from broker.adapters.atomic import write_private
from broker.adapters.saferead import read_regular
from broker.core.credentials import OAuthLogin, parse_login, serialize_login
from broker.core.errors import CredentialsError
from broker.core.source import CredentialSource, Unwatch

log = logging.getLogger(__name__)


def default_credentials_path(env: Mapping[str, str] = os.environ) -> Path:
    """$CLAUDE_CONFIG_DIR/.credentials.json, else ~/.claude/.credentials.json (as Claude Code)."""
    base = env.get("CLAUDE_CONFIG_DIR")
    root = Path(base).expanduser() if base else Path(env.get("HOME") or Path.home()) / ".claude"
    return root / ".credentials.json"


class FileSource(CredentialSource):
    kind = "file"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def label(self) -> str:
        return f"file:{self.path}"

    def load(self) -> OAuthLogin | None:
        try:
            data = read_regular(self.path)  # no FIFO, device or 200 MB file can hang or bloat us
            return parse_login(data)
        except FileNotFoundError:
            return None
        except CredentialsError as exc:
            raise CredentialsError(f"{self.path}: {exc.message}") from None

    def save(self, login: OAuthLogin) -> None:
        write_private(self.path, serialize_login(login).encode("utf-8"))

    def watch(self, on_change: Callable[[], None]) -> Unwatch:
        return _DirWatch(self.path, on_change).start()


class _DirWatch:
    """Watch one file through its directory; wait for the directory if it is not there yet."""

    def __init__(self, path: Path, on_change: Callable[[], None], wait_interval: float = 2.0) -> None:
        self.path = Path(os.path.abspath(path))
        self.on_change = on_change
        self.wait_interval = wait_interval
        self._stop = threading.Event()
        self._observer = None

    def start(self) -> Unwatch:
        if self.path.parent.is_dir():
            self._observe()
        else:
            threading.Thread(target=self._wait_for_dir, name="creds-dir-wait", daemon=True).start()
        return self.stop

    def _wait_for_dir(self) -> None:
        while not self._stop.wait(self.wait_interval):
            if self.path.parent.is_dir():
                self._observe()
                self.on_change()
                return

    def _observe(self) -> None:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        target = str(self.path)
        on_change = self.on_change

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:  # noqa: ANN001 - watchdog's type
                if event.event_type in ("opened", "closed_no_write"):
                    return
                paths = {os.fsdecode(event.src_path), os.fsdecode(getattr(event, "dest_path", "") or "")}
                if target in paths:
                    on_change()

        observer = Observer()
        observer.daemon = True
        observer.schedule(Handler(), str(self.path.parent), recursive=False)
        observer.start()
        self._observer = observer
        log.debug("watching %s", self.path)

    def stop(self) -> None:
        self._stop.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
