"""Anthropic's servers as the real Claude Code CLI meets them, on one local port.

`/v1/oauth/token` is the fake token endpoint (single-use refresh tokens, reuse counted),
`/api/oauth/profile` answers the profile Claude Code asks for after a refresh, and `/v1/*`
is the fake API. Reached directly by the broker and through mitmproxy by Claude Code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from tests.fakes.token_endpoint import FakeTokenEndpoint
from tests.fakes.upstream import FakeAnthropic


@dataclass
class FakeSite:
    endpoint: FakeTokenEndpoint = field(default_factory=FakeTokenEndpoint)
    api: FakeAnthropic | None = None
    unexpected: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.api is None:
            self.api = FakeAnthropic(valid_tokens=lambda: self.endpoint.valid_access)

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/oauth/token", self.endpoint._token)
        app.router.add_get("/api/oauth/profile", self._profile)
        app.router.add_route("*", "/v1/{tail:.*}", self.api._handle)
        app.router.add_route("*", "/{tail:.*}", self._other)
        return app

    async def _profile(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if auth.removeprefix("Bearer ") not in self.endpoint.valid_access:
            return web.json_response({"type": "error", "error": {"type": "authentication_error",
                                                                 "message": "invalid token"}}, status=401)
        return web.json_response({
            "account": {"uuid": "acct-1", "email_address": "user@example.com", "full_name": "Test User"},
            "organization": {"uuid": "org-1", "name": "Example", "organization_type": "claude_max",
                             "rate_limit_tier": "default_claude_max_20x"},
        })

    async def _other(self, request: web.Request) -> web.Response:
        self.unexpected.append(f"{request.method} {request.path}")
        return web.json_response({"type": "error", "error": {"type": "not_found_error", "message": "no such path"}},
                                 status=404)
