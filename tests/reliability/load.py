"""Requests for the fault and soak tests: raw HTTP/1.1 over loopback, classified by outcome."""

from __future__ import annotations

import json
import socket

from tests.reliability.harness import FAULT_HEADER, REQUEST

# What each injected fault must look like to the sandbox: a clear error or a cleanly cut stream.
EXPECTED = {
    "": "ok",
    "5xx": "error 529",
    "reset-before-headers": "error 502",
    "reset-mid-stream": "cut stream",
    "slow-first-byte": "ok",
    "stall": "cut stream",
}


def exchange(port: int, key: str, *, stream: bool, fault: str = "", timeout: float = 30.0) -> tuple[str, bytes]:
    """One request; returns (outcome, raw reply). Outcomes: ok, error NNN, cut stream, no reply."""
    body = json.dumps({**REQUEST, "stream": stream}).encode()
    head = ["POST /v1/messages HTTP/1.1", "Host: inference.local", f"x-api-key: {key}",
            "Content-Type: application/json", f"Content-Length: {len(body)}", "Connection: close"]
    if fault:
        head.append(f"{FAULT_HEADER}: {fault}")
    reply = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    return classify(reply), reply


def classify(reply: bytes) -> str:
    head, _, body = reply.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return "no reply"
    status = int(parts[1])
    chunked = b"transfer-encoding: chunked" in head.lower()
    if chunked and not body.endswith(b"0\r\n\r\n"):
        return "cut stream"
    if status != 200:
        return f"error {status}" if b'"type": "error"' in body or b'"type":"error"' in body else f"bare {status}"
    return "ok" if b"Hello from the fake upstream" in body or b"Hello" in body else "bad body"
