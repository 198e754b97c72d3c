"""The SQLite usage ledger on real files: migrations, retention, concurrent writers, and a
full disk or a locked database that lose rows (counted) but never raise into the caller."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest

from broker.usage import ledger_query
from broker.usage.ledger import SCHEMA_VERSION, Ledger, LedgerError, connect
from broker.usage.report import UsageRecord
from tests.support import require_root

NOW = 1_800_000_000.0


def rec(t: float = NOW, sandbox: str = "a", model: str | None = "claude-sonnet-4-6", **kw) -> UsageRecord:
    base = dict(status=200, latency_ms=12.5, input_tokens=10, output_tokens=5, cache_creation_tokens=2,
                cache_read_tokens=100, client="claude-cli/2.1.197")
    return UsageRecord(time=t, sandbox=sandbox, model=model, **{**base, **kw})


def count(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*) FROM requests").fetchone()[0]


def test_new_ledger_is_current_private_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "state" / "usage.db"
    ledger = Ledger(path, clock=lambda: NOW)
    ledger.start()
    ledger.record(rec())
    assert ledger.flush()
    ledger.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        row = db.execute("SELECT * FROM requests").fetchone()
    assert row == (NOW, "a", "claude-sonnet-4-6", 200, 12.5, 10, 5, 2, 100, "claude-cli/2.1.197")
    assert (path.stat().st_mode & 0o777) == 0o600 and (path.parent.stat().st_mode & 0o777) == 0o700
    assert ledger.stats.written == 1 and ledger.stats.dropped == 0


def test_migration_from_the_first_schema_keeps_rows(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE requests (time REAL NOT NULL, sandbox TEXT NOT NULL, model TEXT, status INTEGER "
                   "NOT NULL, latency_ms REAL, input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER "
                   "NOT NULL DEFAULT 0)")
        db.execute("INSERT INTO requests VALUES (?, 'old', 'm', 200, 1.0, 7, 3)", (NOW,))
        db.execute("PRAGMA user_version = 1")
    connect(path).close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("SELECT sandbox, input_tokens, cache_read_tokens, client FROM requests").fetchall() == [
            ("old", 7, 0, "unknown")]
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"requests_time", "requests_sandbox_time"} <= indexes


def test_a_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(LedgerError, match="newer than this inference-broker knows"):
        connect(path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1


def test_retention_removes_old_rows(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    old = Ledger(path, clock=lambda: NOW - 100 * 86400)
    old.start()
    for days in (0, 50):
        old.record(rec(NOW - (100 + days) * 86400, "ancient"))
    old.flush()
    old.close()
    assert count(path) == 2
    ledger = Ledger(path, retention_days=90, clock=lambda: NOW)
    ledger.start()
    ledger.record(rec(NOW - 89 * 86400, "kept"))
    ledger.record(rec(NOW, "kept"))
    ledger.flush()
    ledger.close()
    assert [r["sandbox"] for r in ledger_query.totals(path, 0, "sandbox")] == ["kept"]


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    ledgers = [Ledger(path, batch_size=50) for _ in range(3)]
    for ledger in ledgers:
        ledger.start()

    def write(ledger: Ledger, name: str) -> None:
        for i in range(400):
            ledger.record(rec(NOW + i, name))

    threads = [threading.Thread(target=write, args=(lg, f"s{i}")) for i, lg in enumerate(ledgers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for ledger in ledgers:
        assert ledger.flush(30)
        ledger.close()
    assert count(path) == 1200
    assert sum(lg.stats.dropped for lg in ledgers) == 0
    by = {r["sandbox"]: r for r in ledger_query.totals(path, 0, "sandbox")}
    assert set(by) == {"s0", "s1", "s2"} and by["s0"]["requests"] == 400 and by["s0"]["input_tokens"] == 4000


def test_a_locked_database_loses_the_batch_not_the_caller(tmp_path: Path, caplog) -> None:
    path = tmp_path / "usage.db"
    connect(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    ledger = Ledger(path, busy_timeout=0.05)
    ledger.start()
    with caplog.at_level(logging.ERROR, "broker.usage.ledger"):
        ledger.record(rec())  # returns at once: the writer thread meets the lock
        assert ledger.flush()
    assert ledger.stats.dropped == 1 and "locked" in (ledger.stats.last_error or "")
    assert "not recorded" in caplog.text and "requests are unaffected" in caplog.text
    holder.execute("ROLLBACK")
    holder.close()
    ledger.record(rec(sandbox="after"))
    assert ledger.flush()
    ledger.close()
    assert count(path) == 1 and ledger.stats.written == 1


def test_queue_overflow_is_counted(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "usage.db", max_queue=3)  # not started: nothing drains the queue
    for _ in range(5):
        ledger.record(rec())
    assert ledger.stats.dropped == 2


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 2 MiB tmpfs: a real disk that really fills (ENOSPC -> SQLITE_FULL)."""
    require_root()
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_loses_rows_counted_and_recovers(tiny_disk: Path) -> None:
    path = tiny_disk / "usage.db"
    ledger = Ledger(path)
    ledger.start()
    ledger.record(rec(sandbox="before"))
    assert ledger.flush()
    filler = fill(tiny_disk)
    for i in range(2000):  # a few hundred KiB of rows: more than the disk has left
        ledger.record(rec(NOW + i, "while-full", model="m" * 200))
    assert ledger.flush(30)
    assert ledger.stats.dropped > 0 and ledger.stats.errors > 0
    assert "full" in (ledger.stats.last_error or "") or "disk" in (ledger.stats.last_error or "")
    os.unlink(filler)
    ledger.record(rec(sandbox="after"))
    assert ledger.flush()
    ledger.close()
    names = {r["sandbox"] for r in ledger_query.totals(path, 0, "sandbox")}
    assert {"before", "after"} <= names


