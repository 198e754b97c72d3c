"""The control socket: how the CLI (and a second `run`) talks to a running broker.

A unix socket in the private state dir, mode 0600; one JSON request line, one JSON reply
line. Only this user can connect, so replies may carry a newly issued sandbox key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any, Awaitable, Callable

from broker.core.errors import BrokerError, BrokerNotRunning

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_LINE = 1024 * 1024


class ControlServer:
    def __init__(self, path: Path, handle: Handler) -> None:
        self.path, self.handle = Path(path), handle
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.path.exists() or self.path.is_symlink():
            self.path.unlink()  # a stale socket from a crash (single instance was checked before)
        self._server = await asyncio.start_unix_server(self._client, path=str(self.path), limit=MAX_LINE)
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("not an object")
                reply = await self.handle(request)
            except BrokerError as exc:
                reply = {"ok": False, "error": exc.message, "title": exc.title}
            except (ValueError, KeyError, TypeError) as exc:
                reply = {"ok": False, "error": f"bad request: {exc}"}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception as exc:  # one bad client must not take the broker down
            log.error("control request failed: %s", exc)
        finally:
            writer.close()


def request(path: Path, payload: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Send one request to a running broker. Raises BrokerNotRunning when none answers."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError, OSError):
            raise BrokerNotRunning(f"no broker is running (nothing answers on {path}); start it with `inference-broker run`") from None
        sock.sendall(json.dumps(payload).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    try:
        reply = json.loads(data)
    except ValueError:
        raise BrokerError("the running broker sent an unreadable reply") from None
    if not reply.get("ok", False):
        raise BrokerError(reply.get("error", "the broker refused the request"), title=reply.get("title"))
    return reply


def is_running(path: Path) -> bool:
    try:
        request(path, {"op": "ping"}, timeout=3.0)
        return True
    except BrokerError:
        return False
