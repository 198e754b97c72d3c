"""The control socket: how the CLI (and a second `run`) talks to a running broker.

A unix socket in the private state dir, mode 0600; one JSON request line, one JSON reply
line. Only this user can connect, so replies may carry a newly issued sandbox key. Where
unix sockets are missing (Windows), a loopback TCP port stands in, and every request must
carry the random secret from `<socket path>.json`, a file only this user can read.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable

from broker.common.errors import BrokerError, BrokerNotRunning
from broker.common.redact import scrub

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_LINE = 1024 * 1024


def use_tcp(platform: str = sys.platform) -> bool:
    return platform == "win32" or not hasattr(socket, "AF_UNIX")


def _tcp_file(path: Path) -> Path:
    return path.with_name(path.name + ".json")


class ControlServer:
    def __init__(self, path: Path, handle: Handler, *, tcp: bool | None = None) -> None:
        self.path, self.handle = Path(path), handle
        self.tcp = use_tcp() if tcp is None else tcp
        self._secret = secrets.token_urlsafe(32) if self.tcp else None
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.tcp:
            from broker.common.atomic_files import write_private

            self._server = await asyncio.start_server(self._client, "127.0.0.1", 0, limit=MAX_LINE)
            port = self._server.sockets[0].getsockname()[1]
            write_private(_tcp_file(self.path), json.dumps({"port": port, "secret": self._secret}).encode())
            return
        if self.path.exists() or self.path.is_symlink():
            self.path.unlink()  # a stale socket from a crash (single instance was checked before)
        self._server = await asyncio.start_unix_server(self._client, path=str(self.path), limit=MAX_LINE)
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for p in (self.path, _tcp_file(self.path)):
            try:
                p.unlink()
            except FileNotFoundError:
                pass

    def _authorised(self, request: dict[str, Any]) -> bool:
        if self._secret is None:
            return True  # the socket file's mode already limits who can connect
        return hmac.compare_digest(str(request.get("secret", "")), self._secret)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            writer.write(await self._answer(line) + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception as exc:  # one bad client must not take the broker down
            log.error("control request failed: %s", exc)
        finally:
            writer.close()


    async def _answer(self, line: bytes) -> bytes:
        """One JSON reply line for one request line, whatever happens inside the operation:
        a failure becomes an error reply with its reason, never a closed socket."""
        request: Any = None
        try:
            try:
                request = json.loads(line)
            except (ValueError, RecursionError) as exc:
                raise _BadRequest(f"bad request: {exc}") from None
            if not isinstance(request, dict):
                raise _BadRequest("bad request: not an object")
            if not self._authorised(request):
                raise BrokerError("control request without the right secret")
            request.pop("secret", None)
            reply = await self.handle(request)
            return json.dumps(reply).encode()
        except _BadRequest as exc:
            reply = {"ok": False, "error": str(exc)}
        except BrokerError as exc:
            reply = {"ok": False, "error": exc.message, "title": exc.title}
        except (KeyError, ValueError) as exc:  # a field missing or malformed in the request
            reply = {"ok": False, "error": f"bad request: {type(exc).__name__}: {exc}"}
        except Exception as exc:  # a bug or a failure inside the operation: say what, keep serving
            op = request.get("op") if isinstance(request, dict) else None
            why = scrub(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)[:500]
            log.error("control request %r failed: %s", str(op)[:40], why)
            reply = {"ok": False, "error": f"the broker could not do {str(op)[:40]!r}: {why}"}
        return json.dumps(reply).encode()


class _BadRequest(Exception):
    pass


def _connect(path: Path, payload: dict[str, Any], tcp: bool, timeout: float) -> socket.socket:
    not_running = BrokerNotRunning(f"no broker is running (nothing answers on {path}); "
                                   "start it with `inference-broker run`")
    if tcp:
        try:
            info = json.loads(_tcp_file(path).read_text())
            payload["secret"] = info["secret"]
            return socket.create_connection(("127.0.0.1", int(info["port"])), timeout=timeout)
        except (OSError, ValueError, KeyError):
            raise not_running from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        raise not_running from None
    return sock


def request(path: Path, payload: dict[str, Any], timeout: float = 30.0, *, tcp: bool | None = None) -> dict[str, Any]:
    """Send one request to a running broker. Raises BrokerNotRunning when none answers."""
    payload = dict(payload)
    sock = _connect(Path(path), payload, use_tcp() if tcp is None else tcp, timeout)
    try:
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
