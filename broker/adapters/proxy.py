"""The inference.local proxy: check, rewrite, forward, stream. Policy lives in core.

Per request: Host and Origin guards, the path allowlist, the sandbox key (constant-time
match, failures rate-limited per peer), the body limit; then the current token (refreshed
first if it is close to expiry), the header rewrite, and a chunk-by-chunk relay of the
response. A 401 from upstream forces one refresh and one retry. Revoking a key or pausing
cancels that sandbox's requests in flight.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import date
from typing import Any, Callable

import aiohttp
from aiohttp import web

from broker.adapters.audit import AuditLog
from broker.adapters.keystore import KeyStore
from broker.adapters.upstream import Upstream
from broker.core.config import ProxySettings
from broker.core.errors import BrokerError, NotLoggedIn
from broker.core.guards import Refusal, check_body_size, check_host, check_origin, check_path, refusal
from broker.core.headers import rewrite_request_headers, rewrite_response_headers
from broker.core.keys import extract_key, match_key
from broker.core.ports import TokenProvider
from broker.core.profiles import Profile
from broker.core.throttle import FailureLimiter
from broker.core.usage import SSEUsageTracker, Usage, plan_limits, usage_from_json

log = logging.getLogger(__name__)

BASE_HOSTS = ("inference.local", "localhost", "127.0.0.1", "::1")
JSON_USAGE_LIMIT = 4 * 1024 * 1024  # keep at most this much of a JSON reply to read `usage`


def _error(r: Refusal, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(r.body(), status=r.status, headers=headers)


class ProxyServer:
    def __init__(self, *, profile: Profile, upstream: Upstream, tokens: TokenProvider, keystore: KeyStore,
                 audit: AuditLog | None, settings: ProxySettings, token_margin: float,
                 on_change: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.time) -> None:
        self.profile, self.upstream, self.tokens, self.keystore = profile, upstream, tokens, keystore
        self.audit, self.settings, self.token_margin = audit, settings, token_margin
        self.on_change, self.clock = on_change, clock
        self.limiter = FailureLimiter(max_failures=settings.auth_failures_per_minute, window=60.0)
        self.bound: list[str] = []  # "host:port" actually listening
        # Host names served (DNS-rebinding guard); grows as addresses are bound, read per request.
        self.allowed_hosts: frozenset[str] = frozenset(BASE_HOSTS) | frozenset(settings.allowed_hosts)
        self._runner: web.AppRunner | None = None
        self._sites: list[web.TCPSite] = []
        self._active: dict[str, set[asyncio.Task[Any]]] = {}
        self._hashes: dict[str, str] = {}
        self._paused = False
        self._day = date.today()
        self.requests_today = 0
        self.plan_limits: dict[str, str] = {}  # the latest plan-limit headers upstream sent
        self.reload_keys()

    # -- keys and pause, shared with the CLI through the key store
    def reload_keys(self) -> None:
        self._hashes = self.keystore.hashes()
        self._paused = self.keystore.paused()
        self.keystore.changed()  # take the current version as seen

    def sync_keys(self) -> None:
        """Pick up another process's revoke/pause, ending streams whose access went away."""
        if not self.keystore.changed():
            return
        before = set(self._hashes)
        self.reload_keys()
        gone = {n for n in before if n not in self._hashes}
        if self._paused:
            self.end_streams()
        for name in gone:
            self.end_streams(name)
        self.on_change()

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def active_streams(self) -> int:
        return sum(len(tasks) for tasks in self._active.values())

    def end_streams(self, name: str | None = None) -> int:
        names = [name] if name is not None else list(self._active)
        ended = 0
        for n in names:
            for task in list(self._active.get(n, ())):
                task.cancel()
                ended += 1
        if ended:
            log.info("ended %d request(s) in flight%s", ended, f" for sandbox {name}" if name else "")
        return ended

    # -- server
    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_body_bytes + 1)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def start(self, binds: list[tuple[str, int]]) -> list[str]:
        self._runner = web.AppRunner(self.make_app(), handler_cancellation=True, access_log=None)
        await self._runner.setup()
        for host, port in binds:
            await self.add_site(host, port)
        return self.bound

    async def add_site(self, host: str, port: int) -> str:
        assert self._runner is not None
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise BrokerError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (another broker, or "
                              "another program, may hold the port; change `listen` in the config)",
                              title="Cannot listen") from None
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        real_port = sock.getsockname()[1]
        shown = f"[{host}]:{real_port}" if ":" in host else f"{host}:{real_port}"
        self._sites.append(site)
        self.bound.append(shown)
        self.allowed_hosts = self.allowed_hosts | {host}
        log.info("listening on http://%s", shown)
        return shown

    async def stop(self) -> None:
        self.end_streams()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.upstream.close()

    # -- the handler
    async def handle(self, request: web.Request) -> web.StreamResponse:
        bad = check_host(request.headers.get("Host"), self.allowed_hosts)
        if bad is None:
            bad = check_origin(request.headers.get("Origin"), self.settings.allowed_origins)
        if bad is not None:
            log.warning("refused %s %s from %s: %s", request.method, request.path, request.remote, bad.message)
            return _error(bad)
        if request.method == "HEAD" and request.raw_path == "/":
            return web.Response(status=200)  # Claude Code's reachability check, no key needed
        bad = check_path(request.method, request.raw_path.split("?", 1)[0], self.profile.paths)
        if bad is not None:
            return _error(bad)

        peer = request.remote or "?"
        now = self.clock()
        wait = self.limiter.retry_after(peer, now)
        if wait is not None:
            return _error(refusal(429, "too many requests with a wrong sandbox key; wait and try again"),
                          {"Retry-After": str(int(wait) + 1)})
        self.sync_keys()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]
        key = extract_key(headers)
        name = match_key(key, self._hashes) if key else None
        if name is None:
            self.limiter.record_failure(peer, now)
            why = ("no sandbox key: set ANTHROPIC_API_KEY to a key from `inference-broker sandbox add NAME`"
                   if not key else "invalid sandbox key (revoked, or never issued by this broker)")
            log.warning("refused %s %s from %s: %s", request.method, request.path, peer, why.split(":")[0])
            return _error(refusal(401, why))
        self.limiter.record_success(peer)
        if self._paused:
            return _error(refusal(403, "sandbox access is paused in inference-broker; resume it from the tray "
                                       "or with `inference-broker resume`"))
        bad = check_body_size(request.headers.get("Content-Length"), self.settings.max_body_bytes)
        if bad is not None:
            return _error(bad)

        task = asyncio.current_task()
        assert task is not None
        self._active.setdefault(name, set()).add(task)
        started = time.monotonic()
        entry: dict[str, Any] = {"sandbox": name, "method": request.method, "path": request.path}
        try:
            return await self._forward(request, name, key or "", headers, entry)
        except asyncio.CancelledError:
            entry.setdefault("status", 499)
            entry["outcome"] = "ended (revoked, paused, or the client went away)"
            raise
        finally:
            self._active[name].discard(task)
            if not self._active[name]:
                del self._active[name]
            entry["latency_ms"] = round((time.monotonic() - started) * 1000, 1)
            self._finish(name, entry)

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.settings.max_body_bytes
        chunks, size = [], 0
        async for chunk in request.content.iter_chunked(65536):
            size += len(chunk)
            if size > limit:
                raise _TooLarge(size)
            chunks.append(chunk)
        return b"".join(chunks)

    async def _forward(self, request: web.Request, name: str, key: str, headers: list[tuple[str, str]],
                       entry: dict[str, Any]) -> web.StreamResponse:
        try:
            body = await self._read_body(request)
        except _TooLarge as too_large:
            entry["status"] = 413
            bad = check_body_size(str(too_large.args[0]), self.settings.max_body_bytes)
            assert bad is not None
            return _error(bad)
        doc = _json_object(body) if body else None
        if request.method == "POST" and body and doc is None:
            entry["status"] = 400
            return _error(refusal(400, "request body must be a JSON object"))
        model = doc.get("model") if doc else None
        entry["model"] = model if isinstance(model, str) else None
        try:
            token = await self.tokens.token(min_valid=self.token_margin)
        except NotLoggedIn as exc:
            entry["status"] = 503
            return _error(refusal(503, f"inference-broker has no usable Claude login: {exc.message}"))

        upstream_resp = await self._send(request, headers, body, token, entry)
        if isinstance(upstream_resp, web.StreamResponse):
            return upstream_resp
        if upstream_resp.status == 401:
            # The token may have been revoked early: refresh once (single-flight) and retry once;
            # with no newer token to try, the client gets the upstream's 401 as it was.
            await self.tokens.refresh("upstream 401", failed_token=token)
            try:
                new_token = await self.tokens.token()
            except NotLoggedIn:
                new_token = token
            if new_token != token:
                upstream_resp.release()
                entry["retried_after_401"] = True
                token = new_token
                upstream_resp = await self._send(request, headers, body, token, entry)
                if isinstance(upstream_resp, web.StreamResponse):
                    return upstream_resp
        return await self._relay(request, upstream_resp, [token, key], entry)

    async def _send(self, request: web.Request, headers: list[tuple[str, str]], body: bytes, token: str,
                    entry: dict[str, Any]) -> aiohttp.ClientResponse | web.StreamResponse:
        out = rewrite_request_headers(headers, auth_header=self.profile.auth_header,
                                      auth_value=self.profile.auth_value(token),
                                      mandatory=self.profile.mandatory_headers)
        try:
            return await self.upstream.send(request.method, request.raw_path, out, body)
        except asyncio.TimeoutError:
            entry["status"] = 504
            return _error(refusal(504, "the upstream API did not answer in time"))
        except aiohttp.ClientError as exc:
            entry["status"] = 502
            log.warning("upstream unreachable: %s", type(exc).__name__)
            return _error(refusal(502, f"cannot reach the upstream API ({type(exc).__name__})"))

    async def _relay(self, request: web.Request, up: aiohttp.ClientResponse, secrets: list[str],
                     entry: dict[str, Any]) -> web.StreamResponse:
        entry["status"] = up.status
        limits = plan_limits(up.headers)
        if limits:
            self.plan_limits = limits
        try:
            out_headers = rewrite_response_headers(
                [(k.decode("latin-1"), v.decode("latin-1")) for k, v in up.raw_headers], secrets)
            resp = web.StreamResponse(status=up.status, reason=up.reason)
            for k, v in out_headers:
                resp.headers.add(k, v)
            is_sse = up.content_type == "text/event-stream"
            tracker = SSEUsageTracker() if is_sse else None
            kept: list[bytes] = []
            kept_size = 0
            await resp.prepare(request)
            try:
                async for chunk in up.content.iter_any():
                    if tracker is not None:
                        tracker.feed(chunk)
                    elif kept_size < JSON_USAGE_LIMIT:
                        kept.append(chunk)
                        kept_size += len(chunk)
                    await resp.write(chunk)
            except (asyncio.TimeoutError, aiohttp.ClientPayloadError) as exc:
                # Half a reply must not look whole: cut the connection instead of ending cleanly.
                silent = isinstance(exc, asyncio.TimeoutError)
                entry["outcome"] = "upstream went silent" if silent else "upstream ended the stream early"
                log.warning("%s; cutting the client's connection", entry["outcome"])
                if tracker is not None:
                    entry["usage"] = tracker.result()
                if request.transport is not None:
                    request.transport.abort()
                return resp
            except asyncio.CancelledError:
                # Ended by a revoke, a pause or a client gone: the tokens upstream already
                # counted (message_start's input) still belong to this sandbox's usage.
                if tracker is not None:
                    entry["usage"] = tracker.result()
                raise
            usage = tracker.result() if tracker is not None else usage_from_json(b"".join(kept))
            if usage is not None:
                entry["usage"] = usage
            await resp.write_eof()
            return resp
        finally:
            up.release()

    def _finish(self, name: str, entry: dict[str, Any]) -> None:
        usage: Usage | None = entry.pop("usage", None)
        if usage is not None:
            entry["model"] = usage.model or entry.get("model")
            entry["input_tokens"] = usage.input_tokens
            entry["output_tokens"] = usage.output_tokens
            entry["cache_read_input_tokens"] = usage.cache_read_input_tokens
            entry["cache_creation_input_tokens"] = usage.cache_creation_input_tokens
        now = self.clock()
        today = date.fromtimestamp(now)
        if today != self._day:
            self._day, self.requests_today = today, 0
        self.requests_today += 1
        self.keystore.record_use(name, now, usage)
        entry["time"] = round(now, 3)
        if self.audit is not None:
            try:
                self.audit.write(entry)
            except Exception as exc:
                log.error("cannot write the audit log: %s", exc)
        log.debug("%s %s %s -> %s (%s ms)", name, entry.get("method"), entry.get("path"), entry.get("status"),
                 entry.get("latency_ms"))
        self.on_change()


class _TooLarge(Exception):
    pass


def _json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, parsed once (it also yields the model for the audit)."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return doc if isinstance(doc, dict) else None
