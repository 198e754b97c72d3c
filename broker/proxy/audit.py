"""JSON-lines logs, rotated by size, mode 0600: the audit trail and the refresh events.

Audit entries carry sandbox names, models, statuses, token counts and latencies; never a
token, a key, a prompt or a completion. Fields a sandbox controls are scrubbed and bounded,
and each sandbox has a byte budget per hour (proxy.audit_policy), so none can flush the
others' entries. `write` only queues the line. A thread of the log's own wakes when the
first one arrives, lets more gather for `linger` seconds and writes them in one go: the
event loop never waits on the disk nor pays for logging machinery per request (a stack walk
per record), and a busy proxy wakes the thread a few times a second, not once per request
(each wake-up takes the GIL from the loop, on the same core). An idle log sleeps. `close`
writes what is queued.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

from broker.common.private_files import PrivateRotatingHandler
from broker.proxy.audit_policy import AuditBudget, bound_entry


# One encoder for every line: json.dumps with options builds a new one per call.
_encode = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


class AuditLog:
    def __init__(self, path: Path, max_bytes: int = 10 * 1024 * 1024, backups: int = 5,
                 sandbox_bytes_per_hour: int = 4 * 1024 * 1024, linger: float = 0.1) -> None:
        self.path = Path(path)
        self.budget = AuditBudget(sandbox_bytes_per_hour)
        handler = PrivateRotatingHandler(self.path, max_bytes, backups)
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._handler, self._linger = handler, linger
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = threading.Thread(target=self._run, name="audit-log", daemon=True)
        self._thread.start()

    def write(self, entry: dict[str, Any]) -> None:
        line = _encode(bound_entry(entry))
        now = entry.get("time")
        for extra in self.budget.admit(str(entry.get("sandbox")), len(line) + 1, now if isinstance(now, float) else 0.0):
            self._queue.put_nowait(_encode(extra) if extra else line)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            if batch[0] is not None:
                time.sleep(self._linger)
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            lines = [line for line in batch if line is not None]
            if lines:  # one record, one write: a rotation never splits a batch's lines
                self._handler.handle(logging.makeLogRecord({"msg": "\n".join(lines)}))
            if len(lines) < len(batch):
                return

    def close(self) -> None:
        """Write what is queued, then close the file (blocks: call it off the loop)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        self._handler.close()
