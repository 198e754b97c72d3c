"""The usage ledger's record and the words that ask about it (`--since 7d`, `--by model`).

Pure: the SQLite adapter stores `UsageRecord`s and answers `Query`s; the CLI and the dashboard
build queries from what a person typed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from broker.common.errors import BrokerError

BY = ("sandbox", "model", "day", "client")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}  # seconds per span unit
_SPAN = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", re.I)


# A model or client string comes from a sandbox: cut as the audit trail cuts what it names
# (`proxy.audit_policy.MAX_FIELD`), so 12 requests naming an 8 MiB model cannot grow the ledger
# by 100 MiB, nor a report or page by as much.
MAX_NAME = 128


def bound_name(value: str | None, limit: int = MAX_NAME) -> str | None:
    """`value` cut to `limit` characters, saying how many more there were."""
    if value is None or len(value) <= limit:
        return value
    return f"{value[:limit]}…(+{len(value) - limit} chars)"


def bound_name_sql(column: str, limit: int = MAX_NAME) -> str:
    """The same cut in SQL, for rows stored before names were cut."""
    return (f"CASE WHEN length({column}) > {limit} THEN substr({column}, 1, {limit}) || '…(+' || "
            f"(length({column}) - {limit}) || ' chars)' ELSE {column} END")


class UsageQueryError(BrokerError):
    title = "Usage"


@dataclass(frozen=True)
class UsageRecord:
    """One proxied request, as the ledger keeps it (no prompt, no key, no token)."""

    time: float
    sandbox: str
    model: str | None
    status: int
    latency_ms: float
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_read_tokens: int = 0
    client: str = "unknown"

    @property
    def budget_tokens(self) -> int:
        """What a budget counts: cache reads are left out, as Anthropic's input rate limits do."""
        return self.input_tokens + self.cache_creation_tokens + self.output_tokens

    def bounded(self) -> "UsageRecord":
        """This record with what the sandbox named (model, client) cut to `MAX_NAME`."""
        if (self.model is None or len(self.model) <= MAX_NAME) and len(self.client) <= MAX_NAME:
            return self
        return replace(self, model=bound_name(self.model), client=bound_name(self.client) or "")


def parse_span(text: str) -> float:
    """"7d" -> 604800.0 seconds; "90m", "5h", "2w" too."""
    m = _SPAN.fullmatch(text or "")
    if not m or float(m.group(1)) <= 0:
        raise UsageQueryError(f"bad time span {text!r}: use a number and s, m, h, d or w (e.g. 7d, 5h)")
    return float(m.group(1)) * UNITS[m.group(2).lower()]


def check_by(by: str) -> str:
    if by not in BY:
        raise UsageQueryError(f"cannot group by {by!r} (choose {', '.join(BY)})")
    return by


def bucket_seconds(span: float) -> float:
    """Chart bars: hourly up to a day, six-hourly up to a week, daily beyond."""
    if span <= 86400:
        return 3600.0
    if span <= 7 * 86400:
        return 6 * 3600.0
    return 86400.0
