"""A fake Anthropic API that answers like the real one and checks what the broker sends it.

Every request is recorded; anything the real API would reject, or that a careful proxy
must never send (a second `anthropic-beta`, a sandbox key, an `x-api-key`), is written to
`problems` so a test can end with `assert fake.problems == []`.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from aiohttp import web

logger = logging.getLogger(__name__)

OAUTH_BETA = "oauth-2025-04-20"
INPUT_TOKENS = 11
MODELS = [
    {"type": "model", "id": "claude-sonnet-4-6", "display_name": "Claude Sonnet 4.6", "created_at": "2026-02-17T00:00:00Z"},
    {"type": "model", "id": "claude-haiku-4-5", "display_name": "Claude Haiku 4.5", "created_at": "2025-10-15T00:00:00Z"},
]
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_POLL = 0.02  # how often a paused stream looks for a vanished client


@dataclass
class Received:
    method: str
    path: str
    query_string: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    @property
    def content(self) -> bytes:
        """The body as the client meant it: `body` is what arrived, still gzip-compressed when
        the request said so and the server ran with auto_decompress=False (as make_broker's)."""
        if self.header("content-encoding") == ["gzip"] and self.body[:2] == b"\x1f\x8b":
            return gzip.decompress(self.body)
        return self.body

    def json(self) -> object:
        return json.loads(self.content)


def error_body(status: int, message: str) -> dict:
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}}


def sse_event(kind: str, data: dict) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


class ClientGone(Exception):
    """The client closed the connection while a stream was paused."""


