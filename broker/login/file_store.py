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

from broker.common.atomic_files import remove_leftover_temps, write_private
from broker.login.claude_locks import HostLocks, claude_config_dir
from broker.login.safe_read import read_regular
from broker.common.errors import CredentialsError
from broker.login.sources import ClaudeLoginSource, Unwatch

log = logging.getLogger(__name__)


def default_credentials_path(env: Mapping[str, str] = os.environ) -> Path:
    """$CLAUDE_CONFIG_DIR/.credentials.json, else ~/.claude/.credentials.json (as Claude Code)."""
    return claude_config_dir(env) / ".credentials.json"


class FileSource(ClaudeLoginSource):
    kind = "file"

    def __init__(self, path: Path, locks: HostLocks | None = None) -> None:
        self.path = Path(path)
        # Claude Code's config dir is the one that holds the file: its locks live there.
        self.locks = locks if locks is not None else HostLocks(self.path.parent)

    @property
    def label(self) -> str:
        return f"file:{self.path}"

    @property
    def where(self) -> str:
        return str(self.path)

    def read_text(self) -> bytes | None:
        try:
            # Undecoded (the parser names bytes that are not UTF-8); no FIFO, device or 200 MB
            # file can hang or bloat us.
            return read_regular(self.path)
        except FileNotFoundError:
            return None
        except CredentialsError as exc:
            raise CredentialsError(f"{self.path}: {exc.message}") from None

    def write_text(self, text: str) -> None:
        remove_leftover_temps(self.path)  # under the write lock: no writer of ours is mid-write
        write_private(self.path, text.encode("utf-8", "surrogateescape"))

    def watch(self, on_change: Callable[[], None]) -> Unwatch:
        return _DirWatch(self.path, on_change).start()


class _DirWatch:
    """Watch one file through its directory; wait for the directory if it is not there yet."""

    def __init__(self, path: Path, on_change: Callable[[], None], wait_interval: float = 0.5) -> None:
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
