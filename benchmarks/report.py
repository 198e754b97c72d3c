"""Figures from samples, ratios between paths, the targets, and the Markdown tables."""

from __future__ import annotations

import contextlib
import math
import os
import platform
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.loadgen import Sample, percentile

MiB = 1024 * 1024
PAIRS = {"broker/reference": ("broker", "reference"), "broker/direct": ("broker", "direct"),
         "reference/direct": ("reference", "direct")}
COUNTS = ("requests", "errors")
ALL_PATHS = ("direct", "reference", "broker", "broker_before", "nginx")  # in the tables' order
ROWS = {  # figure -> label, in the order the detailed table shows them
    "p50_ms": "p50 ms", "p95_ms": "p95 ms", "p99_ms": "p99 ms",
    "ttfe_p50_ms": "first event p50 ms", "ttfe_p99_ms": "first event p99 ms",
    "ttfb_p50_ms": "TTFB p50 ms", "rps": "requests/s", "upload_mib_s": "upload MiB/s",
    "cpu_s_per_1k": "CPU s / 1000 req", "busy": "proxy core busy",
}


def summarize(sample: Sample, *, stream: bool, body_bytes: int) -> dict[str, float]:
    """The figures for one scenario on one path (milliseconds, requests/s, CPU, MiB/s)."""
    rps = sample.completed / sample.elapsed if sample.elapsed > 0 else math.nan
    out = {"requests": float(sample.completed), "errors": float(sample.errors), "rps": rps}
    for q in (50, 95, 99):
        out[f"p{q}_ms"] = percentile(sample.latencies, q) * 1000
    if stream:
        for q in (50, 95, 99):
            out[f"ttfb_p{q}_ms"] = percentile(sample.ttfb, q) * 1000
            out[f"ttfe_p{q}_ms"] = percentile(sample.ttfe, q) * 1000
    if body_bytes >= MiB:
        out["upload_mib_s"] = rps * body_bytes / MiB
    if not math.isnan(sample.cpu) and sample.completed:
        out["cpu_s_per_1k"] = sample.cpu / sample.completed * 1000
        out["busy"] = sample.cpu / sample.elapsed if sample.elapsed > 0 else math.nan
    return out


