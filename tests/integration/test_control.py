"""The control channel, both ways: a unix socket (mode 0600) and the Windows-style loopback
port guarded by a secret in a private file."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat

import pytest

from broker.runtime.control_socket import ControlServer, _tcp_file, request
from broker.common.errors import BrokerError, BrokerNotRunning


async def echo(req: dict) -> dict:
    if req.get("op") == "boom":
        raise BrokerError("it broke")
    return {"ok": True, "got": req}


@pytest.mark.parametrize("tcp", [False, True], ids=["unix", "tcp"])
async def test_round_trip_and_cleanup(tmp_path, tcp):
    path = tmp_path / "state" / "broker.sock"
    server = ControlServer(path, echo, tcp=tcp)
    await server.start()
    try:
        marker = _tcp_file(path) if tcp else path
        assert stat.S_IMODE(os.stat(marker).st_mode) == 0o600
        reply = await asyncio.to_thread(request, path, {"op": "ping", "n": 1}, 5.0, tcp=tcp)
        assert reply["got"] == {"op": "ping", "n": 1}  # the secret is not handed to the handler
        with pytest.raises(BrokerError, match="it broke"):
            await asyncio.to_thread(request, path, {"op": "boom"}, 5.0, tcp=tcp)
    finally:
        await server.stop()
    assert not path.exists() and not _tcp_file(path).exists()
    with pytest.raises(BrokerNotRunning):
        request(path, {"op": "ping"}, 1.0, tcp=tcp)


async def test_tcp_refuses_a_request_without_the_secret(tmp_path):
    path = tmp_path / "broker.sock"
    server = ControlServer(path, echo, tcp=True)
    await server.start()
    try:
        port = json.loads(_tcp_file(path).read_text())["port"]

        def raw(payload: dict) -> dict:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(json.dumps(payload).encode() + b"\n")
                return json.loads(s.makefile().readline())

        for payload in ({"op": "ping"}, {"op": "ping", "secret": "guess"}):
            reply = await asyncio.to_thread(raw, payload)
            assert reply["ok"] is False and "secret" in reply["error"]
    finally:
        await server.stop()


async def crashing(req: dict) -> dict:
    op = req.get("op")
    if op == "recursion":
        raise RecursionError("maximum recursion depth exceeded while decoding a JSON array")
    if op == "secret":
        raise RuntimeError("upstream said sk-ant-ort01-" + "s" * 40)
    if op == "unserialisable":
        return {"ok": True, "value": object()}
    return {"ok": True}


@pytest.mark.parametrize("op, words", [
    ("recursion", "RecursionError: maximum recursion depth exceeded"),
    ("secret", "RuntimeError: upstream said [redacted]"),
    ("unserialisable", "TypeError"),
])
async def test_an_exception_inside_an_operation_is_an_error_reply_with_its_reason(tmp_path, op, words):
    path = tmp_path / "broker.sock"
    server = ControlServer(path, crashing, tcp=False)
    await server.start()
    try:
        with pytest.raises(BrokerError) as caught:
            await asyncio.to_thread(request, path, {"op": op}, 5.0, tcp=False)
        assert "unreadable reply" not in caught.value.message
        assert caught.value.message.startswith(f"the broker could not do {op!r}: ") and words in caught.value.message
        assert "sk-ant-" not in caught.value.message
        assert (await asyncio.to_thread(request, path, {"op": "ping"}, 5.0, tcp=False))["ok"]  # still serving
    finally:
        await server.stop()
