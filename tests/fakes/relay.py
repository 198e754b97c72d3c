"""A TCP relay on loopback that records what passes: put it between two real parties to see
the bytes one sent (what a client wrote before the broker read it, or what the broker's
upstream connection carried) and how many connections are open at once."""

from __future__ import annotations

import asyncio
import contextlib


class Relay:
    """Listens on 127.0.0.1, connects each accepted connection to `host:port`, copies both
    ways. `sent[i]` is what connection i's client wrote; `open` counts live connections."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.sent: list[bytearray] = []
        self.open = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> Relay:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        record = bytearray()
        self.sent.append(record)
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            self.open -= 1
            writer.close()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer, record), self._pipe(up_reader, writer, None))
        finally:
            self.open -= 1
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bytearray | None) -> None:
        try:
            while data := await reader.read(65536):
                if record is not None:
                    record += data
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()  # one side ended: end the other, as a TCP proxy does

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        if self._server is not None:
            await self._server.wait_closed()


def split_request(raw: bytes) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    """One HTTP/1.1 request as written: (request line, header (name, value) pairs as sent,
    the rest). The body is what follows the head, framed by Content-Length or chunked."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    line, *fields = head.split(b"\r\n")
    headers = []
    for field_line in fields:
        name, _, value = field_line.partition(b":")
        headers.append((name, value.strip(b" \t")))
    length = next((int(v) for n, v in headers if n.lower() == b"content-length"), None)
    if length is not None:
        return line, headers, rest[:length]
    if any(n.lower() == b"transfer-encoding" and b"chunked" in v.lower() for n, v in headers):
        body = bytearray()
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            body += rest[:size]
            rest = rest[size + 2:]
        return line, headers, bytes(body)
    return line, headers, b""