def _div(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def ratios(figures: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """broker/reference, broker/direct and reference/direct for every shared figure but counts."""
    out: dict[str, dict[str, float]] = {}
    for label, (num, den) in PAIRS.items():
        if num in figures and den in figures:
            out[label] = {k: _div(v, figures[den][k]) for k, v in figures[num].items()
                          if k not in COUNTS and k in figures[den]}
    return out


def added(figures: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """What each proxy adds over the direct path, in milliseconds, for every time figure."""
    base = figures.get("direct", {})
    return {path: {k: v - base[k] for k, v in f.items() if k.endswith("_ms") and k in base}
            for path, f in figures.items() if path != "direct"}


def machine(proxy_cpu: int | None = None, load_cpu: int | None = None) -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpus": os.cpu_count(), "cpu_model": model or platform.processor(), "platform": platform.platform(),
            "python": platform.python_version(), "aiohttp": aiohttp.__version__,
            "proxy_cpu": proxy_cpu, "load_cpu": load_cpu, "loadavg": _loadavg()}


def _loadavg() -> list[float]:
    with contextlib.suppress(OSError, AttributeError):
        return [round(x, 2) for x in os.getloadavg()]
    return []


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def table(results: dict[str, dict[str, dict[str, float]]], labels: dict[str, str] | None = None) -> str:
    """Every figure of every scenario, one Markdown row each, with broker vs reference."""
    paths = [p for p in ALL_PATHS if any(p in by for by in results.values())]
    head = ["scenario", "figure", *paths, "brk/ref", "brk-ref"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for name, figures in results.items():
        first = True
        for key, label in ROWS.items():
            if not any(key in f for f in figures.values()):
                continue
            vals = [_num(figures.get(p, {}).get(key), 3 if key == "cpu_s_per_1k" else 2) for p in paths]
            ref, brk = figures.get("reference", {}).get(key), figures.get("broker", {}).get(key)
            r = _div(brk, ref) if ref is not None and brk is not None else math.nan
            ratio = "-" if math.isnan(r) else f"{r:.2f}x"
            diff = _num(brk - ref, 3) if key.endswith("_ms") and ref is not None and brk is not None else ""
            lines.append(f"| {(labels or {}).get(name, name) if first else ''} | {label} | "
                         + " | ".join(vals) + f" | {ratio} | {diff} |")
            first = False
    return "\n".join(lines)


def _get(doc: dict, *keys: str) -> float:
    cur: Any = doc
    for k in keys:
        if not isinstance(cur, dict) or k not in cur or cur[k] is None:
            return math.nan
        cur = cur[k]
    return float(cur)


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the figure it was judged on and whether it was met."""
    res, streams, idle = doc["results"], doc.get("open_streams", {}).get("broker", {}), doc.get("idle", {})

    def fig(scn: str, path: str, key: str) -> float:
        return _get(res, scn, path, key)

    cpu = _div(fig("small_c16", "broker", "cpu_s_per_1k"), fig("small_c16", "reference", "cpu_s_per_1k"))
    rps = _div(fig("small_c16", "broker", "rps"), fig("small_c16", "reference", "rps"))
    p50 = fig("small_c1", "broker", "p50_ms") - fig("small_c1", "reference", "p50_ms")
    ttfe = fig("stream_c1", "broker", "ttfe_p50_ms") - fig("stream_c1", "reference", "ttfe_p50_ms")
    n = _get(streams, "streams")
    startup = sorted(doc.get("startup", {}).get("broker_s", []))
    rows = [
        ("broker CPU per request vs reference (small, c=16)", cpu, "<= 1.1x", cpu <= 1.1, "x"),
        ("requests/s at c=16 vs reference", rps, ">= 0.9x", rps >= 0.9, "x"),
        ("added p50 at c=1 over reference", p50, "<= 0.2 ms", p50 <= 0.2, " ms"),
        ("added first-event p50 at c=1 over reference", ttfe, "<= 0.3 ms", ttfe <= 0.3, " ms"),
        (f"RSS with {n:.0f} open streams", _get(streams, "rss_open_mib"), "<= 60 MiB",
         _get(streams, "rss_open_mib") <= 60, " MiB"),
        ("KiB per open stream", _get(streams, "kib_per_stream"), "<= 30 KiB",
         _get(streams, "kib_per_stream") <= 30, " KiB"),
        ("streams live before release (none delayed)", _get(streams, "live"), f"= {n:.0f}",
         _get(streams, "live") == n and _get(streams, "completed") == n, ""),
        ("idle CPU", _get(idle, "broker", "cpu_percent"), "< 0.2 %", _get(idle, "broker", "cpu_percent") < 0.2, " %"),
        ("idle wake-ups/s", _get(idle, "broker", "wakeups_per_s"), "< 2", _get(idle, "broker", "wakeups_per_s") < 2, ""),
        ("start to ready (median)", percentile(startup, 50), "< 1 s", percentile(startup, 50) < 1, " s"),
    ]
    return [{"target": t, "value": None if math.isnan(v) else round(v, 4), "want": w, "met": bool(ok), "unit": u}
            for t, v, w, ok, u in rows]


def headline(doc: dict[str, Any]) -> str:
    """The targets table, then memory, idle and start-up per path."""
    lines = ["| target | figure | wanted | met |", "|---|---|---|---|"]
    for t in doc["targets"]:
        lines.append(f"| {t['target']} | {_num(t['value'], 3)}{t['unit']} | {t['want']} | {'yes' if t['met'] else 'no'} |")
    streams, idle = doc.get("open_streams", {}), doc.get("idle", {})
    paths = [p for p in ALL_PATHS[1:] if p in streams or p in idle]
    lines += ["", "| path | " + " | ".join(paths) + " |", "|---|" + "---|" * len(paths)]
    for key, label in (("rss_before_mib", "RSS before streams MiB"), ("rss_open_mib", "RSS with streams open MiB"),
                       ("kib_per_stream", "KiB per open stream"), ("live", "streams live before release"),
                       ("completed", "streams completed"), ("first_event_max_ms", "slowest first event ms")):
        lines.append(f"| {label} | " + " | ".join(_num(streams.get(p, {}).get(key), 1) for p in paths) + " |")
    for key, label in (("cpu_percent", "idle CPU % of a core"), ("wakeups_per_s", "idle wake-ups/s"),
                       ("rss_mib", "idle RSS MiB"), ("threads", "threads")):
        lines.append(f"| {label} | " + " | ".join(_num(idle.get(p, {}).get(key), 3) for p in paths) + " |")
    start = doc.get("startup", {}).get("broker_s", [])
    lines.append(f"\nbroker start to ready: {', '.join(_num(s, 3) for s in start)} s")
    return "\n".join(lines)
