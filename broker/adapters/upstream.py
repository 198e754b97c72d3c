"""The upstream API client: one pooled aiohttp session, streaming, no total timeout.

A long stream must not be cut by a total deadline, so only the connect time and the silence
between chunks are bounded.
"""

from __future__ import annotations

import aiohttp
from yarl import URL


class Upstream:
    def __init__(self, base_url: str, connect_timeout: float = 30.0, read_idle_timeout: float = 600.0) -> None:
        self.base = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_connect=connect_timeout,
                                             sock_read=read_idle_timeout)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # auto_decompress: the proxy relays a decoded body and drops Content-Encoding.
            self._session = aiohttp.ClientSession(timeout=self.timeout, auto_decompress=True,
                                                  skip_auto_headers=("User-Agent",))
        return self._session

    def url(self, raw_path_qs: str) -> URL:
        """The upstream URL with the client's path and query kept byte for byte."""
        return URL(self.base + raw_path_qs, encoded=True)

    async def send(self, method: str, raw_path_qs: str, headers: list[tuple[str, str]], body: bytes) -> aiohttp.ClientResponse:
        return await self.session.request(method, self.url(raw_path_qs), headers=headers,
                                          data=body if body or method not in ("GET", "HEAD") else None,
                                          allow_redirects=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
