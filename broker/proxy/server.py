"""The inference.local proxy server: who may come in; `proxy.forward` does the rest.

Per request: Host and Origin guards, the path allowlist, the sandbox key (constant-time
match against sandbox access's memory; only a failed check is throttled, per peer and in
total, so a valid key is never refused for someone else's guesses), pause; then the
request is held as one of its sandbox's (so a revoke or pause can cancel it) while
`Forwarder` sends it upstream and relays the reply. Each request ends with one audit line
(written by the audit log's own thread) and its use counted. Connections are capped and
idle ones closed by `proxy.connection_guard`; a connection without a valid key is not kept alive.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import date
from typing import Any, Callable

from aiohttp import web

from broker.proxy.audit import AuditLog
from broker.proxy.connection_guard import REQUEST_LOG, ConnectionGuard, fd_cap
from broker.proxy.forward import Forwarder, error_response
from broker.proxy.upstream import Upstream
from broker.usage.clients import client_product
from broker.config.settings import ProxySettings
from broker.proxy.connection_limits import ConnectionTable
from broker.common.errors import BrokerError
from broker.proxy.exchange import Exchange
from broker.common.api_errors import refusal
from broker.proxy.guards import LOCAL_PROBES, check_body_size, check_host, check_origin, check_path
from broker.sandboxes.keys import extract_key
from broker.proxy.protocols import SandboxGate, TokenProvider
from broker.config.profiles import Profile
from broker.proxy.throttle import FailureThrottle

log = logging.getLogger(__name__)

BASE_HOSTS = ("inference.local", "localhost", "127.0.0.1", "::1")
_error = error_response


class ProxyServer:
    def __init__(self, *, profile: Profile, upstream: Upstream, tokens: TokenProvider, access: SandboxGate,
                 audit: AuditLog | None, settings: ProxySettings, token_margin: float,
                 on_change: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.time,
                 on_limits: Callable[[Any], None] = lambda headers: None,
                 on_record: Callable[[Exchange, float], None] = lambda ex, now: None) -> None:
        self.profile, self.upstream, self.access = profile, upstream, access
        self.audit, self.settings = audit, settings
        self.on_change, self.clock = on_change, clock
        self.on_record = on_record  # sees each finished request (the usage ledger)
        self.forwarder = Forwarder(profile=profile, upstream=upstream, tokens=tokens, settings=settings,
                                   token_margin=token_margin, on_limits=on_limits)
        self.throttle = FailureThrottle(per_peer=settings.auth_failures_per_minute,
                                        total=settings.auth_failures_total_per_minute, window=60.0)
        self.conns = ConnectionGuard(ConnectionTable(fd_cap(settings.max_connections), settings.header_timeout_seconds,
                                                     settings.keepalive_timeout_seconds))
        self.bound: list[str] = []  # "host:port" actually listening
        # Host names served (DNS-rebinding guard); grows as addresses are bound, read per request.
        self.allowed_hosts: frozenset[str] = frozenset(BASE_HOSTS) | frozenset(settings.allowed_hosts)
        self._runner: web.ServerRunner | None = None
        self._sites: list[web.TCPSite] = []
        self._day = date.today()
        self.requests_today = 0

    @property
    def plan_limits(self) -> dict[str, str]:
        """The latest plan-limit headers upstream sent."""
        return self.forwarder.plan_limits

    # -- server
    def make_server(self) -> web.Server:
        """aiohttp's low-level server: every path comes to one handler, so an application's
        router and middleware chain would only add work per request. Bodies are read and
        bounded by the forwarder (`max_body_bytes`), not by aiohttp's `client_max_size`, and
        not decoded: the upstream receives the bytes the client sent."""
        return web.Server(self.conns.guard(self.handle), handler_cancellation=True, access_log=None,
                          keepalive_timeout=self.settings.keepalive_timeout_seconds, logger=REQUEST_LOG,
                          auto_decompress=False)  # a compressed body goes upstream as it came

    async def start(self, binds: list[tuple[str, int]]) -> list[str]:
        self._runner = web.ServerRunner(self.make_server())
        await self._runner.setup()
        assert self._runner.server is not None
        self.conns.install(self._runner.server)
        for host, port in binds:
            await self.add_site(host, port)
        return self.bound

    async def add_site(self, host: str, port: int) -> str:
        assert self._runner is not None
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        before = set(self._runner.addresses)
        try:
            await site.start()
        except OSError as exc:
            raise BrokerError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (another broker, or "
                              "another program, may hold the port; change `listen` in the config)",
                              title="Cannot listen") from None
        real_port = [a for a in self._runner.addresses if a not in before][0][1]  # this site's socket
        shown = f"[{host}]:{real_port}" if ":" in host else f"{host}:{real_port}"
        self._sites.append(site)
        self.bound.append(shown)
        self.allowed_hosts = self.allowed_hosts | {host}
        log.info("listening on http://%s", shown)
        return shown

    async def remove_site(self, shown: str) -> None:
        """Stop listening on `shown` (an address `add_site` returned): a container bridge that went
        away. Connections already open on it finish as usual."""
        if shown not in self.bound:
            return
        i = self.bound.index(shown)
        site = self._sites.pop(i)
        self.bound.pop(i)
        await site.stop()

    async def stop(self) -> None:
        await self.conns.close()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.upstream.close()

    # -- the handler
    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        bad = check_host(request.headers.get("Host"), self.allowed_hosts)
        if bad is None:
            bad = check_origin(request.headers.get("Origin"), self.settings.allowed_origins)
        if bad is not None:
            log.warning("refused %s %s from %s: %s", request.method, request.path, request.remote, bad.message)
            return _error(bad)
        path = request.raw_path.partition("?")[0]
        if request.method == "HEAD" and path in LOCAL_PROBES:
            return web.Response(status=200)  # Claude Code's reachability check, no key needed
        bad = check_path(request.method, path, self.profile.paths)
        if bad is not None:
            return _error(bad)

        # The key first: a valid key is never refused for someone else's failures.
        key = extract_key(request.headers.items())
        name = self.access.sandbox_for(key) if key else None
        if name is None:
            return self._wrong_key(request, key)
        self.conns.authenticated(request)
        if self.access.paused:
            return _error(refusal(403, "sandbox access is paused in inference-broker; resume it from the tray "
                                       "or with `inference-broker resume`"))
        verdict = self.access.admit(name, self.clock())  # budgets, and the plan-wide stop
        if verdict is not None:
            ex = Exchange(name, request.method, request.path, status=429, outcome="refused: over budget",
                          latency_ms=0.0, client=client_product(request.headers.get("User-Agent")))
            self._finish(ex)
            return _error(verdict[0], {"retry-after": str(max(1, round(verdict[1])))})
        bad = check_body_size(request.headers.get("Content-Length"), self.settings.max_body_bytes)
        if bad is not None:
            resp = _error(bad)
            resp.force_close()  # the body stays unread: the connection cannot carry another request
            return resp

        ex = Exchange(name, request.method, request.path, client=client_product(request.headers.get("User-Agent")))
        started = time.monotonic()
        with self.access.streaming(name):
            try:
                return await self.forwarder.forward(request, key or "", ex)
            except asyncio.CancelledError:
                ex.status = ex.status or 499
                ex.outcome = "ended (revoked, paused, or the client went away)"
                raise
            finally:
                ex.latency_ms = round((time.monotonic() - started) * 1000, 1)
                self._finish(ex)

    def _wrong_key(self, request: web.BaseRequest, key: str | None) -> web.Response:
        peer = request.remote or "?"
        verdict = self.throttle.failure(peer, self.clock())
        if verdict.retry_after is not None:
            if verdict.log:  # once per window, not once per attempt
                log.warning("too many wrong sandbox keys %s; answering 429 for a while (%d so far)",
                            verdict.why, self.throttle.refused)
            return _error(refusal(429, f"too many requests with a wrong sandbox key {verdict.why}; "
                                       "wait and try again"),
                          {"Retry-After": str(int(verdict.retry_after) + 1), "Connection": "close"})
        why = ("no sandbox key: set ANTHROPIC_API_KEY to a key from `inference-broker sandbox add NAME`"
               if not key else "invalid sandbox key (revoked, or never issued by this broker): on the host, "
               "`inference-broker docker-args NAME --rotate` gives the sandbox a new one")
        log.warning("refused %s %s from %s: %s", request.method, request.path[:200], peer, why.split(":")[0])
        return _error(refusal(401, why))

    def _finish(self, ex: Exchange) -> None:
        now = self.clock()
        today = date.fromtimestamp(now)
        if today != self._day:
            self._day, self.requests_today = today, 0
        self.requests_today += 1
        self.access.record_use(ex.sandbox, now, ex.usage)
        try:
            self.on_record(ex, now)
        except Exception as exc:
            log.error("cannot account the request: %s", exc)
        if self.audit is not None:
            try:
                self.audit.write(ex.record(now))
            except Exception as exc:
                log.error("cannot write the audit log: %s", exc)
        log.debug("%s %s %s -> %s (%s ms)", ex.sandbox, ex.method, ex.path, ex.status, ex.latency_ms)
        self.on_change()
