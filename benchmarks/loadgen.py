"""The load generator: a lean HTTP/1.1 keep-alive client on asyncio streams, and its samples.

A full client library costs more CPU per request than the proxies it measures; on a core of
its own next to the fake upstream, that would cap requests/s and squeeze every ratio to 1.
This client writes prebuilt request bytes and reads just enough of the reply (status,
Content-Length or chunked framing) to time it: first byte, first complete SSE event, end.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

MODEL = "claude-sonnet-4-6"
# About 40 words: a streamed reply of ~45 SSE events, closer to a real reply than a greeting.
REPLY = " ".join(f"word{i}" for i in range(40))


def make_body(size: int, stream: bool) -> bytes:
    """A valid Messages request of exactly `size` bytes when larger than the smallest one.

    From 16 KiB up it is shaped like Claude Code's (model first; tools with JSON schemas and
    long descriptions full of escapes; system blocks; a conversation): parsing such a body
    costs several times what one long string of the same size does.
    """
    doc: dict[str, Any] = {"model": MODEL, "max_tokens": 256, "stream": stream,
                           "messages": [{"role": "user", "content": "Say hello."}]}
    base = json.dumps(doc).encode()
    if size <= len(base):
        return base
    if size >= 16 * 1024:
        doc = _claude_code_like(size, stream)
    pad = doc["messages"][0]["content"]
    text = pad[-1] if isinstance(pad, list) else None
    short = size - len(json.dumps(doc).encode())
    if text is not None:
        text["text"] += "x" * max(0, short)
    else:
        doc["messages"][0]["content"] = "Say hello." + "x" * max(0, short)
    return json.dumps(doc).encode()


def _claude_code_like(size: int, stream: bool) -> dict[str, Any]:
    prose = ("Runs a command and returns its output \u2014 prefer absolute paths.\n- Keep it short; "
             "quote paths with \"spaces\".\n") * 20
    tools, i = [], 0
    while len(json.dumps(tools)) < size * 0.7:
        props = {f"arg{j}": {"type": "string", "description": f"Argument {j}: {prose[:160]}"} for j in range(6)}
        tools.append({"name": f"Tool{i}", "description": prose[: 900 + 97 * (i % 9)],
                      "input_schema": {"type": "object", "properties": props, "required": ["arg0"],
                                       "additionalProperties": False}})
        i += 1
    return {"model": MODEL,
            "messages": [{"role": "user", "content": [{"type": "text", "text": prose[:400]},
                                                      {"type": "text", "text": "Say hello."}]}],
            "system": [{"type": "text", "text": prose[: 1500 + j]} for j in range(3)],
            "tools": tools, "metadata": {"user_id": "bench"}, "max_tokens": 32000, "stream": stream}


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def build_request(url: str, path: str, headers: dict[str, str], body: bytes, method: str = "POST") -> bytes:
    """The exact bytes of one request (Host from the URL, Content-Length from the body)."""
    netloc = urlsplit(url).netloc
    lines = [f"{method} {path} HTTP/1.1", f"Host: {netloc}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Reply:
    status: int = 0
    body: bytes = b""
    first_byte: float = math.nan  # perf_counter when the first body byte arrived
    first_event: float = math.nan  # ... when the first complete SSE event ("\n\n") had arrived
    done: float = math.nan


class Connection:
    """One keep-alive connection; reconnects when the server closed it."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 22)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def exchange(self, request: bytes, *, head: bool = False, on_event=None) -> Reply:  # noqa: ANN001
        """Send `request` and read the whole reply; `on_event()` runs once the first event is in."""
        if self.writer is None:
            await self.connect()
        reader, writer = self.reader, self.writer
        assert reader is not None and writer is not None
        try:
            writer.write(request)
            if len(request) > 65536:
                await writer.drain()
            header = await reader.readuntil(b"\r\n\r\n")
            reply = Reply(status=int(header[9:12]))
            lower = header.lower()
            keep = b"\r\nconnection: close" not in lower
            if head or reply.status in (204, 304):
                reply.done = time.perf_counter()
            elif b"\r\ntransfer-encoding: chunked" in lower:
                await self._chunked(reader, reply, on_event)
            elif (at := lower.find(b"\r\ncontent-length:")) >= 0:
                size = int(lower[at + 17 : lower.index(b"\r\n", at + 2)])
                reply.body = await reader.readexactly(size)
                reply.first_byte = reply.first_event = reply.done = time.perf_counter()
            else:
                reply.body, keep = await reader.read(), False
                reply.first_byte = reply.first_event = reply.done = time.perf_counter()
        except BaseException:
            self.close()
            raise
        if not keep:
            self.close()
        return reply

    @staticmethod
    async def _chunked(reader: asyncio.StreamReader, reply: Reply, on_event) -> None:  # noqa: ANN001
        parts: list[bytes] = []
        seen_event = False
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailers
                break
            data = (await reader.readexactly(size + 2))[:-2]
            now = time.perf_counter()
            if not parts:
                reply.first_byte = now
            parts.append(data)
            if not seen_event and (b"\n\n" in data or b"\n\n" in b"".join(parts[-2:])):
                seen_event = True
                reply.first_event = now
                if on_event is not None:
                    on_event()
        reply.body = b"".join(parts)
        reply.done = time.perf_counter()


