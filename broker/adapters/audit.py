"""JSON-lines logs, rotated by size, mode 0600: the audit trail and the refresh events.

Audit entries carry sandbox names, models, statuses, token counts and latencies; never a
token, a key, a prompt or a completion (the proxy builds entries from those fields only).
`write` only queues the line: a thread of the log's own writes it, so the event loop never
waits on the disk. `close` writes what is queued.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import queue
from pathlib import Path
from typing import Any


class _PrivateRotatingHandler(logging.handlers.RotatingFileHandler):
    def _open(self):  # noqa: ANN202 - stdlib signature
        stream = super()._open()
        try:
            os.chmod(self.baseFilename, 0o600)
        except OSError:
            pass
        return stream


class AuditLog:
    def __init__(self, path: Path, max_bytes: int = 10 * 1024 * 1024, backups: int = 5) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handler = _PrivateRotatingHandler(self.path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
        lines: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._listener = logging.handlers.QueueListener(lines, handler)
        self._logger = logging.Logger(f"inference-broker.audit.{id(self)}")  # private: never propagates
        self._logger.addHandler(logging.handlers.QueueHandler(lines))
        self._handler = handler
        self._listener.start()

    def write(self, entry: dict[str, Any]) -> None:
        self._logger.info(json.dumps(entry, separators=(",", ":"), sort_keys=True))

    def close(self) -> None:
        """Write what is queued, then close the file (blocks: call it off the loop)."""
        if self._listener._thread is not None:  # noqa: SLF001 - stop() is not idempotent
            self._listener.stop()
        self._handler.close()
