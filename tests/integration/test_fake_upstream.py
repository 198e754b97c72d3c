"""The fake Anthropic API is itself tested: real SDK, real sockets, real disconnects.

If the fake were lenient, every proxy test built on it would prove nothing, so this file
shows it answers the real SDK and flags each thing a proxy must not send.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading

import aiohttp
import anthropic
import pytest

from broker.usage.reply_usage import SSEUsageTracker, usage_from_json
from tests.fakes.threaded import serve_in_thread
from tests.fakes.upstream import OAUTH_BETA, FakeAnthropic

TOKEN = "sk-ant-oat01-fake-valid"
SBX = "sk-ib-sandbox-key-that-must-never-reach-upstream"
MODEL = "claude-haiku-4-5"
GOOD = [("Authorization", f"Bearer {TOKEN}"), ("anthropic-beta", f"claude-code-20250219,{OAUTH_BETA}")]
MESSAGE = {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


def new_fake(**kw) -> FakeAnthropic:
    return FakeAnthropic(lambda: {TOKEN}, lambda: {SBX}, **kw)


@pytest.fixture
def sdk_env(monkeypatch, tmp_path):
    """Keep the SDK from finding real credentials, profiles or base URLs on this machine."""
    for name in (
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_PROFILE",
        "ANTHROPIC_CONFIG_DIR",
        "ANTHROPIC_CUSTOM_HEADERS",
        "XDG_CONFIG_HOME",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


def sdk(url: str, **kw) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=url,
        default_headers={"Authorization": f"Bearer {TOKEN}", "anthropic-beta": OAUTH_BETA},
        max_retries=0,
        timeout=10,
        **kw,
    )


# -- the real SDK, synchronous, against a server thread ------------------------------------


def test_sdk_message_count_tokens_and_models(sdk_env):
    fake = new_fake()
    with serve_in_thread(fake.make_app) as url, sdk(url) as client:
        reply = client.messages.create(**MESSAGE)
        tokens = client.messages.count_tokens(model=MODEL, messages=MESSAGE["messages"])
        models = client.models.list()
        raw = client.messages.with_raw_response.create(**MESSAGE)
    assert reply.content[0].text == fake.reply_text
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (11, 5)
    assert reply.stop_reason == "end_turn" and reply.model == MODEL
    assert tokens.input_tokens == 11
    assert [m.id for m in models.data] == ["claude-sonnet-4-6", "claude-haiku-4-5"]
    assert raw.headers["anthropic-ratelimit-unified-status"] == "allowed"
    assert raw.headers["request-id"].startswith("req_fake_")
    assert fake.problems == [] and fake.unauthorized == 0
    first = fake.requests[0]
    assert (first.method, first.path) == ("POST", "/v1/messages")
    assert first.header("authorization") == [f"Bearer {TOKEN}"]
    assert first.json()["messages"] == MESSAGE["messages"]


def test_sdk_streaming(sdk_env):
    fake = new_fake(reply_text="one two three four", event_delay=0.001)
    with serve_in_thread(fake.make_app) as url, sdk(url) as client:
        with client.messages.stream(**MESSAGE) as stream:
            pieces = list(stream.text_stream)
            final = stream.get_final_message()
    assert pieces == ["one ", "two ", "three ", "four"]
    assert final.usage.output_tokens == 4 and final.usage.input_tokens == 11
    assert (fake.streams_started, fake.streams_completed, fake.streams_cancelled) == (1, 1, 0)
    assert fake.streams_open == 0 and fake.problems == []


def test_sdk_sees_injected_failures_then_recovers(sdk_env):
    fake = new_fake()
    fake.fail_next(529)
    fake.fail_next(429, body={"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
    with serve_in_thread(fake.make_app) as url, sdk(url) as client:
        with pytest.raises(anthropic.APIStatusError) as overloaded:
            client.messages.create(**MESSAGE)
        with pytest.raises(anthropic.RateLimitError) as limited:
            client.messages.create(**MESSAGE)
        assert client.messages.create(**MESSAGE).content[0].text == fake.reply_text
    assert overloaded.value.status_code == 529
    assert limited.value.body["error"]["message"] == "slow down"
    assert len(fake.requests) == 3 and fake.problems == []


def test_sdk_gate_holds_the_stream_between_first_and_last_event(sdk_env):
    gate_ready = threading.Event()
    fake = new_fake()

    def app():
        fake.gate = asyncio.Event()  # created on the server thread's loop
        gate_ready.set()
        return fake.make_app()

    with serve_in_thread(app) as url, sdk(url) as client:
        assert gate_ready.wait(5)
        with client.messages.stream(**MESSAGE) as stream:
            texts = stream.text_stream
            assert next(texts) == "Hello "
            assert fake.streams_completed == 0 and fake.streams_open == 1
            url.call(fake.gate.set)
            assert "".join(texts) == "from the fake upstream"
    assert fake.streams_completed == 1 and fake.problems == []


def test_serve_in_thread_stops_and_frees_the_port():
    fake = new_fake()
    with serve_in_thread(fake.make_app) as url:
        assert url.startswith("http://127.0.0.1:") and url.port > 0
        port = url.port
        assert url.run(asyncio.sleep(0, result=7)) == 7
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_serve_in_thread_reports_startup_errors():
    def broken():
        raise RuntimeError("no app today")

    with pytest.raises(RuntimeError, match="no app today"):
        with serve_in_thread(broken):
            pass


# -- raw requests: the fake notices what a proxy must not send ------------------------------


def without(headers, name):
    return [(n, v) for n, v in headers if n.lower() != name.lower()]


@pytest.mark.parametrize(
    "headers, body, status, problem, unauthorized",
    [
        (GOOD, MESSAGE, 200, None, 0),
        (without(GOOD, "authorization"), MESSAGE, 401, "exactly one Authorization", 0),
        ([*GOOD, ("Authorization", f"Bearer {TOKEN}")], MESSAGE, 401, "exactly one Authorization", 0),
        ([("Authorization", TOKEN), GOOD[1]], MESSAGE, 401, "not 'Bearer <token>'", 0),
        ([("Authorization", f"bearer {TOKEN}"), GOOD[1]], MESSAGE, 401, "not 'Bearer <token>'", 0),
        ([("Authorization", "Bearer sk-ant-oat01-expired"), GOOD[1]], MESSAGE, 401, None, 1),
        ([("Authorization", "Bearer nonsense"), GOOD[1]], MESSAGE, 401, None, 1),
        (without(GOOD, "anthropic-beta"), MESSAGE, 401, "exactly one anthropic-beta", 0),
        ([GOOD[0], ("anthropic-beta", "claude-code-20250219")], MESSAGE, 401, f"lacks {OAUTH_BETA}", 0),
        ([*GOOD, ("anthropic-beta", "x")], MESSAGE, 200, "exactly one anthropic-beta", 0),
        ([GOOD[0], ("anthropic-beta", f"{OAUTH_BETA}, x,{OAUTH_BETA}")], MESSAGE, 200, "duplicate", 0),
        ([*GOOD, ("x-api-key", "anything")], MESSAGE, 200, "x-api-key", 0),
        ([*GOOD, ("x-sandbox", f"key {SBX}")], MESSAGE, 200, "forbidden value", 0),
        (GOOD, {**MESSAGE, "metadata": {"user_id": SBX}}, 200, "body carries a forbidden", 0),
    ],
)
async def test_fake_flags_bad_requests(aiohttp_server, headers, body, status, problem, unauthorized):
    fake = new_fake()
    server = await aiohttp_server(fake.make_app())
    async with aiohttp.ClientSession() as session:
        async with session.post(server.make_url("/v1/messages"), headers=headers, json=body) as resp:
            doc = await resp.json()
    assert resp.status == status
    if status == 401:
        assert doc["type"] == "error" and doc["error"]["type"] == "authentication_error"
    if problem is None:
        assert fake.problems == []
    else:
        assert any(problem in p for p in fake.problems), fake.problems
    assert all(SBX not in p for p in fake.problems)
    assert fake.unauthorized == unauthorized


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("GET", "/v1/models", 200),
        ("GET", "/v1/models/claude-haiku-4-5", 200),
        ("GET", "/v1/models/claude-unknown", 404),
        ("POST", "/v1/messages/batches", 404),
        ("GET", "/v1/messages", 404),
        ("POST", "/api/oauth/profile", 404),
    ],
)
async def test_fake_routes(aiohttp_server, method, path, status):
    fake = new_fake()
    server = await aiohttp_server(fake.make_app())
    async with aiohttp.ClientSession() as session:
        async with session.request(method, server.make_url(path + "?beta=true"), headers=GOOD) as resp:
            doc = await resp.json()
    assert resp.status == status
    if status == 404:
        assert doc["type"] == "error" and doc["error"]["type"] == "not_found_error"
    assert fake.requests[0].query_string == "beta=true" and fake.problems == []


async def test_bad_json_is_a_400(aiohttp_server):
    fake = new_fake()
    server = await aiohttp_server(fake.make_app())
    async with aiohttp.ClientSession() as session:
        async with session.post(server.make_url("/v1/messages"), headers=GOOD, data=b"{nope") as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["type"] == "invalid_request_error"


# -- streaming control: gate, chunking, disconnects -----------------------------------------


async def read_events(resp: aiohttp.ClientResponse, until: str | None = None) -> list[str]:
    """Event names read from an SSE response, stopping after `until` (or at EOF)."""
    kinds = []
    async for line in resp.content:
        if line.startswith(b"event: "):
            kinds.append(line[len(b"event: ") :].strip().decode())
            if kinds[-1] == until:
                break
    return kinds


async def test_gate_first_delta_arrives_before_the_rest_is_sent(aiohttp_server):
    fake = new_fake(gate=asyncio.Event())
    server = await aiohttp_server(fake.make_app())
    async with aiohttp.ClientSession() as session:
        async with session.post(server.make_url("/v1/messages"), headers=GOOD, json={**MESSAGE, "stream": True}) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            first = await asyncio.wait_for(read_events(resp, until="content_block_delta"), 5)
            assert first == ["message_start", "content_block_start", "content_block_delta"]
            assert fake.streams_open == 1 and fake.streams_completed == 0
            fake.gate.set()
            rest = await asyncio.wait_for(read_events(resp), 5)
    assert rest[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert rest.count("content_block_delta") == 4
    assert fake.streams_completed == 1 and fake.streams_cancelled == 0


@pytest.mark.parametrize("control", [{"gate": "event"}, {"event_delay": 0.05}])
async def test_client_disconnect_mid_stream_is_counted(aiohttp_server, control):
    kw = {"gate": asyncio.Event()} if "gate" in control else control
    fake = new_fake(reply_text="many words " * 50, **kw)
    server = await aiohttp_server(fake.make_app())
    async with aiohttp.ClientSession() as session:
        resp = await session.post(server.make_url("/v1/messages"), headers=GOOD, json={**MESSAGE, "stream": True})
        await asyncio.wait_for(read_events(resp, until="content_block_delta"), 5)
        resp.close()  # drops the connection, as a proxy does when its sandbox goes away
        for _ in range(250):
            if fake.streams_cancelled:
                break
            await asyncio.sleep(0.02)
    assert (fake.streams_cancelled, fake.streams_completed, fake.streams_open) == (1, 0, 0)


async def test_chunked_stream_parses_with_the_usage_tracker(aiohttp_server):
    fake = new_fake(reply_text="a b c d e f g", chunk_size=7)
    server = await aiohttp_server(fake.make_app())
    tracker = SSEUsageTracker()
    chunks = 0
    async with aiohttp.ClientSession() as session:
        async with session.post(server.make_url("/v1/messages"), headers=GOOD, json={**MESSAGE, "stream": True}) as resp:
            async for chunk in resp.content.iter_any():
                chunks += 1
                tracker.feed(chunk)
            plan = {k: v for k, v in resp.headers.items() if k.startswith("anthropic-ratelimit-unified-")}
    usage = tracker.result()
    assert (usage.model, usage.input_tokens, usage.output_tokens, usage.stop_reason) == (MODEL, 11, 7, "end_turn")
    assert chunks > 1 and plan["anthropic-ratelimit-unified-status"] == "allowed"


async def test_non_streaming_usage_and_extra_headers(aiohttp_server):
    fake = new_fake(extra_response_headers=[("Set-Cookie", "cf=1"), ("x-echo", "ok")])
    server = await aiohttp_server(fake.make_app())
    async with aiohttp.ClientSession() as session:
        async with session.post(server.make_url("/v1/messages"), headers=GOOD, json=MESSAGE) as resp:
            body = await resp.read()
            assert resp.headers["Set-Cookie"] == "cf=1" and resp.headers["x-echo"] == "ok"
    usage = usage_from_json(body)
    assert usage is not None and (usage.input_tokens, usage.output_tokens) == (11, 5)
    assert json.loads(body)["content"][0]["text"] == fake.reply_text


def test_count_tokens_body_is_checked(sdk_env):
    fake = new_fake(limit_headers={"5h-utilization": "0.92", "5h-status": "allowed_warning"})
    with serve_in_thread(fake.make_app) as url, sdk(url) as client:
        raw = client.messages.with_raw_response.count_tokens(model=MODEL, messages=MESSAGE["messages"])
        assert fake.problems == []
        with pytest.raises(anthropic.BadRequestError):
            client.post("/v1/messages/count_tokens", body={"model": MODEL, "stream": True}, cast_to=object)
    assert raw.parse().input_tokens == 11
    assert raw.headers["anthropic-ratelimit-unified-5h-utilization"] == "0.92"  # one value, not two
    assert raw.headers["anthropic-ratelimit-unified-5h-status"] == "allowed_warning"
    assert raw.headers["anthropic-ratelimit-unified-status"] == "allowed"  # the defaults stay
    assert fake.problems == ["request 2 POST /v1/messages/count_tokens: count_tokens needs a JSON object "
                             "with model and messages"]
