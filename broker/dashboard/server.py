"""The local dashboard's HTTP server: loopback only, on its own port, apart from the proxy.

This module guards the door (Host, Origin, the one-time link, the session cookie, CSRF) and
routes; what a page says comes from `views`, which the app layer supplies. Every answer
carries a strict Content-Security-Policy and `no-store`: the page holds no secret, but it
should not linger in a cache either.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from broker.dashboard.auth import COOKIE, DashboardAuth, Session, csrf_ok, host_ok, origin_ok

log = logging.getLogger(__name__)

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: with it Chromium sends `Origin: null` on the page's own form posts.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


SESSION: Any = web.RequestKey("session", Session) if hasattr(web, "RequestKey") else "session"


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


class Views(Protocol):
    async def page(self, query: dict[str, str], csrf: str) -> str: ...
    def stylesheet(self) -> str: ...
    async def act(self, action: str, form: dict[str, str]) -> str | None: ...  # None: done; else why not


def _page(status: int, title: str, message: str) -> web.Response:
    from html import escape

    body = (f"<!doctype html><meta charset=utf-8><title>{escape(title)}</title>"
            f"<h1>{escape(title)}</h1><p>{escape(message)}</p>")
    return web.Response(status=status, text=body, content_type="text/html", headers=HEADERS)


class DashboardServer:
    def __init__(self, views: Views, *, host: str = "127.0.0.1", port: int = 0,
                 clock: Callable[[], float] = time.time) -> None:
        self.views, self.host, self.port, self.clock = views, host, port, clock
        self.auth = DashboardAuth()
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def login_url(self) -> str:
        """A fresh one-time link (valid two minutes, for one visit)."""
        return f"{self.base_url}/login?t={self.auth.new_link_token(self.clock())}"

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=64 * 1024)
        app.router.add_get("/login", self._login)
        app.router.add_get("/", self._index)
        app.router.add_get("/style.css", self._style)
        app.router.add_post("/action/{name}", self._action)
        return app

    async def start(self) -> str:
        self._runner = web.AppRunner(self.make_app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]  # the one site's socket: the port it really got
        log.info("dashboard on %s (open it with `inference-broker dashboard`)", self.base_url)
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- the door
    @web.middleware
    async def _guard(self, request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]) -> Any:
        if not host_ok(request.headers.get("Host"), self.port):
            log.warning("dashboard refused a request for Host %r", request.headers.get("Host", "")[:80])
            return _page(421, "Wrong host", "The dashboard answers only on its own loopback address.")
        if not origin_ok(request.headers.get("Origin"), self.port, required=request.method == "POST"):
            log.warning("dashboard refused a cross-origin %s", request.method)
            return _page(403, "Refused", "Requests from other web pages are refused.")
        if request.path != "/login":
            session = self.auth.session(request.cookies.get(COOKIE), self.clock())
            if session is None:
                return _page(401, "Sign in", "Open the dashboard with `inference-broker dashboard` (or the tray's "
                                             "Open dashboard): it gives a one-time link.")
            request[SESSION] = session
        response = await handler(request)
        response.headers.update(HEADERS)
        return response

    async def _login(self, request: web.Request) -> web.StreamResponse:
        got = self.auth.redeem(request.query.get("t"), self.clock())
        if isinstance(got, str):
            log.warning("dashboard: a login link was refused")
            return _page(403, "Link not valid", got)
        sid, _ = got
        response = _see_other("/")
        response.set_cookie(COOKIE, sid, httponly=True, samesite="Strict", path="/")
        return response

    async def _index(self, request: web.Request) -> web.Response:
        html = await self.views.page(dict(request.query), request[SESSION].csrf)
        return web.Response(text=html, content_type="text/html")

    async def _style(self, request: web.Request) -> web.Response:
        return web.Response(text=self.views.stylesheet(), content_type="text/css")

    async def _action(self, request: web.Request) -> web.StreamResponse:
        form = {k: str(v) for k, v in (await request.post()).items()}
        if not csrf_ok(request[SESSION], form.get("csrf")):
            log.warning("dashboard refused a form without a valid CSRF token")
            return _page(403, "Refused", "The form's CSRF token is missing or wrong; reload the dashboard.")
        problem = await self.views.act(request.match_info["name"], form)
        if problem is not None:
            return _page(400, "Not done", problem)
        back = form.get("range", "")
        return _see_other("/" + (f"?range={back}" if back in ("24h", "7d", "30d") else ""))
