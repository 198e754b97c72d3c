"""Marker servers on the host: a sandbox fetches one to prove which addresses it can reach.

They run through `tests.fakes.threaded.serve_in_thread`, so plain sync tests can drive blocking
sandboxes (`docker run`, `ip netns exec`) against them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from aiohttp import web

from tests.fakes.threaded import ServerURL


@dataclass
class Marker:
    url: ServerURL
    hosts: list[str] = field(default_factory=list)  # the Host header of every request seen

    @property
    def port(self) -> int:
        return self.url.port


def marker_app(text: str, hosts: list[str]) -> Callable[[], web.Application]:
    """A factory for an app answering every GET/HEAD with `text` and noting each Host."""

    def factory() -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            hosts.append(request.host)
            return web.Response(text=text)

        app = web.Application()
        app.router.add_get("/{tail:.*}", handle)  # HEAD too
        return app

    return factory