@dataclass
class FakeAnthropic:
    valid_tokens: Callable[[], Collection[str]]
    forbidden: Callable[[], Collection[str]] = lambda: ()
    reply_text: str = "Hello from the fake upstream"
    event_delay: float = 0.0
    gate: asyncio.Event | None = None
    chunk_size: int | None = None  # write each SSE event in pieces this big (tests chunking)
    extra_response_headers: list[tuple[str, str]] = field(default_factory=list)
    # Plan-limit header values (prefix removed) that override the defaults, e.g. {"5h-utilization": "0.9"}.
    limit_headers: dict[str, str] = field(default_factory=dict)
    # The OAuth usage endpoint: its document, and which tokens carry the user:profile scope.
    usage_doc: dict = field(default_factory=lambda: {
        "five_hour": {"utilization": 62.0, "resets_at": "2030-01-01T14:20:00+00:00"},
        "seven_day": {"utilization": 31.0, "resets_at": "2030-01-05T00:00:00+00:00"},
        "seven_day_opus": {"utilization": 4.0, "resets_at": "2030-01-05T00:00:00+00:00"},
        "extra_usage": {"is_enabled": False, "monthly_limit": None, "used_credits": None, "utilization": None},
    })
    has_profile_scope: Callable[[str], bool] = lambda token: True
    requests: list[Received] = field(default_factory=list)
    usage_requests: list[Received] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unauthorized: int = 0
    streams_started: int = 0
    streams_open: int = 0
    streams_completed: int = 0
    streams_cancelled: int = 0
    _failures: deque[tuple[int, dict | None]] = field(default_factory=deque)

    def make_app(self) -> web.Application:
        """A new app per call: aiohttp apps must not be shared between tests or loops."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    def fail_next(self, status: int, count: int = 1, body: dict | None = None) -> None:
        """Answer the next `count` requests with `status` (after recording and checking them)."""
        for _ in range(count):
            self._failures.append((status, body))

    # -- checks ---------------------------------------------------------------------------

    def _problem(self, rec: Received, text: str) -> None:
        self.problems.append(f"request {len(self.requests)} {rec.method} {rec.path}: {text}")

    def _check(self, rec: Received) -> web.Response | None:
        """Record problems; return the 401 the real API would give, if any."""
        for value in self.forbidden():
            if not value:
                continue
            for name, hval in rec.headers:
                if value in hval or value in name:
                    shown = "a header name" if value in name else f"header {name!r}"
                    self._problem(rec, f"{shown} carries a forbidden value (a sandbox key?)")
            if value.encode() in rec.content:
                self._problem(rec, "body carries a forbidden value (a sandbox key?)")
        if rec.header("x-api-key"):
            self._problem(rec, "an x-api-key header reached upstream")

        betas = rec.header("anthropic-beta")
        beta_ok = True
        if len(betas) != 1:
            self._problem(rec, f"expected exactly one anthropic-beta header, got {len(betas)}")
        flags = [f.strip() for v in betas for f in v.split(",") if f.strip()]
        if OAUTH_BETA not in flags:
            self._problem(rec, f"anthropic-beta lacks {OAUTH_BETA}")
            beta_ok = False
        dupes = sorted({f for f in flags if flags.count(f) > 1})
        if dupes:
            self._problem(rec, f"duplicate anthropic-beta flags {dupes}")

        auths = rec.header("authorization")
        token = None
        if len(auths) != 1:
            self._problem(rec, f"expected exactly one Authorization header, got {len(auths)}")
        elif not re.fullmatch(r"Bearer [^\s]+", auths[0]):
            self._problem(rec, "Authorization is not 'Bearer <token>'")
        else:
            token = auths[0][len("Bearer ") :]
        if token is None:
            return _error(401, "invalid x-api-key")
        if token not in set(self.valid_tokens()):
            self.unauthorized += 1
            if token.startswith("sk-ant-oat"):
                return _error(
                    401,
                    "OAuth token has expired. Please obtain a new token or refresh your existing token.",
                )
            return _error(401, "invalid x-api-key")
        if not beta_ok:
            return _error(401, "OAuth authentication is currently not supported.")
        return None

    # -- endpoints ------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        rec = Received(
            method=request.method,
            path=request.path,
            query_string=request.query_string,
            headers=[
                (n.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape"))
                for n, v in request.raw_headers
            ],
            body=await request.read(),
        )
        if (rec.method, rec.path) == ("GET", "/api/oauth/usage"):
            # The broker's own poll, kept apart from what the proxy forwards (and from fail_next).
            self.usage_requests.append(rec)
            unauthorized, self.unauthorized = self.unauthorized, self.unauthorized
            refused = self._check(rec)
            self.unauthorized = unauthorized
            return refused or self._usage(rec)
        self.requests.append(rec)
        refused = self._check(rec)
        if self._failures:
            status, body = self._failures.popleft()
            return _error(status, "injected failure", body)
        if refused is not None:
            return refused
        route = (request.method, request.path)
        if route == ("POST", "/v1/messages"):
            return await self._messages(request, rec)
        if route == ("POST", "/v1/messages/count_tokens"):
            return self._count_tokens(rec)
        if route == ("GET", "/v1/models"):
            return self._json(
                {"data": MODELS, "has_more": False, "first_id": MODELS[0]["id"], "last_id": MODELS[-1]["id"]}
            )
        if request.method == "GET" and request.path.startswith("/v1/models/"):
            for model in MODELS:
                if request.path == f"/v1/models/{model['id']}":
                    return self._json(model)
        return _error(404, f"Not found: {request.method} {request.path}")

    def _usage(self, rec: Received) -> web.Response:
        """GET /api/oauth/usage: needs the OAuth token (checked in `_check`) with user:profile."""
        token = rec.header("authorization")[0][len("Bearer "):]
        if rec.body:
            self._problem(rec, "the usage endpoint is a GET without a body")
        if not self.has_profile_scope(token):
            return _error(403, "OAuth token does not meet scope requirement user:profile")
        return web.json_response(self.usage_doc)

    def _count_tokens(self, rec: Received) -> web.Response:
        """Like the real endpoint: a JSON body with a model and messages, no `stream`."""
        try:
            doc = rec.json()
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("messages"), list) or not doc.get("model"):
            self._problem(rec, "count_tokens needs a JSON object with model and messages")
            return _error(400, "count_tokens: model and messages are required")
        if "stream" in doc:
            self._problem(rec, "count_tokens got a stream field")
        return self._json({"input_tokens": INPUT_TOKENS})

    def _headers(self) -> dict[str, str]:
        now = int(time.time())
        limits = {
            "status": "allowed",
            "5h-utilization": "0.25",
            "5h-reset": str(now + 3600),
            "7d-utilization": "0.5",
            "7d-reset": str(now + 86400),
            "representative-claim": "five_hour",
            **self.limit_headers,
        }
        return {"request-id": f"req_fake_{len(self.requests)}",
                **{f"anthropic-ratelimit-unified-{k}": v for k, v in limits.items()}}

    def _json(self, doc: dict) -> web.Response:
        resp = web.json_response(doc, headers=self._headers())
        for name, value in self.extra_response_headers:
            resp.headers.add(name, value)
        return resp

    def _words(self) -> list[str]:
        return re.findall(r"\S+\s*", self.reply_text) or [self.reply_text]

    async def _messages(self, request: web.Request, rec: Received) -> web.StreamResponse:
        try:
            doc = json.loads(rec.content)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
        except ValueError:
            return _error(400, "Request body is not valid JSON")
        model = str(doc.get("model") or MODELS[0]["id"])
        message_id = f"msg_fake_{len(self.requests)}"
        words = self._words()
        if not doc.get("stream"):
            return self._json(
                {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": self.reply_text}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": _usage(len(words)),
                }
            )
        return await self._stream(request, model, message_id, words)

    async def _stream(
        self, request: web.Request, model: str, message_id: str, words: list[str]
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers=self._headers())
        resp.content_type = "text/event-stream"
        resp.headers["cache-control"] = "no-cache"
        for name, value in self.extra_response_headers:
            resp.headers.add(name, value)
        self.streams_started += 1
        self.streams_open += 1
        try:
            await resp.prepare(request)
            events = _events(model, message_id, words)
            for i, (kind, data) in enumerate(events):
                if i and self.event_delay:
                    await self._pause(request, asyncio.sleep(self.event_delay))
                if i == 3 and self.gate is not None:  # after message_start, block start, 1st delta
                    await self._pause(request, self.gate.wait())
                await self._write(resp, sse_event(kind, data))
            await resp.write_eof()
            self.streams_completed += 1
        except (ConnectionError, ClientGone):
            self.streams_cancelled += 1
            logger.info("fake upstream: client went away mid-stream")
        except asyncio.CancelledError:
            self.streams_cancelled += 1
            logger.info("fake upstream: stream handler cancelled")
            raise
        finally:
            self.streams_open -= 1
        return resp

    async def _write(self, resp: web.StreamResponse, data: bytes) -> None:
        step = self.chunk_size or len(data)
        for i in range(0, len(data), step):
            await resp.write(data[i : i + step])

    @staticmethod
    async def _pause(request: web.Request, awaitable) -> None:
        """Wait, but notice a vanished client: aiohttp does not cancel idle handlers."""
        task = asyncio.ensure_future(awaitable)
        try:
            while not task.done():
                transport = request.transport
                if transport is None or transport.is_closing():
                    raise ClientGone()
                await asyncio.wait({task}, timeout=_POLL)
            task.result()
        finally:
            task.cancel()


def _usage(output_tokens: int) -> dict:
    return {
        "input_tokens": INPUT_TOKENS,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def _events(model: str, message_id: str, words: list[str]) -> list[tuple[str, dict]]:
    start = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**_usage(1)},
    }
    events: list[tuple[str, dict]] = [
        ("message_start", {"type": "message_start", "message": start}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ]
    for word in words:
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}}
        events.append(("content_block_delta", delta))
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": len(words)},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return events


def _error(status: int, message: str, body: dict | None = None) -> web.Response:
    headers = {"request-id": "req_fake_error"}
    if status == 429:
        headers["retry-after"] = "1"
    return web.json_response(body or error_body(status, message), status=status, headers=headers)
