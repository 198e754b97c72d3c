"""Questions asked of the usage ledger: totals by sandbox, model, day or client; chart series;
the recent rows budgets are seeded from. Each opens its own connection (WAL readers do not
block the writer); callers on the event loop run them with `asyncio.to_thread`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from broker.usage.ledger import connect
from broker.usage.report import bound_name_sql, check_by

TOTALS = ("requests", "input_tokens", "output_tokens", "cache_creation_tokens", "cache_read_tokens", "errors")
# Days in UTC. Models and clients are cut on read too: a ledger written before they were cut
# on write may hold rows of any size (they age out with retention; no migration needed).
_GROUP = {"sandbox": "sandbox", "model": f"coalesce({bound_name_sql('model')}, '(none)')",
          "client": bound_name_sql("client"), "day": "date(time, 'unixepoch')"}


def _open(path: Path) -> sqlite3.Connection:
    return connect(Path(path), busy_timeout=5.0)


def totals(path: Path, since: float, by: str) -> list[dict[str, Any]]:
    """One row per group: requests, token sums, errors (status >= 400), newest group first for days."""
    group = _GROUP[check_by(by)]
    order = "key DESC" if by == "day" else "total DESC, key"
    db = _open(path)
    try:
        rows = db.execute(
            f"SELECT {group} AS key, count(*), sum(input_tokens), sum(output_tokens), sum(cache_creation_tokens), "
            f"sum(cache_read_tokens), sum(status >= 400), "
            f"sum(input_tokens + output_tokens + cache_creation_tokens + cache_read_tokens) AS total "
            f"FROM requests WHERE time >= ? GROUP BY key ORDER BY {order}", (since,)).fetchall()
    finally:
        db.close()
    return [{by: r[0], **dict(zip(TOTALS, r[1:7])), "total_tokens": r[7]} for r in rows]


def series(path: Path, since: float, bucket: float, by: str) -> list[tuple[float, str, int]]:
    """(bucket start, group, tokens) for a chart: tokens summed per bucket of `bucket` seconds."""
    group = _GROUP[check_by(by)]
    db = _open(path)
    try:
        rows = db.execute(
            f"SELECT CAST((time - ?) / ? AS INTEGER) AS b, {group} AS key, "
            f"sum(input_tokens + output_tokens + cache_creation_tokens + cache_read_tokens) "
            f"FROM requests WHERE time >= ? GROUP BY b, key ORDER BY b", (since, bucket, since)).fetchall()
    finally:
        db.close()
    return [(since + b * bucket, key, int(tokens or 0)) for b, key, tokens in rows]


def budget_rows(path: Path, since: float) -> list[tuple[str, float, int]]:
    """(sandbox, time, budget tokens) since `since`: what the in-memory budget book starts from."""
    db = _open(path)
    try:
        return [(s, t, int(n)) for s, t, n in db.execute(
            "SELECT sandbox, time, input_tokens + cache_creation_tokens + output_tokens FROM requests "
            "WHERE time >= ? ORDER BY time", (since,))]
    finally:
        db.close()
