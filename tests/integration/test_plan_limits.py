"""Plan limits through a real broker: the fake's headers and its usage endpoint reach `status`."""

from __future__ import annotations

import json
import time

from tests.fakes.eventually import eventually_async
from tests.fakes.login import claude_login_doc
from tests.fakes.upstream import OAUTH_BETA
from tests.integration.test_proxy import call


async def test_usage_poll_shows_limits_before_any_request(make_broker):
    b = await make_broker()
    await eventually_async(lambda: b.fake.usage_requests, what="the usage poll at start")
    sent = b.fake.usage_requests[0]
    # The fake checked the Bearer token and beta (see FakeAnthropic._check): nothing wrong.
    assert b.fake.problems == []
    assert sent.header("authorization") == [f"Bearer {b.service.tokens.login.access_token}"]
    assert OAUTH_BETA in sent.header("anthropic-beta")[0]
    assert b.fake.requests == []  # no sandbox has asked anything yet
    await eventually_async(lambda: b.service.snapshot().limits is not None, what="limits from the poll")
    limits = b.service.snapshot().to_json()["limits"]
    assert limits["poll"] == "on" and limits["source"] == "usage endpoint"
    assert limits["five_hour"]["utilization"] == 62.0
    assert limits["five_hour"]["resets_at"] == "2030-01-01T14:20:00+00:00"
    assert limits["seven_day"]["utilization"] == 31.0 and limits["seven_day_opus"]["utilization"] == 4.0
    # On demand: a status that asks to poll does, once; a second one within 30 s reuses it.
    reply = await b.service.handle_control({"op": "status", "poll_limits": True})
    assert len(b.fake.usage_requests) in (1, 2) and reply["status"]["limits"]["five_hour"]["utilization"] == 62.0
    polls = len(b.fake.usage_requests)
    await b.service.handle_control({"op": "status", "poll_limits": True})
    assert len(b.fake.usage_requests) == polls


async def test_headers_from_a_proxied_request_update_the_gauges(make_broker):
    b = await make_broker(limit_headers={"5h-utilization": "0.875", "7d-utilization": "0.12",
                                         "5h-reset": "1900000000", "5h-status": "allowed_warning",
                                         "status": "allowed_warning"})
    await eventually_async(lambda: b.service.snapshot().limits is not None, what="the poll")
    key = await b.add_sandbox("one")
    status, _, _ = await call(b, key=key)
    assert status == 200
    limits = b.service.snapshot().to_json()["limits"]
    assert limits["source"] == "headers" and limits["status"] == "allowed_warning"
    assert limits["five_hour"] == {"label": "5-hour", "utilization": 87.5, "resets_at": "2030-03-17T17:46:40+00:00",
                                   "status": "allowed_warning", "surpassed_threshold": None}
    assert limits["seven_day"]["utilization"] == 12.0
    assert limits["seven_day_opus"]["utilization"] == 4.0  # only the poll knows it: kept
    assert b.fake.problems == []


async def test_refused_scope_stops_the_poll_and_says_why(make_broker):
    b = await make_broker(has_profile_scope=lambda token: False)
    await eventually_async(lambda: b.fake.usage_requests, what="the first poll")
    await eventually_async(lambda: b.service.plan.poll_state().startswith("off"), what="the refusal")
    state = b.service.snapshot().to_json()["limits"]["poll"]
    assert state.startswith("off: the usage endpoint refused this login (the usage endpoint answered 403")
    assert "user:profile" in state
    assert await b.service.plan.poll_now() is False
    assert len(b.fake.usage_requests) == 1  # not asked again for the same login
    assert b.fake.problems == []


async def test_login_without_profile_scope_is_never_polled(make_broker):
    b = await make_broker(expires_in=None)
    access, refresh = b.endpoint.issue()
    doc = claude_login_doc(access, refresh, int((time.time() + 8 * 3600) * 1000))
    doc["claudeAiOauth"]["scopes"] = ["user:inference"]  # what `claude setup-token` grants
    b.creds.parent.mkdir(parents=True, exist_ok=True)
    b.creds.write_text(json.dumps(doc))
    b.creds.chmod(0o600)
    await b.service.tokens.reload("test")
    assert b.service.tokens.login is not None
    assert await b.service.plan.poll_now() is False
    assert "lacks the user:profile scope" in b.service.snapshot().to_json()["limits"]["poll"]
    assert b.fake.usage_requests == []


async def test_follow_mode_polls_but_never_refreshes(make_broker):
    """The poll only reads with the current token: in follow mode it runs, and a token near
    expiry is not refreshed for it (Claude Code owns the refresh chain there)."""
    b = await make_broker(expires_in=200, refresh={"mode": "follow"})
    await eventually_async(lambda: b.fake.usage_requests, what="the poll in follow mode")
    assert b.service.snapshot().to_json()["limits"]["poll"] == "on"
    assert b.endpoint.calls == 0
    assert b.fake.problems == []
