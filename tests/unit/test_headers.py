"""Header rewriting: what goes upstream and what comes back, as tables."""

from __future__ import annotations

import pytest

from broker.proxy.headers import (
    HOP_BY_HOP,
    merge_list_header,
    rewrite_request_headers,
    rewrite_response_headers,
)

OAUTH = "oauth-2025-04-20"
TOKEN = "sk-ant-oat01-TESTTOKEN"
SBX = "sk-ib-SANDBOXKEYSANDBOXKEYSANDBOXKEYSANDBOXKEY"
AUTH = ("Authorization", f"Bearer {TOKEN}")


def rewrite(headers: list[tuple[str, str]], mandatory: dict[str, str] | None = None):
    return rewrite_request_headers(
        headers,
        auth_header="Authorization",
        auth_value=f"Bearer {TOKEN}",
        mandatory={"anthropic-beta": OAUTH} if mandatory is None else mandatory,
    )


def named(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for n, v in headers if n.lower() == name]


@pytest.mark.parametrize(
    "values, mandatory, expected",
    [
        (["claude-code-20250219, oauth-2025-04-20", "x"], [OAUTH], "claude-code-20250219,oauth-2025-04-20,x"),
        ([], [OAUTH], OAUTH),
        ([""], [OAUTH], OAUTH),
        ([" , ,"], [OAUTH], OAUTH),
        (["a,a", "a"], [OAUTH], f"a,{OAUTH}"),
        (["  a ,b  ,, c "], [OAUTH], f"a,b,c,{OAUTH}"),
        (["A", "a"], [], "A,a"),  # flags are case-sensitive
        ([f"x,{OAUTH},y"], [OAUTH], f"x,{OAUTH},y"),  # kept where the client put it
        (["x"], ["m1,m2", "m1"], "x,m1,m2"),
    ],
)
def test_merge_list_header(values, mandatory, expected):
    assert merge_list_header(values, mandatory) == expected


@pytest.mark.parametrize(
    "client, expected_beta",
    [
        ([], OAUTH),
        ([("anthropic-beta", "")], OAUTH),
        ([("anthropic-beta", "claude-code-20250219")], f"claude-code-20250219,{OAUTH}"),
        ([("anthropic-beta", OAUTH)], OAUTH),
        ([("anthropic-beta", f"{OAUTH},x")], f"{OAUTH},x"),
        ([("Anthropic-Beta", "a"), ("ANTHROPIC-BETA", "b, a")], f"a,b,{OAUTH}"),
        ([("anthropic-beta", " a ,  b "), ("anthropic-beta", OAUTH), ("anthropic-beta", OAUTH)], f"a,b,{OAUTH}"),
    ],
)
def test_exactly_one_beta_header_with_oauth_flag(client, expected_beta):
    out = rewrite([("anthropic-version", "2023-06-01"), *client])
    assert named(out, "anthropic-beta") == [expected_beta]


@pytest.mark.parametrize(
    "client",
    [
        [("x-api-key", SBX)],
        [("Authorization", f"Bearer {SBX}")],
        [("authorization", f"bearer {SBX}"), ("X-Api-Key", SBX)],
        [("X-API-KEY", SBX), ("x-api-key", SBX)],
        [("Authorization", "Basic Zm9vOmJhcg==")],
        [],
    ],
)
def test_client_credentials_replaced_by_the_token(client):
    out = rewrite([("content-type", "application/json"), *client])
    assert named(out, "authorization") == [f"Bearer {TOKEN}"]
    assert named(out, "x-api-key") == []
    assert all(SBX not in v for _, v in out)


@pytest.mark.parametrize(
    "dropped",
    [
        *[(name, "x") for name in sorted(HOP_BY_HOP)],
        ("Host", "inference.local:8765"),
        ("Content-Length", "42"),
        ("Cookie", "a=b"),
        ("X-Forwarded-For", "10.0.0.1"),
        ("x-forwarded-proto", "https"),
        ("Forwarded", "for=10.0.0.1"),
        ("Proxy-Authorization", "Basic abc"),
        ("TE", "trailers"),
        ("Expect", "100-continue"),
    ],
)
def test_dropped_request_headers(dropped):
    out = rewrite([("accept", "application/json"), dropped])
    assert dropped not in out
    assert named(out, dropped[0].lower()) == []
    assert ("accept", "application/json") in out


