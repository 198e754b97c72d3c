"""A fake OAuth token endpoint with Anthropic's rules: refresh tokens are single-use.

It checks what it receives (grant type, client id, JSON body with no unknown fields, a
de-duplicated `scope`), rotates both tokens on every success, counts calls and every spent
refresh token presented again (`reused`), records each request's shape (never its token),
and fails on demand (500, 429, a hang, invalid_grant) or answers slowly (`slow`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import secrets
import time
from dataclasses import dataclass, field

from aiohttp import web

CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"


def new_access() -> str:
    return "sk-ant-oat01-" + secrets.token_urlsafe(32)


def new_refresh() -> str:
    return "sk-ant-ort01-" + secrets.token_urlsafe(32)


@dataclass
class FakeTokenEndpoint:
    client_id: str = CLIENT_ID
    expires_in: int = 8 * 3600
    calls: int = 0
    problems: list[str] = field(default_factory=list)
    live_refresh: set[str] = field(default_factory=set)  # refresh tokens that work once
    spent_refresh: set[str] = field(default_factory=set)
    valid_access: set[str] = field(default_factory=set)
    failures: list[tuple[int, dict | None, dict[str, str]]] = field(default_factory=list)
    hang: bool = False
    on_request: "object | None" = None  # called with the refresh token before answering
    delay: float = 0.0
    slow: tuple[float, float] | None = None  # answer after a random delay in this range (s)
    reused: int = 0  # spent refresh tokens presented again
    keep_refresh_token: bool = False  # answer without a new refresh token (the old one stays live)
    seen: list[dict] = field(default_factory=list)  # {"body": without the token, "user_agent": ...}
    _ids: itertools.count = field(default_factory=itertools.count)

    def issue(self) -> tuple[str, str]:
        """A fresh login pair, as `claude /login` would get."""
        access, refresh = new_access(), new_refresh()
        self.valid_access.add(access)
        self.live_refresh.add(refresh)
        return access, refresh

    def fail_next(self, status: int, body: dict | None = None, count: int = 1,
                  headers: dict[str, str] | None = None) -> None:
        self.failures.extend([(status, body, headers or {})] * count)

    def revoke_access(self, token: str) -> None:
        self.valid_access.discard(token)

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/oauth/token", self._token)
        return app

    async def _token(self, request: web.Request) -> web.Response:
        self.calls += 1
        if request.content_type != "application/json":
            self.problems.append(f"content-type {request.content_type!r}, expected application/json")
        try:
            body = json.loads(await request.read())
        except ValueError:
            self.problems.append("body is not JSON")
            return web.json_response({"error": "invalid_request"}, status=400)
        if body.get("grant_type") != "refresh_token":
            self.problems.append(f"grant_type {body.get('grant_type')!r}")
        if body.get("client_id") != self.client_id:
            self.problems.append(f"client_id {body.get('client_id')!r}")
        unknown = set(body) - {"grant_type", "refresh_token", "client_id", "scope"}
        if unknown:
            self.problems.append(f"unknown fields {sorted(unknown)}")
        scope = body.get("scope")
        if scope is not None and (not isinstance(scope, str) or len(scope.split()) != len(set(scope.split()))):
            self.problems.append(f"scope {scope!r} is not a de-duplicated space-separated string")
        self.seen.append({"body": {k: v for k, v in body.items() if k != "refresh_token"},
                          "user_agent": request.headers.get("User-Agent"),
                          "routed_from": request.headers.get("x-routed-from"),  # set by the test MITM
                          "at": time.time()})
        if callable(self.on_request):
            self.on_request(body.get("refresh_token"))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.slow:
            await asyncio.sleep(random.uniform(*self.slow))
        if self.hang:
            await asyncio.sleep(3600)
        if self.failures:
            status, fbody, headers = self.failures.pop(0)
            return web.json_response(fbody or {"error": "server_error"}, status=status, headers=headers)
        token = body.get("refresh_token")
        if token in self.spent_refresh:
            self.reused += 1
            self.problems.append("a spent refresh token was reused")
            return web.json_response({"error": "invalid_grant", "error_description": "Refresh token already used"}, status=400)
        if token not in self.live_refresh:
            return web.json_response({"error": "invalid_grant", "error_description": "Invalid refresh token"}, status=400)
        access, refresh = self.issue()
        if self.keep_refresh_token:
            self.live_refresh.discard(refresh)
        else:
            self.live_refresh.discard(token)
            self.spent_refresh.add(token)
        n = next(self._ids)
        return web.json_response({
            "token_type": "Bearer",
            "access_token": access,
            **({} if self.keep_refresh_token else {"refresh_token": refresh}),
            "expires_in": self.expires_in,
            "scope": "user:inference user:profile",
            "account": {"uuid": f"acct-{n}", "email_address": "user@example.com"},
            "organization": {"uuid": "org-1", "name": "Example"},
        })