def test_totals_and_series(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    ledger = Ledger(path, clock=lambda: NOW)
    ledger.start()
    ledger.record(rec(NOW - 7200, "a", "m1"))
    ledger.record(rec(NOW - 60, "a", "m2", status=429, input_tokens=0, output_tokens=0, cache_creation_tokens=0,
                      cache_read_tokens=0))
    ledger.record(rec(NOW - 30, "b", None))
    ledger.flush()
    ledger.close()
    by_model = {r["model"]: r for r in ledger_query.totals(path, NOW - 86400, "model")}
    assert set(by_model) == {"m1", "m2", "(none)"} and by_model["m2"]["errors"] == 1
    assert ledger_query.totals(path, NOW - 3600, "sandbox")[0]["total_tokens"] == 117
    day = ledger_query.totals(path, 0, "day")
    assert day == [{"day": "2027-01-15", "requests": 3, "input_tokens": 20, "output_tokens": 10,
                    "cache_creation_tokens": 4, "cache_read_tokens": 200, "errors": 1, "total_tokens": 234}]
    assert ledger_query.series(path, NOW - 10800, 3600, "sandbox") == [(NOW - 7200, "a", 117), (NOW - 3600, "a", 0),
                                                                        (NOW - 3600, "b", 117)]
    assert ledger_query.budget_rows(path, NOW - 3600) == [("a", NOW - 60, 0), ("b", NOW - 30, 17)]


HUGE = "claude-" + "x" * (8 * 1024 * 1024)  # a model a sandbox named: 8 MiB


def test_what_a_sandbox_names_is_stored_cut(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    ledger = Ledger(path, clock=lambda: NOW)
    ledger.start()
    for _ in range(12):
        ledger.record(rec(model=HUGE, client="c" * 100_000))
    assert ledger.flush()
    ledger.close()
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT model, client FROM requests").fetchall()
    assert len(rows) == 12 and all(len(m) <= 160 and len(c) <= 160 for m, c in rows)
    assert rows[0][0].startswith("claude-xxx") and rows[0][0].endswith(f"…(+{len(HUGE) - 128} chars)")
    assert path.stat().st_size < 1024 * 1024


def test_oversized_names_in_an_old_ledger_are_cut_on_read(tmp_path: Path) -> None:
    """A usage.db written before names were cut keeps its rows; every question asked of it
    answers with the names cut (no migration rewrites them: they age out with retention)."""
    path = tmp_path / "usage.db"
    connect(path).close()
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO requests (time, sandbox, model, status, latency_ms, client) VALUES (?, ?, ?, ?, ?, ?)",
                       [(NOW, "a", HUGE, 200, 1.0, "k" * 5000), (NOW, "a", "claude-haiku-4-5", 200, 1.0, "curl")])
    by_model = {r["model"] for r in ledger_query.totals(path, NOW - 1, "model")}
    assert by_model == {"claude-haiku-4-5", "claude-" + "x" * 121 + f"…(+{len(HUGE) - 128} chars)"}
    assert all(len(r["client"]) <= 160 for r in ledger_query.totals(path, NOW - 1, "client"))
    assert all(len(key) <= 160 for _, key, _ in ledger_query.series(path, NOW - 1, 3600, "model"))
