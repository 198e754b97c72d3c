"""The inference.local proxy in-process: a real Service between real clients and fake Anthropic.

Clients are the real anthropic SDK (sync and async, Bearer and x-api-key styles), raw
aiohttp, and raw sockets for requests no well-behaved client can send. Every test ends by
checking that the fake upstream saw nothing a careful proxy must not send.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
from typing import Any

import aiohttp
import anthropic
import pytest
from anthropic._constants import ANTHROPIC_API_VERSION as SDK_API_VERSION

from broker.sandboxes.key_store import KeyStore
from broker.status.actions import Action
from tests.integration.conftest import (
    AsyncRecordingTransport,
    Broker,
    RecordingTransport,
    httpx,
    read_jsonl,
)
from tests.fakes.eventually import eventually_async
from tests.fakes.upstream import OAUTH_BETA

MODEL = "claude-haiku-4-5"
REPLY = "Hello from the fake upstream"  # the fake's reply: 5 words, so 5 output tokens
MESSAGES = [{"role": "user", "content": "hi"}]
REQUEST = {"model": MODEL, "max_tokens": 16, "messages": MESSAGES}
# How a client sees a stream the broker ended: the chunked body stops short.
STREAM_CUT = httpx.RemoteProtocolError


# -- helpers ---------------------------------------------------------------------------------


def sync_sdk(b: Broker, key: str, **kw: Any) -> anthropic.Anthropic:
    """SDK 2.x with `api_key=`: it sends the key as `Authorization: Bearer`."""
    return anthropic.Anthropic(base_url=b.url, api_key=key, max_retries=0, timeout=10,
                               http_client=httpx.Client(transport=RecordingTransport(b.seen)), **kw)


def async_sdk(b: Broker, key: str) -> anthropic.AsyncAnthropic:
    """The x-api-key style (SDK 1.x, Claude Code): the key in `x-api-key`, no Bearer."""
    return anthropic.AsyncAnthropic(base_url=b.url, api_key=None, default_headers={"x-api-key": key},
                                    max_retries=0, timeout=10,
                                    http_client=httpx.AsyncClient(transport=AsyncRecordingTransport(b.seen)))


async def call(b: Broker, method: str = "POST", path: str = "/v1/messages", *, key: str | None = None,
               headers: dict[str, str] | list[tuple[str, str]] | None = None, body: Any = None,
               ) -> tuple[int, dict[str, str], bytes]:
    """One raw request; what came back is also recorded for the secrets check."""
    hdrs: list[tuple[str, str]] = list(headers.items() if isinstance(headers, dict) else headers or [])
    if key is not None:
        hdrs.append(("x-api-key", key))
    if body is None and method == "POST":
        body = json.dumps(REQUEST).encode()
    async with aiohttp.ClientSession() as session:
        async with session.request(method, b.url + path, headers=hdrs, data=body) as resp:
            data = await resp.read()
            b.seen.add_headers(resp.headers)
            b.seen.add(data)
            return resp.status, dict(resp.headers), data


def error_of(data: bytes) -> dict[str, Any]:
    """Anthropic's error shape, checked: {"type": "error", "error": {"type", "message"}}."""
    doc = json.loads(data)
    assert doc["type"] == "error" and set(doc["error"]) == {"type", "message"}, doc
    return doc["error"]


def bearer(b: Broker) -> str:
    login = b.service.tokens.login
    assert login is not None
    return f"Bearer {login.access_token}"


async def audit_lines(b: Broker, count: int) -> list[dict[str, Any]]:
    """The audit log once it has `count` lines: a line is written just after the client has
    its last byte, so a test must not read it the instant a response ends."""
    path = b.service.config.audit_log
    await eventually_async(lambda: path.exists() and len(read_jsonl(path)) >= count, what=f"{count} audit lines")
    return read_jsonl(path)


async def gated_stream(b: Broker, client: anthropic.AsyncAnthropic) -> tuple[Any, Any, str]:
    """Open a stream the fake holds after its first text delta; return (manager, stream, text).

    Bounded by a short deadline: a proxy that buffered the stream would never deliver it.
    """
    async def first_delta() -> tuple[Any, Any, str]:
        manager = client.messages.stream(**REQUEST)
        stream = await manager.__aenter__()
        async for event in stream:
            if event.type == "content_block_delta":
                return manager, stream, event.delta.text
        raise AssertionError("the stream ended before its first text delta")

    return await asyncio.wait_for(first_delta(), 3)


