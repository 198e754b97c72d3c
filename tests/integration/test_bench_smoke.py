"""Smoke test for benchmarks/proxy_overhead.py: it runs and its figures are well formed.

Performance is the benchmark's job; nothing here asserts a timing. A handful of requests per
scenario proves the measurement functions, the real broker's start-up wiring and the report
still work, so the script does not rot between the times someone runs it.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from tests.fakes.threaded import serve_in_thread
from tests.fakes.upstream import FakeAnthropic

ROOT = Path(__file__).resolve().parents[2]


def _load_bench():
    spec = importlib.util.spec_from_file_location("proxy_overhead", ROOT / "benchmarks" / "proxy_overhead.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


bench = _load_bench()
TINY = bench.Plan({s.name: 4 for s in bench.SCENARIOS}, warmup=1, phase_seconds=30.0)


@pytest.mark.parametrize(
    "values, q, expected",
    [
        ([5.0], 50, 5.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([4.0, 1.0, 3.0, 2.0], 0, 1.0),
        ([4.0, 1.0, 3.0, 2.0], 100, 4.0),
        ([0.0, 10.0], 95, 9.5),
        (list(map(float, range(101))), 99, 99.0),
    ],
)
def test_percentile(values: list[float], q: float, expected: float) -> None:
    assert bench.percentile(values, q) == pytest.approx(expected)


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(bench.percentile([], 50))


@pytest.mark.parametrize("size, stream", [(0, False), (0, True), (76 * 1024, True), (1024 * 1024, False)])
def test_make_body_is_a_messages_request_of_the_asked_size(size: int, stream: bool) -> None:
    body = bench.make_body(size, stream)
    doc = json.loads(body)
    assert doc["stream"] is stream and doc["messages"][0]["role"] == "user"
    if size:
        assert len(body) == size


def test_ratios_divide_like_for_like() -> None:
    figures = {"direct": {"requests": 3.0, "errors": 0.0, "p50_ms": 1.0, "rps": 100.0},
               "reference": {"requests": 3.0, "errors": 0.0, "p50_ms": 2.0, "rps": 50.0},
               "broker": {"requests": 3.0, "errors": 0.0, "p50_ms": 3.0, "rps": 25.0}}
    r = bench.ratios(figures)
    assert r["broker/reference"] == {"p50_ms": 1.5, "rps": 0.5}
    assert r["broker/direct"] == {"p50_ms": 3.0, "rps": 0.25}
    assert r["reference/direct"] == {"p50_ms": 2.0, "rps": 0.5}


def _well_formed(figures: dict[str, float], scenario, count: int) -> None:
    assert figures["requests"] == count and figures["errors"] == 0
    keys = {"p50_ms", "p95_ms", "p99_ms", "rps"}
    if scenario.stream:
        keys |= {"ttfb_p50_ms", "ttfb_p95_ms", "ttfb_p99_ms"}
    assert keys <= set(figures)
    for key in keys:
        assert math.isfinite(figures[key]) and figures[key] > 0, (scenario.name, key, figures[key])
    assert figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"]


async def test_measure_direct_and_reference_in_process() -> None:
    token = "sk-ant-oat01-bench-smoke"
    fake = FakeAnthropic(valid_tokens=lambda: (token,), reply_text=bench.REPLY)
    auth = {"authorization": f"Bearer {token}", "anthropic-beta": bench.OAUTH_BETA}
    with serve_in_thread(fake.make_app) as upstream, \
            serve_in_thread(lambda: bench.reference_proxy_app(upstream)) as reference:
        targets = [bench.Target("direct", upstream, auth), bench.Target("reference", reference, auth)]
        results = await bench.measure(targets, TINY)
    assert fake.problems == []
    assert set(results) == {s.name for s in bench.SCENARIOS}
    for scenario in bench.SCENARIOS:
        assert set(results[scenario.name]) == {"direct", "reference"}
        for figures in results[scenario.name].values():
            _well_formed(figures, scenario, 4)
        assert set(bench.ratios(results[scenario.name])) == {"reference/direct"}
    assert "76 KB streaming" in bench.table(results)


def test_whole_run_with_the_real_broker_writes_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(bench, "QUICK_PLAN", TINY)
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["machine"]["cpus"] >= 1
    assert doc["checks"]["errors"] == {}
    assert doc["checks"]["upstream"] == {"problems": [], "unauthorized": 0}
    for scenario in bench.SCENARIOS:
        by_path = doc["results"][scenario.name]
        assert set(by_path) == set(bench.PATHS)
        for figures in by_path.values():
            _well_formed(figures, scenario, 4)
        assert set(doc["ratios"][scenario.name]) == {"broker/reference", "broker/direct", "reference/direct"}
    shown = capsys.readouterr().out
    assert "brk/ref" in shown and "1 MiB body" in shown
