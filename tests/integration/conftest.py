"""Fixtures for proxy tests: a real Service on 127.0.0.1:0 between real clients and the fakes.

Only Anthropic's servers are faked (the API and the OAuth token endpoint); the proxy, key
store, audit log, token manager, credentials file and its watcher are the real ones.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

try:  # the HTTP library the anthropic SDK runs on: httpx2 for SDK 2.x, httpx before
    import httpx2 as httpx
except ImportError:  # pragma: no cover - older SDKs
    import httpx  # type: ignore[no-redef]

from broker.config.settings import Config, CredentialSettings, ProxySettings, RefreshSettings, UsageSettings
from broker.runtime.service import Service
from tests.fakes.login import write_login
from tests.fakes.relay import Relay
from tests.fakes.token_endpoint import FakeTokenEndpoint
from tests.fakes.upstream import FakeAnthropic

SDK_ENV = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "ANTHROPIC_PROFILE",
           "ANTHROPIC_CONFIG_DIR", "ANTHROPIC_CUSTOM_HEADERS", "XDG_CONFIG_HOME", "CLAUDE_CONFIG_DIR",
           "INFERENCE_BROKER_CONFIG")


@pytest.fixture
def sdk_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep SDKs and the broker from finding this machine's real credentials or config."""
    for name in SDK_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


class Seen:
    """Every status line, header and body byte a client received, to search for secrets."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def add(self, data: bytes | str) -> None:
        self.chunks.append(data if isinstance(data, bytes) else data.encode("utf-8", "surrogateescape"))

    def add_headers(self, headers: Any) -> None:
        for name, value in headers.items():
            self.add(f"{name}: {value}")

    def text(self) -> str:
        return b"\n".join(self.chunks).decode("utf-8", "replace")


class _TeeSync(httpx.SyncByteStream):
    def __init__(self, inner: Any, seen: Seen) -> None:
        self.inner, self.seen = inner, seen

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.inner:
            self.seen.add(chunk)
            yield chunk

    def close(self) -> None:
        self.inner.close()


class _TeeAsync(httpx.AsyncByteStream):
    def __init__(self, inner: Any, seen: Seen) -> None:
        self.inner, self.seen = inner, seen

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner:
            self.seen.add(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


class RecordingTransport(httpx.HTTPTransport):
    """An httpx transport for the SDK that records what came back, as it streams."""

    def __init__(self, seen: Seen, **kw: Any) -> None:
        super().__init__(**kw)
        self.seen = seen

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        resp = super().handle_request(request)
        self.seen.add_headers(resp.headers)
        resp.stream = _TeeSync(resp.stream, self.seen)
        return resp


class AsyncRecordingTransport(httpx.AsyncHTTPTransport):
    def __init__(self, seen: Seen, **kw: Any) -> None:
        super().__init__(**kw)
        self.seen = seen

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        resp = await super().handle_async_request(request)
        self.seen.add_headers(resp.headers)
        resp.stream = _TeeAsync(resp.stream, self.seen)
        return resp


@dataclass
class Broker:
    """A running Service with its fakes and the paths a test inspects."""

    service: Service
    fake: FakeAnthropic
    endpoint: FakeTokenEndpoint
    creds: Path
    keys: dict[str, str] = field(default_factory=dict)
    seen: Seen = field(default_factory=Seen)
    relay: Relay | None = None  # between the broker and the fake upstream, when asked for

    @property
    def url(self) -> str:
        assert self.service.proxy is not None
        return f"http://{self.service.proxy.bound[0]}"

    @property
    def state_dir(self) -> Path:
        return self.service.config.state_dir

    async def add_sandbox(self, name: str) -> str:
        """Issue a key the way `sandbox add` does through a running broker."""
        reply = await self.service.handle_control({"op": "sandbox_add", "name": name})
        self.keys[name] = reply["key"]
        return reply["key"]

    def secrets(self) -> dict[str, str]:
        """Every secret that must never reach a sandbox, a log or upstream (by a label)."""
        out = {f"sandbox key {n}": k for n, k in self.keys.items()}
        for i, t in enumerate(sorted(self.endpoint.valid_access | self.endpoint.live_refresh
                                     | self.endpoint.spent_refresh)):
            out[f"oauth token {i}"] = t
        return out


@pytest.fixture
async def make_broker(tmp_path: Path, token_endpoint: FakeTokenEndpoint, token_url: str, aiohttp_server,
                      sdk_env: None) -> AsyncIterator[Callable[..., Any]]:
    """Start a real Service: `await make_broker(expires_in=..., proxy={...}, refresh={...})`.

    `expires_in=None` writes no login at all (signed out). The fake upstream accepts exactly
    the access tokens the fake token endpoint currently holds valid, and flags any sandbox
    key it sees.
    """
    services: list[Service] = []
    fakes: list[FakeAnthropic] = []
    relays: list[Relay] = []

    async def make(expires_in: float | None = 8 * 3600, proxy: dict[str, Any] | None = None,
                   refresh: dict[str, Any] | None = None, usage: dict[str, Any] | None = None,
                   relay: bool = False, upstream_url: str | None = None, **fake_kw: Any) -> Broker:
        creds = tmp_path / "claude" / ".credentials.json"
        if expires_in is not None:
            access, refresh_token = token_endpoint.issue()
            write_login(creds, access, refresh_token, time.time() + expires_in)
        holder: dict[str, Broker] = {}
        fake = FakeAnthropic(valid_tokens=lambda: token_endpoint.valid_access,
                             forbidden=lambda: list(holder["b"].keys.values()) if "b" in holder else [],
                             **fake_kw)
        fakes.append(fake)
        upstream = await aiohttp_server(fake.make_app(), auto_decompress=False)  # bodies recorded as they came
        url = str(upstream.make_url("")).rstrip("/")
        tap = None
        if relay:  # count and record the broker's upstream connections
            tap = await Relay(upstream.host, upstream.port).start()
            relays.append(tap)
            url = tap.url
        config = Config(
            listen=("127.0.0.1:0",),
            state_dir=tmp_path / "state",
            upstream_url=upstream_url or url,
            token_url=token_url,
            credentials=CredentialSettings(sources=("file",), file=creds),
            refresh=RefreshSettings(**{"request_timeout_seconds": 5.0, **(refresh or {})}),
            proxy=ProxySettings(**{"connect_timeout_seconds": 5.0, **(proxy or {})}),
            usage=UsageSettings(**(usage or {})),
        )
        service = Service(config)
        service.set_autostart_probe(lambda: False)
        await service.start()
        services.append(service)
        broker = Broker(service, fake, token_endpoint, creds, relay=tap)
        holder["b"] = broker
        return broker

    yield make
    for fake in fakes:  # a failed test must not leave the fake's server waiting on its gate
        if fake.gate is not None:
            fake.gate.set()
    for service in services:
        await service.stop()
    for tap in relays:
        await tap.close()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
async def raw_upstream() -> AsyncIterator[Callable[..., Any]]:
    """`await raw_upstream(reply)`: the URL of an upstream that reads one request (head and
    Content-Length body), writes `reply` verbatim (or `reply(head)` when it is callable: an
    upstream that echoes what it got), and closes. For replies no HTTP server would write."""
    servers: list[asyncio.Server] = []

    async def start(reply: bytes | Callable[[bytes], bytes]) -> str:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                writer.write(reply(head) if callable(reply) else reply)
                await writer.drain()
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()