async def drain(stream: Any) -> str:
    """The rest of a stream's text; a stream that hangs instead of ending fails in 3 s."""
    async def rest() -> str:
        return "".join([t async for t in stream.text_stream])

    return await asyncio.wait_for(rest(), 3)


# -- happy paths with the real SDK -----------------------------------------------------------


async def test_sync_sdk_with_bearer_key(make_broker):
    b = await make_broker()
    key = await b.add_sandbox("bearer")

    def session() -> tuple[Any, ...]:
        with sync_sdk(b, key) as client:
            reply = client.messages.create(**REQUEST)
            with client.messages.stream(**REQUEST) as stream:
                streamed = "".join(stream.text_stream)
            counted = client.messages.count_tokens(model=MODEL, messages=MESSAGES)
            models = client.models.list()
            return reply, streamed, counted, models

    reply, streamed, counted, models = await asyncio.to_thread(session)
    assert reply.content[0].text == REPLY and (reply.usage.input_tokens, reply.usage.output_tokens) == (11, 5)
    assert streamed == REPLY
    assert counted.input_tokens == 11
    assert [m.id for m in models.data] == ["claude-sonnet-4-6", "claude-haiku-4-5"]
    assert [(r.method, r.path) for r in b.fake.requests] == [
        ("POST", "/v1/messages"), ("POST", "/v1/messages"),
        ("POST", "/v1/messages/count_tokens"), ("GET", "/v1/models")]
    for rec in b.fake.requests:
        assert rec.header("authorization") == [bearer(b)]
        assert rec.header("anthropic-version") == [SDK_API_VERSION]  # the client's version, kept
        assert rec.header("anthropic-beta") == [OAUTH_BETA]
        assert rec.header("x-api-key") == []
    assert b.fake.problems == []


async def test_stream_is_relayed_unbuffered(make_broker):
    """The first delta reaches the client while the fake still holds the rest of the stream."""
    b = await make_broker(gate=asyncio.Event())
    key = await b.add_sandbox("stream")
    async with async_sdk(b, key) as client:
        manager, stream, first = await gated_stream(b, client)
        assert first == "Hello " and not b.fake.gate.is_set()
        assert b.fake.streams_open == 1 and b.fake.streams_completed == 0
        assert b.service.snapshot().proxy.active_streams == 1
        b.fake.gate.set()
        rest = await drain(stream)
        await manager.__aexit__(None, None, None)
    assert first + rest == REPLY
    assert b.fake.streams_completed == 1
    rec = b.fake.requests[0]
    assert rec.header("authorization") == [bearer(b)] and rec.header("x-api-key") == []
    assert b.fake.problems == []


@pytest.mark.parametrize("client_betas, merged", [
    ([], OAUTH_BETA),
    (["claude-code-20250219,context-1m-2025-08-07"], f"claude-code-20250219,context-1m-2025-08-07,{OAUTH_BETA}"),
    (["claude-code-20250219, context-1m-2025-08-07", "context-1m-2025-08-07,fine-grained-tool-streaming-2025-05-14"],
     f"claude-code-20250219,context-1m-2025-08-07,fine-grained-tool-streaming-2025-05-14,{OAUTH_BETA}"),
    ([f"a-2025-01-01,{OAUTH_BETA},b-2025-01-01", OAUTH_BETA], f"a-2025-01-01,{OAUTH_BETA},b-2025-01-01"),
], ids=["none", "one", "two-headers-dedup", "oauth-kept-in-place"])
async def test_headers_query_and_body_pass_as_they_should(make_broker, client_betas, merged):
    """Raw x-api-key client in Claude Code's shape: `?beta=true`, its own version and betas."""
    b = await make_broker()
    key = await b.add_sandbox("raw")
    body = ('{"model":  "claude-haiku-4-5" ,"max_tokens":16,\n "messages":[{"role":"user",'
            '"content":"h\\u00e9 \u00e9 \u2603"}], "stream": false}').encode()
    headers = [("anthropic-version", "2023-06-01"), ("user-agent", "claude-cli/2.1.197 (external, sdk-cli)"),
               ("x-app", "cli"), ("content-type", "application/json")]
    headers += [("anthropic-beta", v) for v in client_betas]
    status, _, data = await call(b, path="/v1/messages?beta=true", key=key, headers=headers, body=body)
    assert status == 200, data
    assert json.loads(data)["content"][0]["text"] == REPLY
    rec = b.fake.requests[0]
    assert rec.query_string == "beta=true"
    assert rec.body == body
    assert rec.header("anthropic-beta") == [merged]
    assert rec.header("anthropic-version") == ["2023-06-01"]
    assert rec.header("user-agent") == ["claude-cli/2.1.197 (external, sdk-cli)"] and rec.header("x-app") == ["cli"]
    assert rec.header("authorization") == [bearer(b)] and rec.header("x-api-key") == []
    assert b.fake.problems == []


