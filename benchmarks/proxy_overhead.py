#!/usr/bin/env python3
"""How much does the broker's proxy cost? Figures as ratios, measured in one run, on loopback.

Three paths to the same fake Anthropic upstream (its own process):
  direct     client -> upstream
  reference  client -> a bare aiohttp pass-through proxy (its own process) -> upstream
  broker     client -> the real `inference-broker run --no-tray` (subprocess) -> upstream
The reference proxy is the floor any aiohttp proxy pays (an extra hop, a second parse), so
"broker / reference" isolates what the broker's checks, rewrite, usage and audit add.

Absolute numbers depend on the machine; ratios measured in the same run are what to compare.
Each scenario runs its paths in ABCCBA order so slow drift (thermal, other load) cancels out.

    python benchmarks/proxy_overhead.py [--quick] [--json PATH] [--profile-broker PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `broker` and `tests.fakes` importable
    sys.path.insert(0, str(ROOT))

MiB = 1024 * 1024
MODEL = "claude-sonnet-4-6"
OAUTH_BETA = "oauth-2025-04-20"
# About 40 words: a streamed reply of ~45 SSE events, closer to a real reply than a greeting.
REPLY = " ".join(f"word{i}" for i in range(40))
ENV_TOKEN = "BENCH_UPSTREAM_TOKEN"  # secrets go to children by environment, never argv
ENV_FORBIDDEN = "BENCH_FORBIDDEN"
PATHS = ("direct", "reference", "broker")


# -- what to run ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Scenario:
    name: str
    label: str
    body_bytes: int  # 0: the smallest valid request
    stream: bool
    concurrency: int


SCENARIOS = (
    Scenario("small_c1", "small POST, c=1", 0, False, 1),
    Scenario("small_c8", "small POST, c=8", 0, False, 8),
    Scenario("stream_c1", "streaming, c=1", 0, True, 1),
    Scenario("cc_stream_76k", "76 KB streaming (Claude Code size), c=1", 76 * 1024, True, 1),
    Scenario("large_1mib", "1 MiB body, c=1", MiB, False, 1),
)


@dataclass(frozen=True)
class Plan:
    """Request counts per scenario and path, and a time cap that bounds the whole run."""

    counts: dict[str, int]
    warmup: int
    phase_seconds: float  # at most this long per scenario per path


DEFAULT_PLAN = Plan({"small_c1": 5000, "small_c8": 10000, "stream_c1": 3000, "cc_stream_76k": 2000,
                     "large_1mib": 400}, warmup=50, phase_seconds=6.0)
QUICK_PLAN = Plan({"small_c1": 600, "small_c8": 1200, "stream_c1": 300, "cc_stream_76k": 200, "large_1mib": 40},
                  warmup=10, phase_seconds=0.6)


@dataclass(frozen=True)
class Target:
    """One path to the upstream: a base URL and the auth headers that path expects."""

    name: str
    url: str
    headers: dict[str, str]


# -- pure helpers ---------------------------------------------------------------------------

def make_body(size: int, stream: bool) -> bytes:
    """A valid Messages request, padded with prompt text to exactly `size` bytes when larger."""
    doc: dict[str, Any] = {"model": MODEL, "max_tokens": 256, "stream": stream,
                           "messages": [{"role": "user", "content": "Say hello."}]}
    base = json.dumps(doc).encode()
    if size <= len(base):
        return base
    doc["messages"][0]["content"] = "Say hello." + "x" * (size - len(base))
    return json.dumps(doc).encode()


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass
class Sample:
    """Raw timings of one scenario on one path (possibly merged from several rounds)."""

    latencies: list[float] = field(default_factory=list)  # seconds, request sent -> body complete
    ttfb: list[float] = field(default_factory=list)  # seconds, request sent -> first body byte
    completed: int = 0
    errors: int = 0
    elapsed: float = 0.0  # wall seconds spent in timed requests

    def merge(self, other: Sample) -> None:
        self.latencies += other.latencies
        self.ttfb += other.ttfb
        self.completed += other.completed
        self.errors += other.errors
        self.elapsed += other.elapsed


def summarize(sample: Sample, scenario: Scenario) -> dict[str, float]:
    """The figures reported for one scenario on one path (milliseconds, requests/s, MiB/s)."""
    rps = sample.completed / sample.elapsed if sample.elapsed > 0 else math.nan
    out = {"requests": float(sample.completed), "errors": float(sample.errors), "rps": rps}
    for q in (50, 95, 99):
        out[f"p{q}_ms"] = percentile(sample.latencies, q) * 1000
    if scenario.stream:
        for q in (50, 95, 99):
            out[f"ttfb_p{q}_ms"] = percentile(sample.ttfb, q) * 1000
    if scenario.body_bytes >= MiB:
        out["upload_mib_s"] = rps * scenario.body_bytes / MiB
    return out


def ratios(figures: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """broker/reference, broker/direct and reference/direct for every figure but the counts."""
    out: dict[str, dict[str, float]] = {}
    pairs = {"broker/reference": ("broker", "reference"), "broker/direct": ("broker", "direct"),
             "reference/direct": ("reference", "direct")}
    for label, (num, den) in pairs.items():
        if num not in figures or den not in figures:
            continue
        out[label] = {k: _div(figures[num][k], figures[den][k]) for k in figures[num]
                      if k not in ("requests", "errors")}
    return out


def _div(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


# -- the client ------------------------------------------------------------------------------

async def run_scenario(target: Target, scenario: Scenario, count: int, *, warmup: int = 0,
                       max_seconds: float = math.inf) -> Sample:
    """Send `count` requests at the scenario's concurrency over kept-alive connections.

    Warm-up requests first open every connection, so the figures exclude TCP setup (Claude
    Code keeps its connection too). Stops early at `max_seconds`, keeping what completed.
    """
    body = make_body(scenario.body_bytes, scenario.stream)
    marker = b"message_stop" if scenario.stream else b'"end_turn"'
    headers = {"content-type": "application/json", "anthropic-version": "2023-06-01", **target.headers}
    url = target.url.rstrip("/") + "/v1/messages"
    connector = aiohttp.TCPConnector(limit=scenario.concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    sample = Sample()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(record: bool) -> None:
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    chunks = [await resp.content.readany()]
                    t1 = time.perf_counter()
                    while chunk := await resp.content.readany():
                        chunks.append(chunk)
                    t2 = time.perf_counter()
                    ok = resp.status == 200 and marker in b"".join(chunks)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                ok = False
            if not record:
                return
            if not ok:
                sample.errors += 1
                return
            sample.completed += 1
            sample.latencies.append(t2 - t0)
            if scenario.stream:
                sample.ttfb.append(t1 - t0)

        async def worker(jobs: list[int], record: bool, deadline: float) -> None:
            while jobs and time.perf_counter() < deadline:
                jobs.pop()
                await one(record)

        async def batch(n: int, record: bool, seconds: float) -> float:
            jobs = list(range(n))
            start = time.perf_counter()
            deadline = start + seconds
            await asyncio.gather(*(worker(jobs, record, deadline) for _ in range(scenario.concurrency)))
            return time.perf_counter() - start

        await batch(max(warmup, scenario.concurrency), False, 10.0)
        sample.elapsed = await batch(count, True, max_seconds)
    return sample


async def measure(targets: list[Target], plan: Plan, scenarios: tuple[Scenario, ...] = SCENARIOS,
                  progress: bool = False) -> dict[str, dict[str, dict[str, float]]]:
    """Every scenario on every target, in ABCCBA rounds; returns scenario -> path -> figures."""
    results: dict[str, dict[str, dict[str, float]]] = {}
    order = targets + targets[::-1]
    for scenario in scenarios:
        count = plan.counts.get(scenario.name, 0)
        if count <= 0:
            continue
        samples = {t.name: Sample() for t in targets}
        for i, target in enumerate(order):
            n = count // 2 if i < len(targets) else count - count // 2
            part = await run_scenario(target, scenario, n, warmup=plan.warmup, max_seconds=plan.phase_seconds / 2)
            samples[target.name].merge(part)
        results[scenario.name] = {name: summarize(s, scenario) for name, s in samples.items()}
        if progress:
            done = ", ".join(f"{n} {int(f['requests'])}" for n, f in results[scenario.name].items())
            print(f"  {scenario.label}: {done}", file=sys.stderr, flush=True)
    return results


# -- the reference proxy -----------------------------------------------------------------------

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "transfer-encoding", "upgrade", "host", "content-length"})
SESSION = web.AppKey("session", aiohttp.ClientSession)


def reference_proxy_app(upstream: str) -> web.Application:
    """A bare pass-through proxy: reads the body, forwards, streams the reply chunk by chunk.

    No Host/key checks, no header rewrite, no usage parsing, no audit: what is left is the
    cost of an extra aiohttp hop, the baseline the broker is judged against.
    """
    base = upstream.rstrip("/")

    async def session_ctx(app: web.Application):  # noqa: ANN202 - aiohttp cleanup context
        app[SESSION] = aiohttp.ClientSession(auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None))
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


# -- servers in their own processes ---------------------------------------------------------------

def upstream_app_factory():  # noqa: ANN201 - returns (factory, fake)
    """The fake Anthropic API, accepting the token in $BENCH_UPSTREAM_TOKEN (read once)."""
    from tests.fakes.upstream import FakeAnthropic

    token = os.environ.pop(ENV_TOKEN, "")
    forbidden = os.environ.pop(ENV_FORBIDDEN, "")
    fake = FakeAnthropic(valid_tokens=lambda: (token,), forbidden=lambda: (forbidden,) if forbidden else (),
                         reply_text=REPLY, requests=deque(maxlen=8))  # type: ignore[arg-type] # bounded memory
    return fake.make_app, fake


def serve_child(kind: str, upstream_url: str | None) -> int:
    """Child mode: serve, print the port, run until stdin closes, then print a JSON summary."""
    from tests.fakes.threaded import serve_in_thread

    fake = None
    if kind == "upstream":
        factory, fake = upstream_app_factory()
    else:
        assert upstream_url
        factory = lambda: reference_proxy_app(upstream_url)  # noqa: E731
    with serve_in_thread(factory) as url:
        print(url.port, flush=True)
        sys.stdin.read()
    summary = {"problems": fake.problems[:20] if fake else [], "unauthorized": fake.unauthorized if fake else 0}
    print(json.dumps(summary), flush=True)
    return 0


class Child:
    """This script re-run in a child mode, so client, proxies and upstream hold separate GILs."""

    def __init__(self, kind: str, log: Path, env: dict[str, str], upstream_url: str | None = None) -> None:
        argv = [sys.executable, str(Path(__file__).resolve()), "--serve", kind]
        if upstream_url:
            argv += ["--upstream-url", upstream_url]
        with log.open("wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                         env=env, cwd=ROOT, text=True)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line.strip().isdigit():
            self.proc.kill()
            raise RuntimeError(f"{kind} server did not start: {log.read_text()[-2000:]}")
        self.url = f"http://127.0.0.1:{int(line)}"

    def stop(self) -> dict[str, Any]:
        try:
            out, _ = self.proc.communicate(input="", timeout=15)
            return json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        except (subprocess.TimeoutExpired, ValueError):
            self.proc.kill()
            self.proc.wait()
            return {}


@dataclass
class Environment:
    """Everything running, the three targets, and what the fake upstream saw (after exit)."""

    targets: list[Target]
    upstream_summary: dict[str, Any] = field(default_factory=dict)
    broker_log: Path | None = None


@contextlib.contextmanager
def start_environment(profile_broker: Path | None = None) -> Iterator[Environment]:
    """Fake token endpoint, Claude login, fake upstream, reference proxy and the real broker.

    The broker runs from its own config file in a private temp dir with a private HOME;
    `profile_broker` runs it under cProfile, writing stats there when it stops.
    """
    from tests.fakes.broker_process import BrokerProcess
    from tests.fakes.login import write_login
    from tests.fakes.threaded import serve_in_thread
    from tests.fakes.token_endpoint import FakeTokenEndpoint

    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="broker-bench-")))
        endpoint = FakeTokenEndpoint()
        token_url = stack.enter_context(serve_in_thread(endpoint.make_app))
        access, refresh = endpoint.issue()
        broker = BrokerProcess(tmp, {"token_url": f"{token_url}/v1/oauth/token"}, config_flag=True)
        write_login(broker.creds, access, refresh, time.time() + 8 * 3600)
        key = broker.add_sandbox("bench")  # before the upstream starts: it must refuse this key

        env = {k: v for k, v in broker.env.items() if k not in (ENV_TOKEN, ENV_FORBIDDEN)}
        upstream = Child("upstream", tmp / "upstream.log", {**env, ENV_TOKEN: access, ENV_FORBIDDEN: key})
        result = Environment(targets=[], broker_log=broker.output)
        stack.callback(lambda: result.upstream_summary.update(upstream.stop()))
        reference = Child("reference", tmp / "reference.log", env, upstream.url)
        stack.callback(reference.stop)

        broker.settings["upstream_url"] = upstream.url
        broker.write_config()
        profile = ("-m", "cProfile", "-o", str(profile_broker)) if profile_broker is not None else ()
        stack.callback(broker.stop)
        try:
            broker.start(python=profile)
        except AssertionError as exc:
            raise RuntimeError(f"broker did not start: {exc}") from None

        direct_auth = {"authorization": f"Bearer {access}", "anthropic-beta": OAUTH_BETA}
        result.targets += [
            Target("direct", upstream.url, direct_auth),
            Target("reference", reference.url, direct_auth),
            Target("broker", broker.url, {"x-api-key": key}),
        ]
        yield result


# -- report -------------------------------------------------------------------------------------

ROWS = {  # figure -> label, in the order the table shows them
    "p50_ms": "p50 ms", "p95_ms": "p95 ms", "p99_ms": "p99 ms",
    "ttfb_p50_ms": "TTFB p50 ms", "ttfb_p95_ms": "TTFB p95 ms", "ttfb_p99_ms": "TTFB p99 ms",
    "rps": "requests/s", "upload_mib_s": "upload MiB/s",
}


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpus": os.cpu_count(), "cpu_model": model or platform.processor(), "platform": platform.platform(),
            "python": platform.python_version(), "aiohttp": aiohttp.__version__}


def table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    head = f"{'scenario':<40} {'figure':<13} {'direct':>9} {'reference':>9} {'broker':>9} " \
           f"{'brk/ref':>8} {'brk/dir':>8} {'ref/dir':>8}"
    lines = [head, "-" * len(head)]
    labels = {s.name: s.label for s in SCENARIOS}
    for name, figures in results.items():
        rs = ratios(figures)
        first = True
        for key, label in ROWS.items():
            if not any(key in f for f in figures.values()):
                continue
            vals = "".join(f" {figures[p][key]:>9.2f}" if key in figures.get(p, {}) else f" {'-':>9}" for p in PATHS)
            rats = "".join(_ratio_cell(rs.get(r, {}).get(key, math.nan))
                           for r in ("broker/reference", "broker/direct", "reference/direct"))
            lines.append(f"{labels.get(name, name) if first else '':<40} {label:<13}{vals}{rats}")
            first = False
    return "\n".join(lines)


def _ratio_cell(value: float) -> str:
    return f" {'-':>8}" if math.isnan(value) else f" {value:>7.2f}x"


def report(results: dict[str, dict[str, dict[str, float]]], plan: Plan, env: Environment) -> dict[str, Any]:
    errors = {f"{s}/{p}": int(f["errors"]) for s, by in results.items() for p, f in by.items() if f["errors"]}
    return {
        "machine": machine(),
        "plan": {"counts": plan.counts, "warmup": plan.warmup, "phase_seconds": plan.phase_seconds},
        "scenarios": {s.name: {"label": s.label, "body_bytes": len(make_body(s.body_bytes, s.stream)),
                               "stream": s.stream, "concurrency": s.concurrency} for s in SCENARIOS},
        "results": results,
        "ratios": {name: ratios(by) for name, by in results.items()},
        "checks": {"errors": errors, "upstream": env.upstream_summary},
    }


def _clean(obj: Any) -> Any:
    """NaN is not JSON: write null instead."""
    if isinstance(obj, float):
        return None if math.isnan(obj) else round(obj, 4)
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (under 15 s) with fewer requests")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON here")
    parser.add_argument("--profile-broker", type=Path, metavar="PATH",
                        help="run the broker under cProfile and write its stats here")
    parser.add_argument("--serve", choices=("upstream", "reference"), help=argparse.SUPPRESS)
    parser.add_argument("--upstream-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve_child(args.serve, args.upstream_url)

    plan = QUICK_PLAN if args.quick else DEFAULT_PLAN
    started = time.monotonic()
    print(f"benchmarking on {os.cpu_count()} CPUs ({'quick' if args.quick else 'full'} run)...", file=sys.stderr)
    with start_environment(args.profile_broker) as env:
        results = asyncio.run(measure(env.targets, plan, progress=True))
    doc = _clean(report(results, plan, env))
    doc["wall_seconds"] = round(time.monotonic() - started, 1)
    print(table(results))
    upstream = env.upstream_summary
    print(f"\n{doc['wall_seconds']} s; request errors: {doc['checks']['errors'] or 'none'}; "
          f"upstream problems: {len(upstream.get('problems', []))}, 401s: {upstream.get('unauthorized', '?')}")
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    if args.profile_broker:
        print(f"broker profile: {args.profile_broker} (python -m pstats)", file=sys.stderr)
    bad = doc["checks"]["errors"] or upstream.get("problems") or upstream.get("unauthorized")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
