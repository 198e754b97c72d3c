"""An upstream that echoes a secret back: in the status line's reason phrase, or in a response
header's name or value. Every secret the broker holds counts, not only the token the request
went with: the refresh token and earlier access tokens too."""

from __future__ import annotations

import json

import aiohttp
import pytest

from tests.integration.test_proxy import REQUEST, bearer, call

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


async def test_the_reason_phrase_is_the_standard_one_never_the_upstreams(make_broker, raw_upstream):
    def echo_token(head: bytes) -> bytes:
        auth = next(line for line in head.split(b"\r\n") if line.lower().startswith(b"authorization:"))
        token = auth.split(b" ")[-1]
        body = json.dumps({"type": "error", "error": {"type": "authentication_error", "message": "no"}}).encode()
        return (b"HTTP/1.1 401 Bad token " + token + b"\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

    b = await make_broker(upstream_url=await raw_upstream(echo_token))
    key = await b.add_sandbox("p")
    token = bearer(b).removeprefix("Bearer ")
    async with aiohttp.ClientSession() as session:
        async with session.post(b.url + "/v1/messages", headers={"x-api-key": key}, json=REQUEST) as resp:
            body = await resp.read()
            assert (resp.status, resp.reason) == (401, "Unauthorized")
            assert token not in str(resp.headers) and token.encode() not in body


async def test_a_response_header_with_any_held_secret_is_dropped(make_broker):
    b = await make_broker()
    key = await b.add_sandbox("h")
    login = b.service.tokens.login
    assert login is not None
    first_access, first_refresh = login.access_token, login.refresh_token
    await b.service.tokens.refresh("manual")  # the first pair is now an earlier one, still held
    login = b.service.tokens.login
    assert login is not None and login.access_token != first_access
    held = {"earlier access token": first_access, "earlier refresh token": first_refresh,
            "refresh token": login.refresh_token, "access token": login.access_token, "sandbox key": key}
    b.fake.extra_response_headers += [
        ("X-Echo", f"you sent {login.refresh_token}"),
        ("Location", f"https://gateway.example/?t={first_access}"),
        ("WWW-Authenticate", f'Bearer realm="api", error_description="{first_refresh} expired"'),
        (f"X-{login.refresh_token}", "a secret as a header name"),
        ("X-Key", key),
        ("X-Fine", "kept"),
    ]
    for stream in (False, True):
        status, headers, data = await call(b, key=key, body=json.dumps({**REQUEST, "stream": stream}).encode())
        assert status == 200, data
        assert headers["X-Fine"] == "kept"
        assert not {"X-Echo", "Location", "WWW-Authenticate", "X-Key"} & set(headers)
        shown = json.dumps(headers)
        assert [label for label, secret in held.items() if secret in shown] == []
    assert b.fake.problems == []
