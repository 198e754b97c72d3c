"""The dashboard's data and actions, over the running service.

Reads that touch the disk (the ledger, the refresh log) run in worker threads; actions go
through the same service calls the tray and the CLI use.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from broker.usage import ledger_query
from broker.login import refresh_log
from broker.status.actions import Action
from broker.usage.budget import parse_budget
from broker.common.errors import BrokerError
from broker.usage.report import bucket_seconds
from broker.dashboard.page import STYLE, PageData, render

RANGES = {"24h": 86400.0, "7d": 7 * 86400.0, "30d": 30 * 86400.0}


class DashboardViews:
    def __init__(self, service: Any) -> None:
        self.service = service

    def stylesheet(self) -> str:
        return STYLE

    async def page(self, query: dict[str, str], csrf: str) -> str:
        rng = query.get("range") if query.get("range") in RANGES else "24h"
        span = RANGES[rng]
        now = time.time()
        since = now - span
        bucket = bucket_seconds(span)
        since = since - since % bucket + bucket  # whole buckets, the last one ending after now
        ledger = self.service.ledger
        await asyncio.to_thread(ledger.flush)
        path = ledger.path

        def read() -> tuple[Any, ...]:
            return (ledger_query.series(path, since, bucket, "sandbox"), ledger_query.series(path, since, bucket, "model"),
                    ledger_query.totals(path, since, "sandbox"), ledger_query.totals(path, since, "model"),
                    refresh_log.tail(self.service.refresh_log, 10))

        try:
            by_sandbox, by_model, t_sandbox, t_model, events = await asyncio.to_thread(read)
            problem = None
        except Exception as exc:  # a damaged ledger still leaves the rest of the page useful
            by_sandbox = by_model = t_sandbox = t_model = events = []
            problem = f"cannot read the usage ledger: {exc}"
        return render(PageData(
            snapshot=self.service.snapshot(), range=rng, since=since, bucket=bucket, buckets=int(span // bucket),
            by_sandbox=by_sandbox, by_model=by_model, totals_sandbox=t_sandbox, totals_model=t_model,
            events=events, ledger=vars(ledger.stats), csrf=csrf, problem=problem))

    async def act(self, action: str, form: dict[str, str]) -> str | None:
        name = form.get("name", "")
        try:
            if action == "revoke":
                await self.service.perform(Action.REVOKE_SANDBOX, name)
            elif action == "budget":
                await self.service.set_budget(name, parse_budget(form.get("budget", "")))
            elif action == "poll":
                await self.service.plan.poll_now(on_demand=True)
            else:
                return f"unknown action {action!r}"
        except BrokerError as exc:
            return exc.message
        return None
