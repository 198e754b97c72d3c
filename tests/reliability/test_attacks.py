"""Families of hostile requests over raw sockets, as a hostile sandbox or local user sends them.

Each row is one request and the answers that count as refused; every refused row must also
leave the upstream untouched (nothing forwarded), and at the end of the module no secret may
appear in anything a client was sent, the logs or the audit trail (the `broker` fixture).
Rows with a wrong key come from their own loopback address so the throttle answers 401.
"""

from __future__ import annotations

import json
from itertools import count

import pytest

from tests.reliability.outcomes import answer_outcome, observe
from tests.reliability.harness import REQUEST, Broker, body_of

H = "Host: inference.local"
REFUSED_HTTP = {400, 404, 405, 413, 414, 431, 501, 505, 0}  # 0: closed without a reply
BODY = json.dumps({"model": "claude-haiku-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})


def req(*lines: str, body: str = "") -> str:
    return "\r\n".join(lines) + "\r\n\r\n" + body


def post(*extra: str, path: str = "/v1/messages", body: str = BODY, key: str = "x-api-key: {KEY}") -> str:
    lines = [f"POST {path} HTTP/1.1", H, *([key] if key else []), "Content-Type: application/json",
             f"Content-Length: {len(body)}", "Connection: close", *extra]
    return req(*lines, body=body)


# family, name, raw request ({KEY}/{KEY2}: the sandboxes' valid keys), answers that mean refused
ROWS: list[tuple[str, str, str, set[int]]] = [
    # request smuggling: framing that two parsers could read differently
    ("smuggling", "Content-Length and Transfer-Encoding", req("POST /v1/messages HTTP/1.1", H, "x-api-key: {KEY}",
     "Content-Length: 4", "Transfer-Encoding: chunked", "", "0", "", "GET /v1/models HTTP/1.1", H), {400}),
    ("smuggling", "two different Content-Lengths", req("POST /v1/messages HTTP/1.1", H, "x-api-key: {KEY}",
     "Content-Length: 2", "Content-Length: 40", body="{}"), {400}),
    ("smuggling", "obfuscated Transfer-Encoding", req("POST /v1/messages HTTP/1.1", H, "x-api-key: {KEY}",
     "Transfer-Encoding: xchunked", body="0\r\n\r\n"), {400, 501}),
    ("smuggling", "space before the colon", req("POST /v1/messages HTTP/1.1", H, "x-api-key: {KEY}",
     "Transfer-Encoding : chunked", body="0\r\n\r\n"), {400}),
    ("smuggling", "bad chunk size", req("POST /v1/messages HTTP/1.1", H, "x-api-key: {KEY}",
     "Transfer-Encoding: chunked", "Connection: close", body="0x10\r\n" + "a" * 16 + "\r\n0\r\n\r\n"), {400}),
    ("smuggling", "a request hidden in the body", post(body="GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"), {400}),
    ("smuggling", "keyless request pipelined behind a keyed one",
     post(body="not json") + req("GET /v1/models HTTP/1.1", H), {400}),
    # malformed HTTP
    ("malformed", "garbage request line", "HELLO\r\n\r\n", REFUSED_HTTP),
    ("malformed", "header without a colon", req("GET /v1/models HTTP/1.1", H, "x-api-key {KEY}"), REFUSED_HTTP),
    ("malformed", "NUL in a header", req("GET /v1/models HTTP/1.1", H, "x-api-key: {KEY}", "X-A: a\x00b"),
     REFUSED_HTTP),
    ("malformed", "9,000-byte request line", req("GET /v1/" + "a" * 9000 + " HTTP/1.1", H), REFUSED_HTTP),
    ("malformed", "9,000-byte header", req("GET /v1/models HTTP/1.1", H, "X-Big: " + "b" * 9000), REFUSED_HTTP),
    ("malformed", "HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", REFUSED_HTTP),
    ("malformed", "HTTP/0.9", "GET /\r\n\r\n", REFUSED_HTTP),
    ("malformed", "non-ASCII method", req("GÉT /v1/models HTTP/1.1", H), REFUSED_HTTP),
    ("malformed", "negative Content-Length", req("POST /v1/messages HTTP/1.1", H, "x-api-key: {KEY}",
     "Content-Length: -1"), {400}),
    ("malformed", "10 GB Content-Length", req("POST /v1/messages HTTP/1.1", H, "x-api-key: {KEY}",
     "Content-Length: 10000000000", "Connection: close"), {413}),
    ("malformed", "body not JSON", post(body="{not json"), {400}),
    ("malformed", "JSON array body", post(body="[1, 2]"), {400}),
    ("malformed", "unsupported body encoding", post("Content-Encoding: gzip", body="not gzip at all"), {400}),
    # Host and Origin: DNS rebinding and browsers
    ("host/origin", "foreign Host", post().replace(H, "Host: evil.example"), {403, 421, 400}),
    ("host/origin", "missing Host", post().replace(H + "\r\n", ""), {400}),
    ("host/origin", "Host suffix trick", post().replace(H, "Host: inference.local.evil.example"), {403, 421, 400}),
    ("host/origin", "rebinding name", post().replace(H, "Host: 127.0.0.1.nip.io"), {403, 421, 400}),
    ("host/origin", "userinfo in Host", post().replace(H, "Host: user@inference.local"), {400, 403, 421}),
    ("host/origin", "two Host headers", post("Host: evil.example"), {400, 403, 421}),
    ("host/origin", "browser Origin", post("Origin: http://evil.example"), {403}),
    ("host/origin", "Origin null", post("Origin: null"), {403}),
    ("host/origin", "Origin of the broker itself", post("Origin: http://inference.local"), {403}),
    # path tricks
    ("path", "dot-dot out of /v1", post(path="/v1/../admin"), {400, 403, 404}),
    ("path", "encoded dot-dot", post(path="/v1/%2e%2e/%2e%2e/etc/passwd"), {400, 403, 404}),
    ("path", "encoded slash", post(path="/v1/messages%2f..%2f..%2fx"), {400, 403, 404}),
    ("path", "double slash", post(path="//v1/messages"), {400, 403, 404}),
    ("path", "backslash", post(path="/v1\\messages"), {400, 403, 404}),
    ("path", "absolute-form URI", post(path="http://evil.example/v1/messages"), {400, 403, 404}),
    ("path", "path not forwarded", post(path="/v1/organizations/usage"), {400, 403, 404}),
    ("path", "CONNECT", req("CONNECT evil.example:443 HTTP/1.1", "Host: evil.example:443", "x-api-key: {KEY}",
                    "Connection: close"),
     {400, 403, 404, 405}),
    ("path", "TRACE", req("TRACE /v1/messages HTTP/1.1", H, "x-api-key: {KEY}", "Connection: close"), {400, 405}),
    # key confusion
    ("keys", "no key", post(key=""), {401}),
    ("keys", "a guessed key", post(key="x-api-key: sk-ib-" + "A" * 43), {401}),
    ("keys", "prefix only", post(key="x-api-key: sk-ib-"), {401}),
    ("keys", "valid key cut by one", post(key="x-api-key: {KEY_CUT}"), {401}),
    ("keys", "valid key plus one", post(key="x-api-key: {KEY}A"), {401}),
    ("keys", "valid key upper-cased", post(key="x-api-key: {KEY_UPPER}"), {401}),
    ("keys", "two different keys", post("Authorization: Bearer {KEY2}"), {401}),
    ("keys", "valid key and a wrong Bearer", post("Authorization: Bearer sk-ib-wrong"), {401}),
    ("keys", "key in the query string", post(key="", path="/v1/messages?api_key={KEY}"), {401}),
    ("keys", "key in a cookie", post(key="Cookie: x-api-key={KEY}"), {401}),
    ("keys", "Basic auth", post(key="Authorization: Basic {KEY}"), {401}),
    ("keys", "empty Bearer", post(key="Authorization: Bearer"), {401}),
    ("keys", "an OAuth token as the key", post(key="x-api-key: sk-ant-oat01-" + "B" * 40), {401}),
]

_src = count(2)


@pytest.mark.parametrize("family, name, raw, refused", ROWS, ids=[f"{r[0]}: {r[1]}" for r in ROWS])
def test_hostile_request_is_refused(broker: Broker, figures: dict, family: str, name: str, raw: str,
                                    refused: set[int]):
    key, key2 = broker.keys["alpha"], broker.keys["beta"]
    data = (raw.replace("{KEY_CUT}", key[:-1]).replace("{KEY_UPPER}", key.upper())
            .replace("{KEY2}", key2).replace("{KEY}", key))
    before = len(broker.fake.requests)
    status, reply = broker.raw(data.encode("utf-8"), src=f"127.0.9.{next(_src)}")
    forwarded = len(broker.fake.requests) != before
    outcome = observe(figures, answer_outcome(status, refused, forwarded=forwarded))
    assert not forwarded, "a refused request reached the upstream"
    assert outcome == "refused", (status, reply[:300])
    body = body_of(reply)
    if body.startswith(b"{"):  # ours, in Anthropic's error shape
        doc = json.loads(body)
        assert doc["type"] == "error" and doc["error"]["message"]


def test_a_valid_request_still_works_after_the_table(broker: Broker):
    status, reply = broker.post(broker.keys["alpha"], REQUEST)
    assert status == 200 and json.loads(body_of(reply))["content"][0]["text"]


def test_a_key_pasted_into_other_headers_never_reaches_upstream(broker: Broker, figures: dict):
    key = broker.keys["beta"]
    for header in ("User-Agent", "anthropic-beta", "X-Note"):
        status, _ = broker.post(key, REQUEST, headers={header: f"see {key}"})
        passed = any(key in v for _, v in broker.fake.requests[-1].headers)
        # refused passage: the header is dropped, the request served
        outcome = observe(figures, "accepted" if passed else answer_outcome(status, {200}))
        assert status == 200 and outcome == "refused"
