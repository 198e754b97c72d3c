"""The proxy's error paths: whatever fails while a request is upstream, the sandbox gets an
answer in Anthropic's error shape, the log one line (no traceback), and no upstream
connection is left behind. A relay between the broker and the fake upstream counts the
broker's open upstream connections; a raw socket server plays an upstream that answers
what no HTTP parser accepts."""

from __future__ import annotations

import asyncio
import logging
import pytest

from tests.fakes.eventually import eventually_async
from tests.integration.test_proxy import call, error_of

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def _no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """aiohttp's "Error handling request" (a 500 with a traceback) never comes."""
    assert not [r for r in caplog.records if r.exc_info or "Error handling request" in r.getMessage()]


async def test_a_refresh_that_raises_after_a_401_passes_the_401_on_and_frees_its_connection(
        make_broker, monkeypatch, caplog):
    b = await make_broker(relay=True)
    key = await b.add_sandbox("r")

    async def broken_refresh(trigger: str, failed_token: str | None = None) -> None:
        raise RuntimeError("the credential store went away")

    monkeypatch.setattr(b.service.tokens, "refresh", broken_refresh)
    for _ in range(3):
        b.fake.fail_next(401)
        status, _, data = await call(b, key=key)
        assert status == 401, data
        assert error_of(data)["type"] == "authentication_error"  # upstream's own 401, as it was
    assert b.relay is not None
    await eventually_async(lambda: b.relay.open <= 1, what="the 401 replies' connections freed or reused")
    _no_traceback(caplog)
    assert b.fake.problems == []


async def test_a_request_cancelled_during_the_refresh_after_a_401_frees_its_connection(make_broker, monkeypatch):
    b = await make_broker(relay=True)
    key = await b.add_sandbox("r")
    refreshing = asyncio.Event()

    async def stuck_refresh(trigger: str, failed_token: str | None = None) -> None:
        refreshing.set()
        await asyncio.Event().wait()  # until the handler is cancelled

    monkeypatch.setattr(b.service.tokens, "refresh", stuck_refresh)
    for _ in range(3):
        b.fake.fail_next(401)
        refreshing.clear()
        client = asyncio.create_task(call(b, key=key))
        await asyncio.wait_for(refreshing.wait(), 5)
        client.cancel()  # the client goes away: aiohttp cancels the handler
        with pytest.raises(asyncio.CancelledError):
            await client
        await eventually_async(lambda: b.service.access.active_streams == 0, what="the handler ended")
    assert b.relay is not None
    await eventually_async(lambda: b.relay.open <= 1, what="the 401 replies' connections freed or reused")


async def test_a_failing_plan_limits_reader_neither_fails_the_request_nor_leaks_it(make_broker, caplog):
    b = await make_broker(relay=True)
    key = await b.add_sandbox("l")
    assert b.service.proxy is not None

    def broken(headers: object) -> None:
        raise ValueError("a plan-limit header it cannot read")

    b.service.proxy.forwarder.on_limits = broken
    for _ in range(3):
        b.service.proxy.forwarder._limits_noted = float("-inf")  # each reply read at once
        status, _, data = await call(b, key=key)
        assert status == 200, data
    assert b.relay is not None
    await eventually_async(lambda: b.relay.open <= 1, what="connections freed or reused")
    _no_traceback(caplog)


MALFORMED = [
    ("bad-status-line", b"HTTP/1.1 2000 Nope\r\nContent-Length: 2\r\n\r\n{}"),
    ("not-http", b"SSH-2.0-OpenSSH_9.6\r\n\r\n"),
    ("header-over-8190-bytes", b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 9000 + b"\r\nContent-Length: 2\r\n\r\n{}"),
    ("bad-content-length", b"HTTP/1.1 200 OK\r\nContent-Length: banana\r\n\r\n{}"),
    ("closed-without-a-reply", b""),
]


@pytest.mark.parametrize("reply", [m[1] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
async def test_a_malformed_upstream_reply_is_a_502_in_anthropic_shape(make_broker, raw_upstream, reply, caplog):
    caplog.set_level(logging.INFO)
    b = await make_broker(upstream_url=await raw_upstream(reply))
    key = await b.add_sandbox("m")
    status, headers, data = await call(b, key=key)
    assert status == 502, data
    err = error_of(data)
    assert err["type"] == "api_error" and "upstream" in err["message"]
    assert headers["Content-Type"].startswith("application/json")
    _no_traceback(caplog)