@dataclass
class Sample:
    """Raw timings of one scenario on one path (possibly merged from several passes)."""

    latencies: list[float] = field(default_factory=list)  # seconds, request sent -> reply complete
    ttfb: list[float] = field(default_factory=list)  # seconds, request sent -> first body byte
    ttfe: list[float] = field(default_factory=list)  # seconds, request sent -> first whole SSE event
    completed: int = 0
    errors: int = 0
    elapsed: float = 0.0  # wall seconds spent in timed requests
    cpu: float = 0.0  # CPU seconds the proxy under test used meanwhile (NaN: not known)

    def merge(self, other: Sample) -> None:
        self.latencies += other.latencies
        self.ttfb += other.ttfb
        self.ttfe += other.ttfe
        self.completed += other.completed
        self.errors += other.errors
        self.elapsed += other.elapsed
        self.cpu += other.cpu


async def run_requests(url: str, request: bytes, marker: bytes, *, count: int, concurrency: int,
                       warmup: int, max_seconds: float, stream: bool, cpu=None) -> Sample:  # noqa: ANN001
    """`count` requests over `concurrency` warm keep-alive connections, timing each one.

    Warm-up requests first open every connection, so the figures exclude TCP setup (Claude
    Code keeps its connection too). Stops early at `max_seconds`, keeping what completed.
    `cpu()` reads the proxy's CPU seconds before and after the timed part.
    """
    conns = [Connection(url) for _ in range(concurrency)]
    sample = Sample()

    async def worker(conn: Connection, jobs: list[int], record: bool, deadline: float) -> None:
        while jobs and time.perf_counter() < deadline:
            jobs.pop()
            t0 = time.perf_counter()
            try:
                reply = await conn.exchange(request)
                ok = reply.status == 200 and marker in reply.body
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                ok = False
            if not record:
                continue
            if not ok:
                sample.errors += 1
                continue
            sample.completed += 1
            sample.latencies.append(reply.done - t0)
            if stream:
                sample.ttfb.append(reply.first_byte - t0)
                sample.ttfe.append(reply.first_event - t0)

    async def batch(n: int, record: bool, seconds: float) -> float:
        jobs = list(range(n))
        start = time.perf_counter()
        await asyncio.gather(*(worker(c, jobs, record, start + seconds) for c in conns))
        return time.perf_counter() - start

    try:
        await batch(max(warmup, concurrency), False, 10.0)
        before = cpu() if cpu else math.nan
        sample.elapsed = await batch(count, True, max_seconds)
        sample.cpu = (cpu() - before) if cpu else math.nan
    finally:
        for c in conns:
            c.close()
    return sample
