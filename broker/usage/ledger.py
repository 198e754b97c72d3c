"""The usage ledger: one SQLite row per proxied request, under `state_dir` (mode 0600).

Writes never happen on the request path: `record()` only puts the row on a queue, and one
writer thread stores rows in batches. A full disk, a locked database or a broken file loses
those rows (logged, counted in `stats`), never the request. WAL lets `inference-broker usage`
and the dashboard read while the broker writes. The schema carries a version
(`PRAGMA user_version`) and is migrated step by step when opened.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

from broker.common.errors import BrokerError
from broker.usage.report import UsageRecord

log = logging.getLogger(__name__)

COLUMNS = ("time", "sandbox", "model", "status", "latency_ms", "input_tokens", "output_tokens",
           "cache_creation_tokens", "cache_read_tokens", "client")
# Step N turns a version N-1 database into version N.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    ("CREATE TABLE requests (time REAL NOT NULL, sandbox TEXT NOT NULL, model TEXT, status INTEGER NOT NULL, "
     "latency_ms REAL, input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0)",),
    ("ALTER TABLE requests ADD COLUMN cache_creation_tokens INTEGER NOT NULL DEFAULT 0",
     "ALTER TABLE requests ADD COLUMN cache_read_tokens INTEGER NOT NULL DEFAULT 0",
     "ALTER TABLE requests ADD COLUMN client TEXT NOT NULL DEFAULT 'unknown'",
     "CREATE INDEX requests_time ON requests (time)",
     "CREATE INDEX requests_sandbox_time ON requests (sandbox, time)"),
)
SCHEMA_VERSION = len(MIGRATIONS)
_ROW = attrgetter(*COLUMNS)  # a record as the row's values, in one C call
# Rows per INSERT statement: SQLite steps a statement without the GIL, so one statement per
# row would hand the GIL to the event loop and wait to take it back, once per row.
# 90 rows x 10 columns stay under the oldest SQLite's 999 bound parameters.
ROWS_PER_INSERT = 90
WRITER_CACHE_KIB = 256
PRUNE_EVERY = 3600.0
LOG_EVERY = 60.0  # repeat a failing write's message at most this often


class LedgerError(BrokerError):
    title = "Usage ledger"


def connect(path: Path, busy_timeout: float = 5.0) -> sqlite3.Connection:
    """Open (creating it 0600) and migrate to the current schema."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        migrate(db)
    except BaseException:
        db.close()
        raise
    for suffix in ("-wal", "-shm"):
        try:
            os.chmod(f"{path}{suffix}", 0o600)
        except FileNotFoundError:
            pass
    return db


def migrate(db: sqlite3.Connection) -> int:
    """Apply the missing steps in one transaction; returns the version found."""
    found = db.execute("PRAGMA user_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        raise LedgerError(f"the usage ledger has schema version {found}, newer than this inference-broker "
                          f"knows ({SCHEMA_VERSION}); upgrade it, or move the file aside")
    if found == SCHEMA_VERSION:
        return found
    db.execute("BEGIN IMMEDIATE")
    try:
        current = db.execute("PRAGMA user_version").fetchone()[0]  # another process may have won
        for step in MIGRATIONS[current:]:
            for statement in step:
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    if current < SCHEMA_VERSION:
        log.info("usage ledger migrated from schema %d to %d", current, SCHEMA_VERSION)
    return found


@dataclass
class LedgerStats:
    written: int = 0
    dropped: int = 0  # rows lost to a full disk, a lock, a full queue
    errors: int = 0
    last_error: str | None = None


class Ledger:
    def __init__(self, path: Path, *, retention_days: float = 90.0, busy_timeout: float = 5.0,
                 batch_size: int = 500, max_queue: int = 50_000, clock: Callable[[], float] = time.time,
                 linger: float = 0.1) -> None:
        self.path = Path(path)
        self.retention = retention_days * 86400
        self.busy_timeout, self.batch_size, self.clock = busy_timeout, batch_size, clock
        self.linger = linger
        self.stats = LedgerStats()
        self.max_queue = max_queue
        # A C queue: `record` is one call on the request path, with no Python-level lock.
        self._queue: queue.SimpleQueue[UsageRecord | threading.Event | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._db: sqlite3.Connection | None = None
        self._last_prune = 0.0
        self._last_log = 0.0

    # -- the request path: never blocks, never raises
    def record(self, row: UsageRecord) -> None:
        if self._queue.qsize() >= self.max_queue:
            self._failed(1, "the write queue is full (the disk is too slow, or writes keep failing)")
        else:
            self._queue.put_nowait(row.bounded())

    # -- lifecycle
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="usage-ledger", daemon=True)
            self._thread.start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row recorded so far was written (or dropped). Blocks: use a thread."""
        if self._thread is None:
            return True
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    # -- the writer thread
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if isinstance(item, UsageRecord):
                time.sleep(self.linger)  # let rows gather: one wake-up and commit for many requests
            batch: list[UsageRecord] = []
            waiters: list[threading.Event] = []
            stop = False
            while True:
                if item is None:
                    stop = True
                elif isinstance(item, threading.Event):
                    waiters.append(item)
                else:
                    batch.append(item)
                if len(batch) >= self.batch_size:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._write(batch)
            for w in waiters:
                w.set()
            if stop:
                if self._db is not None:
                    self._db.close()
                    self._db = None
                return

    def _write(self, batch: list[UsageRecord]) -> None:
        try:
            if self._db is None:
                self._db = connect(self.path, self.busy_timeout)
                # Inserts touch only the ends of the table and its indexes: SQLite's default page
                # cache (2 MiB) would only hold the broker's memory up as the ledger grows.
                self._db.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                for start in range(0, len(batch), ROWS_PER_INSERT):
                    rows = batch[start:start + ROWS_PER_INSERT]
                    db.execute(_insert(len(rows)), [v for r in rows for v in _ROW(r)])
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            self.stats.written += len(batch)
            self._prune_if_due(db)
        except (sqlite3.Error, OSError, LedgerError) as exc:
            self._failed(len(batch), str(exc))
            if self._db is not None and not isinstance(exc, sqlite3.OperationalError):
                self._db.close()
                self._db = None

    def _prune_if_due(self, db: sqlite3.Connection) -> None:
        now = self.clock()
        if now - self._last_prune >= PRUNE_EVERY:
            self._last_prune = now
            gone = db.execute("DELETE FROM requests WHERE time < ?", (now - self.retention,)).rowcount
            if gone:
                log.info("usage ledger: %d row(s) older than %.0f days removed", gone, self.retention / 86400)

    def _failed(self, rows: int, why: str) -> None:
        self.stats.dropped += rows
        self.stats.errors += 1
        self.stats.last_error = why
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY or self.stats.errors == 1:
            self._last_log = now
            log.error("usage ledger: %d row(s) not recorded: %s (%d lost so far; requests are unaffected)",
                      rows, why, self.stats.dropped)


@functools.lru_cache(maxsize=128)  # a batch's last statement has any size up to the chunk
def _insert(rows: int) -> str:
    one = f"({', '.join('?' * len(COLUMNS))})"
    return f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES {', '.join([one] * rows)}"