async def test_api_key_helper_style_sends_the_key_both_ways(make_broker):
    """Claude Code's apiKeyHelper sends one key as x-api-key and as Bearer: one key, accepted."""
    b = await make_broker()
    key = await b.add_sandbox("helper")
    status, headers, data = await call(b, key=key, headers=[("Authorization", f"Bearer {key}")])
    assert status == 200, data
    assert headers["anthropic-ratelimit-unified-status"] == "allowed"  # plan headers reach the client
    rec = b.fake.requests[0]
    assert rec.header("authorization") == [bearer(b)] and rec.header("x-api-key") == []
    assert b.fake.problems == []


async def test_unreachable_upstream_is_a_502_in_anthropic_shape(make_broker):
    with socket.socket() as s:  # a port on this machine that nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    b = await make_broker(upstream_url=f"http://127.0.0.1:{closed}")
    key = await b.add_sandbox("u")
    status, _, data = await call(b, key=key)
    assert status == 502
    assert "cannot reach the upstream API" in error_of(data)["message"]
    audit = await audit_lines(b, 1)
    assert [(a["sandbox"], a["status"]) for a in audit] == [("u", 502)]


# -- refusals --------------------------------------------------------------------------------


async def _chunked(total: int, piece: int = 16384):
    """A body sent with Transfer-Encoding: chunked (no Content-Length)."""
    for _ in range(total // piece):
        yield b" " * piece


async def _raw(b: Broker, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """A request written by hand, for what aiohttp's client refuses to send."""
    host, port = b.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    b.seen.add(data)
    return int(data.split(b" ", 2)[1]), data


LIMIT = 512 * 1024  # proxy.max_body_bytes in these tests: "0.5 MiB"
REFUSALS = [
    # (id, request, status, error type)
    ("no-key", dict(key=None), 401, "authentication_error"),
    ("wrong-key", dict(key="sk-ib-" + "x" * 43), 401, "authentication_error"),
    ("bearer-and-x-api-key-differ", dict(headers=[("Authorization", "Bearer sk-ib-" + "z" * 43)]), 401,
     "authentication_error"),
    ("oauth-path", dict(path="/api/oauth/token"), 403, "permission_error"),
    ("oauth-profile", dict(method="GET", path="/api/oauth/profile", body=b""), 403, "permission_error"),
    # The plan's usage endpoint answers to the real token only: the broker polls it, sandboxes can't.
    ("oauth-usage", dict(method="GET", path="/api/oauth/usage", body=b""), 403, "permission_error"),
    ("evil-host", dict(headers={"Host": "evil.example"}), 403, "permission_error"),
    ("origin", dict(headers={"Origin": "https://evil.example"}), 403, "permission_error"),
    ("content-length-over-limit", dict(body=b"{" + b" " * LIMIT + b"}"), 413, "request_too_large"),
    ("chunked-over-limit", dict(body="chunked"), 413, "request_too_large"),
    ("malformed-json", dict(body=b'{"model": "claude-haiku-4-5", '), 400, "invalid_request_error"),
    ("json-not-an-object", dict(body=b"[1, 2]"), 400, "invalid_request_error"),
    ("delete", dict(method="DELETE", path="/v1/messages", body=b""), 405, "invalid_request_error"),
]


@pytest.mark.parametrize("req, status, error_type", [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
async def test_refusals(make_broker, req, status, error_type):
    b = await make_broker(proxy={"max_body_bytes": LIMIT})
    key = await b.add_sandbox("good")
    req = dict(req)
    req.setdefault("key", key)
    if req.get("body") == "chunked":
        req["body"] = _chunked(2 * LIMIT)  # no Content-Length: the limit holds while reading
    got, _, data = await call(b, **req)
    assert got == status, data
    err = error_of(data)
    assert err["type"] == error_type
    if status == 413:
        assert err["message"] == "request body is larger than the 0.5 MiB limit"
    assert b.fake.requests == [] and b.fake.problems == []


async def test_reachability_probes_answer_without_a_key(make_broker):
    """Claude Code's checks: `HEAD /` (2.1.x), `HEAD /api/hello` (2.1.3xx); answered here."""
    b = await make_broker()
    for path in ("/", "/api/hello", "/api/hello?"):
        status, _, data = await call(b, "HEAD", path)
        assert (status, data) == (200, b""), path
    assert (await call(b, "GET", "/api/hello"))[0] == 403  # only the HEAD probe
    assert (await call(b, "HEAD", "/api/other"))[0] == 403
    assert b.fake.requests == []


@pytest.mark.parametrize("content_length", ["abc", "-5", "1e3", "12, 12"])
async def test_malformed_content_length_is_a_400(make_broker, content_length):
    b = await make_broker()
    key = await b.add_sandbox("good")
    body = json.dumps(REQUEST).encode()
    status, data = await _raw(b, f"POST /v1/messages HTTP/1.1\nHost: inference.local\nx-api-key: {key}\n"
                                 f"Content-Type: application/json\nContent-Length: {content_length}\n"
                                 "Connection: close\n", body)
    assert status == 400, data
    assert b.fake.requests == []


async def test_repeated_wrong_keys_are_throttled_but_a_valid_key_is_still_served(make_broker):
    b = await make_broker(proxy={"auth_failures_per_minute": 3})
    key = await b.add_sandbox("good")
    for _ in range(3):
        status, _, _ = await call(b, key="sk-ib-guess" + "g" * 40)
        assert status == 401
    status, headers, data = await call(b, key="sk-ib-guess" + "g" * 40)
    assert status == 429 and error_of(data)["type"] == "rate_limit_error"
    assert 1 <= int(headers["Retry-After"]) <= 61
    assert headers["Connection"] == "close"
    # Another sandbox behind the same address (Docker Desktop: all of them) is not locked out.
    status, _, _ = await call(b, key=key)
    assert status == 200
    status, _, _ = await call(b, key="sk-ib-guess" + "g" * 40)  # its success unblocks no one
    assert status == 429
    assert len(b.fake.requests) == 1


# -- revoke, pause, disconnect: streams end at once -----------------------------------------


async def test_revoking_a_key_ends_its_open_stream_only(make_broker):
    b = await make_broker(gate=asyncio.Event())
    doomed, other = await b.add_sandbox("doomed"), await b.add_sandbox("other")
    async with async_sdk(b, doomed) as c1, async_sdk(b, other) as c2:
        m1, s1, _ = await gated_stream(b, c1)
        m2, s2, first = await gated_stream(b, c2)
        await b.service.perform(Action.REVOKE_SANDBOX, "doomed")
        with pytest.raises(STREAM_CUT):
            await drain(s1)
        await m1.__aexit__(None, None, None)
        b.fake.gate.set()
        assert first + await drain(s2) == REPLY  # the other sandbox's stream is untouched
        await m2.__aexit__(None, None, None)
        with pytest.raises(anthropic.AuthenticationError):
            await c1.messages.create(**REQUEST)
    await eventually_async(lambda: b.fake.streams_cancelled == 1, what="upstream request cancelled")
    assert b.fake.streams_completed == 1
    assert [s.name for s in b.service.snapshot().sandboxes] == ["other"]
    ended = [e for e in await audit_lines(b, 2) if e["sandbox"] == "doomed"]
    assert len(ended) == 1 and ended[0]["outcome"].startswith("ended")
    assert ended[0]["input_tokens"] == 11  # message_start's count: spent upstream, still accounted
    assert b.fake.problems == []


async def test_pause_ends_streams_and_refuses_until_resumed(make_broker):
    b = await make_broker(gate=asyncio.Event())
    key = await b.add_sandbox("p")
    async with async_sdk(b, key) as client:
        manager, stream, _ = await gated_stream(b, client)
        await b.service.perform(Action.PAUSE)
        with pytest.raises(STREAM_CUT):
            await drain(stream)
        await manager.__aexit__(None, None, None)
        with pytest.raises(anthropic.PermissionDeniedError) as refused:
            await client.messages.create(**REQUEST)
        assert "paused" in refused.value.message
        assert b.service.snapshot().proxy.paused
        await b.service.perform(Action.RESUME)
        b.fake.gate.set()
        assert (await client.messages.create(**REQUEST)).content[0].text == REPLY
    await eventually_async(lambda: b.fake.streams_cancelled == 1, what="upstream request cancelled")
    assert b.fake.problems == []


async def test_revoke_all_ends_every_stream(make_broker):
    b = await make_broker(gate=asyncio.Event())
    keys = [await b.add_sandbox(n) for n in ("a", "b")]
    async with async_sdk(b, keys[0]) as c1, async_sdk(b, keys[1]) as c2:
        opened = [await gated_stream(b, c) for c in (c1, c2)]
        assert b.service.snapshot().proxy.active_streams == 2
        await b.service.perform(Action.REVOKE_ALL)
        for manager, stream, _ in opened:
            with pytest.raises(STREAM_CUT):
                await drain(stream)
            await manager.__aexit__(None, None, None)
        for c in (c1, c2):
            with pytest.raises(anthropic.AuthenticationError):
                await c.messages.create(**REQUEST)
    await eventually_async(lambda: b.fake.streams_cancelled == 2, what="upstream requests cancelled")
    assert b.service.snapshot().sandboxes == () and b.service.snapshot().proxy.active_streams == 0
    assert b.fake.problems == []


async def test_rotating_a_key_ends_the_old_keys_stream(make_broker):
    b = await make_broker(gate=asyncio.Event())
    old = await b.add_sandbox("rot")
    async with async_sdk(b, old) as client:
        manager, stream, _ = await gated_stream(b, client)
        new = (await b.service.handle_control({"op": "sandbox_rotate", "name": "rot"}))["key"]
        b.keys["rot (new)"] = new
        with pytest.raises(STREAM_CUT):
            await drain(stream)
        await manager.__aexit__(None, None, None)
        with pytest.raises(anthropic.AuthenticationError):
            await client.messages.create(**REQUEST)
    b.fake.gate.set()
    async with async_sdk(b, new) as client:
        assert (await client.messages.create(**REQUEST)).content[0].text == REPLY
    assert b.fake.problems == []


async def test_revoke_by_another_process_reaches_open_streams(make_broker):
    """The CLI with no broker to talk to writes the key store directly; the broker notices."""
    b = await make_broker(gate=asyncio.Event())
    doomed = await b.add_sandbox("doomed")
    async with async_sdk(b, doomed) as client:
        manager, stream, _ = await gated_stream(b, client)
        with KeyStore(b.service.config.keystore_path) as other_process:
            assert other_process.revoke("doomed")
        with pytest.raises(STREAM_CUT):  # within the broker's housekeeping tick
            await drain(stream)
        await manager.__aexit__(None, None, None)
        with pytest.raises(anthropic.AuthenticationError):
            await client.messages.create(**REQUEST)
    assert b.fake.problems == []


async def test_a_key_rotated_by_another_process_ends_the_old_keys_stream(make_broker, monkeypatch, tmp_path,
                                                                          capsys):
    """Regression: the broker compared sandbox names only, so `sandbox rotate` written straight
    into the key store (a CLI that could not reach the broker) left the old key's stream running."""
    from broker.cli import main, sandbox_cmd

    b = await make_broker(gate=asyncio.Event())
    old = await b.add_sandbox("rot")
    config = tmp_path / "cli.yaml"
    config.write_text(json.dumps({"state_dir": str(b.state_dir)}))
    monkeypatch.setattr(sandbox_cmd, "ask_or_none", lambda *_: None)  # no broker to talk to
    async with async_sdk(b, old) as client:
        manager, stream, _ = await gated_stream(b, client)
        assert await asyncio.to_thread(main, ["--config", str(config), "sandbox", "rotate", "rot"]) == 0
        b.keys["rot (new)"] = capsys.readouterr().out.strip()
        with pytest.raises(STREAM_CUT):  # within the broker's housekeeping tick
            await drain(stream)
        await manager.__aexit__(None, None, None)
        with pytest.raises(anthropic.AuthenticationError):
            await client.messages.create(**REQUEST)
    b.fake.gate.set()
    async with async_sdk(b, b.keys["rot (new)"]) as client:
        assert (await client.messages.create(**REQUEST)).content[0].text == REPLY
    assert b.fake.problems == []


async def test_client_going_away_cancels_the_upstream_request(make_broker):
    b = await make_broker(gate=asyncio.Event())
    key = await b.add_sandbox("leaver")
    session = aiohttp.ClientSession()
    resp = await session.post(b.url + "/v1/messages", headers={"x-api-key": key},
                              json={**REQUEST, "stream": True})
    assert resp.status == 200
    first = await resp.content.readuntil(b"content_block_delta")
    assert b"message_start" in first
    await eventually_async(lambda: b.service.snapshot().proxy.active_streams == 1, what="stream in flight")
    resp.close()  # drop the connection mid-stream
    await session.close()
    await eventually_async(lambda: b.fake.streams_cancelled == 1, what="upstream request cancelled")
    await eventually_async(lambda: b.service.snapshot().proxy.active_streams == 0, what="proxy stream ended")
    assert b.fake.streams_completed == 0 and b.fake.problems == []
    (line,) = await audit_lines(b, 1)
    assert line["outcome"].startswith("ended") and (line["input_tokens"], line["output_tokens"]) == (11, 1)
    (leaver,) = b.service.snapshot().sandboxes
    assert (leaver.requests, leaver.input_tokens, leaver.output_tokens) == (1, 11, 1)


async def test_a_stream_holds_no_body_against_the_in_flight_budget(make_broker):
    """The body counts against the in-flight budget until upstream has answered it; a long
    stream after that holds neither the bytes nor the budget."""
    b = await make_broker(gate=asyncio.Event(), proxy={"max_inflight_bytes_per_sandbox": 20_000})
    key = await b.add_sandbox("long")
    padded = {**REQUEST, "stream": True, "system": "x" * 15_000}  # 15 KB of the 20 KB budget
    session = aiohttp.ClientSession()
    try:
        resp = await session.post(b.url + "/v1/messages", headers={"x-api-key": key}, json=padded)
        assert resp.status == 200
        await resp.content.readuntil(b"content_block_delta")  # held there by the fake
        assert b.service.proxy is not None and b.service.proxy.forwarder.inflight.held == 0
        second = await session.post(b.url + "/v1/messages", headers={"x-api-key": key},
                                    json={**padded, "stream": False})
        assert second.status == 200, await second.text()  # 15 KB more fits: the stream holds none
        second.release()
        b.fake.gate.set()
        assert b"message_stop" in await resp.read()
    finally:
        await session.close()


# -- the token: refresh on 401, ahead of expiry, none at all ----------------------------------


async def test_upstream_401_refreshes_once_and_retries(make_broker):
    b = await make_broker()
    key = await b.add_sandbox("r")
    old = bearer(b)
    b.endpoint.revoke_access(old.removeprefix("Bearer "))  # revoked server-side before its expiry
    async with async_sdk(b, key) as client:
        reply = await client.messages.create(**REQUEST)
    assert reply.content[0].text == REPLY
    assert b.endpoint.calls == 1
    assert [r.header("authorization")[0] for r in b.fake.requests] == [old, bearer(b)]
    assert bearer(b) != old
    assert json.loads(b.creds.read_text())["claudeAiOauth"]["accessToken"] == bearer(b).removeprefix("Bearer ")
    assert b.fake.problems == []


async def test_a_401_with_no_newer_token_passes_through_without_looping(make_broker):
    b = await make_broker()
    key = await b.add_sandbox("r")
    b.fake.fail_next(401, count=2)  # the refreshed token is refused too
    async with async_sdk(b, key) as client:
        with pytest.raises(anthropic.AuthenticationError):
            await client.messages.create(**REQUEST)
        assert b.endpoint.calls == 1 and len(b.fake.requests) == 2  # one refresh, one retry
        b.fake.fail_next(401)  # moments later: no newer token to try, so no second refresh
        with pytest.raises(anthropic.AuthenticationError) as again:
            await client.messages.create(**REQUEST)
        assert again.value.status_code == 401
        assert b.endpoint.calls == 1 and len(b.fake.requests) == 3
        assert (await client.messages.create(**REQUEST)).content[0].text == REPLY
    assert b.fake.problems == []


async def test_token_close_to_expiry_is_refreshed_before_forwarding(make_broker):
    # Scheduled refresh would come 60 s before expiry, long after this test; the proxy's
    # 600 s margin makes the request itself refresh first.
    b = await make_broker(expires_in=400, refresh={"ahead_min_seconds": 60, "ahead_fraction": 0.01,
                                                    "proxy_margin_seconds": 600})
    key = await b.add_sandbox("m")
    old = bearer(b)
    assert b.endpoint.calls == 0
    status, _, data = await call(b, key=key)
    assert status == 200, data
    assert b.endpoint.calls == 1
    assert len(b.fake.requests) == 1 and b.fake.requests[0].header("authorization") == [bearer(b)] != [old]
    assert b.fake.unauthorized == 0
    log = b.state_dir / "refresh-events.jsonl"  # written by its own thread, just after the refresh
    # The start writes its own event ("start", "adopted") first: wait for the request's.
    await eventually_async(lambda: log.exists() and any(e["trigger"] == "request" for e in read_jsonl(log)),
                           what="the request's refresh event")
    events = [e for e in read_jsonl(log) if e["trigger"] == "request"]
    assert [e["outcome"] for e in events] == ["refreshed"]
    assert b.fake.problems == []


async def test_failed_refresh_near_expiry_still_serves_the_valid_token(make_broker):
    b = await make_broker(expires_in=400, refresh={"ahead_min_seconds": 60, "ahead_fraction": 0.01,
                                                    "proxy_margin_seconds": 600})
    key = await b.add_sandbox("m")
    old = bearer(b)
    b.endpoint.fail_next(500)
    status, _, data = await call(b, key=key)
    assert status == 200, data
    assert b.endpoint.calls == 1 and b.fake.requests[0].header("authorization") == [old]
    assert b.service.snapshot().token.state == "expiring"
    assert b.fake.problems == []


async def test_no_usable_token_is_a_503_that_says_how_to_log_in(make_broker):
    b = await make_broker(expires_in=None)
    key = await b.add_sandbox("n")
    status, _, data = await call(b, key=key)
    assert status == 503
    err = error_of(data)
    assert err["type"] == "api_error" and "claude /login" in err["message"]
    assert b.fake.requests == [] and b.endpoint.calls == 0


# -- usage, audit, secrets -------------------------------------------------------------------


async def test_usage_and_audit_from_json_and_sse(make_broker):
    b = await make_broker()
    key = await b.add_sandbox("counted")
    other = await b.add_sandbox("idle")
    status, _, _ = await call(b, key=key)  # JSON reply
    assert status == 200
    status, _, data = await call(b, path="/v1/messages?beta=true", key=key,
                                 body=json.dumps({**REQUEST, "stream": True}).encode())  # SSE reply
    assert status == 200 and b"message_stop" in data
    status, _, _ = await call(b, key="sk-ib-" + "w" * 43)  # refused: no sandbox, no audit line
    assert status == 401
    audit = await audit_lines(b, 2)
    listed = {s["name"]: s for s in (await b.service.handle_control({"op": "sandbox_list"}))["sandboxes"]}
    counted = listed["counted"]
    assert (counted["requests"], counted["input_tokens"], counted["output_tokens"]) == (2, 22, 10)
    assert counted["last_used"] and listed["idle"]["requests"] == 0
    await b.service.access.flush()  # what `sandbox list` reads from the store with no broker running
    assert {s.name: s.requests for s in b.service.keystore.list()} == {"counted": 2, "idle": 0}
    assert b.service.snapshot().proxy.requests_today == 2

    assert len(audit) == 2
    for line, path in zip(audit, ("/v1/messages", "/v1/messages")):
        assert line["sandbox"] == "counted" and line["model"] == MODEL and line["status"] == 200
        assert line["path"] == path and line["latency_ms"] >= 0
        assert (line["input_tokens"], line["output_tokens"]) == (11, 5)
    assert other not in b.service.config.audit_log.read_text()
    assert b.fake.problems == []


async def test_no_secret_reaches_clients_logs_or_state_files(make_broker, caplog):
    caplog.set_level("DEBUG")
    b = await make_broker(gate=asyncio.Event())
    key = await b.add_sandbox("s")
    b.endpoint.revoke_access(bearer(b).removeprefix("Bearer "))  # forces a refresh: two tokens in play
    async with async_sdk(b, key) as client:
        manager, stream, _ = await gated_stream(b, client)
        b.fake.gate.set()
        await drain(stream)
        await manager.__aexit__(None, None, None)
        await client.messages.create(**REQUEST)
        b.fake.fail_next(500)
        with pytest.raises(anthropic.InternalServerError):
            await client.messages.create(**REQUEST)
    for req in ({}, {"key": "sk-ib-" + "w" * 43}, {"path": "/api/oauth/token"}, {"headers": {"Origin": "x"}}):
        await call(b, **req)
    await b.service.perform(Action.REVOKE_SANDBOX, "s")
    await call(b, key=key)
    await audit_lines(b, 3)  # the stream, the reply, the 500: every file is written now
    await b.service.access.flush()
    assert b.endpoint.calls == 1 and b.fake.problems == []

    secrets = b.secrets()
    assert len(secrets) >= 4  # the sandbox key, two access tokens, a live and a spent refresh token
    state = b.state_dir
    files = {p.name: p.read_bytes() for p in state.iterdir() if p.is_file()}
    texts = {
        "client responses": b.seen.text(),
        "broker log records": "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("broker")),
        **{name: data.decode("utf-8", "replace") for name, data in files.items()},
    }
    for where, text in texts.items():
        for label, secret in secrets.items():
            assert secret not in text, f"{label} appears in {where}"
    await b.service.handle_control({"op": "usage_flush"})
    for name in ("broker.db", "audit.jsonl", "listen.json", "refresh-events.jsonl", "usage.db"):
        assert stat.S_IMODE(os.stat(state / name).st_mode) == 0o600, name
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(b.service.config.control_socket).st_mode) == 0o600


async def test_upstream_silence_mid_stream_is_an_error_for_the_client(make_broker):
    """An upstream that stops talking is cut after the idle timeout, and the client can tell:
    the connection ends without a clean close, so no SDK mistakes half a reply for a whole one."""
    b = await make_broker(gate=asyncio.Event(), proxy={"read_idle_timeout_seconds": 0.3})
    key = await b.add_sandbox("silent")
    async with async_sdk(b, key) as client:
        manager, stream, first = await gated_stream(b, client)
        assert first == "Hello "
        with pytest.raises(Exception) as failure:
            await drain(stream)  # the gate never opens: upstream goes silent
        await manager.__aexit__(None, None, None)
    assert not isinstance(failure.value, (AssertionError, asyncio.TimeoutError)), failure.value
    lines = await audit_lines(b, 1)
    assert lines[0]["outcome"] == "upstream went silent"


async def test_plan_limits_from_upstream_reach_the_status(make_broker):
    b = await make_broker()
    key = await b.add_sandbox("limits")
    assert b.service.snapshot().to_json()["proxy"]["plan_limits"] == {}
    status, headers, _ = await call(b, key=key)
    assert status == 200
    limits = b.service.snapshot().to_json()["proxy"]["plan_limits"]
    assert limits["status"] == "allowed" and limits["5h-utilization"] == "0.25"
    assert limits["7d-utilization"] == "0.5" and "5h-reset" in limits
    from broker.cli.status_cmd import render

    text = render({"running": True, **b.service.snapshot().to_json()})
    assert "limits:   5-hour 25% · resets " in text and ", Weekly 50% · resets " in text
    assert " — allowed\n" in text


async def test_plan_limits_read_at_most_once_a_second_lose_no_change(make_broker):
    """Every reply carries the limits; they are read once a second, and a change that came
    within that second arrives when it ends (the newest reply wins)."""
    b = await make_broker()
    key = await b.add_sandbox("limits")
    assert (await call(b, key=key))[0] == 200
    for figure in ("0.5", "0.81"):  # both within the second after the first reply
        b.fake.limit_headers["5h-utilization"] = figure
        assert (await call(b, key=key))[0] == 200

    def five_hour() -> str | None:
        return b.service.snapshot().to_json()["proxy"]["plan_limits"].get("5h-utilization")

    await eventually_async(lambda: five_hour() == "0.81", timeout=3.0, what="the newest limits")
