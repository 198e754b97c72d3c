"""The proxy's upstream client (`proxy.upstream`, one aiohttp ClientSession), against real
servers on loopback: these tests pin what the proxy relies on (keep-alive reuse, headers
sent as given, decoding, framing, errors, TLS), so an aiohttp release that changes any of
it fails here first."""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
import subprocess
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from broker.proxy.upstream import Upstream


async def read(reply: aiohttp.ClientResponse) -> bytes:
    out = b""
    async for chunk in reply.content.iter_any():
        out += chunk
    return out


@pytest.fixture
async def client_for():
    """`client_for(url, **options)`: an Upstream, closed when the test ends."""
    made: list[Upstream] = []

    def make(url: str, **options) -> Upstream:  # noqa: ANN003
        made.append(Upstream(url, **options))
        return made[-1]

    yield make
    for client in made:
        await client.close()


@pytest.fixture
async def raw_server():
    """`await raw_server(script)`: the URL of a TCP server whose connections
    `script(reader, writer)` handles byte by byte; closed when the test ends."""
    servers: list[asyncio.Server] = []

    async def start(script) -> str:  # noqa: ANN001
        servers.append(await asyncio.start_server(script, "127.0.0.1", 0))
        return f"http://127.0.0.1:{servers[-1].sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()


@pytest.fixture
async def echo_server(aiohttp_server):
    """An aiohttp server that echoes what it got, counting the connections it saw."""
    seen: dict[str, list] = {"peers": [], "requests": []}

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen["peers"].append(request.transport.get_extra_info("peername"))
        seen["requests"].append((request.method, request.raw_path, list(request.raw_headers), body))
        if request.path == "/gzip":
            return web.Response(body=gzip.compress(b"x" * 5000), headers={"Content-Encoding": "gzip"})
        if request.path == "/stream":
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
            await resp.prepare(request)
            for i in range(3):
                await resp.write(f"data: {i}\n\n".encode())
                await asyncio.sleep(0.05)  # still streaming when a reader lets go
            await resp.write_eof()
            return resp
        return web.Response(body=b"echo:" + body, headers={"X-Seen": request.method})

    server = await aiohttp_server(_app(handle))
    return server, seen


def _app(handle) -> web.Application:  # noqa: ANN001
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def test_requests_reuse_one_keep_alive_connection(echo_server, client_for) -> None:
    server, seen = echo_server
    client = client_for(str(server.make_url("")))
    for i in range(3):
        reply = await client.send("POST", f"/v1/messages?n={i}", [("Content-Type", "application/json")],
                                     b'{"a":1}')
        assert (reply.status, reply.reason, reply.content_length) == (200, "OK", 12)
        assert await read(reply) == b'echo:{"a":1}'
        reply.release()
    assert len(set(seen["peers"])) == 1, "the pooled connection was not reused"
    method, path, headers, body = seen["requests"][-1]
    assert (method, path, body) == ("POST", "/v1/messages?n=2", b'{"a":1}')
    names = [k.decode().lower() for k, _ in headers]
    assert names.count("host") == 1 and names.count("content-length") == 1
    assert "user-agent" not in names and "accept" not in names  # nothing added for the client
    assert "accept-encoding" not in names
    assert dict((k.decode().lower(), v.decode()) for k, v in headers)["host"] == f"127.0.0.1:{server.port}"


async def test_a_reply_not_read_to_its_end_closes_its_connection(echo_server, client_for) -> None:
    server, seen = echo_server
    client = client_for(str(server.make_url("")))
    reply = await client.send("GET", "/stream", [], b"")
    assert reply.content_type == "text/event-stream"
    reply.release()  # the reply is not all in: the connection cannot carry another request
    reply = await client.send("GET", "/stream", [], b"")
    assert await read(reply) == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    reply.release()
    assert len(set(seen["peers"])) == 2


async def test_gzip_replies_arrive_decoded(echo_server, client_for) -> None:
    server, seen = echo_server
    client = client_for(str(server.make_url("")))
    reply = await client.send("GET", "/gzip", [("Accept-Encoding", "gzip")], b"")
    assert reply.headers["Content-Encoding"] == "gzip"
    assert await read(reply) == b"x" * 5000
    reply.release()
    headers = {k.decode().lower(): v.decode() for k, v in seen["requests"][0][2]}
    assert headers["accept-encoding"] == "gzip"  # the client's, as it sent it


async def test_informational_replies_are_skipped_and_eof_framing_is_read(raw_server, client_for) -> None:
    connections = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                     b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
        await writer.drain()
        writer.close()

    client = client_for(await raw_server(script))
    for _ in range(2):
        reply = await client.send("GET", "/", [], b"")
        assert reply.status == 200 and reply.content_length is None
        assert await read(reply) == b"until the end"
        reply.release()
    assert len(connections) == 2  # Connection: close is honoured: not pooled


async def test_a_pooled_connection_the_upstream_closed_is_retried_for_get_only(raw_server, client_for) -> None:
    served = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        served.append(1)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read(1)  # the next request's first byte: hang up without answering
        writer.close()

    client = client_for(await raw_server(script))
    for method in ("GET", "GET"):
        reply = await client.send(method, "/", [], b"")
        assert await read(reply) == b"ok"
        reply.release()
    assert len(served) == 2  # the second GET was retried on a new connection
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.send("POST", "/", [], b"{}")  # not retried: it may have been acted on


async def test_a_body_cut_short_is_a_payload_error(raw_server, client_for) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await writer.drain()
        writer.close()

    client = client_for(await raw_server(script))
    reply = await client.send("GET", "/", [], b"")
    with pytest.raises(aiohttp.ClientPayloadError):
        await read(reply)
    reply.release()


async def test_nothing_listening_is_a_client_error(client_for) -> None:
    with socket.socket() as s:  # a port on this machine that nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    client = client_for(f"http://127.0.0.1:{closed}")
    with pytest.raises(aiohttp.ClientConnectionError):
        await client.send("GET", "/", [], b"")
    with pytest.raises(ValueError, match="http:// or https://"):
        Upstream("ftp://example.test")


async def test_https_verifies_the_certificate(tmp_path: Path, aiohttp_server, client_for) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=localhost", "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    server = await aiohttp_server(_app(_ok), ssl=server_ctx)
    url = f"https://localhost:{server.port}"

    trusting = client_for(url, tls=ssl.create_default_context(cafile=str(cert)))
    reply = await trusting.send("GET", "/", [], b"")
    assert await read(reply) == b"secure"
    reply.release()

    stranger = client_for(url)  # the system's CAs do not know this certificate
    with pytest.raises(aiohttp.ClientError):
        await stranger.send("GET", "/", [], b"")


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="secure")


async def test_a_reply_that_came_before_the_whole_body_was_sent_ends_its_connection(raw_server,
                                                                                    client_for) -> None:
    """An upstream answering early (a 413, say) while the request is still being written."""
    connections = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 3\r\n\r\nbig")
        await writer.drain()
        await asyncio.sleep(0.5)  # reads nothing more: the client's send buffer stays full
        writer.close()

    client = client_for(await raw_server(script))
    reply = await client.send("POST", "/", [], b"x" * (64 << 20))
    assert reply.status == 413 and await read(reply) == b"big"
    reply.release()
    reply = await client.send("POST", "/", [], b"{}")
    assert reply.status == 413 and await read(reply) == b"big"
    reply.release()
    assert len(connections) == 2  # not reused: the rest of the first body was still queued on it
