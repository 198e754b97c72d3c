"""Sandbox keys and their usage counters, in one SQLite file (mode 0600).

Only a SHA-256 of each key is stored: a key is shown once, when it is issued. The CLI and a
running broker may both write; `changed()` (SQLite's data_version) lets the broker notice
another process's revoke, rotate or pause without re-reading every time. Every method
blocks: the broker calls them from one worker thread (`broker.sandboxes.access`), never on its loop.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from broker.usage.budget import Budget
from broker.common.errors import BrokerError
from broker.sandboxes.keys import generate_key, hash_key
from broker.sandboxes.info import SandboxInfo
from broker.usage.reply_usage import Usage

# sandbox name -> [requests, input tokens, output tokens, last used]: use not yet saved
Counts = dict[str, list[float]]

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sandboxes (
    name TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL,
    created REAL NOT NULL,
    last_used REAL,
    requests INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS budgets (name TEXT PRIMARY KEY, tokens INTEGER NOT NULL, window REAL NOT NULL);
-- Names revoked and not made again: `exec NAME` refuses them instead of quietly making a new
-- sandbox (a key store from before this table gets it, empty, when it is opened).
CREATE TABLE IF NOT EXISTS revoked (name TEXT PRIMARY KEY, at REAL NOT NULL);
"""


