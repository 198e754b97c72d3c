"""A broker process under attack: its fakes, raw-socket clients, and what it costs (fds, RSS).

The broker runs as `python -m broker run --no-tray` with a chosen fd limit; the fake API and
token endpoint run in server threads. The fake API is wrapped by `FaultyUpstream`, which still
records and checks every request (Bearer token, one OAuth beta flag, no sandbox key) and can
be told per request, by an `x-test-fault` header the broker forwards, to misbehave.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from aiohttp import web

from tests.fakes.broker_process import BrokerProcess
from tests.fakes.login import write_login
from tests.fakes.threaded import ServerURL, serve_in_thread
from tests.fakes.token_endpoint import FakeTokenEndpoint
from tests.fakes.upstream import FakeAnthropic, Received, sse_event

REQUEST = {"model": "claude-haiku-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
FAULT_HEADER = "x-test-fault"
SANDBOX_DIRS = "sandboxes"  # state/sandboxes/NAME: a sandbox's own Claude Code dir


class FaultyUpstream:
    """FakeAnthropic's checks and replies, plus faults chosen per request."""

    def __init__(self, fake: FakeAnthropic, stall_seconds: float = 4.0) -> None:
        self.fake, self.stall_seconds = fake, stall_seconds
        self.faults: dict[str, int] = {}

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        fault = request.headers.get(FAULT_HEADER, "")
        if not fault:
            return await self.fake._handle(request)  # records, checks and answers as the API
        rec = Received(method=request.method, path=request.path, query_string=request.query_string,
                       headers=[(n.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape"))
                                for n, v in request.raw_headers], body=await request.read())
        self.fake.requests.append(rec)
        refused = self.fake._check(rec)
        self.faults[fault] = self.faults.get(fault, 0) + 1
        if refused is not None and not fault.startswith("echo"):
            return refused
        if fault == "5xx":
            return web.json_response({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
                                     status=529)
        if fault == "reset-before-headers":
            assert request.transport is not None
            request.transport.abort()
            raise ConnectionResetError("fault: reset before headers")
        if fault.startswith("echo"):  # a gateway that echoes what it was sent
            status = {"echo": 200, "echo-302": 302, "echo-401": 401}[fault]
            echoed = {k: v for k, v in rec.headers}
            headers = {"Location": "/elsewhere"} if status == 302 else {}
            return web.json_response({"you_sent": echoed}, status=status, headers=headers)
        if fault == "slow-first-byte":
            await asyncio.sleep(1.0)
        if fault in ("reset-mid-stream", "stall"):
            resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(sse_event("message_start", {"type": "message_start", "message": {
                "id": "msg_fault", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
                "content": [], "usage": {"input_tokens": 11, "output_tokens": 0}}}))
            if fault == "stall":
                await asyncio.sleep(self.stall_seconds)
            assert request.transport is not None
            request.transport.abort()
            return resp
        if fault != "slow-first-byte":
            raise AssertionError(f"unknown fault {fault!r}")
        return await self.fake._messages(request, rec)


@dataclass
class Broker:
    """The broker process (the shared harness) with its fakes and everything sent on the wire."""

    process: BrokerProcess
    endpoint: FakeTokenEndpoint
    fake: FakeAnthropic
    upstream: FaultyUpstream
    upstream_url: ServerURL
    keys: dict[str, str] = field(default_factory=dict)
    # every (request, reply) on the wire: a reply may echo what its own client sent (aiohttp's
    # 400 page quotes a malformed header), never a secret that client did not have
    exchanges: list[tuple[bytes, bytes]] = field(default_factory=list)

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        assert self.process.proc is not None
        return self.process.proc

    @property
    def state(self) -> Path:
        return self.process.state_dir

    @property
    def creds(self) -> Path:
        return self.process.creds

    @property
    def log(self) -> Path:
        return self.process.output

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        return self.process.cli(*args, check=ok, timeout=60)

    def sandbox_add(self, name: str) -> str:
        self.keys[name] = self.process.add_sandbox(name)
        return self.keys[name]

    def status(self) -> dict[str, Any]:
        out = self.cli("status", "--json").stdout
        self.exchanges.append((b"", out.encode()))
        return json.loads(out)

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def secrets(self) -> list[str]:
        e = self.endpoint
        return [*self.keys.values(), *e.valid_access, *e.live_refresh, *e.spent_refresh]

    def leaks(self) -> list[str]:
        """Secrets found in anything a client, the audit trail or the logs were given.

        A sandbox's own Claude Code dir (state/sandboxes/NAME, mounted into that sandbox) holds
        its own key by design; any other secret there is a leak. Every state file is scanned,
        `pending-login.json` (the write-ahead record of a refreshed pair) included: it must be
        gone once the store holds the pair, so a token in it here is a leak too.
        """
        found = [f"response: {s[:14]}…" for sent, reply in self.exchanges for s in self.secrets()
                 if s.encode() in reply and s.encode() not in sent]
        places = {str(f.relative_to(self.state)): f.read_bytes() for f in self.state.rglob("*")
                  if f.is_file() and f.suffix != ".db" and not f.name.endswith((".sock", ".lock"))}
        places["broker output"] = self.log.read_bytes() if self.log.exists() else b""
        return found + [f"{where}: {s[:14]}…" for s in self.secrets() for where, data in places.items()
                        if s.encode() in data and s != self._own_key(where)]

    def _own_key(self, where: str) -> str | None:
        parts = Path(where).parts
        return self.keys.get(parts[1]) if len(parts) > 2 and parts[0] == SANDBOX_DIRS else None

    def raw(self, data: bytes, *, src: str | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
        """Send raw bytes; return (status or 0 if closed without a reply, whole reply)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout,
                                      source_address=(src, 0) if src else None) as sock:
            try:
                sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            reply = b""
            try:
                while chunk := sock.recv(65536):
                    reply += chunk
            except (ConnectionResetError, socket.timeout):
                pass
        self.exchanges.append((data, reply))
        head = reply.split(b"\r\n", 1)[0].split()
        return (int(head[1]) if len(head) >= 2 and head[1].isdigit() else 0), reply

    def post(self, key: str | None, body: Any = None, *, path: str = "/v1/messages",
             headers: dict[str, str] | None = None, src: str | None = None) -> tuple[int, bytes]:
        payload = body if isinstance(body, bytes) else json.dumps(body or REQUEST).encode()
        lines = [f"POST {path} HTTP/1.1", "Host: inference.local", "Content-Type: application/json",
                 f"Content-Length: {len(payload)}", "Connection: close"]
        if key is not None:
            lines.append(f"x-api-key: {key}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        return self.raw(("\r\n".join(lines) + "\r\n\r\n").encode() + payload, src=src)


def body_of(reply: bytes) -> bytes:
    """The body of a raw HTTP/1.1 reply, de-chunked when it was sent chunked."""
    head, _, body = reply.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" not in head.lower():
        return body
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, body = out + rest[:size], rest[size + 2:]
    return out


@contextlib.contextmanager
def start_broker(tmp: Path, *, proxy: dict[str, Any] | None = None, nofile: int | None = None,
                 write_creds: Callable[[Path, FakeTokenEndpoint], None] | None = None,
                 audit: dict[str, Any] | None = None) -> Iterator[Broker]:
    """A broker process on 127.0.0.1:0 between the fakes; stopped (and checked) on exit."""
    endpoint = FakeTokenEndpoint()
    process = BrokerProcess(tmp, nofile=nofile)
    fake = FakeAnthropic(valid_tokens=lambda: endpoint.valid_access, forbidden=lambda: process.issued)
    faulty = FaultyUpstream(fake)
    process.creds.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if write_creds is not None:
        write_creds(process.creds, endpoint)
    else:
        access, refresh = endpoint.issue()
        write_login(process.creds, access, refresh, time.time() + 8 * 3600)
    with serve_in_thread(endpoint.make_app) as token_srv, serve_in_thread(faulty.make_app) as upstream:
        process.settings.update(
            upstream_url=str(upstream), token_url=f"{token_srv}/v1/oauth/token",
            refresh={"request_timeout_seconds": 5},
            proxy={"connect_timeout_seconds": 5, "read_idle_timeout_seconds": 2, **(proxy or {})},
            audit=audit or {},
        )
        b = Broker(process, endpoint, fake, faulty, upstream)
        try:
            process.start()
            yield b
        finally:
            if process.stop() == -signal.SIGKILL:
                raise AssertionError("the broker did not stop on SIGTERM")
    assert fake.problems == [], fake.problems[:5]
