#!/usr/bin/env python3
"""How much does the broker's proxy cost? Measured in one interleaved run, on loopback.

The same requests go to one fake Anthropic upstream (its own process) four ways:
  direct     client -> upstream
  reference  client -> a bare aiohttp pass-through proxy -> upstream
  broker     client -> the real `inference-broker run --no-tray` -> upstream
  nginx      client -> nginx, buffering off -> upstream (where nginx is installed)
"broker / reference" isolates what the broker's checks, rewrite, usage and audit add. Proxies
run pinned to one core, the load generator and the upstream to the other. Each scenario runs
its paths in ABCD DCBA passes so slow drift (other load, thermal) cancels out. Besides the
request loops: proxy CPU per request from /proc, memory with hundreds of open streams, idle
CPU and wake-ups, and start-up time.

    python benchmarks/proxy_overhead.py [--quick | --smoke] [--json PATH] [--markdown PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `benchmarks`, `broker`, `tests.fakes` importable
    sys.path.insert(0, str(ROOT))

from benchmarks import phases  # noqa: E402
from benchmarks.environment import OAUTH_BETA, BrokerSpec, Environment, Target, start_environment  # noqa: E402
from benchmarks.loadgen import REPLY, Sample, build_request, make_body, percentile, run_requests  # noqa: E402
from benchmarks.procstat import cores, cpu_seconds  # noqa: E402
from benchmarks import report as rep  # noqa: E402
from benchmarks.report import MiB, added, headline, machine, ratios, summarize, targets  # noqa: E402
from benchmarks.servers import HOLD_HEADER, nginx_binary, reference_proxy_app, serve_child  # noqa: E402

__all__ = ["OAUTH_BETA", "REPLY", "Sample", "Target", "make_body", "percentile", "ratios", "reference_proxy_app"]

PATHS = ("direct", "reference", "broker") + (("nginx",) if nginx_binary() else ())  # what this machine runs


@dataclass(frozen=True)
class Scenario:
    name: str
    label: str
    body_bytes: int  # 0: the smallest valid request
    stream: bool
    concurrency: int


SCENARIOS = (
    Scenario("small_c1", "small POST, c=1", 0, False, 1),
    Scenario("small_c16", "small POST, c=16", 0, False, 16),
    Scenario("small_c64", "small POST, c=64", 0, False, 64),
    Scenario("stream_c1", "streaming, c=1", 0, True, 1),
    Scenario("stream_c10", "streaming, c=10", 0, True, 10),
    Scenario("cc_stream_76k", "76 KB streaming (Claude Code size), c=1", 76 * 1024, True, 1),
    Scenario("large_1mib", "1 MiB body, c=1", MiB, False, 1),
)
LABELS = {s.name: s.label for s in SCENARIOS}


def table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """The detailed Markdown table, scenarios by their labels."""
    return rep.table(results, LABELS)


@dataclass(frozen=True)
class Plan:
    """How much to run. The defaults of the optional fields are smoke-test sized."""

    counts: dict[str, int]  # requests per scenario and path
    warmup: int
    phase_seconds: float  # at most this long per scenario per path (all passes together)
    rounds: int = 1  # ABCD DCBA repeated this many times
    open_streams: int = 20
    idle_seconds: float = 1.0
    start_runs: int = 1  # throwaway brokers started (pinned) and stopped to time start-up
    settle_seconds: float = 0.0  # quiet time after start-up before idle is measured
    mode: str = "smoke"


DEFAULT_PLAN = Plan({"small_c1": 3000, "small_c16": 8000, "small_c64": 8000, "stream_c1": 1500, "stream_c10": 3000,
                     "cc_stream_76k": 1000, "large_1mib": 200}, warmup=50, phase_seconds=6.0, rounds=2,
                    open_streams=500, idle_seconds=60.0, start_runs=5, settle_seconds=3.0, mode="full")
QUICK_PLAN = Plan({"small_c1": 400, "small_c16": 1000, "small_c64": 1000, "stream_c1": 200, "stream_c10": 300,
                   "cc_stream_76k": 100, "large_1mib": 20}, warmup=10, phase_seconds=1.0,
                  open_streams=500, idle_seconds=10.0, start_runs=2, settle_seconds=1.0, mode="quick")
SMOKE_PLAN = Plan({s.name: 4 for s in SCENARIOS}, warmup=1, phase_seconds=30.0)


def _headers(target: Target) -> dict[str, str]:
    return {"content-type": "application/json", "anthropic-version": "2023-06-01", **target.headers}


def _split(count: int, parts: int) -> list[int]:
    return [count * (i + 1) // parts - count * i // parts for i in range(parts)]


async def measure(targets: list[Target], plan: Plan, scenarios: tuple[Scenario, ...] = SCENARIOS,
                  progress: bool = False) -> dict[str, dict[str, dict[str, float]]]:
    """Every scenario on every target in interleaved passes; returns scenario -> path -> figures."""
    results: dict[str, dict[str, dict[str, float]]] = {}
    order = (targets + targets[::-1]) * max(1, plan.rounds)
    for scenario in scenarios:
        count = plan.counts.get(scenario.name, 0)
        if count <= 0:
            continue
        body = make_body(scenario.body_bytes, scenario.stream)
        marker = b"message_stop" if scenario.stream else b'"end_turn"'
        samples = {t.name: Sample() for t in targets}
        shares = {t.name: iter(_split(count, len(order) // len(targets))) for t in targets}
        for target in order:
            pid = target.pid
            part = await run_requests(target.url, build_request(target.url, "/v1/messages", _headers(target), body),
                                      marker, count=next(shares[target.name]), concurrency=scenario.concurrency,
                                      warmup=plan.warmup, max_seconds=plan.phase_seconds * len(targets) / len(order),
                                      stream=scenario.stream, cpu=(lambda p=pid: cpu_seconds(p)) if pid else None)
            samples[target.name].merge(part)
        results[scenario.name] = {name: summarize(s, stream=scenario.stream, body_bytes=scenario.body_bytes)
                                  for name, s in samples.items()}
        if progress:
            done = ", ".join(f"{n} {int(f['requests'])}" for n, f in results[scenario.name].items())
            print(f"  {scenario.label}: {done}", file=sys.stderr, flush=True)
    return results


async def measure_streams(env: Environment, count: int) -> dict[str, dict[str, float]]:
    """Memory of each proxy with `count` streams held open through it, one proxy at a time."""
    out = {}
    body = make_body(0, True)
    for target in env.targets:
        if target.pid is None:
            continue
        request = build_request(target.url, "/v1/messages", {**_headers(target), HOLD_HEADER: "1"}, body)
        out[target.name] = await phases.open_streams(target.url, request, count, pid=target.pid, control=env.control)
        print(f"  {count} open streams via {target.name}: {out[target.name]['live']:.0f} live", file=sys.stderr,
              flush=True)
    return out


def _clean(obj: Any) -> Any:
    """NaN is not JSON: write null instead."""
    if isinstance(obj, float):
        return None if math.isnan(obj) else round(obj, 4)
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def report(results: dict[str, dict[str, dict[str, float]]], plan: Plan, env: Environment,
           extra: dict[str, Any] | None = None) -> dict[str, Any]:
    errors = {f"{s}/{p}": int(f["errors"]) for s, by in results.items() for p, f in by.items() if f["errors"]}
    doc = {
        "plan": {k: v for k, v in vars(plan).items()},
        "scenarios": {s.name: {"label": s.label, "body_bytes": len(make_body(s.body_bytes, s.stream)),
                               "stream": s.stream, "concurrency": s.concurrency} for s in SCENARIOS},
        "results": results,
        "ratios": {name: ratios(by) for name, by in results.items()},
        "added_ms": {name: added(by) for name, by in results.items()},
        **(extra or {}),
        "checks": {"errors": errors, "upstream": env.upstream_summary},
    }
    doc["targets"] = targets(doc)
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="a short run (about a minute; idle over 10 s, not 60)")
    mode.add_argument("--smoke", action="store_true", help="a few requests each: proves the script works, no figures")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON here")
    parser.add_argument("--markdown", type=Path, metavar="PATH", help="also write the tables as Markdown here")
    parser.add_argument("--no-nginx", action="store_true", help="leave nginx out even where it is installed")
    parser.add_argument("--compare-with", type=Path, metavar="DIR",
                        help="also run the broker from this source tree (path broker_before), e.g. "
                             "`git archive main | tar -x -C DIR`")
    parser.add_argument("--proxy-cpu", type=int, help="core for the proxies under test (default: the last)")
    parser.add_argument("--load-cpu", type=int, help="core for the client and fake upstream (default: the first)")
    parser.add_argument("--profile-broker", type=Path, metavar="PATH",
                        help="run the broker under cProfile and write its stats here")
    parser.add_argument("--serve", choices=("upstream", "reference"), help=argparse.SUPPRESS)
    parser.add_argument("--upstream-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve_child(args.serve, args.upstream_url)

    plan = SMOKE_PLAN if args.smoke else QUICK_PLAN if args.quick else DEFAULT_PLAN
    proxy_cpu, load_cpu = cores(args.proxy_cpu, args.load_cpu)
    started = time.monotonic()
    print(f"benchmarking on {os.cpu_count()} CPUs ({plan.mode} run; proxies on core {proxy_cpu}, "
          f"load on core {load_cpu})...", file=sys.stderr)
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    try:
        if load_cpu is not None:
            os.sched_setaffinity(0, {load_cpu})
        brokers: tuple[BrokerSpec, ...] = (BrokerSpec("broker"),)
        if args.compare_with:
            brokers += (BrokerSpec("broker_before", root=args.compare_with.resolve()),)
        with start_environment(proxy_cpu=proxy_cpu, load_cpu=load_cpu, start_runs=plan.start_runs,
                               with_nginx=not args.no_nginx, profile_broker=args.profile_broker,
                               brokers=brokers) as env:
            time.sleep(plan.settle_seconds)
            print(f"  idle for {plan.idle_seconds:g} s...", file=sys.stderr, flush=True)
            idle = phases.idle({t.name: t.pid for t in env.targets if t.pid}, plan.idle_seconds)
            results = asyncio.run(measure(env.targets, plan, progress=True))
            streams = asyncio.run(measure_streams(env, plan.open_streams))
    finally:
        if affinity is not None:
            os.sched_setaffinity(0, affinity)
    extra = {"machine": machine(proxy_cpu, load_cpu), "idle": idle, "open_streams": streams,
             "startup": {"broker_s": env.startup}}
    doc = _clean(report(results, plan, env, extra))
    doc["wall_seconds"] = round(time.monotonic() - started, 1)
    markdown = f"{headline(doc)}\n\n{table(results)}\n"
    print(markdown)
    upstream = env.upstream_summary
    print(f"{doc['wall_seconds']} s ({plan.mode}); request errors: {doc['checks']['errors'] or 'none'}; "
          f"upstream problems: {len(upstream.get('problems', []))}, 401s: {upstream.get('unauthorized', '?')}")
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    if args.markdown:
        args.markdown.write_text(markdown)
    if args.profile_broker:
        print(f"broker profile: {args.profile_broker} (python -m pstats)", file=sys.stderr)
    bad = doc["checks"]["errors"] or upstream.get("problems") or upstream.get("unauthorized")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