class SandboxError(BrokerError):
    title = "Sandbox key"


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name or ""):
        raise SandboxError(f"bad sandbox name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


class KeyStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._version: int | None = None
        self._counter: bytes | None = None  # the file change counter when changed() last looked
        self._fd: int | None = None  # read-only, for that counter
        self._pending: Counts = {}  # use counted by record_use, saved by flush

    # -- connection
    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # exists before SQLite opens it
            os.close(fd)
            os.chmod(self.path, 0o600)
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=DELETE")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    def __enter__(self) -> "KeyStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._db is not None:
            self.flush()
            self._db.close()
            self._db = None
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def may_have_changed(self) -> bool:
        """False only when nothing was committed since `changed()` last looked: a 4-byte read
        of SQLite's file change counter (bumped by every commit in rollback-journal mode,
        documented for exactly this), cheap enough for the loop. No query, no thread."""
        fd = self._fd
        if fd is None or self._counter is None:
            return True
        try:
            return os.pread(fd, 4, 24) != self._counter
        except OSError:
            return True

    def changed(self) -> bool:
        """True when another process committed since the last call."""
        if self._fd is None:
            _ = self.db  # the file and its header exist once the connection is open
            self._fd = os.open(self.path, os.O_RDONLY)
        self._counter = os.pread(self._fd, 4, 24)  # before the query: a commit in between is seen next time
        version = self.db.execute("PRAGMA data_version").fetchone()[0]
        changed = self._version is not None and version != self._version
        self._version = version
        return changed

    # -- keys
    def add(self, name: str, now: float | None = None) -> str:
        check_name(name)
        key = generate_key()
        try:
            self.db.execute("INSERT INTO sandboxes (name, key_hash, created) VALUES (?, ?, ?)",
                            (name, hash_key(key), now or time.time()))
        except sqlite3.IntegrityError:
            raise SandboxError(f"sandbox {name!r} already exists: `inference-broker sandbox rotate {name}` "
                               "issues it a new key, `sandbox revoke` removes it") from None
        self.db.execute("DELETE FROM revoked WHERE name = ?", (name,))
        return key

    def rotate(self, name: str) -> str:
        key = generate_key()
        cur = self.db.execute("UPDATE sandboxes SET key_hash = ? WHERE name = ?", (hash_key(key), check_name(name)))
        if cur.rowcount == 0:
            raise SandboxError(f"no sandbox named {name!r} (`inference-broker sandbox add {name}` creates it)")
        return key

    def issue(self, name: str, rotate: bool, then: Callable[[str], object]) -> str:
        """`add` or `rotate`, committed only if `then(key)` (writing the key where the sandbox
        reads it) succeeds: on any failure the store keeps what it had."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            key = self.rotate(name) if rotate else self.add(name)
            then(key)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        return key

    def undo_issue(self, name: str, issued_hash: str, previous_hash: str | None) -> bool:
        """Put back what `name` had before a key was issued (its previous key, or no sandbox at
        all), if the issued key is still the current one; False when something else changed it."""
        row = self.db.execute("SELECT key_hash FROM sandboxes WHERE name = ?", (name,)).fetchone()
        if row is None or row[0] != issued_hash:
            return False
        if previous_hash is None:
            self.db.execute("DELETE FROM sandboxes WHERE name = ?", (name,))
        else:
            self.db.execute("UPDATE sandboxes SET key_hash = ? WHERE name = ?", (previous_hash, name))
        return True

    def revoke(self, name: str) -> bool:
        self._pending.pop(name, None)
        self.db.execute("DELETE FROM budgets WHERE name = ?", (name,))
        gone = self.db.execute("DELETE FROM sandboxes WHERE name = ?", (name,)).rowcount > 0
        if gone:
            self.db.execute("INSERT OR REPLACE INTO revoked (name, at) VALUES (?, ?)", (name, time.time()))
        return gone

    def revoke_all(self) -> int:
        self._pending.clear()
        self.db.execute("DELETE FROM budgets")
        self.db.execute("INSERT OR REPLACE INTO revoked (name, at) SELECT name, ? FROM sandboxes", (time.time(),))
        return self.db.execute("DELETE FROM sandboxes").rowcount

    def revoked_at(self, name: str) -> float | None:
        """When `name` was revoked, if it was and has not been made again since."""
        row = self.db.execute("SELECT at FROM revoked WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    # -- budgets (tokens per rolling window), enforced by the running broker
    def set_budget(self, name: str, budget: Budget | None) -> None:
        if not self.db.execute("SELECT 1 FROM sandboxes WHERE name = ?", (name,)).fetchone():
            raise SandboxError(f"no sandbox named {name!r} (`inference-broker sandbox add {name} --budget ...`)")
        if budget is None:
            self.db.execute("DELETE FROM budgets WHERE name = ?", (name,))
        else:
            self.db.execute("INSERT INTO budgets (name, tokens, window) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE "
                            "SET tokens = excluded.tokens, window = excluded.window", (name, budget.tokens, budget.window))

    def budgets(self) -> dict[str, Budget]:
        return {n: Budget(int(t), float(w)) for n, t, w in self.db.execute("SELECT name, tokens, window FROM budgets")}

    def hashes(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT name, key_hash FROM sandboxes"))

    def stored(self) -> list[SandboxInfo]:
        """The sandboxes with the counters as saved (no unsaved use)."""
        rows = self.db.execute("SELECT s.name, created, last_used, requests, input_tokens, output_tokens, b.tokens, "
                               "b.window FROM sandboxes s LEFT JOIN budgets b ON b.name = s.name "
                               "ORDER BY s.name").fetchall()
        return [SandboxInfo(*row[:6], budget=Budget(int(row[6]), float(row[7])).words() if row[6] else None)
                for row in rows]

    def list(self) -> list[SandboxInfo]:
        return with_counts(self.stored(), self._pending)

    # -- pause
    def paused(self) -> bool:
        row = self.db.execute("SELECT value FROM settings WHERE key = 'paused'").fetchone()
        return bool(row and row[0] == "1")

    def set_paused(self, paused: bool) -> None:
        self.db.execute("INSERT INTO settings (key, value) VALUES ('paused', ?) "
                        "ON CONFLICT(key) DO UPDATE SET value = excluded.value", ("1" if paused else "0",))

    # -- usage: counted in memory per request, written in batches
    def record_use(self, name: str, when: float, usage: Usage | None) -> None:
        tally(self._pending, name, when, usage)

    def flush(self) -> None:
        if not self._pending or self._db is None:
            return
        pending, self._pending = self._pending, {}
        self.write_usage(pending)

    def write_usage(self, counts: Counts) -> None:
        """Add counted use (from `tally`) to the stored counters, in one transaction."""
        if not counts:
            return
        with self.db:
            self.db.execute("BEGIN")
            for name, (req, inp, outp, last) in counts.items():
                self.db.execute(
                    "UPDATE sandboxes SET requests = requests + ?, input_tokens = input_tokens + ?, "
                    "output_tokens = output_tokens + ?, last_used = max(coalesce(last_used, 0), ?) WHERE name = ?",
                    (int(req), int(inp), int(outp), last, name))


def tally(counts: Counts, name: str, when: float, usage: Usage | None) -> None:
    """Count one request of sandbox `name` into `counts` (in memory)."""
    p = counts.setdefault(name, [0, 0, 0, 0.0])
    p[0] += 1
    if usage is not None:
        p[1] += usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
        p[2] += usage.output_tokens
    p[3] = max(p[3], when)


def with_counts(rows: list[SandboxInfo], *counts: Counts) -> list[SandboxInfo]:
    """`rows` with counted-but-unsaved use added on top."""
    out = []
    for row in rows:
        requests, inp, outp, last_used = row.requests, row.input_tokens, row.output_tokens, row.last_used
        for c in counts:
            p = c.get(row.name)
            if p:
                requests, inp, outp = requests + int(p[0]), inp + int(p[1]), outp + int(p[2])
                last_used = max(last_used or 0, p[3])
        out.append(replace(row, last_used=last_used, requests=requests, input_tokens=inp, output_tokens=outp))
    return out
