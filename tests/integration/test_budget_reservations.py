"""Budgets that hold under concurrency, through a real broker: a request reserves what it may
spend when it is admitted, so concurrent streams cannot overshoot a budget by more than one
request; count_tokens replies spend nothing; a non-streaming reply too big to keep is still
counted."""

from __future__ import annotations

import asyncio
import json

from tests.fakes.eventually import eventually_async
from tests.integration.test_proxy import REQUEST, call

OUTPUT = 80


def _used(b, name: str):
    return next(s for s in b.service.access.sandboxes() if s.name == name)


async def test_concurrent_streams_overshoot_a_budget_by_at_most_one_request(make_broker) -> None:
    gate = asyncio.Event()
    b = await make_broker(gate=gate, reply_text=" ".join(["word"] * OUTPUT))
    key = await b.add_sandbox("alpha")
    await b.service.handle_control({"op": "sandbox_budget", "name": "alpha", "budget": "100/1h"})
    body = json.dumps({**REQUEST, "max_tokens": OUTPUT, "stream": True}).encode()
    calls = [asyncio.create_task(call(b, key=key, body=body)) for _ in range(30)]
    # Every request has either been refused or reached upstream (where the gate holds it).
    await eventually_async(lambda: sum(c.done() for c in calls) + b.fake.streams_started == 30,
                           what="30 requests admitted or refused")
    gate.set()
    statuses = [status for status, _, _ in await asyncio.gather(*calls)]
    served = statuses.count(200)
    assert 1 <= served <= 2 and statuses.count(429) == 30 - served, statuses
    spent = _used(b, "alpha")
    assert spent.input_tokens + spent.output_tokens <= 100 + (11 + OUTPUT)
    assert b.service.metering.reserved("alpha") == 0  # every reservation settled
    assert b.fake.problems == []


async def test_a_refused_or_failed_request_releases_its_reservation(make_broker) -> None:
    b = await make_broker()
    key = await b.add_sandbox("alpha")
    await b.service.handle_control({"op": "sandbox_budget", "name": "alpha", "budget": "1000/1h"})
    b.fake.fail_next(500)
    assert (await call(b, key=key, body=json.dumps({**REQUEST, "max_tokens": 5000}).encode()))[0] == 500
    assert b.service.metering.reserved("alpha") == 0
    assert (await call(b, key=key))[0] == 200


async def test_count_tokens_spends_nothing(make_broker) -> None:
    b = await make_broker()
    key = await b.add_sandbox("alpha")
    await b.service.handle_control({"op": "sandbox_budget", "name": "alpha", "budget": "20/1h"})
    counting = json.dumps({"model": REQUEST["model"], "messages": REQUEST["messages"]}).encode()
    for _ in range(5):  # 11 input tokens counted each: 55, well past 20, if they were spending
        status, _, data = await call(b, path="/v1/messages/count_tokens", key=key, body=counting)
        assert status == 200 and json.loads(data) == {"input_tokens": 11}
    assert (await call(b, key=key))[0] == 200
    assert _used(b, "alpha").input_tokens == 11
    assert b.fake.problems == []


async def test_a_non_streaming_reply_too_big_to_keep_is_counted(make_broker) -> None:
    words = 1_000_000  # "word " each: a 5 MB reply
    b = await make_broker(reply_text="word " * words)
    key = await b.add_sandbox("alpha")
    status, _, data = await call(b, key=key)
    assert status == 200 and len(data) > 5_000_000
    used = _used(b, "alpha")
    assert (used.input_tokens, used.output_tokens) == (11, words)
