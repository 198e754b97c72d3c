"""Budgets through a real broker: one sandbox stopped with Anthropic's 429, the other served;
the window rolls with the clock; the plan-wide stop trips on the fake's utilization header."""

from __future__ import annotations

import asyncio
import json
import time

from tests.fakes.clock import FakeClock
from tests.fakes.eventually import eventually_async
from tests.integration.conftest import read_jsonl
from tests.integration.test_proxy import call, error_of
from tests.integration.test_usage_ledger import cli, write_config

PER_REQUEST = 11 + 5  # the fake's input tokens + "Hello from the fake upstream" in words


async def test_a_budget_stops_one_sandbox_not_the_other_and_the_window_rolls(make_broker, tmp_path, capsys):
    b = await make_broker()
    clock = FakeClock(start=1_899_999_960.0)  # a whole minute
    b.service.proxy.clock = b.service.metering.clock = clock.time
    alpha, beta = await b.add_sandbox("alpha"), await b.add_sandbox("beta")
    config = write_config(b, tmp_path)
    out = await cli(capsys, config, "sandbox", "budget", "alpha", "20/1h")
    assert "budget 20/1h tokens per rolling window" in out
    for _ in range(2):  # 16 tokens, then 32: the second still starts under 20
        assert (await call(b, key=alpha))[0] == 200
    status, headers, body = await call(b, key=alpha)
    assert status == 429
    err = error_of(body)
    assert err["type"] == "rate_limit_error"
    assert "sandbox 'alpha' has used its inference-broker budget of 20/1h (32 tokens" in err["message"]
    # Both requests fell in one one-minute bucket, which ages out a whole window after its end.
    assert headers["Retry-After"] == "3660"
    assert (await call(b, key=beta))[0] == 200  # the other sandbox keeps working
    assert len(b.fake.requests) == 3  # the refused request never went upstream
    listed = await cli(capsys, config, "sandbox", "list")
    assert "budget 32 used of 20/1h" in listed
    rows = {r["name"]: r for r in json.loads(await cli(capsys, config, "sandbox", "list", "--json"))}
    assert rows["alpha"]["budget"] == "20/1h" and rows["beta"]["budget"] is None
    await clock.advance(3659)
    assert (await call(b, key=alpha))[0] == 429
    await clock.advance(1)
    assert (await call(b, key=alpha))[0] == 200  # the window has rolled
    await cli(capsys, config, "sandbox", "budget", "alpha", "off")
    for _ in range(3):
        assert (await call(b, key=alpha))[0] == 200
    refused = lambda: [a["outcome"] for a in read_jsonl(b.state_dir / "audit.jsonl") if a["status"] == 429]  # noqa: E731
    await eventually_async(lambda: len(refused()) == 2, what="2 refusals in the audit trail")  # written in batches
    assert refused() == ["refused: over budget"] * 2
    assert b.fake.problems == []


async def test_budgets_survive_a_restart_from_the_ledger(make_broker, tmp_path, capsys):
    b = await make_broker()
    key = await b.add_sandbox("alpha")
    await b.service.handle_control({"op": "sandbox_budget", "name": "alpha", "budget": "20/5h"})
    for _ in range(2):
        assert (await call(b, key=key))[0] == 200
    assert (await call(b, key=key))[0] == 429
    await b.service.handle_control({"op": "usage_flush"})
    fresh = type(b.service)(b.service.config)  # a second broker on the same state: seeded from the ledger
    await fresh.metering.seed()
    budget = fresh.keystore.budgets()["alpha"]
    fresh.keystore.close()
    verdict = fresh.metering.check("alpha", time.time(), budget)
    assert verdict is not None and verdict[0].status == 429


async def test_stop_at_percent_of_the_five_hour_window(make_broker):
    b = await make_broker(usage={"stop_at_percent": 90}, limit_headers={"5h-utilization": "0.91"},
                          usage_doc={"five_hour": {"utilization": 40.0, "resets_at": "2099-01-01T00:00:00Z"}})
    one, two = await b.add_sandbox("one"), await b.add_sandbox("two")
    assert (await call(b, key=one))[0] == 200  # the headers of this reply say 91%
    for key in (one, two):
        status, headers, body = await call(b, key=key)
        assert status == 429
        message = error_of(body)["message"]
        assert "stops every sandbox at 90% of the plan's 5-hour window, and it is at 91%" in message
        assert 3500 <= int(headers["Retry-After"]) <= 3601  # the fake's window resets in an hour
    assert len(b.fake.requests) == 1


async def test_bad_budget_refused_before_a_key_is_issued(make_broker, tmp_path, capsys):
    from broker.cli import main as cli_main

    b = await make_broker()
    config = write_config(b, tmp_path)
    capsys.readouterr()
    rc = await asyncio.to_thread(cli_main, ["--config", str(config), "sandbox", "add", "x", "--budget", "2M"])
    err = capsys.readouterr().err
    assert rc == 1 and "bad budget '2M'" in err
    assert b.service.keystore.hashes() == {}
    out = await cli(capsys, config, "sandbox", "add", "y", "--budget", "2M/5h")
    assert out.startswith("sk-ib-")
    assert b.service.keystore.budgets()["y"].words() == "2M/5h"
    rc = await asyncio.to_thread(cli_main, ["--config", str(config), "sandbox", "budget", "nobody", "1k/1h"])
    assert rc == 1 and "no sandbox named 'nobody'" in capsys.readouterr().err
