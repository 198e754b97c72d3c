"""The benchmark's own instruments: /proc readers, the lean HTTP client, held streams, targets.

No timing is asserted: these prove the instruments read what they claim (a CPU counter that
moves with work, a chunked SSE reply parsed whole, every held stream live and then complete).
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import phases, procstat, report  # noqa: E402
from benchmarks.environment import OAUTH_BETA, Environment  # noqa: E402
from benchmarks.loadgen import Connection, build_request, make_body  # noqa: E402
from benchmarks.servers import ENV_TOKEN, HOLD_HEADER, reference_proxy_app, upstream_app_factory  # noqa: E402
from tests.fakes.threaded import serve_in_thread  # noqa: E402

TOKEN = "sk-ant-oat01-bench-phases"
AUTH = {"authorization": f"Bearer {TOKEN}", "anthropic-beta": OAUTH_BETA, "anthropic-version": "2023-06-01",
        "content-type": "application/json"}


def test_proc_readers_follow_this_process() -> None:
    me = os.getpid()
    before = procstat.cpu_seconds(me)
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    assert procstat.cpu_seconds(me) > before
    assert procstat.rss_kib(me) > 1000
    vol, invol = procstat.wakeups(me)
    assert vol >= 0 and invol >= 0 and procstat.threads(me) >= 1
    assert math.isnan(procstat.cpu_seconds(None)) and math.isnan(procstat.rss_kib(None))


@pytest.fixture
def upstream(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(ENV_TOKEN, TOKEN)
    factory, fakes = upstream_app_factory()
    with serve_in_thread(factory) as url:
        yield url, fakes
    assert [p for f in fakes for p in f.problems] == []


async def test_client_reads_chunked_sse_and_keeps_the_connection(upstream) -> None:
    url, (normal, _) = upstream
    with serve_in_thread(lambda: reference_proxy_app(url)) as proxy:
        conn = Connection(proxy)
        request = build_request(proxy, "/v1/messages", AUTH, make_body(0, True))
        first = await conn.exchange(request)
        writer = conn.writer
        second = await conn.exchange(request)
        conn.close()
    for reply in (first, second):
        assert reply.status == 200 and reply.body.startswith(b"event: message_start")
        assert reply.body.rstrip().endswith(b'{"type": "message_stop"}')
        assert reply.first_byte <= reply.first_event <= reply.done
    assert writer is not None and conn.writer is None  # both went over one connection
    assert len(normal.requests) == 2


async def test_held_streams_are_all_live_then_all_complete(upstream) -> None:
    url, (normal, held) = upstream
    env = Environment(targets=[], upstream_url=url)
    with serve_in_thread(lambda: reference_proxy_app(url)) as proxy:
        request = build_request(proxy, "/v1/messages", {**AUTH, HOLD_HEADER: "1"}, make_body(0, True))
        figures = await phases.open_streams(proxy, request, 12, pid=os.getpid(), control=env.control)
    assert figures["live"] == 12 and figures["completed"] == 12
    assert held.streams_completed == 12 and len(normal.requests) == 0
    assert figures["first_event_max_ms"] >= figures["first_event_p50_ms"] > 0
    assert math.isfinite(figures["kib_per_stream"])


def test_targets_judge_the_figures_they_name() -> None:
    def fig(rps: float, cpu: float, p50: float, ttfe: float) -> dict[str, float]:
        return {"rps": rps, "cpu_s_per_1k": cpu, "p50_ms": p50, "ttfe_p50_ms": ttfe}

    doc = {
        "results": {"small_c16": {"reference": fig(1000, 0.4, 0, 0), "broker": fig(950, 0.42, 0, 0)},
                    "small_c1": {"reference": fig(0, 0, 0.5, 0), "broker": fig(0, 0, 0.9, 0)},
                    "stream_c1": {"reference": fig(0, 0, 0, 0.5), "broker": fig(0, 0, 0, 0.6)}},
        "open_streams": {"broker": {"streams": 500.0, "live": 100.0, "completed": 500.0, "rss_open_mib": 50.0,
                                    "kib_per_stream": 20.0}},
        "idle": {"broker": {"cpu_percent": 0.05, "wakeups_per_s": 3.0}},
        "startup": {"broker_s": [0.4, 0.5, 2.0]},
    }
    met = {t["target"].split(" (")[0]: t["met"] for t in report.targets(doc)}
    assert met == {
        "broker CPU per request vs reference": True, "requests/s at c=16 vs reference": True,
        "added p50 at c=1 over reference": False, "added first-event p50 at c=1 over reference": True,
        "RSS with 500 open streams": True, "KiB per open stream": True,
        "streams live before release": False, "idle CPU": True, "idle wake-ups/s": False,
        "start to ready": True,
    }
