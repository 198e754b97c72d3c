"""Private files and directories: every file the broker writes is 0600, every dir 0700.

A rotating log opens a fresh file at each rollover, and anyone who can reach the proxy can
force rollovers with junk requests, so the mode is set when the file is created (not by a
chmod afterwards), at start-up and after every rotation alike.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import stat
from pathlib import Path
from typing import IO


def private_dir(path: Path) -> Path:
    """Create `path` as 0700, or tighten it if it already exists with group/other access."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = path.stat()
    if stat.S_IMODE(st.st_mode) & 0o077 and st.st_uid == getattr(os, "geteuid", lambda: -1)():  # POSIX modes only
        path.chmod(0o700)
    return path


class PrivateRotatingHandler(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler whose files are born 0600 (and tightened if they were not)."""

    def __init__(self, filename: Path, max_bytes: int, backups: int) -> None:
        private_dir(Path(filename).parent)
        super().__init__(filename, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")

    def _open(self) -> IO[str]:  # stdlib hook: called at start and after each rollover
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            os.fchmod(fd, 0o600)  # an older file made 0644 by a previous version
        except (OSError, AttributeError):  # AttributeError: no fchmod (Windows)
            pass
        return open(fd, "a", encoding=self.encoding, errors=self.errors)