def test_encodings_and_the_length_keep_their_place_and_case():
    """The body goes upstream as it came: its encoding says so, its length is the one sent,
    and the client's Accept-Encoding is asked for (the upstream client decodes them all)."""
    client = [
        ("accept", "application/json"),
        ("Accept-Encoding", "gzip, deflate, br, zstd"),
        ("content-length", "999"),
        ("Content-Encoding", "gzip"),
        ("Content-Length", "7"),  # a second one: aiohttp refuses differing ones, never sent twice
        ("x-app", "cli"),
    ]
    out = rewrite_request_headers(client, auth_header="Authorization", auth_value=f"Bearer {TOKEN}",
                                  mandatory={"anthropic-beta": OAUTH}, body_length=42)
    assert out == [("accept", "application/json"), ("Accept-Encoding", "gzip, deflate, br, zstd"),
                   ("content-length", "42"), ("Content-Encoding", "gzip"), ("x-app", "cli"),
                   ("anthropic-beta", OAUTH), AUTH]


def test_headers_named_by_connection_are_dropped():
    out = rewrite(
        [
            ("Connection", "keep-alive, X-Secret-Hop , x-other"),
            ("x-secret-hop", "1"),
            ("X-Other", "2"),
            ("x-kept", "3"),
        ]
    )
    assert [n.lower() for n, _ in out] == ["x-kept", "anthropic-beta", "authorization"]


def test_beta_named_by_connection_still_gets_the_oauth_flag():
    out = rewrite([("Connection", "anthropic-beta"), ("anthropic-beta", "hop-flag")])
    assert named(out, "anthropic-beta") == [OAUTH]


def test_everything_else_is_kept_in_order_and_case():
    client = [
        ("Host", "inference.local"),
        ("anthropic-version", "2023-06-01"),
        ("x-api-key", SBX),
        ("User-Agent", "claude-cli/2.1.197 (external, sdk-cli)"),
        ("anthropic-beta", "claude-code-20250219"),
        ("x-app", "cli"),
        ("Content-Type", "application/json"),
        ("accept", "application/json"),
        ("x-stainless-retry-count", "0"),
        ("x-app", "second"),
    ]
    assert rewrite(client) == [
        ("anthropic-version", "2023-06-01"),
        ("User-Agent", "claude-cli/2.1.197 (external, sdk-cli)"),
        ("anthropic-beta", f"claude-code-20250219,{OAUTH}"),
        ("x-app", "cli"),
        ("Content-Type", "application/json"),
        ("accept", "application/json"),
        ("x-stainless-retry-count", "0"),
        ("x-app", "second"),
        AUTH,
    ]


def test_other_auth_header_and_several_mandatory_headers():
    out = rewrite_request_headers(
        [("x-api-key", SBX), ("X-Flags", "a"), ("x-flags", "b,a")],
        auth_header="x-api-key",
        auth_value="upstream-key",
        mandatory={"x-flags": "c", "anthropic-beta": "p,q"},
    )
    assert out == [("x-flags", "a,b,c"), ("anthropic-beta", "p,q"), ("x-api-key", "upstream-key")]


@pytest.mark.parametrize(
    "header, kept",
    [
        (("content-type", "text/event-stream"), True),
        (("request-id", "req_1"), True),
        (("anthropic-ratelimit-unified-status", "allowed"), True),
        (("WWW-Authenticate", 'Bearer realm="api"'), True),
        (("retry-after", "3"), True),
        (("Content-Length", "10"), False),
        (("content-encoding", "gzip"), False),
        (("Transfer-Encoding", "chunked"), False),
        (("connection", "close"), False),
        (("keep-alive", "timeout=5"), False),
        (("Set-Cookie", "cf=1"), False),
        (("authorization", "Bearer x"), False),
        (("x-api-key", "k"), False),
        (("proxy-authenticate", "Basic"), False),
        (("x-echo", f"you sent {TOKEN}!"), False),
        (("x-echo", f"key={SBX}"), False),
        (("x-echo", "sk-ant-oat01-OTHER"), True),
        (("x-name", "Zoë ✓"), True),  # valid UTF-8 passes as it came
        (("x-bytes", "bad \udcff byte"), False),  # not UTF-8 (read with surrogate escapes)
    ],
)
def test_rewrite_response_headers(header, kept):
    out = rewrite_response_headers([("x-first", "1"), header], [TOKEN, SBX, ""])
    assert (header in out) is kept
    assert out[0] == ("x-first", "1")


def test_response_connection_named_and_empty_secrets():
    out = rewrite_response_headers(
        [("Connection", "x-hop"), ("X-Hop", "1"), ("x-keep", "2")], ["", ""]
    )
    assert out == [("x-keep", "2")]
