"""What each sandbox spends: the usage ledger (on disk) and the budgets (in memory).

Sandbox access asks `check()` before the proxy forwards (with the sandbox's budget), and the
proxy hands every finished request to `account()`; both run on the event loop and touch no disk: `account` queues the ledger row for its writer
thread and adds the tokens to the in-memory `BudgetBook`, which `seed()` fills from the
ledger once, at start, in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from broker.usage import ledger_query
from broker.usage.ledger import Ledger
from broker.usage.budget import MAX_WINDOW, Budget, BudgetBook, decide, estimate_tokens, spends_nothing
from broker.common.api_errors import Refusal
from broker.usage.plan_limits import PlanLimits
from broker.usage.report import UsageRecord

log = logging.getLogger(__name__)


class Metering:
    def __init__(self, ledger: Ledger, limits: Callable[[], PlanLimits | None], stop_at: float | None,
                 clock: Callable[[], float] = time.time) -> None:
        self.ledger, self.limits, self.stop_at, self.clock = ledger, limits, stop_at, clock
        self.book = BudgetBook()
        self.refused = 0  # requests stopped by a budget or the plan-wide stop
        self._holds: dict[int, tuple[str, int]] = {}  # id(exchange) -> (sandbox, tokens held)
        self._held: dict[str, int] = {}  # sandbox -> tokens its requests in flight hold

    async def seed(self) -> None:
        """Fill the budget book from the ledger's last 31 days (a worker thread: it reads SQLite)."""
        try:
            rows = await asyncio.to_thread(ledger_query.budget_rows, self.ledger.path, self.clock() - MAX_WINDOW)
        except Exception as exc:  # a damaged ledger must not keep the broker from serving
            log.error("budgets start empty: cannot read the usage ledger: %s", exc)
            return
        for name, when, tokens in rows:
            self.book.spend(name, when, tokens)

    def check(self, name: str, now: float, budget: Budget | None) -> tuple[Refusal, float] | None:
        verdict = decide(name, budget, self.book, now, self.limits(), self.stop_at, self._held.get(name, 0))
        if verdict is not None:
            self.refused += 1
        return verdict

    def reserve(self, ex: Any, body: bytes | bytearray, budget: Budget | None) -> tuple[Refusal, float] | None:
        """Check the request (the proxy's `Exchange`, its body read) against the budget
        counting what requests in flight hold, and hold what it may spend until `account`
        settles it: concurrent requests cannot overshoot a budget by more than one request.
        Check and hold happen together, on the loop, with nothing awaited in between."""
        if spends_nothing(ex.path):
            return None
        verdict = self.check(ex.sandbox, self.clock(), budget)
        if verdict is None and budget is not None:
            tokens = estimate_tokens(body)
            self._holds[id(ex)] = (ex.sandbox, tokens)
            self._held[ex.sandbox] = self._held.get(ex.sandbox, 0) + tokens
        return verdict

    def reserved(self, name: str) -> int:
        return self._held.get(name, 0)

    def _release(self, ex: Any) -> None:
        hold = self._holds.pop(id(ex), None)
        if hold is not None:
            name, tokens = hold
            left = self._held.get(name, 0) - tokens
            if left > 0:
                self._held[name] = left
            else:
                self._held.pop(name, None)

    def used(self, name: str, now: float, budget: Budget | None) -> int | None:
        return None if budget is None else self.book.spent(name, now, budget.window)

    def account(self, ex: Any, now: float) -> None:
        """A finished request (the proxy's `Exchange`): one ledger row (queued) and its tokens
        in the budget book, in place of what it held."""
        self._release(ex)
        u = ex.usage
        row = UsageRecord(
            time=round(now, 3), sandbox=ex.sandbox, model=(u.model if u else None) or ex.model,
            status=int(ex.status or 0), latency_ms=float(ex.latency_ms or 0.0),
            input_tokens=u.input_tokens if u else 0, output_tokens=u.output_tokens if u else 0,
            cache_creation_tokens=u.cache_creation_input_tokens if u else 0,
            cache_read_tokens=u.cache_read_input_tokens if u else 0, client=ex.client)
        self.ledger.record(row)
        self.book.spend(ex.sandbox, row.time, row.budget_tokens)
