"""The upstream sees what Claude Code sent. A recording relay sits between the real Claude Code
CLI and the broker, the fake upstream records what arrived: the body byte for byte, and the
headers in their order, case and values, apart from what the broker must change (the key
becomes `Authorization: Bearer`, Host, hop-by-hop headers, and the OAuth flag merged into
`anthropic-beta`). Anthropic reportedly tells Claude Code's subscription traffic from other
clients by its body and headers; a broker that rewrote them would make it look like another."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import shutil
from pathlib import Path

import aiohttp
import pytest

from broker.proxy.headers import HOP_BY_HOP
from tests.fakes.relay import Relay, split_request
from tests.fakes.upstream import OAUTH_BETA
from tests.integration.test_proxy import REQUEST, audit_lines, bearer

# What the broker may change; everything else must arrive exactly as the client sent it.
CHANGED = {"host", "x-api-key", "authorization", "anthropic-beta"} | HOP_BY_HOP
CLAUDE = shutil.which("claude")


def client_requests(relay: Relay) -> list[tuple[str, str, list[tuple[str, str]], bytes]]:
    """Every request the client wrote through the relay: (method, target, headers, body)."""
    out = []
    for raw in relay.sent:
        rest = bytes(raw)
        while rest:
            line, headers, body = split_request(rest)
            method, target, _ = line.decode().split(" ", 2)
            out.append((method, target, [(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers], body))
            head_len = rest.index(b"\r\n\r\n") + 4
            framed = next((int(v) for n, v in headers if n.lower() == b"content-length"), None)
            if framed is None and any(n.lower() == b"transfer-encoding" for n, _ in headers):
                end = rest.index(b"\r\n0\r\n\r\n", head_len - 2) + 7 if b"\r\n0\r\n\r\n" in rest else len(rest)
                rest = rest[end:]
            else:
                rest = rest[head_len + (framed or 0):]
    return out


def kept(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(n, v) for n, v in headers if n.lower() not in CHANGED]


def flags(headers: list[tuple[str, str]]) -> list[str]:
    return [f.strip() for n, v in headers if n.lower() == "anthropic-beta" for f in v.split(",") if f.strip()]


def assert_passed_as_sent(b, sent: list, token: str) -> int:
    """Each request upstream got matches one the client sent, byte for byte apart from CHANGED."""
    forwarded = [s for s in sent if s[0] != "HEAD"]  # reachability probes are answered locally
    assert len(b.fake.requests) == len(forwarded), ([s[:2] for s in sent], [r.path for r in b.fake.requests])
    for got in b.fake.requests:
        target = got.path + (f"?{got.query_string}" if got.query_string else "")
        candidates = [s for s in forwarded if (s[0], s[1]) == (got.method, target) and s[3] == got.body]
        assert candidates, f"no request with this body was sent to {got.method} {target}"
        method, _, headers, body = candidates[0]
        forwarded.remove(candidates[0])
        assert kept(got.headers) == kept(headers)  # order, case and values
        assert [n.lower() for n, _ in got.headers if n.lower() in CHANGED] == (
            ["host"] + [n.lower() for n, _ in headers if n.lower() == "anthropic-beta"][:1] + ["authorization"]
            if any(n.lower() == "anthropic-beta" for n, _ in headers) else ["host", "anthropic-beta", "authorization"])
        client_flags = flags(headers)
        assert flags(got.headers) == client_flags + ([OAUTH_BETA] if OAUTH_BETA not in client_flags else [])
        assert got.header("authorization") == [f"Bearer {token}"]
    return len(b.fake.requests)


async def test_the_upstream_gets_claude_codes_request_as_it_was_sent(make_broker, tmp_path: Path):
    assert CLAUDE is not None, "Claude Code (`claude`) must be installed for this test"
    b = await make_broker()
    key = await b.add_sandbox("fidelity")
    host, port = b.url.removeprefix("http://").rsplit(":", 1)
    relay = await Relay(host, int(port)).start()
    home = tmp_path / "claude-home"
    home.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "ANTHROPIC_BASE_URL": relay.url,
           "ANTHROPIC_API_KEY": key, "CLAUDE_CODE_MAX_RETRIES": "0", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    try:
        proc = await asyncio.create_subprocess_exec(CLAUDE, "-p", "say hi", env=env, cwd=home,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        await relay.close()
    assert proc.returncode == 0, (out[-2000:], err[-2000:])
    assert b.fake.reply_text.encode() in out
    sent = client_requests(relay)
    messages = [s for s in sent if s[1].startswith("/v1/messages")]
    assert messages and any(n.lower() == "accept-encoding" for n, _ in messages[0][2])  # Claude Code asks for it
    assert assert_passed_as_sent(b, sent, bearer(b).removeprefix("Bearer ")) >= 1
    assert b.fake.problems == []


async def test_a_compressed_body_and_its_encoding_go_upstream_as_sent(make_broker):
    """A gzip body is not decoded on the way (the model is still read, from a bounded copy)."""
    b = await make_broker()
    key = await b.add_sandbox("gz")
    host, port = b.url.removeprefix("http://").rsplit(":", 1)
    relay = await Relay(host, int(port)).start()
    body = gzip.compress(json.dumps(REQUEST).encode())
    headers = [("X-Custom-Case", "Kept"), ("x-api-key", key), ("Content-Encoding", "gzip"),
               ("content-type", "application/json"), ("Accept-Encoding", "gzip, deflate, br, zstd"),
               ("anthropic-beta", "claude-code-20250219"), ("anthropic-version", "2023-06-01")]
    try:
        async with aiohttp.ClientSession(skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding")) as session:
            async with session.post(relay.url + "/v1/messages?beta=true", headers=headers, data=body) as resp:
                assert resp.status == 200, await resp.text()
                assert json.loads(await resp.read())["model"] == REQUEST["model"]
    finally:
        await relay.close()
    assert b.fake.requests[0].body == body  # as sent, still compressed
    assert assert_passed_as_sent(b, client_requests(relay), bearer(b).removeprefix("Bearer ")) == 1
    (line,) = await audit_lines(b, 1)
    assert line["model"] == REQUEST["model"]  # read from a decoded copy
    assert b.fake.problems == []


def _compress(data: bytes, coding: str) -> bytes:
    import zlib

    import brotli

    try:
        from compression import zstd  # type: ignore[import-not-found]
    except ImportError:
        from backports import zstd
    return {"gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress, "zstd": zstd.compress}[coding](data)


def echoing_upstream(coding: str, seen: list[dict[str, str]]):
    """An upstream whose replies come in `coding` and echo the token it was sent."""
    from aiohttp import web

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        if request.path != "/v1/messages":  # the broker's own usage poll
            return web.json_response({})
        seen.append(dict(request.headers))
        token = request.headers["Authorization"].removeprefix("Bearer ")
        usage = {"input_tokens": 7, "output_tokens": 3}
        if request.query.get("stream"):
            events = [("message_start", {"type": "message_start", "message": {"model": "m", "usage": usage}}),
                      ("content_block_delta", {"type": "content_block_delta", "delta": {"text": f"echo {token}"}}),
                      ("message_delta", {"type": "message_delta", "usage": {"output_tokens": 5}})]
            raw = b"".join(f"event: {k}\ndata: {json.dumps(d)}\n\n".encode() for k, d in events)
            ctype = "text/event-stream"
        else:
            raw = json.dumps({"type": "message", "model": "m", "content": [{"text": f"echo {token}"}],
                              "usage": usage}).encode()
            ctype = "application/json"
        return web.Response(body=_compress(raw, coding), headers={"Content-Encoding": coding, "Content-Type": ctype})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
async def test_compressed_replies_are_read_scrubbed_and_counted_in_every_encoding(make_broker, aiohttp_server, coding):
    seen: list[dict[str, str]] = []
    upstream = await aiohttp_server(echoing_upstream(coding, seen))
    b = await make_broker(upstream_url=str(upstream.make_url("")).rstrip("/"))
    key = await b.add_sandbox("enc")
    token = bearer(b).removeprefix("Bearer ")
    async with aiohttp.ClientSession() as session:
        for query in ("", "?stream=1"):
            async with session.post(b.url + "/v1/messages" + query, json=REQUEST,
                                    headers={"x-api-key": key, "Accept-Encoding": "gzip, deflate, br, zstd"}) as resp:
                data = await resp.read()
                assert resp.status == 200, data
                assert "Content-Encoding" not in resp.headers  # relayed decoded
                assert b"echo " + b"*" * len(token) in data and token.encode() not in data
    assert [h["Accept-Encoding"] for h in seen] == ["gzip, deflate, br, zstd"] * 2  # the client's, as sent
    lines = await audit_lines(b, 2)
    assert [(a["input_tokens"], a["output_tokens"], a.get("secrets_scrubbed")) for a in lines] == [(7, 3, 1), (7, 5, 1)]


async def test_a_reply_in_an_encoding_the_broker_cannot_read_is_a_502(make_broker, raw_upstream):
    body = b"\x00compressed-somehow\x00"
    b = await make_broker(upstream_url=await raw_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Encoding: compress\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body))
    key = await b.add_sandbox("x")
    async with aiohttp.ClientSession() as session:
        async with session.post(b.url + "/v1/messages", json=REQUEST, headers={"x-api-key": key}) as resp:
            doc = json.loads(await resp.read())
            assert resp.status == 502 and "cannot read" in doc["error"]["message"]
