"""The measurements that are not request loops: many open streams, idle, and start-up."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks.loadgen import Connection, percentile
from benchmarks.procstat import cpu_seconds, rss_kib, threads, wakeups

KiB = 1024


async def open_streams(url: str, request: bytes, count: int, *, pid: int | None,
                       control: Callable[[str], Awaitable[None]], wait_seconds: float = 20.0) -> dict[str, float]:
    """Hold `count` streams open through one proxy and read its memory while they are open.

    The fake upstream sends each held stream's first events, then waits for a release.
    Connections open 50 at a time (agents do not all connect in the same millisecond); then
    every request goes out at once. A stream is "live" once its first event arrived; one
    that is still waiting when the others are all in is delayed (say, by a connection pool
    limit), which the figures show as live < count.
    """
    await control("hold")
    await asyncio.sleep(0.2)
    rss_before = rss_kib(pid)
    conns = [Connection(url) for _ in range(count)]
    for i in range(0, count, 50):
        await asyncio.gather(*(c.connect() for c in conns[i : i + 50]))
    firsts: list[float] = []
    all_in = asyncio.Event()

    async def one(conn: Connection) -> bool:
        t0 = time.perf_counter()

        def seen() -> None:
            firsts.append(time.perf_counter() - t0)
            if len(firsts) >= count:
                all_in.set()

        try:
            reply = await conn.exchange(request, on_event=seen)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            return False
        return reply.status == 200 and b"message_stop" in reply.body

    tasks = [asyncio.create_task(one(c)) for c in conns]
    started = time.perf_counter()
    try:
        await asyncio.wait_for(all_in.wait(), wait_seconds)
    except asyncio.TimeoutError:
        pass
    all_in_s = time.perf_counter() - started
    await asyncio.sleep(0.3)  # let buffers settle before reading memory
    rss_open = rss_kib(pid)
    live = len(firsts)
    await control("release")
    done, pending = await asyncio.wait(tasks, timeout=wait_seconds + 10)
    for t in pending:
        t.cancel()
    completed = sum(1 for t in done if not t.cancelled() and t.exception() is None and t.result())
    for c in conns:
        c.close()
    return {
        "streams": float(count), "live": float(live), "completed": float(completed),
        "rss_before_mib": rss_before / KiB, "rss_open_mib": rss_open / KiB,
        "kib_per_stream": (rss_open - rss_before) / count if count else math.nan,
        "first_event_p50_ms": percentile(firsts, 50) * 1000, "first_event_p99_ms": percentile(firsts, 99) * 1000,
        "first_event_max_ms": (max(firsts) * 1000) if firsts else math.nan, "all_live_s": all_in_s,
    }


def idle(pids: dict[str, int], seconds: float) -> dict[str, dict[str, float]]:
    """CPU share and wake-ups per second of each process over the same quiet `seconds`."""
    before = {n: (cpu_seconds(p), wakeups(p)) for n, p in pids.items()}
    time.sleep(seconds)
    out = {}
    for name, pid in pids.items():
        cpu0, (vol0, inv0) = before[name]
        vol1, inv1 = wakeups(pid)
        out[name] = {"seconds": seconds, "cpu_percent": (cpu_seconds(pid) - cpu0) / seconds * 100,
                     "wakeups_per_s": (vol1 - vol0) / seconds, "preemptions_per_s": (inv1 - inv0) / seconds,
                     "threads": float(threads(pid)), "rss_mib": rss_kib(pid) / KiB}
    return out


def start_to_ready(argv: list[str], listen_file: Path, **popen: Any) -> tuple[float, subprocess.Popen]:
    """Seconds from spawning the broker to its answer on the port it listens on.

    The broker binds port 0 and names the port in `listen_file`; the clock stops when a
    `HEAD /` (Claude Code's reachability check, answered without a key) gets its reply.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, **popen)
    deadline = t0 + 30
    while time.perf_counter() < deadline and proc.poll() is None:
        try:
            bound = json.loads(listen_file.read_text())["listen"][0]
        except (OSError, ValueError, KeyError, IndexError):
            time.sleep(0.002)
            continue
        host, _, port = bound.rpartition(":")
        if _head_ok(host.strip("[]"), int(port)):
            return time.perf_counter() - t0, proc
        time.sleep(0.002)
    return math.nan, proc


def _head_ok(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.sendall(f"HEAD / HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False
