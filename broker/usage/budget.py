"""Per-sandbox token budgets over a rolling window, and the plan-wide stop at N% of 5 hours.

Everything here is pure and in memory: the proxy asks `decide()` before forwarding, on the
event loop, so no SQLite query may sit on that path. The `BudgetBook` keeps each sandbox's
spent tokens in one-minute buckets (seeded from the ledger at start, then fed by every
finished request); a budget counts input, cache-creation and output tokens, leaving cache
reads out as Anthropic's own input rate limits do.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

from broker.common.errors import BrokerError
from broker.common.api_errors import Refusal, refusal
from broker.usage.plan_limits import PlanLimits
from broker.usage.report import UNITS
from broker.common.wording import duration_words

BUCKET = 60.0  # seconds per bucket: retry-after is exact to the minute
MAX_WINDOW = 31 * 86400.0  # the book keeps this much history
MAX_TOKENS = 10**12  # far past any plan's window; SQLite's integers end near 9.2e18
IN_FLIGHT_WAIT = 5.0  # seconds to retry after, when requests in flight hold the rest of a budget
_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}
_BUDGET = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?)\s*/\s*(\d+(?:\.\d+)?)?\s*([mhdw])\s*", re.I)


class BudgetError(BrokerError):
    title = "Sandbox budget"


@dataclass(frozen=True)
class Budget:
    tokens: int
    window: float  # seconds

    def words(self) -> str:
        """"2M/5h": the form a person typed."""
        return f"{_amount(self.tokens)}/{_span(self.window)}"


def _amount(n: int) -> str:
    for suffix, size in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= size and n % (size // 10) == 0:
            return f"{n / size:g}{suffix}"
    return str(n)


def _span(seconds: float) -> str:
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds / 60:g}m"


def parse_budget(text: str) -> Budget | None:
    """"2M/5h" (tokens per rolling window), "500k/1d", "10000/30m"; "off" is None."""
    if text.strip().lower() in ("off", "none"):
        return None
    m = _BUDGET.fullmatch(text)
    if not m:
        raise BudgetError(f"bad budget {text!r}: write TOKENS/WINDOW such as 2M/5h, 500k/1d or 50000/30m "
                          "(or `off`)")
    amount, window = float(m.group(1)) * _SUFFIX[m.group(2).lower()], float(m.group(3) or 1) * UNITS[m.group(4).lower()]
    if not amount <= MAX_TOKENS:  # also infinity: 400 digits read as a float
        raise BudgetError(f"bad budget {text!r}: at most {_amount(MAX_TOKENS)} tokens per window")
    tokens = int(amount)
    if tokens < 1 or not 60 <= window <= MAX_WINDOW:
        raise BudgetError(f"bad budget {text!r}: at least 1 token, over a window from 1 minute to 31 days")
    return Budget(tokens, window)


class BudgetBook:
    """Tokens spent per sandbox, in one-minute buckets, for the last `MAX_WINDOW` seconds."""

    def __init__(self) -> None:
        self._spent: dict[str, deque[list[float]]] = {}  # name -> [[bucket start, tokens], ...] oldest first

    def spend(self, name: str, when: float, tokens: int) -> None:
        if tokens <= 0:
            return
        start = when - when % BUCKET
        buckets = self._spent.setdefault(name, deque())
        if buckets and buckets[-1][0] == start:
            buckets[-1][1] += tokens
        elif buckets and buckets[-1][0] > start:  # a late row (seeding out of order): keep it simple
            buckets[-1][1] += tokens
        else:
            buckets.append([start, float(tokens)])
        while buckets and buckets[0][0] < when - MAX_WINDOW:
            buckets.popleft()

    def forget(self, name: str) -> None:
        self._spent.pop(name, None)

    def spent(self, name: str, now: float, window: float) -> int:
        """Tokens spent in the `window` seconds up to `now` (whole buckets)."""
        total = 0.0
        for start, tokens in reversed(self._spent.get(name, ())):
            if start + BUCKET <= now - window:
                break
            total += tokens
        return int(total)

    def frees_at(self, name: str, now: float, budget: Budget) -> float:
        """When enough of the window's oldest spending has aged out to be under budget again."""
        buckets = [b for b in self._spent.get(name, ()) if b[0] + BUCKET > now - budget.window]
        left = sum(t for _, t in buckets)
        for start, tokens in buckets:
            left -= tokens
            if left < budget.tokens:
                return start + BUCKET + budget.window
        return now


_MAX_TOKENS = re.compile(rb'"max_tokens"[ \t\r\n]*:[ \t\r\n]*([0-9]{1,9})(?![0-9])')
BYTES_PER_TOKEN = 4  # the usual rule of thumb for text; images count high, which only holds more


def estimate_tokens(body: bytes | bytearray) -> int:
    """What a request may spend, to hold against its sandbox's budget while it runs: its
    `max_tokens` (the largest given: a quote inside a JSON string is escaped, so this can only
    match a key) plus its input, estimated from the body's size."""
    asked = max((int(m.group(1)) for m in _MAX_TOKENS.finditer(body)), default=0)
    return asked + len(body) // BYTES_PER_TOKEN


def spends_nothing(path: str) -> bool:
    """count_tokens says what a request would cost; it costs nothing itself."""
    return path.partition("?")[0].rstrip("/").endswith("/count_tokens")


def decide(name: str, budget: Budget | None, book: BudgetBook, now: float, limits: PlanLimits | None = None,
           stop_at: float | None = None, held: int = 0) -> tuple[Refusal, float] | None:
    """None to forward; else the 429 (Anthropic's `rate_limit_error`) and seconds to retry after.
    `held`: tokens reserved by this sandbox's requests in flight, counted as spent."""
    if stop_at is not None and limits is not None:
        five = limits.window("five_hour")
        if five is not None and five.percent is not None and five.percent >= stop_at:
            if five.resets_at is None or five.resets_at > now:
                wait = (five.resets_at - now) if five.resets_at else 300.0
                return refusal(429, f"inference-broker stops every sandbox at {stop_at:g}% of the plan's 5-hour "
                                    f"window, and it is at {five.percent:g}%; it resets in "
                                    f"{duration_words(wait)} (the `usage.stop_at_percent` setting)"), wait
    if budget is None:
        return None
    used = book.spent(name, now, budget.window)
    if used + held < budget.tokens:
        return None
    if used < budget.tokens:  # the rest is held by requests in flight: they end, or settle for less
        return refusal(429, f"sandbox {name!r} is at its inference-broker budget of {budget.words()} "
                            f"({used} tokens spent in the last {duration_words(budget.window)}, up to {held} "
                            "more held by its requests in flight); retry when they finish"), IN_FLIGHT_WAIT
    wait = max(book.frees_at(name, now, budget) - now, 1.0)
    held_words = f", {held} more held by requests in flight" if held else ""
    return refusal(429, f"sandbox {name!r} has used its inference-broker budget of {budget.words()} "
                        f"({used} tokens in the last {duration_words(budget.window)}{held_words}); more frees up in "
                        f"{duration_words(wait)}. Change it with `inference-broker sandbox budget {name} "
                        "TOKENS/WINDOW` or `off`."), wait
