"""The control socket's requests (from the CLI), each answered by the running service."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from broker.status.actions import Action
from broker.usage.budget import parse_budget
from broker.common.errors import BrokerError
from broker.common.redact import fingerprint

log = logging.getLogger("broker.runtime.service")


async def handle(service: Any, req: dict[str, Any]) -> dict[str, Any]:
    op = req.get("op")
    if op == "ping":
        return {"ok": True, "pid": os.getpid()}
    if op == "status":
        if req.get("poll_limits"):
            await service.plan.poll_now(on_demand=True)
        return {"ok": True, "status": {**service.snapshot().to_json(), "usage_ledger": vars(service.ledger.stats)}}
    if op == "perform":
        await service.perform(Action(req["action"]), req.get("arg"))
        return {"ok": True, "status": service.snapshot().to_json()}
    if op in ("sandbox_add", "sandbox_rotate"):
        name = str(req["name"])
        issued = op == "sandbox_add"
        key = await (service.access.add(name) if issued else service.access.rotate(name))
        log.info("sandbox %s: key %s (fingerprint %s)", name, "issued" if issued else "rotated", fingerprint(key))
        return {"ok": True, "key": key}
    if op == "sandbox_undo":  # the client could not write the key it was given: take it back
        name = str(req["name"])
        undone = await service.access.undo_issue(name, str(req["key"]))
        log.info("sandbox %s: the key just issued was %s", name, "taken back" if undone else "not taken back")
        return {"ok": True, "undone": undone}
    if op == "dashboard_url":
        if service.dashboard is None:
            raise BrokerError(service.dashboard_error, title="Dashboard")
        return {"ok": True, "url": service.dashboard.login_url()}
    if op == "usage_flush":
        await asyncio.to_thread(service.ledger.flush)
        return {"ok": True, "ledger": vars(service.ledger.stats)}
    if op == "sandbox_list":
        return {"ok": True, "sandboxes": [s.to_json() for s in service.sandboxes()]}
    if op == "sandbox_budget":
        await service.set_budget(str(req["name"]), parse_budget(str(req["budget"])))
        return {"ok": True}
    raise BrokerError(f"unknown control request {op!r}")
