"""JSON-lines logs, rotated by size, mode 0600: the audit trail and the refresh events.

Audit entries carry sandbox names, models, statuses, token counts and latencies; never a
token, a key, a prompt or a completion. Fields a sandbox controls are scrubbed and bounded,
and each sandbox has a byte budget per hour (core.auditpolicy), so none can flush the
others' entries. `write` only queues the line: a thread of the log's own writes it, so the
event loop never waits on the disk. `close` writes what is queued.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
from pathlib import Path
from typing import Any

from broker.adapters.private import PrivateRotatingHandler
from broker.core.auditpolicy import AuditBudget, bound_entry


class AuditLog:
    def __init__(self, path: Path, max_bytes: int = 10 * 1024 * 1024, backups: int = 5,
                 sandbox_bytes_per_hour: int = 4 * 1024 * 1024) -> None:
        self.path = Path(path)
        self.budget = AuditBudget(sandbox_bytes_per_hour)
        handler = PrivateRotatingHandler(self.path, max_bytes, backups)
        handler.setFormatter(logging.Formatter("%(message)s"))
        lines: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._listener = logging.handlers.QueueListener(lines, handler)
        self._logger = logging.Logger(f"inference-broker.audit.{id(self)}")  # private: never propagates
        self._logger.addHandler(logging.handlers.QueueHandler(lines))
        self._handler = handler
        self._listener.start()

    def write(self, entry: dict[str, Any]) -> None:
        line = json.dumps(bound_entry(entry), separators=(",", ":"), sort_keys=True)
        now = entry.get("time")
        for extra in self.budget.admit(str(entry.get("sandbox")), len(line) + 1, now if isinstance(now, float) else 0.0):
            self._logger.info(json.dumps(extra, separators=(",", ":"), sort_keys=True) if extra else line)

    def close(self) -> None:
        """Write what is queued, then close the file (blocks: call it off the loop)."""
        if self._listener._thread is not None:  # noqa: SLF001 - stop() is not idempotent
            self._listener.stop()
        self._handler.close()
