"""The servers a run measures: the fake upstream, the bare reference proxy, nginx, the broker.

Each runs in its own process, so client, proxies and upstream never share a GIL; proxies
under test are pinned to one core and the fake upstream to the load generator's.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from benchmarks.loadgen import REPLY
from benchmarks.procstat import pinned
from tests.fakes.processes import stop_process as _stop_process

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024
ENV_TOKEN = "BENCH_UPSTREAM_TOKEN"  # secrets go to children by environment, never argv
ENV_FORBIDDEN = "BENCH_FORBIDDEN"
HOLD_HEADER = "x-bench-hold"  # a stream the fake upstream holds open until released
CONTROL_PATH = "/__bench/"  # hold / release, answered by the upstream itself


# -- the fake upstream ------------------------------------------------------------------------

def upstream_app_factory():  # noqa: ANN201 - returns (factory, fakes)
    """The fake Anthropic API, accepting the token in $BENCH_UPSTREAM_TOKEN (read once).

    Requests carrying `x-bench-hold` go to a second fake whose streams pause after their
    first events until `GET /__bench/release`; `GET /__bench/hold` re-arms it. Both fakes
    check every request as they do in the tests.
    """
    from tests.fakes.upstream import FakeAnthropic

    token = os.environ.pop(ENV_TOKEN, "")
    forbidden = tuple(k for k in os.environ.pop(ENV_FORBIDDEN, "").split(",") if k)

    def fake() -> FakeAnthropic:
        return FakeAnthropic(valid_tokens=lambda: (token,), forbidden=lambda: forbidden,
                             reply_text=REPLY, requests=deque(maxlen=8))  # type: ignore[arg-type] # bounded

    normal, held = fake(), fake()

    def make_app() -> web.Application:
        held.gate = asyncio.Event()

        @web.middleware
        async def route(request: web.Request, handler):  # noqa: ANN001, ANN202
            if request.path.startswith(CONTROL_PATH):
                assert held.gate is not None
                held.gate.clear() if request.path.endswith("/hold") else held.gate.set()
                return web.Response(text="ok")
            if HOLD_HEADER in request.headers:
                return await held._handle(request)
            return await handler(request)

        app = normal.make_app()
        app.middlewares.append(route)
        return app

    return make_app, (normal, held)


# -- the reference proxy -----------------------------------------------------------------------

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "transfer-encoding", "upgrade", "host", "content-length"})
SESSION = web.AppKey("session", aiohttp.ClientSession)


def reference_proxy_app(upstream: str) -> web.Application:
    """A bare pass-through proxy: reads the body, forwards, streams the reply chunk by chunk.

    No Host/key checks, no header rewrite, no usage parsing, no audit: what is left is the
    cost of an extra aiohttp hop, the baseline the broker is judged against. Its upstream
    pool is unbounded, as a proxy's should be.
    """
    base = upstream.rstrip("/")

    async def session_ctx(app: web.Application):  # noqa: ANN202 - aiohttp cleanup context
        app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False,
                                             timeout=aiohttp.ClientTimeout(total=None))
        yield
        await app[SESSION].close()

    async def forward(request: web.Request) -> web.StreamResponse:
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        body = await request.read()
        session = request.app[SESSION]
        async with session.request(request.method, base + request.raw_path, headers=headers,
                                   data=body, allow_redirects=False) as up:
            resp = web.StreamResponse(status=up.status, reason=up.reason)
            for k, v in up.headers.items():
                if k.lower() not in HOP_BY_HOP:
                    resp.headers.add(k, v)
            await resp.prepare(request)
            async for chunk in up.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp

    app = web.Application(client_max_size=64 * MiB)
    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def serve_child(kind: str, upstream_url: str | None) -> int:
    """Child mode: serve, print the port, run until stdin closes, then print a JSON summary."""
    from tests.fakes.threaded import serve_in_thread

    fakes: tuple = ()
    if kind == "upstream":
        factory, fakes = upstream_app_factory()
    else:
        assert upstream_url
        factory = lambda: reference_proxy_app(upstream_url)  # noqa: E731
    with serve_in_thread(factory) as url:
        print(url.port, flush=True)
        sys.stdin.read()
    summary = {"problems": [p for f in fakes for p in f.problems][:20],
               "unauthorized": sum(f.unauthorized for f in fakes)}
    print(json.dumps(summary), flush=True)
    return 0


class Child:
    """The benchmark script re-run in a child mode (`--serve upstream|reference`)."""

    def __init__(self, kind: str, log: Path, env: dict[str, str], upstream_url: str | None = None,
                 cpu: int | None = None) -> None:
        argv = [sys.executable, str(ROOT / "benchmarks" / "proxy_overhead.py"), "--serve", kind]
        if upstream_url:
            argv += ["--upstream-url", upstream_url]
        with log.open("wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                         env=env, cwd=ROOT, text=True, preexec_fn=pinned(cpu))
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line.strip().isdigit():
            self.proc.kill()
            raise RuntimeError(f"{kind} server did not start: {log.read_text()[-2000:]}")
        self.url = f"http://127.0.0.1:{int(line)}"
        self.pid = self.proc.pid

    def stop(self) -> dict[str, Any]:
        try:
            out, _ = self.proc.communicate(input="", timeout=15)
            return json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        except (subprocess.TimeoutExpired, ValueError):
            self.proc.kill()
            self.proc.wait()
            return {}


# -- nginx (optional) --------------------------------------------------------------------------

NGINX_CONF = """\
daemon off; master_process off; worker_processes 1; pid {tmp}/nginx.pid; error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fcgi;
  uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  client_max_body_size 64m; client_body_buffer_size 2m;
  upstream up {{ server {upstream}; keepalive 1024; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_buffering off; proxy_read_timeout 600s;
    }}
  }}
}}
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


def start_nginx(tmp: Path, upstream_url: str, cpu: int | None) -> tuple[subprocess.Popen, str]:
    """nginx as a plain streaming reverse proxy: one process (no master), buffering off.

    nginx cannot bind port 0 and say which port it got, so a port the kernel just handed out
    is passed on; a clash (rare on loopback) is retried.
    """
    binary = nginx_binary()
    assert binary is not None
    tmp.mkdir(parents=True, exist_ok=True)
    upstream = upstream_url.split("://", 1)[1]
    for _ in range(3):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, upstream=upstream, port=port))
        proc = subprocess.Popen([binary, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pinned(cpu))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return proc, f"http://127.0.0.1:{port}"
            except OSError:
                time.sleep(0.02)
        stop_process(proc)
    raise RuntimeError(f"nginx did not start: {(tmp / 'error.log').read_text()[-2000:]}")


def stop_process(proc: subprocess.Popen) -> None:
    _stop_process(proc, grace=15.0)
